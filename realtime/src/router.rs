//! The router: from the event log to each recipient's Redis stream and channel.
//!
//! All realtime processes share one consumer group, so each event is routed once. For each
//! recipient a Lua script, atomically: skips the frame if it was delivered before (a
//! redelivered event is not pushed twice), appends the frame to the user's stream (trimmed
//! to the retention window, for resume) and publishes it on the user's channel. A game
//! update also goes, once, to the game's channel for spectators; channel frames are live
//! only.
//!
//! What was delivered is remembered as a watermark, not a mark per frame: per recipient, the
//! last offset delivered from each partition. A partition is routed in log order by one
//! process at a time, so a redelivery (a crash or rebalance before the offsets were
//! committed) is exactly an offset at or below that watermark. The producer is idempotent,
//! so an event is in the log once. The cost is one small hash per recent recipient, not a key
//! per frame (which at 20,000 frames/s held for an hour would be gigabytes of Redis).

use crate::frames::Delivery;
use crate::games::{self, Reading};
use crate::telemetry as names;
use agora_platform::kafka::consumer::GroupConsumer;
use agora_platform::kafka::consumer::{self, Handled};
use agora_projector::generation::ReadDb;
use agora_schemas::Envelope;
use agora_schemas::events::{Event, PostCreated};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use redis::aio::ConnectionManager;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Redis key and channel names under one prefix (shared: every socket's session has a copy).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: std::sync::Arc<str>,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into().into() }
    }
    pub fn user_stream(&self, user: &str) -> String {
        format!("{}:rt:stream:{user}", self.prefix)
    }
    pub fn user_channel(&self, user: &str) -> String {
        format!("{}:rt:user:{user}", self.prefix)
    }
    pub fn game_channel(&self, game: &str) -> String {
        format!("{}:rt:game:{game}", self.prefix)
    }
    /// What was delivered to `subject` (a user, or `game:<id>` for a game's channel): field =
    /// `<topic>:<partition>`, value = the last offset delivered from there.
    fn seen(&self, subject: &str) -> String {
        format!("{}:rt:seen:{subject}", self.prefix)
    }
    /// The stream epoch: replaced when Redis lost its data, so old positions are recognised.
    pub fn epoch(&self) -> String {
        format!("{}:rt:epoch", self.prefix)
    }
}

/// Delivers up to [`FRAMES_PER_CALL`] frames, in order, in one call, which carries each of
/// their deliveries once (a post's fan-out does not repeat its JSON per follower). It skips
/// a frame if its subject's watermark for the frame's partition is at or past the frame's
/// offset; else it moves the watermark and either appends the frame to the user's stream and
/// publishes it with its stream id, or (a game's channel) publishes it only.
///
/// KEYS, three per frame: the subject's watermarks, the user's stream (for a channel frame,
/// the channel again, unused), the channel. ARGV: the stream retention (s), the oldest stream
/// id kept, how long watermarks live (s), the number D of deliveries, the D deliveries, then
/// four per frame: `s` (stream) or `c` (channel only), its delivery's number (1..D), its
/// partition (`<topic>:<partition>`) and offset. Answers, per frame, its stream id, 1 for a
/// channel frame published, or nil if it was delivered before.
const DELIVER: &str = r"
local retention, min_id, life, d = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
for i = 1, #KEYS / 3 do
  local k, a = (i - 1) * 3, 4 + d + (i - 1) * 4
  local seen, field, offset = KEYS[k + 1], ARGV[a + 3], ARGV[a + 4]
  local last = redis.call('HGET', seen, field)
  if last and tonumber(last) >= tonumber(offset) then
    out[i] = false
  else
    redis.call('HSET', seen, field, offset)
    redis.call('EXPIRE', seen, life)
    local delivery = ARGV[4 + tonumber(ARGV[a + 2])]
    if ARGV[a + 1] == 's' then
      local id = redis.call('XADD', KEYS[k + 2], 'MINID', '~', min_id, '*', 'd', delivery)
      redis.call('EXPIRE', KEYS[k + 2], retention)
      redis.call('PUBLISH', KEYS[k + 3], id .. '|' .. delivery)
      out[i] = id
    else
      redis.call('PUBLISH', KEYS[k + 3], '|' .. delivery)
      out[i] = 1
    end
  end
