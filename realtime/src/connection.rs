//! One socket's loop, written over `Sink`/`Stream` so tests can drive it with channels.

use crate::frames::{ClientFrame, Delivery, ServerFrame};
use crate::hub::{Mail, Mailbox, Membership};
use crate::presence::Presence;
use crate::router::Keys;
use crate::telemetry as names;
use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Close codes of the contract.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
pub const CLOSE_SERVICE_RESTART: u16 = 1012;

/// A socket's own state. Every socket of the process holds one, so what it can share it
/// shares (the user's name, the epoch, the process's settings) and what it can hold inline it
/// does.
pub struct Session {
    pub connection_id: Uuid,
    /// The stream epoch when the socket opened (one allocation for the process's sockets).
    pub epoch: Arc<str>,
    /// The newest entry of the user's stream when the socket opened.
    pub head: (u64, u64),
    pub user: Arc<str>,
    pub shared: Arc<Shared>,
}

/// What every socket of the process uses alike, behind one pointer per socket.
#[derive(Debug)]
pub struct Shared {
    pub keys: Keys,
    pub heartbeat: Duration,
    /// The origin of the heartbeat grid (see [`Shared::next_ping`]): the process's start.
    pub grid_from: tokio::time::Instant,
    /// For `resume`: the user's stream.
    pub redis: redis::aio::ConnectionManager,
    pub presence: Presence,
}

/// Heartbeat deadlines fall on a grid of this step, so the pings of a process's sockets go
/// out in a few bursts a second rather than each at its own millisecond: a process wakes
/// 4 times a second for them, not once per ping (at 16,000 sockets and 25 s, 640 times).
pub const PING_GRID: Duration = Duration::from_millis(250);

impl Shared {
    /// The first point of the heartbeat grid a heartbeat after `now`.
    pub fn next_ping(&self, now: tokio::time::Instant) -> tokio::time::Instant {
        on_grid(self.grid_from, now + self.heartbeat, PING_GRID)
    }
}

/// The first point of the grid of `step` from `from` at or after `at`.
fn on_grid(from: tokio::time::Instant, at: tokio::time::Instant, step: Duration) -> tokio::time::Instant {
    let step_ns = step.as_nanos().max(1);
    let since = at.saturating_duration_since(from).as_nanos();
    let steps = since.div_ceil(step_ns);
    from + Duration::from_nanos(u64::try_from(steps * step_ns).unwrap_or(u64::MAX))
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("connection_id", &self.connection_id).field("user", &self.user).finish()
    }
}

/// How long live events wait after `ready` for a first client op: a client that starts with
/// `resume` then gets its history before anything newer, in order.
pub const RESUME_WINDOW: Duration = Duration::from_secs(1);

/// A Redis stream id `<ms>-<seq>` as a comparable pair.
pub fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// `<epoch>-<stream id>` split in two.
pub fn parse_stream_pos(pos: &str) -> Option<(&str, (u64, u64))> {
    let (epoch, id) = pos.split_once('-')?;
    Some((epoch, stream_id(id)?))
}

/// `<epoch>-<redis stream id>`: grows with the stream; a new epoch means history was lost.
pub fn stream_pos(epoch: &str, stream_id: &str) -> String {
    format!("{epoch}-{stream_id}")
}

/// What one socket's loop owns. Every socket of the process waits in [`serve`], and a future
/// keeps its arguments for its whole life besides the locals they move to
/// (rust-lang/rust#62958), so all of it comes as one pointer: one allocation of 504 B with
/// axum's socket, under the allocator's 512 B size class (what every socket uses alike is
/// behind one more pointer, [`Shared`], and the hub is one pointer too).
pub struct Connection<S> {
    pub socket: S,
    pub member: Membership,
    pub session: Session,
}

impl<S> std::fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("session", &self.session).finish_non_exhaustive()
    }
}

