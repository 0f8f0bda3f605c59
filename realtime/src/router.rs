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
use std::time::Duration;
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

/// The frames one event causes.
#[derive(Debug, Default)]
struct Frames {
    /// (recipient, event_type, data), appended to each recipient's stream.
    users: Vec<(String, &'static str, serde_json::Value)>,
    /// (game id, data) of a `game.update` for the game's channel.
    game: Option<(String, serde_json::Value)>,
}

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

    /// The frames one event causes.
    async fn frames_for(&self, envelope: &Envelope) -> Result<Frames, String> {
        if games::updates_game(&envelope.payload) {
            return self.game_update(envelope).await;
        }
        let users = match &envelope.payload {
            Event::PostCreated(PostCreated { post_id, author_id, text }) => {
                let author_id = author_id.to_string();
                let author =
                    self.author(&author_id).await.map_err(|e| e.to_string())?.ok_or("author not projected yet")?;
                let post = serde_json::json!({
                    "post_id": post_id.to_string(),
                    "author": author,
                    "text": text,
                    "created_at": envelope.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "like_count": 0,
                    "comment_count": 0,
                    "liked_by_me": false,
                });
                let followers = self.followers(&author_id).await.map_err(|e| e.to_string())?;
                followers.into_iter().map(|f| (f, "feed.post", post.clone())).collect()
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
                vec![(e.from.to_string(), "message", message.clone()), (e.to.to_string(), "message", message)]
            }
            _ => match notified(&envelope.payload) {
                Some((recipient, kind, actor, subject)) => {
                    let actor_ref = self
                        .author(&actor.to_string())
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("actor not projected yet")?;
                    let notification = serde_json::json!({
                        "notification_id": agora_schemas::NotificationId::of(envelope.event_id, recipient).to_string(),
                        "kind": kind,
                        "actor": actor_ref,
                        "subject_id": subject.to_string(),
                        "created_at": at(envelope),
                        "read": false,
                    });
                    vec![(recipient.to_string(), "notification", notification)]
                }
                None => Vec::new(),
            },
        };
        Ok(Frames { users, game: None })
    }

    /// A `game.update` for both players and the game's channel, once the projector's game
    /// document has reached the event.
    async fn game_update(&self, envelope: &Envelope) -> Result<Frames, String> {
        let id = envelope.aggregate_id().to_string();
        let games = self.db.get().collection::<Document>(agora_projector::readmodel::Coll::Games.name());
        let document = games.find_one(doc! {"_id": &id}).await.map_err(|e| e.to_string())?;
        let game = match document.as_ref().map(|d| games::game_at(d, envelope)) {
            Some(Reading::At(game)) => game,
            None | Some(Reading::Behind) => return Err(format!("game {id} not projected up to this event yet")),
            Some(Reading::Never) => {
                tracing::warn!(game_id = %id, event_id = %envelope.event_id, "a game document that cannot hold this event; no update pushed");
                return Ok(Frames::default());
            }
        };
        let player = |user: &str| {
            let user = user.to_owned();
            async move { self.author(&user).await.map_err(|e| e.to_string())?.ok_or("player not projected yet".to_owned()) }
        };
        let (white, black) = (player(&game.white_id).await?, player(&game.black_id).await?);
        let data = game.to_json(white, black);
        let users = vec![
            (game.white_id.clone(), "game.update", data.clone()),
            (game.black_id.clone(), "game.update", data.clone()),
        ];
        Ok(Frames { users, game: Some((id, data)) })
    }

    /// Appends to `pipe` the delivery of one frame to one recipient's stream and channel.
    fn deliver_into(
        &self,
        pipe: &mut redis::Pipeline,
        envelope: &Envelope,
        recipient: &str,
        event_type: &'static str,
        data: &serde_json::Value,
        min_id: i64,
    ) -> Result<(), String> {
        let delivery = Delivery {
            event_id: envelope.event_id.to_string(),
            event_type: event_type.to_owned(),
            occurred_ms: envelope.occurred_at.timestamp_millis(),
            data: RawValue::from_string(data.to_string()).map_err(|e| e.to_string())?,
            in_streams_of: Vec::new(),
        };
        let json = serde_json::to_string(&delivery).map_err(|e| e.to_string())?;
        pipe.cmd("EVALSHA")
            .arg(self.script.get_hash())
            .arg(3)
            .arg(self.keys.delivered(&delivery.event_id, recipient))
            .arg(self.keys.user_stream(recipient))
            .arg(self.keys.user_channel(recipient))
            .arg(json)
            .arg(self.retention.as_secs().max(1))
            .arg(min_id)
            .arg(self.dedupe.as_secs().max(1));
        Ok(())
    }