end
return out
";

/// Frames per script call: a call holds Redis for its length (~2 ms at 100).
const FRAMES_PER_CALL: usize = 100;

/// Script calls per Redis pipeline (one round trip).
const CALLS_PER_PIPELINE: usize = 20;

/// The frames of one script call being put together.
#[derive(Debug, Default)]
struct Call {
    keys: Vec<String>,
    /// Each distinct delivery once (an event's frames share it, whatever its fan-out).
    deliveries: Vec<String>,
    /// Per frame: `s` or `c`, its delivery's number, partition and offset.
    frames: Vec<[String; 4]>,
    /// Per frame, its event type, for the metric.
    kinds: Vec<&'static str>,
}

impl Call {
    fn is_full(&self) -> bool {
        self.kinds.len() >= FRAMES_PER_CALL
    }

    /// Adds `delivery` unless the call's last one is it already, and gives its number.
    fn delivery(&mut self, json: &str) -> usize {
        if self.deliveries.last().map(String::as_str) != Some(json) {
            self.deliveries.push(json.to_owned());
        }
        self.deliveries.len()
    }

    /// Adds a frame: `field` and `offset` are its event's partition and offset.
    fn add(&mut self, keys: [String; 3], mode: &str, json: &str, (field, offset): (&str, &str), kind: &'static str) {
        let n = self.delivery(json);
        self.keys.extend(keys);
        self.frames.push([mode.to_owned(), n.to_string(), field.to_owned(), offset.to_owned()]);
        self.kinds.push(kind);
    }

    /// The call of `calls` to add the next frame to: the last, or a new one if that is full.
    fn open(calls: &mut Vec<Call>) -> &mut Call {
        if calls.last().is_none_or(Call::is_full) {
            calls.push(Call::default());
        }
        let last = calls.len() - 1;
        &mut calls[last]
    }
}

/// Where an event is in the log: what a recipient's watermark is kept in.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

impl Source<'_> {
    fn field(&self) -> String {
        format!("{}:{}", self.topic, self.partition)
    }
}

/// The frames one event causes: the same data for each recipient.
#[derive(Debug)]
struct Frames {
    /// Appended to each one's stream.
    recipients: Vec<String>,
    event_type: &'static str,
    data: serde_json::Value,
    /// The game whose spectator channel gets a copy too.
    game: Option<String>,
}

/// Why an event's frames could not be worked out now.
#[derive(Debug)]
enum Unroutable {
    /// The read models do not have what the frame shows yet (the projector is behind):
    /// retried, up to [`NOT_READY_LIMIT`] a batch.
    NotReady(String),
    /// A store failed: retried until it answers.
    Failed(String),
}

impl std::fmt::Display for Unroutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotReady(m) => write!(f, "not projected yet: {m}"),
            Self::Failed(m) => write!(f, "{m}"),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Unroutable {
    Unroutable::Failed(e.to_string())
}

/// How long a partition may wait for the read models its next event needs, without
/// progress; then its events still waiting are pushed to nobody (the query API still shows
/// them) rather than holding the partition back for ever. A limit per partition, not per
/// event: events of one partition wait one after another, and with the projector minutes
/// behind, a limit per event would hold each for the whole limit in turn.
const NOT_READY_LIMIT: Duration = Duration::from_secs(60);

/// How long a batch retries events waiting for the read models before it leaves their
/// partitions for later (paused, read again after `consumer::PARKED_FOR`) and lets the
/// rest of the log go on: one aggregate the projector has not reached yet must not hold
/// back everyone else's pushes (it did, for up to a minute a batch, on the 10k setup).
const PARK_AFTER: Duration = Duration::from_millis(500);

/// A partition not tried for this long was not ours meanwhile (a rebalance): its clock
/// starts again. Parked partitions are tried every ~1.5 s.
const WAIT_FORGOTTEN_AFTER: Duration = Duration::from_secs(15);