/// A socket's life, from `ready` to its close: counted open and marked present meanwhile.
/// It owns the connection (one pointer): a wrapping future around it would cost every socket
/// its own state besides this one's.
pub async fn serve<S, E>(mut conn: Box<Connection<S>>)
where
    S: Sink<Message, Error = E> + Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    // Its state is kept small: one timer for all deadlines, one mailbox for frames and
    // signals, the socket not split in two (its halves would share it behind a lock), and
    // each write's future boxed (a future is as large as its largest await).
    let Connection { socket: tx, member, session } = &mut *conn;
    // The newest user-stream entry written to this socket: live and replayed frames meet
    // here, so none is sent twice and none goes out of order.
    let mut sent_max: Option<(u64, u64)> = None;
    let start = session.head;
    // Where the socket's stream stands: the newest entry written (or the head at `ready`).
    let reached = |sent_max: Option<(u64, u64)>| {
        let (ms, seq) = sent_max.unwrap_or(start);
        format!("{ms}-{seq}")
    };
    let ready = {
        let mut id = Uuid::encode_buffer();
        let pos = stream_pos(&session.epoch, &reached(None));
        ServerFrame::Ready { connection_id: session.connection_id.hyphenated().encode_lower(&mut id), stream_pos: &pos }
            .to_text()
    };
    // Before `ready`, so a client told it is connected is online.
    opened(session);
    if tx.send(Message::Text(ready.into())).await.is_err() {
        closed(session);
        return;
    }
    let mailbox = member.mailbox.clone();
    let user_channel = member.user_channel().clone();
    let mut live = false;
    // Whether anything (a pong, a frame) came from the client since the last ping: a peer
    // silent for a whole heartbeat after a ping is gone (a dropped network, a suspended
    // laptop), and would otherwise hold its socket and its presence until TCP gave up.
    let mut heard = true;
    let now = tokio::time::Instant::now();
    let live_at = now + RESUME_WINDOW;
    let mut ping_at = session.shared.next_ping(now);
    let mut catch_up_at: Option<tokio::time::Instant> = None;
    // The soonest of the deadlines still ahead: the next heartbeat, the end of the resume
    // window (until the socket is live), a due catch-up.
    let next_deadline = |live: bool, ping_at, catch_up_at: Option<tokio::time::Instant>| {
        let next = if live { ping_at } else { live_at.min(ping_at) };
        catch_up_at.map_or(next, |at| next.min(at))
    };
    // Boxed: a `Sleep` is 112 B, and inline it kept the socket's task (axum's upgrade future
    // around this one) over 1,024 B, rounded up to 1,280 by the allocator; now the task is
    // 896 B and the timer 112 B, each exactly a size class (`-Zprint-type-sizes`).
    let mut timer = Box::pin(tokio::time::sleep_until(next_deadline(live, ping_at, catch_up_at)));
    let close = |code: u16, reason: &'static str| Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    // After each write: carry on, stop (the socket is gone), or close a client that stopped
    // reading with 1013.
    macro_rules! or_end {
        ($written:expr) => {
            match $written {
                Written::Sent => {}
                Written::Gone => break,
                Written::Stuck => {
                    Box::pin(close_slow(&mut *tx, close(CLOSE_TRY_AGAIN_LATER, "client too slow"))).await;
                    break;
                }
            }
        };
    }
    loop {
        tokio::select! {
            // Frames are held until the socket is live, and while a catch-up is due: written
            // then, a live frame would move the high mark past the frames the catch-up is to
            // bring.
            mail = mailbox.next(Mailbox::TOO_SLOW | Mailbox::RESTART | Mailbox::RECONNECTED, live && catch_up_at.is_none()) => match mail {
                Mail::Signal(raised) => {
                    if raised & Mailbox::RESTART != 0 {
                        Box::pin(close_slow(&mut *tx, close(CLOSE_SERVICE_RESTART, "server restarting; reconnect"))).await;
                        break;
                    }
                    if raised & Mailbox::TOO_SLOW != 0 {
                        Box::pin(close_slow(&mut *tx, close(CLOSE_TRY_AGAIN_LATER, "client too slow"))).await;
                        break;
                    }
                    // Frames published while the process's pub/sub connection was down never
                    // came: fetch them from the stream, after the newest one written. (Before
                    // the socket is live the client's own `resume` is still to come and covers
                    // them.) Each socket waits its own fraction of a second, so the process's
                    // sockets do not all read Redis at once; live frames meanwhile wait in the
                    // queue, and those the catch-up also brings are then skipped as written.
                    if live {
                        catch_up_at = Some(tokio::time::Instant::now() + jitter(session.connection_id.as_bytes(), CATCH_UP_SPREAD));
                        timer.as_mut().reset(next_deadline(live, ping_at, catch_up_at));
                    }
                }
                Mail::Frame(published) => {
                    let Some((id, json)) = published.payload.split_once('|') else { continue };
                    let text = if *published.channel == *user_channel {
                        let Some(at) = stream_id(id) else { continue };
                        if sent_max.is_some_and(|max| at <= max) {
                            continue;
                        }
                        sent_max = Some(at);
                        event_frame(&session.epoch, id, json, None)
                    } else {
                        // A channel frame is not in the user's stream: it carries the position
                        // reached so far, which stays a correct place to resume from.
                        event_frame(&session.epoch, &reached(sent_max), json, Some(&*session.user))
                    };
                    let Some(text) = text else { continue };
                    or_end!(Box::pin(write(&mut *tx, Message::Text(text.into()), &mailbox)).await);
                }
            },
            () = &mut timer => {
                let now = tokio::time::Instant::now();
                if !live && now >= live_at {
                    live = true;
                }
                if catch_up_at.is_some_and(|at| now >= at) {
                    catch_up_at = None;
                    let after = stream_pos(&session.epoch, &reached(sent_max));
                    match Box::pin(resume(session, &after, &mut sent_max)).await {
                        Ok(frames) => or_end!(Box::pin(send_all(&mut *tx, frames, &mailbox)).await),
                        Err(e) => tracing::warn!(error = %e, "catching up after a pub/sub reconnect failed"),
                    }
                }
                if now >= ping_at {
                    if !heard {
                        metrics::counter!(names::PEERS_GONE).increment(1);
                        tracing::debug!(connection_id = %session.connection_id, "no answer to a heartbeat; dropping the connection");
                        break;
                    }
                    heard = false;
                    ping_at = session.shared.next_ping(now);
                    or_end!(Box::pin(write(&mut *tx, Message::Ping(Vec::new().into()), &mailbox)).await);
                }
                timer.as_mut().reset(next_deadline(live, ping_at, catch_up_at));
            }
            incoming = tx.next() => {
                heard = true;
                let reply = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(text))) => {
                        live = true;
                        if let Ok(ClientFrame::Resume { after }) = serde_json::from_str::<ClientFrame>(text.as_str()) {
                            // Boxed: rare, and its future would otherwise enlarge every socket's.
                            match Box::pin(resume(session, &after, &mut sent_max)).await {
                                Ok(frames) => {
                                    or_end!(Box::pin(send_all(&mut *tx, frames, &mailbox)).await);
                                    None
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "resume failed");
                                    Some(ServerFrame::Error { code: "unavailable", message: "history is unavailable; try again" }.to_text())
                                }
                            }
                        } else {
                            client_op(member, &session.shared.keys, text.as_str())
                        }
                    }
                    Some(Ok(Message::Binary(_))) => Some(ServerFrame::Error { code: "bad_frame", message: "frames are JSON text" }.to_text()),
                    Some(Ok(_)) => None, // ping/pong are answered by the protocol layer
                };
                if let Some(reply) = reply {
                    or_end!(Box::pin(write(&mut *tx, Message::Text(reply.into()), &mailbox)).await);
                }
            }
        }
    }
    closed(session);
}