    /// Appends to `pipe` the publication of a `game.update` on the game's channel; `players`
    /// get it in their own streams, so their sockets skip this copy.
    fn publish_game_into(
        &self,
        pipe: &mut redis::Pipeline,
        envelope: &Envelope,
        game: &str,
        players: Vec<String>,
        data: &serde_json::Value,
    ) -> Result<(), String> {
        let delivery = Delivery {
            event_id: envelope.event_id.to_string(),
            event_type: "game.update".to_owned(),
            occurred_ms: envelope.occurred_at.timestamp_millis(),
            data: RawValue::from_string(data.to_string()).map_err(|e| e.to_string())?,
            in_streams_of: players,
        };
        let json = serde_json::to_string(&delivery).map_err(|e| e.to_string())?;
        let channel = self.keys.game_channel(game);
        pipe.cmd("EVALSHA")
            .arg(self.publish_once.get_hash())
            .arg(2)
            .arg(self.keys.delivered(&delivery.event_id, &channel))
            .arg(channel)
            .arg(json)
            .arg(self.dedupe.as_secs().max(1));
        Ok(())
    }

    /// Routes a batch: every event's frames are worked out (their reads run together), then
    /// delivered in log order through pipelines of up to [`PIPELINE`] scripts, so a batch
    /// costs a few round trips rather than one per recipient. Pipelines keep their order, so
    /// each partition's events reach each stream in the log's order.
    async fn route(&self, envelopes: &[Envelope]) -> Result<(), String> {
        let frames = futures::future::try_join_all(envelopes.iter().map(|e| self.frames_for(e))).await?;
        let min_id = (chrono::Utc::now().timestamp_millis() - self.retention.as_millis() as i64).max(0);
        let mut pipe = redis::pipe();
        let mut kinds: Vec<&'static str> = Vec::new();
        for (envelope, frames) in envelopes.iter().zip(frames) {
            let players: Vec<String> = frames.users.iter().map(|(u, _, _)| u.clone()).collect();
            for (recipient, event_type, data) in &frames.users {
                self.deliver_into(&mut pipe, envelope, recipient, event_type, data, min_id)?;
                kinds.push(event_type);
            }
            if let Some((game, data)) = &frames.game {
                self.publish_game_into(&mut pipe, envelope, game, players, data)?;
                kinds.push("game.update.channel");
            }
            if kinds.len() >= PIPELINE {
                self.send(std::mem::take(&mut pipe), std::mem::take(&mut kinds)).await?;
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

/// Events handed to [`Router::route`] at once (what one poll has fetched, up to this).
const MAX_BATCH: usize = 500;

/// Scripts per Redis pipeline.
const PIPELINE: usize = 1000;

impl consumer::BatchHandler for Router {
    async fn handle_batch(&self, messages: &[BorrowedMessage<'_>], mut shutdown: watch::Receiver<bool>) -> Handled {
        // The projector dead-letters what cannot be decoded; nothing to push for it here.
        let envelopes: Vec<Envelope> =
            messages.iter().filter_map(|m| Envelope::from_json(m.payload().unwrap_or_default()).ok()).collect();
        let mut pause = Duration::from_millis(50);
        loop {
            // A retry repeats the whole batch; the delivered marks keep it from pushing twice.
            match self.route(&envelopes).await {
                Ok(()) => return Handled::Done,
                Err(e) => {
                    tracing::warn!(error = %e, events = envelopes.len(), "routing a batch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait_for(|s| *s) => return Handled::Interrupted,
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
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