/// Per partition, since when its next event has waited for the read models, and when it was
/// last tried.
#[derive(Debug, Default)]
struct Waits(std::sync::Mutex<HashMap<(String, i32), (Instant, Instant)>>);

impl Waits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), (Instant, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `partition`'s next event is not routable yet; answers whether the partition
    /// has waited [`NOT_READY_LIMIT`] without progress.
    fn waited_too_long(&self, (topic, partition): (&str, i32), now: Instant) -> bool {
        let mut waits = self.lock();
        let entry = waits.entry((topic.to_owned(), partition)).or_insert((now, now));
        if now.duration_since(entry.1) >= WAIT_FORGOTTEN_AFTER {
            entry.0 = now;
        }
        entry.1 = now;
        now.duration_since(entry.0) >= NOT_READY_LIMIT
    }

    /// `partition` made progress: its clock stops.
    fn progressed(&self, (topic, partition): (&str, i32)) {
        let mut waits = self.lock();
        if !waits.is_empty() {
            waits.remove(&(topic.to_owned(), partition));
        }
    }
}

pub struct Router {
    consumer: GroupConsumer,
    redis: ConnectionManager,
    db: ReadDb,
    keys: Keys,
    retention: Duration,
    /// How long a recipient's watermarks live after their last frame: longer than any
    /// redelivery takes.
    dedupe: Duration,
    script: redis::Script,
    waits: Waits,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(
        consumer: GroupConsumer,
        redis: ConnectionManager,
        db: ReadDb,
        keys: Keys,
        retention: Duration,
        dedupe: Duration,
    ) -> Self {
        Self {
            consumer,
            redis,
            db,
            keys,
            retention,
            dedupe,
            script: redis::Script::new(DELIVER),
            waits: Waits::default(),
        }
    }

    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        consumer::run_batches(&self.consumer, shutdown, Duration::from_millis(250), MAX_BATCH, &self).await;
        tracing::info!("realtime router stopped; offsets committed");
    }

    /// Followers of `author`, from the projector's follow edges.
    async fn followers(&self, author: &str) -> Result<Vec<String>, mongodb::error::Error> {
        let docs: Vec<Document> = self
            .db
            .get()
            .collection::<Document>("follows")
            .find(doc! {"followee_id": author, "active": true})
            .projection(doc! {"follower_id": 1})
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().filter_map(|d| d.get_str("follower_id").ok().map(str::to_owned)).collect())
    }

    async fn author(&self, author: &str) -> Result<Option<serde_json::Value>, mongodb::error::Error> {
        let d = self.db.get().collection::<Document>("users").find_one(doc! {"_id": author}).await?;
        Ok(d.and_then(|d| {
            Some(serde_json::json!({
                "user_id": author,
                "handle": d.get_str("handle").ok()?,
                "display_name": d.get_str("display_name").unwrap_or_default(),
            }))
        }))
    }

    /// The frames one event causes, if any.
    async fn frames_for(&self, envelope: &Envelope) -> Result<Option<Frames>, Unroutable> {
        if games::updates_game(&envelope.payload) {
            return self.game_update(envelope).await.map(Some);
        }
        let frames = match &envelope.payload {
            Event::PostCreated(PostCreated { post_id, author_id, text }) => {
                let author_id = author_id.to_string();
                let author = self
                    .author(&author_id)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| Unroutable::NotReady(format!("author {author_id}")))?;
                let post = serde_json::json!({
                    "post_id": post_id.to_string(),
                    "author": author,
                    "text": text,
                    "created_at": envelope.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "like_count": 0,
                    "comment_count": 0,
                    "liked_by_me": false,
                });
                let followers = self.followers(&author_id).await.map_err(failed)?;
                Frames { recipients: followers, event_type: "feed.post", data: post, game: None }
            }
            Event::MessageSent(e) => {
                let message = serde_json::json!({
                    "message_id": e.message_id.to_string(),
                    "conversation_id": e.conversation_id.to_string(),
                    "from": e.from.to_string(),
                    "to": e.to.to_string(),
                    "text": e.text,
                    "created_at": at(envelope),
                });
                let recipients = vec![e.from.to_string(), e.to.to_string()];
                Frames { recipients, event_type: "message", data: message, game: None }
            }
            _ => match notified(&envelope.payload) {
                Some((recipient, kind, actor, subject)) => {
                    let actor_ref = self
                        .author(&actor.to_string())
                        .await
                        .map_err(failed)?
                        .ok_or_else(|| Unroutable::NotReady(format!("actor {actor}")))?;
                    let notification = serde_json::json!({
                        "notification_id": agora_schemas::NotificationId::of(envelope.event_id, recipient).to_string(),
                        "kind": kind,
                        "actor": actor_ref,
                        "subject_id": subject.to_string(),
                        "created_at": at(envelope),
                        "read": false,
                    });
                    Frames {
                        recipients: vec![recipient.to_string()],
                        event_type: "notification",
                        data: notification,
                        game: None,
                    }
                }
                None => return Ok(None),
            },
        };
        Ok(Some(frames))
    }

    /// A `game.update` for both players and the game's channel, once the projector's game
    /// document has reached the event.
    async fn game_update(&self, envelope: &Envelope) -> Result<Frames, Unroutable> {
        let id = envelope.aggregate_id().to_string();
        let games = self.db.get().collection::<Document>(agora_projector::readmodel::Coll::Games.name());
        let document = games.find_one(doc! {"_id": &id}).await.map_err(failed)?;
        let game = match document.as_ref().map(|d| games::game_at(d, envelope)) {
            Some(Reading::At(game)) => game,
            // Missing, behind, or (from a store that lost data) unable to hold this event: all
            // wait for the projector, and are given up after the router's limit.
            _ => return Err(Unroutable::NotReady(format!("game {id} at this event"))),
        };
        let player = |user: &str| {
            let user = user.to_owned();
            async move {
                self.author(&user).await.map_err(failed)?.ok_or_else(|| Unroutable::NotReady(format!("player {user}")))
            }
        };
        let (white, black) = (player(&game.white_id).await?, player(&game.black_id).await?);
        let data = game.to_json(white, black);
        let recipients = vec![game.white_id.clone(), game.black_id.clone()];
        Ok(Frames { recipients, event_type: "game.update", data, game: Some(id) })
    }

    /// Delivers `routed` (events with their frames, in log order) in script calls of up to
    /// [`FRAMES_PER_CALL`] frames, [`CALLS_PER_PIPELINE`] calls per round trip. Calls and
    /// pipelines keep their order, so each partition's events reach each stream in the log's
    /// order. A delivery's JSON is built once per event, whatever its fan-out.
    async fn deliver(&self, routed: &[(&Envelope, Source<'_>, &Frames)]) -> Result<(), String> {
        let min_id = (chrono::Utc::now().timestamp_millis() - self.retention.as_millis() as i64).max(0);
        let (retention, dedupe) = (self.retention.as_secs().max(1), self.dedupe.as_secs().max(1));
        let mut calls: Vec<Call> = Vec::new();
        for (envelope, source, frames) in routed {
            let event_id = envelope.event_id.to_string();
            let (field, offset) = (source.field(), source.offset.to_string());
            let at = (field.as_str(), offset.as_str());
            let delivery = |in_streams_of: Vec<String>| -> Result<String, String> {
                let data = RawValue::from_string(frames.data.to_string()).map_err(|e| e.to_string())?;
                let d = Delivery {
                    event_id: event_id.clone(),
                    event_type: frames.event_type.to_owned(),
                    occurred_ms: envelope.occurred_at.timestamp_millis(),
                    data,
                    in_streams_of,
                };
                serde_json::to_string(&d).map_err(|e| e.to_string())
            };
            let json = delivery(Vec::new())?;
            for recipient in &frames.recipients {
                let keys =
                    [self.keys.seen(recipient), self.keys.user_stream(recipient), self.keys.user_channel(recipient)];
                Call::open(&mut calls).add(keys, "s", &json, at, frames.event_type);
            }
            if let Some(game) = &frames.game {
                // The players get it in their own streams, so their sockets skip this copy.
                let json = delivery(frames.recipients.clone())?;
                let channel = self.keys.game_channel(game);
                let keys = [self.keys.seen(&format!("game:{game}")), channel.clone(), channel];
                Call::open(&mut calls).add(keys, "c", &json, at, "game.update.channel");
            }
        }
        while !calls.is_empty() {
            let rest = calls.split_off(calls.len().min(CALLS_PER_PIPELINE));
            self.send(&calls, retention, &min_id.to_string(), dedupe).await?;
            calls = rest;
        }
        Ok(())
    }

    /// Runs `calls` in one pipeline, loading the script first if Redis does not have it (it
    /// restarted, or is new), and counts the frames that went out.
    async fn send(&self, calls: &[Call], retention: u64, min_id: &str, dedupe: u64) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for call in calls {
            let c = pipe.cmd("EVALSHA").arg(self.script.get_hash()).arg(call.keys.len()).arg(&call.keys);
            c.arg(retention).arg(min_id).arg(dedupe).arg(call.deliveries.len()).arg(&call.deliveries);
            for frame in &call.frames {
                c.arg(frame);
            }
        }
        let mut conn = self.redis.clone();
        let replies: Vec<Vec<redis::Value>> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(DELIVER)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                pipe.query_async(&mut conn).await.map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        for (call, replies) in calls.iter().zip(replies) {
            for (kind, reply) in call.kinds.iter().zip(replies) {
                // Nil: delivered before.
                if !matches!(reply, redis::Value::Nil) {
                    metrics::counter!(names::FRAMES_ROUTED, "event_type" => *kind).increment(1);
                }
            }
        }
        Ok(())
    }
}