/// Counts the socket open and marks its user present (renewed by the process while the socket
/// is open; Redis being away only makes the user look offline).
fn opened(session: &Session) {
    metrics::gauge!(names::CONNECTIONS_OPEN).increment(1.0);
    session.shared.presence.mark(&session.user, session.connection_id);
}

/// Undoes [`opened`].
fn closed(session: &Session) {
    session.shared.presence.unmark(&session.user, session.connection_id);
    metrics::gauge!(names::CONNECTIONS_OPEN).decrement(1.0);
}

/// Over how long a process's sockets spread their catch-up after a pub/sub reconnect.
const CATCH_UP_SPREAD: Duration = Duration::from_secs(1);

/// A random delay below `spread` (the process's random hash seed over `key`).
fn jitter(key: &[u8], spread: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(key);
    let millis = spread.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % millis)
}

/// How a write to a socket ended.
enum Written {
    Sent,
    /// The socket is gone.
    Gone,
    /// The client stopped reading: its queue overflowed, or the write waited [`WRITE_TIMEOUT`].
    Stuck,
}

/// The longest one write may wait for a client to read; then it is closed as too slow. Covers
/// writes no queue stands behind (heartbeats, replies, replays).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `message`, unless the client has stopped reading.
async fn write<S: Sink<Message> + Unpin>(tx: &mut S, message: Message, mailbox: &Mailbox) -> Written {
    tokio::select! {
        sent = tokio::time::timeout(WRITE_TIMEOUT, tx.send(message)) => match sent {
            Ok(Ok(())) => Written::Sent,
            Ok(Err(_)) => Written::Gone,
            Err(_) => {
                mailbox.raise(Mailbox::TOO_SLOW);
                Written::Stuck
            }
        },
        _ = mailbox.wait(Mailbox::TOO_SLOW) => Written::Stuck,
    }
}

