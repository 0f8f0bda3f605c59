//! The router: from the event log to each recipient's Redis stream and channel.
//!
//! All realtime processes share one consumer group, so each event is routed once. For each
//! recipient a Lua script, atomically: skips the (event, recipient) pair if already delivered
//! (a redelivered event is not pushed twice), appends the frame to the user's stream (trimmed
//! to the retention window, for resume) and publishes it on the user's channel. A game update
//! also goes, once, to the game's channel for spectators; channel frames are live only.

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

/// Redis key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
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
    fn delivered(&self, event: &str, user: &str) -> String {
        format!("{}:rt:delivered:{event}:{user}", self.prefix)
    }
    /// The stream epoch: replaced when Redis lost its data, so old positions are recognised.
    pub fn epoch(&self) -> String {
        format!("{}:rt:epoch", self.prefix)
    }
}

/// KEYS: the (event, recipient) mark, the recipient's stream, their channel. ARGV: the
/// delivery, the stream's retention (s), the oldest stream id kept, how long the mark lives (s).
const DELIVER: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then
  local id = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'd', ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('PUBLISH', KEYS[3], id .. '|' .. ARGV[1])
  return id
end
return false
";

/// A channel frame, published once per (event, channel) however often the event is routed.
const PUBLISH_ONCE: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('PUBLISH', KEYS[2], '|' .. ARGV[1])
  return 1
end
return 0
";

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
    /// retried, up to [`NOT_READY_LIMIT`].
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

/// How long an event may wait for the read models it needs; then it is pushed to nobody
/// (the query API still shows it) rather than holding its partition back for ever.
const NOT_READY_LIMIT: Duration = Duration::from_secs(60);

pub struct Router {
    consumer: GroupConsumer,
    redis: ConnectionManager,
    db: ReadDb,
    keys: Keys,
    retention: Duration,
    /// How long an (event, recipient) mark lives: longer than any redelivery takes.
    dedupe: Duration,
    script: redis::Script,
    publish_once: redis::Script,
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
        let (script, publish_once) = (redis::Script::new(DELIVER), redis::Script::new(PUBLISH_ONCE));
        Self { consumer, redis, db, keys, retention, dedupe, script, publish_once }
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

    /// Delivers `routed` (events with their frames, in log order) through pipelines of up to
    /// [`PIPELINE`] scripts: a batch costs a few round trips rather than one per recipient,
    /// and pipelines keep their order, so each partition's events reach each stream in the
    /// log's order. A delivery's JSON is built once per event, whatever its fan-out.
    async fn deliver(&self, routed: &[(&Envelope, &Frames)]) -> Result<(), String> {
        let min_id = (chrono::Utc::now().timestamp_millis() - self.retention.as_millis() as i64).max(0);
        let (retention, dedupe) = (self.retention.as_secs().max(1), self.dedupe.as_secs().max(1));
        let mut pipe = redis::pipe();
        let mut kinds: Vec<&'static str> = Vec::new();
        for (envelope, frames) in routed {
            let event_id = envelope.event_id.to_string();
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
                pipe.cmd("EVALSHA")
                    .arg(self.script.get_hash())
                    .arg(3)
                    .arg(self.keys.delivered(&event_id, recipient))
                    .arg(self.keys.user_stream(recipient))
                    .arg(self.keys.user_channel(recipient))
                    .arg(&json)
                    .arg(retention)
                    .arg(min_id)
                    .arg(dedupe);
                kinds.push(frames.event_type);
                if kinds.len() >= PIPELINE {
                    self.send(std::mem::take(&mut pipe), std::mem::take(&mut kinds)).await?;
                }
            }
            if let Some(game) = &frames.game {
                // The players get it in their own streams, so their sockets skip this copy.
                let json = delivery(frames.recipients.clone())?;
                let channel = self.keys.game_channel(game);
                pipe.cmd("EVALSHA")
                    .arg(self.publish_once.get_hash())
                    .arg(2)
                    .arg(self.keys.delivered(&event_id, &channel))
                    .arg(channel)
                    .arg(json)
                    .arg(dedupe);
                kinds.push("game.update.channel");
            }
        }
        if !kinds.is_empty() {
            self.send(pipe, kinds).await?;
        }
        Ok(())
    }

    /// Runs one pipeline of deliveries (`kinds`: each one's event type, for the metric),
    /// loading the scripts first if Redis does not have them (it restarted, or is new).
    async fn send(&self, pipe: redis::Pipeline, kinds: Vec<&'static str>) -> Result<(), String> {
        let mut conn = self.redis.clone();
        let replies: Vec<redis::Value> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                for code in [DELIVER, PUBLISH_ONCE] {
                    let _: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(code)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                pipe.query_async(&mut conn).await.map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        for (kind, reply) in kinds.into_iter().zip(replies) {
            // A delivery answers its stream id (nil if already delivered); a channel
            // publication 1 (0 if already published).
            if !matches!(reply, redis::Value::Nil | redis::Value::Int(0)) {
                metrics::counter!(names::FRAMES_ROUTED, "event_type" => kind).increment(1);
            }
        }
        Ok(())
    }
}