/// Events handed to the router at once (what one poll has fetched, up to this).
const MAX_BATCH: usize = 500;

impl consumer::BatchHandler for Router {
    /// Routes a batch. Every event's frames are worked out together; an event that cannot be
    /// routed yet holds back only the events after it on its own partition, and the rest go
    /// out. Events waiting for the read models are retried for [`PARK_AFTER`], then their
    /// partitions are left to be read again (so the next batch of every other partition is
    /// not kept waiting); events waiting for a store that fails are retried until it answers.
    async fn handle_batch(&self, messages: &[BorrowedMessage<'_>], mut shutdown: watch::Receiver<bool>) -> Handled {
        // The projector dead-letters what cannot be decoded; nothing to push for it here.
        let events: Vec<((&str, i32), i64, Envelope)> = messages
            .iter()
            .filter_map(|m| {
                let envelope = Envelope::from_json(m.payload().unwrap_or_default()).ok()?;
                Some(((m.topic(), m.partition()), m.offset(), envelope))
            })
            .collect();
        // Each partition's events in log order, the partitions interleaved by event time, so
        // that events of different aggregates fetched together reach a stream in the order
        // they happened.
        let keys: Vec<(&(&str, i32), i64)> =
            events.iter().map(|(p, _, e)| (p, e.occurred_at.timestamp_millis())).collect();
        let mut pending: Vec<usize> = merged_by_time(&keys);
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        while !pending.is_empty() {
            let worked_out = futures::future::join_all(pending.iter().map(|&i| self.frames_for(&events[i].2))).await;
            let now = Instant::now();
            let mut held: HashSet<(&str, i32)> = HashSet::new();
            let (mut ready, mut later) = (Vec::new(), Vec::new());
            // The last reason an event waits, and whether a store failed (rather than only
            // the read models being behind).
            let mut problem = None;
            let mut store_failed = false;
            for (&i, outcome) in pending.iter().zip(worked_out) {
                let (partition, envelope) = (events[i].0, &events[i].2);
                if held.contains(&partition) {
                    later.push(i);
                    continue;
                }
                match outcome {
                    Ok(frames) => {
                        self.waits.progressed(partition);
                        if let Some(frames) = frames {
                            ready.push((i, frames));
                        }
                    }
                    Err(Unroutable::NotReady(what)) if self.waits.waited_too_long(partition, now) => {
                        tracing::warn!(event_id = %envelope.event_id, %what, "gave up waiting for the read models; event pushed to nobody");
                        metrics::counter!(names::EVENTS_UNPUSHED).increment(1);
                    }
                    Err(e) => {
                        store_failed |= matches!(e, Unroutable::Failed(_));
                        held.insert(partition);
                        later.push(i);
                        problem = Some(e.to_string());
                    }
                }
            }
            let routed: Vec<(&Envelope, Source, &Frames)> = ready
                .iter()
                .map(|(i, f)| {
                    let ((topic, partition), offset, envelope) = &events[*i];
                    (envelope, Source { topic, partition: *partition, offset: *offset }, f)
                })
                .collect();
            match self.deliver(&routed).await {
                // A retry after a failed delivery repeats it; the watermarks keep it from
                // pushing twice.
                Err(e) => {
                    store_failed = true;
                    problem = Some(e);
                }
                Ok(()) => pending = later,
            }
            if pending.is_empty() {
                break;
            }
            let error = problem.unwrap_or_default();
            if store_failed {
                tracing::warn!(%error, waiting = pending.len(), "routing failed; retrying");
            } else {
                tracing::debug!(%error, waiting = pending.len(), "events wait for the read models");
            }
            // Only read models behind: leave their partitions for later, from their first
            // event still waiting.
            if !store_failed && started.elapsed() >= PARK_AFTER {
                return Handled::DoneExcept(left_for_later(pending.iter().map(|&i| (events[i].0, events[i].1))));
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|s| *s) => return Handled::Interrupted,
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Handled::Done
    }
}

/// The partitions of the events still to route (`(partition, offset)` each), each from its
/// first of them.
fn left_for_later<'a>(pending: impl Iterator<Item = ((&'a str, i32), i64)>) -> Vec<consumer::Parked> {
    let mut from: HashMap<(&str, i32), i64> = HashMap::new();
    for (partition, offset) in pending {
        from.entry(partition).and_modify(|o| *o = (*o).min(offset)).or_insert(offset);
    }
    from.into_iter()
        .map(|((topic, partition), offset)| consumer::Parked { topic: topic.to_owned(), partition, offset })
        .collect()
}