/// Writes `frames` in order, stopping at the first write that does not go out.
async fn send_all<S: Sink<Message> + Unpin>(tx: &mut S, frames: Vec<String>, mailbox: &Mailbox) -> Written {
    for f in frames {
        match write(tx, Message::Text(f.into()), mailbox).await {
            Written::Sent => {}
            other => return other,
        }
    }
    Written::Sent
}

/// How long a slow client's close frame may wait behind what it has not read; then the
/// connection is dropped without it.
const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(10);
/// How long, once the close frame is out, the socket stays open for the client's reply.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Sends the close frame, then reads (and drops) what the client still sends until its own
/// close frame comes, or `CLOSE_LINGER` passes. Dropping the socket at once would make the
/// kernel answer the client's next write (a pong to a ping it is only now reading) with a
/// reset, and a reset discards what the client has not read yet: the close frame among it.
async fn close_slow<S, E>(tx: &mut S, frame: Message)
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    if tokio::time::timeout(SLOW_CLOSE_GRACE, tx.send(frame)).await.is_err() {
        tracing::debug!("a slow client's close frame could not be written; dropping the connection");
        return;
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(message)) = tx.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Entries read per `XRANGE` while replaying.
const REPLAY_PAGE: usize = 500;

/// The frames of a `resume` from `after`: every entry of the user's stream after it, in
/// order, or a `reset` when that history is gone (another epoch, or trimmed past retention).
async fn resume(
    session: &Session,
    after: &str,
    sent_max: &mut Option<(u64, u64)>,
) -> Result<Vec<String>, redis::RedisError> {
    let Some((epoch, from)) = parse_stream_pos(after) else {
        return Ok(vec![ServerFrame::Error { code: "bad_position", message: "after must be a stream_pos" }.to_text()]);
    };
    let key = session.shared.keys.user_stream(&session.user);
    let mut conn = session.shared.redis.clone();
    let reset = |reason| {
        metrics::counter!(names::RESUMES, "outcome" => "reset").increment(1);
        Ok(vec![ServerFrame::Reset { reason }.to_text()])
    };
    if *epoch != *session.epoch {
        return reset("history was lost: refetch through the query API");
    }
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await?;
    if !exists {
        // Nothing kept: nothing ever happened to this user, or all of it expired.
        return if from == (0, 0) {
            Ok(Vec::new())
        } else {
            reset("history beyond retention: refetch through the query API")
        };
    }
    let info: redis::Value = redis::cmd("XINFO").arg("STREAM").arg(&key).query_async(&mut conn).await?;
    if from < max_deleted(&info).unwrap_or((0, 0)) {
        return reset("history beyond retention: refetch through the query API");
    }
    let mut frames = Vec::new();
    let mut cursor = from;
    // Committed to the socket's high mark only when the whole replay was read: a failure
    // half-way must not make a retry skip what was never written.
    let mut max = *sent_max;
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({}-{}", cursor.0, cursor.1))
            .arg("+")
            .arg("COUNT")
            .arg(REPLAY_PAGE)
            .query_async(&mut conn)
            .await?;
        for entry in &page.ids {
            let Some(at) = stream_id(&entry.id) else { continue };
            cursor = at;
            if max.is_some_and(|max| at <= max) {
                continue;
            }
            let json: Option<String> = entry.get("d");
            if let Some(frame) = json.and_then(|j| event_frame(&session.epoch, &entry.id, &j, None)) {
                frames.push(frame);
                max = Some(at);
            }
        }
        if page.ids.len() < REPLAY_PAGE {
            break;
        }
    }
    *sent_max = max;
    metrics::counter!(names::RESUMES, "outcome" => "replayed").increment(1);
    Ok(frames)
}