/// Events handed to the router at once (what one poll has fetched, up to this).
const MAX_BATCH: usize = 500;

/// Scripts per Redis pipeline.
const PIPELINE: usize = 1000;

impl consumer::BatchHandler for Router {
    /// Routes a batch. Every event's frames are worked out together; an event that cannot be
    /// routed yet holds back only the events after it on its own partition, and the rest go
    /// out. The batch is done (its offsets stored) once every event is delivered or given up.
    async fn handle_batch(&self, messages: &[BorrowedMessage<'_>], mut shutdown: watch::Receiver<bool>) -> Handled {
        // The projector dead-letters what cannot be decoded; nothing to push for it here.
        let events: Vec<((&str, i32), Envelope)> = messages
            .iter()
            .filter_map(|m| {
                Some(((m.topic(), m.partition()), Envelope::from_json(m.payload().unwrap_or_default()).ok()?))
            })
            .collect();
        // Each partition's events in log order, the partitions interleaved by event time, so
        // that events of different aggregates fetched together reach a stream in the order
        // they happened.
        let keys: Vec<(&(&str, i32), i64)> =
            events.iter().map(|(p, e)| (p, e.occurred_at.timestamp_millis())).collect();
        let mut pending: Vec<usize> = merged_by_time(&keys);
        let mut waiting_since: HashMap<usize, Instant> = HashMap::new();
        let mut pause = Duration::from_millis(50);
        while !pending.is_empty() {
            let worked_out = futures::future::join_all(pending.iter().map(|&i| self.frames_for(&events[i].1))).await;
            let mut held: HashSet<(&str, i32)> = HashSet::new();
            let (mut ready, mut later) = (Vec::new(), Vec::new());
            let mut problem = None;
            for (&i, outcome) in pending.iter().zip(worked_out) {
                let (partition, envelope) = (&events[i].0, &events[i].1);
                if held.contains(partition) {
                    later.push(i);
                    continue;
                }
                match outcome {
                    Ok(Some(frames)) => ready.push((i, frames)),
                    Ok(None) => {}
                    Err(Unroutable::NotReady(what))
                        if waiting_since.get(&i).is_some_and(|t| t.elapsed() >= NOT_READY_LIMIT) =>
                    {
                        tracing::warn!(event_id = %envelope.event_id, %what, "gave up waiting for the read models; event pushed to nobody");
                        metrics::counter!(names::EVENTS_UNPUSHED).increment(1);
                    }
                    Err(e) => {
                        waiting_since.entry(i).or_insert_with(Instant::now);
                        held.insert(*partition);
                        later.push(i);
                        problem = Some((matches!(e, Unroutable::Failed(_)), e.to_string()));
                    }
                }
            }
            let routed: Vec<(&Envelope, &Frames)> = ready.iter().map(|(i, f)| (&events[*i].1, f)).collect();
            match self.deliver(&routed).await {
                // A retry after a failed delivery repeats it; the delivered marks keep it from
                // pushing twice.
                Err(e) => problem = Some((true, e)),
                Ok(()) => pending = later,
            }
            if pending.is_empty() {
                break;
            }
            match problem {
                Some((true, e)) => tracing::warn!(error = %e, waiting = pending.len(), "routing failed; retrying"),
                Some((false, e)) => {
                    tracing::debug!(error = %e, waiting = pending.len(), "events wait for the read models")
                }
                None => {}
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
    fn a_batch_goes_in_event_time_across_partitions_and_in_log_order_within_one() {
        // Partition b's second item is older than its first (another instance's clock):
        // log order wins within a partition.
        let keys = [("a", 30), ("b", 10), ("a", 40), ("b", 5), ("c", 20)];
        let order = merged_by_time(&keys);
        assert_eq!(order, vec![1, 3, 4, 0, 2]);
        assert_eq!(merged_by_time::<&str>(&[]), Vec::<usize>::new());
        assert_eq!(merged_by_time(&[("a", 2), ("b", 2), ("a", 1)]), vec![0, 2, 1], "ties go to the earlier fetched");
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
