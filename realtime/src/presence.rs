//! Who is online: every open socket keeps a mark in Redis, renewed by its process, so any
//! realtime process can answer `GET /v1/presence` for users connected to any other.
//! One task per process renews the marks of all its sockets in pipelines, rather than a
//! timer and a round trip per socket; another writes the marks of opening sockets and
//! deletes those of closing ones, in pipelines too, so a burst of connections is a few round
//! trips and no socket holds a Redis call of its own.
//!
//! One hash per user, `<prefix>:presence:<user>`: field = connection id, value = the time (ms
//! since the epoch) the mark lapses. A closing socket deletes its field; a process that dies
//! leaves fields that lapse by themselves, and the hash expires with its last mark. A user is
//! online while any mark has not lapsed.

use redis::aio::ConnectionManager;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Marks renewed, or written and deleted, per pipeline.
const RENEW_CHUNK: usize = 500;

/// A socket opening or closing, for the writer task.
#[derive(Debug)]
enum Change {
    Mark { connection: String, user: String },
    Unmark { connection: String, user: String },
}

/// The most users one presence query may name.
pub const MAX_USERS: usize = 100;

#[derive(Clone, Debug)]
pub struct Presence {
    redis: ConnectionManager,
    prefix: String,
    /// How long a mark lasts without renewal (a few heartbeats).
    ttl: Duration,
    /// This process's open sockets: connection id → user.
    local: Arc<Mutex<HashMap<String, String>>>,
    /// To the writer task, in the order sockets open and close.
    changes: mpsc::UnboundedSender<Change>,
}

impl Presence {
    /// Presence on `redis`, with this process's renewal task (which ends when the last clone
    /// is dropped).
    pub fn new(redis: ConnectionManager, prefix: &str, heartbeat: Duration) -> Self {
        let (changes, queued) = mpsc::unbounded_channel();
        let presence = Self {
            redis,
            prefix: prefix.to_owned(),
            ttl: heartbeat * 2 + Duration::from_secs(5),
            local: Arc::default(),
            changes,
        };
        tokio::spawn(presence.clone().write_changes(queued));
        let weak = Arc::downgrade(&presence.local);
        let renewer = Self { local: Arc::new(Mutex::default()), ..presence.clone() };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(renewer.renew_every()).await;
                let Some(local) = weak.upgrade() else { return };
                let open: Vec<(String, String)> = {
                    let map = local.lock().unwrap_or_else(|p| p.into_inner());
                    map.iter().map(|(c, u)| (c.clone(), u.clone())).collect()
                };
                for chunk in open.chunks(RENEW_CHUNK) {
                    if let Err(e) = renewer.write_marks(chunk).await {
                        // Redis being away only makes users look offline until it is back.
                        tracing::debug!(error = %e, "renewing presence marks failed");
                    }
                    // A socket that closed after the snapshot may have had its mark deleted
                    // before this renewal wrote it again: delete it once more.
                    let closed: Vec<(String, String)> = {
                        let map = local.lock().unwrap_or_else(|p| p.into_inner());
                        chunk.iter().filter(|(c, _)| !map.contains_key(c)).cloned().collect()
                    };
                    for (connection, user) in closed {
                        let _ = renewer.delete_mark(&user, &connection).await;
                    }
                }
                drop(local);
            }
        });
        presence
    }

    /// How often an open socket renews its mark.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn key(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    /// Marks `connection` of `user` online (written within moments), and keeps it renewed
    /// until [`Self::unmark`].
    pub fn mark(&self, user: &str, connection: &str) {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).insert(connection.to_owned(), user.to_owned());
        let _ = self.changes.send(Change::Mark { connection: connection.to_owned(), user: user.to_owned() });
    }

    /// Takes `connection`'s mark away (within moments).
    pub fn unmark(&self, user: &str, connection: &str) {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).remove(connection);
        let _ = self.changes.send(Change::Unmark { connection: connection.to_owned(), user: user.to_owned() });
    }

    /// Writes the queued changes, in order, as many per pipeline as are waiting (up to
    /// [`RENEW_CHUNK`]). Ends when the last handle on the presence is gone. The writer's own
    /// handle holds no sender, so it does not keep itself alive.
    async fn write_changes(self, mut queued: mpsc::UnboundedReceiver<Change>) {
        let Self { redis, prefix, ttl, .. } = self;
        let writer = Self { redis, prefix, ttl, local: Arc::default(), changes: mpsc::unbounded_channel().0 };
        let mut batch = Vec::with_capacity(RENEW_CHUNK);
        while queued.recv_many(&mut batch, RENEW_CHUNK).await > 0 {
            let until = now_ms() + writer.ttl.as_millis() as i64;
            let mut pipe = redis::pipe();
            for change in batch.drain(..) {
                match change {
                    Change::Mark { connection, user } => {
                        let key = writer.key(&user);
                        pipe.cmd("HSET").arg(&key).arg(connection).arg(until).ignore();
                        pipe.cmd("PEXPIRE").arg(&key).arg(writer.ttl.as_millis() as u64).ignore();
                    }
                    Change::Unmark { connection, user } => {
                        pipe.cmd("HDEL").arg(writer.key(&user)).arg(connection).ignore();
                    }
                }
            }
            let mut conn = writer.redis.clone();
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                // Redis being away only makes users look offline (or online until their
                // marks lapse) until it is back.
                tracing::debug!(error = %e, "writing presence changes failed");
            }
        }
    }

    /// Writes the marks of `(connection, user)` pairs, lapsing one TTL from now.
    async fn write_marks(&self, marks: &[(String, String)]) -> Result<(), redis::RedisError> {
        let until = now_ms() + self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (connection, user) in marks {
            let key = self.key(user);
            pipe.cmd("HSET").arg(&key).arg(connection).arg(until).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(self.ttl.as_millis() as u64).ignore();
        }
        let mut conn = self.redis.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    async fn delete_mark(&self, user: &str, connection: &str) -> Result<(), redis::RedisError> {
        let mut conn = self.redis.clone();
        redis::cmd("HDEL").arg(self.key(user)).arg(connection).query_async::<()>(&mut conn).await
    }

    /// Whether each of `users` is online now.
    pub async fn of(&self, users: &[String]) -> Result<BTreeMap<String, bool>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("HVALS").arg(self.key(u));
        }
        let mut conn = self.redis.clone();
        let marks: Vec<Vec<i64>> = pipe.query_async(&mut conn).await?;
        let now = now_ms();
        Ok(users.iter().cloned().zip(marks.iter().map(|m| online(m, now))).collect())
    }
}