/// `max-deleted-entry-id` of an `XINFO STREAM` reply (Redis 7).
fn max_deleted(info: &redis::Value) -> Option<(u64, u64)> {
    let redis::Value::Array(items) = info else { return None };
    let mut it = items.iter();
    while let Some(k) = it.next() {
        let v = it.next()?;
        if let (redis::Value::BulkString(k), redis::Value::BulkString(v)) = (k, v)
            && k.as_slice() == b"max-deleted-entry-id"
        {
            return stream_id(std::str::from_utf8(v).ok()?);
        }
    }
    None
}

/// The `event` frame for a delivery stored at `stream_id` (`json`: the delivery); none for a
/// channel copy that `channel_reader` also gets in their own stream.
fn event_frame(epoch: &str, stream_id: &str, json: &str, channel_reader: Option<&str>) -> Option<String> {
    let delivery: Delivery = serde_json::from_str(json).ok()?;
    if channel_reader.is_some_and(|me| delivery.in_streams_of.iter().any(|u| u == me)) {
        return None;
    }
    let pos = stream_pos(epoch, stream_id);
    let frame = ServerFrame::Event {
        event_id: &delivery.event_id,
        event_type: &delivery.event_type,
        stream_pos: &pos,
        data: &delivery.data,
    };
    let latency = (chrono::Utc::now().timestamp_millis() - delivery.occurred_ms).max(0) as f64 / 1000.0;
    metrics::histogram!(names::PUSH_LATENCY_SECONDS).record(latency);
    metrics::counter!(names::FRAMES_PUSHED, "event_type" => delivery.event_type.clone()).increment(1);
    Some(frame.to_text())
}

/// Game channels one socket may watch at once.
pub const MAX_GAME_CHANNELS: usize = 20;