/// The order to handle a batch in: each partition's items keep their order, and across
/// partitions the item that happened first (`keys`: partition and time) goes first, ties to
/// the earlier fetched.
fn merged_by_time<P: Eq + std::hash::Hash>(keys: &[(P, i64)]) -> Vec<usize> {
    let mut queues: Vec<std::collections::VecDeque<usize>> = Vec::new();
    let mut index: HashMap<&P, usize> = HashMap::new();
    for (i, (partition, _)) in keys.iter().enumerate() {
        let q = *index.entry(partition).or_insert_with(|| {
            queues.push(std::collections::VecDeque::new());
            queues.len() - 1
        });
        queues[q].push_back(i);
    }
    let mut order = Vec::with_capacity(keys.len());
    while let Some(q) =
        (0..queues.len()).filter_map(|q| queues[q].front().map(|&i| (keys[i].1, i, q))).min().map(|(_, _, q)| q)
    {
        if let Some(i) = queues[q].pop_front() {
            order.push(i);
        }
    }
    order
}

fn at(envelope: &Envelope) -> String {
    envelope.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Who an event notifies on the socket, as the query API lists it: (recipient, kind, actor,
/// subject). Nobody is notified of their own act.
pub fn notified(event: &Event) -> Option<(agora_schemas::UserId, &'static str, agora_schemas::UserId, uuid::Uuid)> {
    let n = match event {
        Event::UserFollowed(e) => (e.followee_id, "follow", e.follower_id, e.follower_id.0),
        Event::PostLiked(e) => (e.post_author_id, "like", e.user_id, e.post_id.0),
        Event::CommentAdded(e) => (e.post_author_id, "comment", e.author_id, e.post_id.0),
        Event::GameChallenged(e) => {
            let opponent = if e.challenger_id == e.white_id { e.black_id } else { e.white_id };
            (opponent, "game_challenge", e.challenger_id, e.game_id.0)
        }
        _ => return None,
    };
    (n.0 != n.2).then_some(n)
}

#[cfg(test)]
mod notified_tests {
    use super::*;

    #[test]
    fn partitions_left_for_later_start_at_their_first_event_still_waiting() {
        let mut left = left_for_later([(("games", 3), 41), (("games", 3), 40), (("posts", 0), 7)].into_iter());
        left.sort_by_key(|p| (p.topic.clone(), p.partition));
        let left: Vec<(&str, i32, i64)> = left.iter().map(|p| (p.topic.as_str(), p.partition, p.offset)).collect();
        assert_eq!(left, [("games", 3, 40), ("posts", 0, 7)]);
    }

    #[test]
    fn a_partition_is_given_up_on_after_the_limit_without_progress_and_its_clock_stops_on_progress() {
        let waits = Waits::default();
        let (p, other) = (("games", 3), ("games", 4));
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Tried every few seconds, as a parked partition is: the clock runs from the first try.
        for secs in (0..60).step_by(5) {
            assert!(!waits.waited_too_long(p, at(secs)), "given up after {secs} s");
        }
        assert!(!waits.waited_too_long(other, at(58)), "each partition has its own clock");
        assert!(waits.waited_too_long(p, at(60)));
        assert!(waits.waited_too_long(p, at(61)), "the next event waiting is given up at once, too");
        waits.progressed(p);
        assert!(!waits.waited_too_long(p, at(62)), "an event routed restarts the clock");
        // Not tried for a while (the partition was another router's): the clock restarts.
        let back = 58 + 15;
        for secs in (back..back + 60).step_by(5) {
            assert!(!waits.waited_too_long(other, at(secs)), "given up {} s after its return", secs - back);
        }
        assert!(waits.waited_too_long(other, at(back + 60)));
    }

    #[test]
    fn a_batch_goes_in_event_time_across_partitions_and_in_log_order_within_one() {
        // Partition b's second item is older than its first (another instance's clock):
        // log order wins within a partition.
        let keys = [("a", 30), ("b", 10), ("a", 40), ("b", 5), ("c", 20)];
        let order = merged_by_time(&keys);
        assert_eq!(order, vec![1, 3, 4, 0, 2]);
        assert_eq!(merged_by_time::<&str>(&[]), Vec::<usize>::new());
        assert_eq!(merged_by_time(&[("a", 2), ("b", 2), ("a", 1)]), vec![0, 2, 1], "ties go to the earlier fetched");
    }
    #[test]
    fn a_call_sends_each_events_delivery_once_and_numbers_its_frames_by_it() {
        let source = |offset: &'static str| ("t:2", offset);
        let keys = |u: &str| [format!("seen:{u}"), format!("stream:{u}"), format!("user:{u}")];
        let mut call = Call::default();
        call.add(keys("a"), "s", "{post}", source("7"), "feed.post");
        call.add(keys("b"), "s", "{post}", source("7"), "feed.post");
        call.add(keys("g"), "c", "{move}", source("8"), "game.update.channel");
        assert_eq!(call.deliveries, ["{post}", "{move}"]);
        assert_eq!(call.keys.len(), 9, "three keys per frame");
        assert_eq!(call.frames[1], ["s", "1", "t:2", "7"].map(String::from));
        assert_eq!(call.frames[2], ["c", "2", "t:2", "8"].map(String::from));
        assert!(!call.is_full());
        for _ in 3..FRAMES_PER_CALL {
            call.add(keys("c"), "s", "{move}", source("9"), "message");
        }
        assert!(call.is_full());
        assert_eq!(call.deliveries.len(), 2, "a repeated delivery is not sent again");
    }
    use agora_schemas::events::{PostLiked, UserFollowed};
    use agora_schemas::{PostId, UserId};

    #[test]
    fn follows_and_likes_notify_the_other_user_and_never_oneself() {
        let (a, b, p) = (UserId::new(), UserId::new(), PostId::new());
        let follow = Event::from(UserFollowed { follower_id: a, followee_id: b });
        assert_eq!(notified(&follow), Some((b, "follow", a, a.0)));
        let own_like = Event::from(PostLiked { post_id: p, user_id: a, post_author_id: a });
        assert_eq!(notified(&own_like), None);
        let like = Event::from(PostLiked { post_id: p, user_id: b, post_author_id: a });
        assert_eq!(notified(&like), Some((a, "like", b, p.0)));
    }
}