/// Whether any mark (lapse time, ms) is still good at `now`.
pub fn online(marks: &[i64], now: i64) -> bool {
    marks.iter().any(|&until| until > now)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The user ids of `?user_ids=a,b`: each a user id, 1 to [`MAX_USERS`] of them, each once.
pub fn parse_user_ids(raw: Option<&str>) -> Result<Vec<String>, &'static str> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty()).ok_or("required: a comma-separated list of user ids")?;
    let mut ids = Vec::new();
    for part in raw.split(',') {
        let id: agora_schemas::UserId = part.trim().parse().map_err(|_| "must be user ids, separated by commas")?;
        let id = id.to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_USERS {
        return Err("at most 100 user ids");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_while_any_mark_has_not_lapsed() {
        assert!(!online(&[], 1_000));
        assert!(!online(&[999, 1_000], 1_000));
        assert!(online(&[999, 1_001], 1_000));
    }

    #[test]
    fn user_ids_are_one_to_a_hundred_distinct_ids() {
        let (a, b) = (agora_schemas::UserId::new().to_string(), agora_schemas::UserId::new().to_string());
        assert_eq!(parse_user_ids(Some(&format!("{a},{b},{a}"))), Ok(vec![a.clone(), b.clone()]));
        assert_eq!(parse_user_ids(Some(&format!(" {a} "))), Ok(vec![a.clone()]));
        assert!(parse_user_ids(None).is_err());
        assert!(parse_user_ids(Some("")).is_err());
        assert!(parse_user_ids(Some(&format!("{a},nope"))).is_err());
        let many: Vec<String> = (0..101).map(|_| agora_schemas::UserId::new().to_string()).collect();
        assert!(parse_user_ids(Some(&many.join(","))).is_err());
    }
}