fn client_op(member: &mut Membership, keys: &Keys, text: &str) -> Option<String> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(_) => {
            return Some(ServerFrame::Error { code: "bad_frame", message: "unknown or malformed op" }.to_text());
        }
    };
    match frame {
        ClientFrame::Ping => Some(ServerFrame::Pong.to_text()),
        ClientFrame::Subscribe { channel } | ClientFrame::Unsubscribe { channel } if game_of(&channel).is_none() => {
            Some(ServerFrame::Error { code: "bad_channel", message: "channels are game:<game_id>" }.to_text())
        }
        ClientFrame::Subscribe { .. } if member.channel_count() > MAX_GAME_CHANNELS => {
            Some(ServerFrame::Error { code: "too_many_channels", message: "unsubscribe from a game first" }.to_text())
        }
        ClientFrame::Subscribe { channel } => {
            if let Some(game) = game_of(&channel) {
                member.subscribe(&keys.game_channel(&game));
            }
            Some(ServerFrame::Subscribed { channel: &channel }.to_text())
        }
        ClientFrame::Unsubscribe { channel } => {
            if let Some(game) = game_of(&channel) {
                member.unsubscribe(&keys.game_channel(&game));
            }
            Some(ServerFrame::Unsubscribed { channel: &channel }.to_text())
        }
        // Answered by the loop itself (it needs the user's stream).
        ClientFrame::Resume { .. } => None,
    }
}

fn game_of(channel: &str) -> Option<String> {
    let id = channel.strip_prefix("game:")?;
    id.parse::<agora_schemas::GameId>().ok().map(|g| g.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_s_allocation_stays_within_the_allocator_s_512_byte_class() {
        // Every socket holds one; at 513 B the allocator would give it 640 (docs/architecture.md).
        let size = std::mem::size_of::<Connection<axum::extract::ws::WebSocket>>();
        assert!(size <= 512, "Connection<WebSocket> is {size} B");
    }

    #[test]
    fn heartbeats_fall_on_the_grid_at_or_after_their_time() {
        let from = tokio::time::Instant::now();
        let ms = |n: u64| from + Duration::from_millis(n);
        let step = Duration::from_millis(250);
        assert_eq!(on_grid(from, ms(0), step), ms(0));
        assert_eq!(on_grid(from, ms(1), step), ms(250), "never before its time");
        assert_eq!(on_grid(from, ms(250), step), ms(250));
        assert_eq!(on_grid(from, ms(25_001), step), ms(25_250), "at most one step late");
        assert_eq!(on_grid(ms(10), ms(5), step), ms(10), "a time before the grid's origin");
    }

    #[test]
    fn stream_positions_split_into_an_epoch_and_a_comparable_stream_id() {
        assert_eq!(parse_stream_pos("0a1b2c3d4e5f-1700000000000-3"), Some(("0a1b2c3d4e5f", (1_700_000_000_000, 3))));
        assert!(stream_id("1700000000000-10") > stream_id("1700000000000-9"), "numeric, not text, order");
        assert!(stream_id("1700000000001-0") > stream_id("1700000000000-99"));
        assert_eq!(parse_stream_pos("garbage"), None);
        assert_eq!(parse_stream_pos("e-1-x"), None);
    }

    #[test]
    fn catch_up_delays_stay_below_the_spread_and_differ() {
        let delays: std::collections::BTreeSet<Duration> =
            (0..200).map(|i| jitter(format!("connection-{i}").as_bytes(), CATCH_UP_SPREAD)).collect();
        assert!(delays.iter().all(|d| *d < CATCH_UP_SPREAD));
        assert!(delays.len() > 100, "spread out, not one instant: {} distinct", delays.len());
    }

    #[test]
    fn the_deleted_high_mark_is_read_from_an_xinfo_reply() {
        use redis::Value::{Array, BulkString, Int};
        let reply = Array(vec![
            BulkString(b"length".to_vec()),
            Int(3),
            BulkString(b"max-deleted-entry-id".to_vec()),
            BulkString(b"1700000000000-2".to_vec()),
        ]);
        assert_eq!(max_deleted(&reply), Some((1_700_000_000_000, 2)));
        assert_eq!(max_deleted(&Array(vec![])), None);
    }
}
