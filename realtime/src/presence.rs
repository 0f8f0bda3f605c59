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
use uuid::Uuid;

/// Marks renewed, or written and deleted, per pipeline.
const RENEW_CHUNK: usize = 500;

/// A socket opening or closing, for the writer task.
#[derive(Debug)]
enum Change {
    Mark { connection: Uuid, user: Arc<str> },
    Unmark { connection: Uuid, user: Arc<str> },
}

/// The most users one presence query may name.
pub const MAX_USERS: usize = 100;

/// Presence for the process: every socket holds a clone, one pointer.
#[derive(Clone, Debug)]
pub struct Presence(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    marks: Marks,
    /// This process's open sockets: connection id → user (the name its session holds).
    local: Mutex<HashMap<Uuid, Arc<str>>>,
    /// To the writer task, in the order sockets open and close.
    changes: mpsc::UnboundedSender<Change>,
}

/// The marks in Redis: what the sockets' handle, the renewer and the writer share.
#[derive(Clone, Debug)]
struct Marks {
    redis: ConnectionManager,
    prefix: String,
    /// How long a mark lasts without renewal (a few heartbeats).
    ttl: Duration,
}

impl Marks {
    fn key(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    /// Appends to `pipe` a mark of `connection` of `user`, lapsing at `until` (ms).
    fn mark_into(&self, pipe: &mut redis::Pipeline, user: &str, connection: &Uuid, until: i64) {
        let key = self.key(user);
        let mut field = Uuid::encode_buffer();
        pipe.cmd("HSET").arg(&key).arg(field_of(connection, &mut field)).arg(until).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(self.ttl.as_millis() as u64).ignore();
    }

    /// When a mark written now lapses (ms since the epoch).
    fn lapse(&self) -> i64 {
        now_ms() + self.ttl.as_millis() as i64
    }

    async fn query(&self, pipe: redis::Pipeline) -> Result<(), redis::RedisError> {
        let mut conn = self.redis.clone();
        pipe.query_async::<()>(&mut conn).await
    }
}

impl Presence {
    /// Presence on `redis`, with this process's renewal and writer tasks (which end when the
    /// last clone is dropped).
    pub fn new(redis: ConnectionManager, prefix: &str, heartbeat: Duration) -> Self {
        let marks = Marks { redis, prefix: prefix.to_owned(), ttl: heartbeat * 2 + Duration::from_secs(5) };
        let (changes, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_changes(marks.clone(), queued));
        let presence = Self(Arc::new(Shared { marks, local: Mutex::default(), changes }));
        let (every, weak) = (presence.renew_every(), Arc::downgrade(&presence.0));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = weak.upgrade() else { return };
                let open: Vec<(Uuid, Arc<str>)> = shared.lock().iter().map(|(c, u)| (*c, u.clone())).collect();
                for chunk in open.chunks(RENEW_CHUNK) {
                    let until = shared.marks.lapse();
                    let mut pipe = redis::pipe();
                    for (connection, user) in chunk {
                        shared.marks.mark_into(&mut pipe, user, connection, until);
                    }
                    if let Err(e) = shared.marks.query(pipe).await {
                        // Redis being away only makes users look offline until it is back.
                        tracing::debug!(error = %e, "renewing presence marks failed");
                    }
                    // A socket that closed after the snapshot may have had its mark deleted
                    // before this renewal wrote it again: the writer deletes it once more.
                    let local = shared.lock();
                    for (connection, user) in chunk.iter().filter(|(c, _)| !local.contains_key(c)) {
                        let _ = shared.changes.send(Change::Unmark { connection: *connection, user: user.clone() });
                    }
                }
                drop(shared);
            }
        });
        presence
    }

    /// How often an open socket renews its mark.
    pub fn renew_every(&self) -> Duration {
        self.0.marks.ttl / 3
    }

    /// Marks `connection` of `user` online (written within moments), and keeps it renewed
    /// until [`Self::unmark`].
    pub fn mark(&self, user: &Arc<str>, connection: Uuid) {
        self.0.lock().insert(connection, user.clone());
        let _ = self.0.changes.send(Change::Mark { connection, user: user.clone() });
    }

    /// Takes `connection`'s mark away (within moments).
    pub fn unmark(&self, user: &Arc<str>, connection: Uuid) {
        self.0.lock().remove(&connection);
        let _ = self.0.changes.send(Change::Unmark { connection, user: user.clone() });
    }

    /// Whether each of `users` is online now.
    pub async fn of(&self, users: &[String]) -> Result<BTreeMap<String, bool>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("HVALS").arg(self.0.marks.key(u));
        }
        let mut conn = self.0.marks.redis.clone();
        let marks: Vec<Vec<i64>> = pipe.query_async(&mut conn).await?;
        let now = now_ms();
        Ok(users.iter().cloned().zip(marks.iter().map(|m| online(m, now))).collect())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<str>>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes the queued changes, in order, as many per pipeline as are waiting (up to
/// [`RENEW_CHUNK`]). Ends once every sender is gone: the sockets' handles and the renewer.
async fn write_changes(marks: Marks, mut queued: mpsc::UnboundedReceiver<Change>) {
    let mut batch = Vec::with_capacity(RENEW_CHUNK);
    while queued.recv_many(&mut batch, RENEW_CHUNK).await > 0 {
        let until = marks.lapse();
        let mut pipe = redis::pipe();
        for change in batch.drain(..) {
            match change {
                Change::Mark { connection, user } => marks.mark_into(&mut pipe, &user, &connection, until),
                Change::Unmark { connection, user } => {
                    let mut field = Uuid::encode_buffer();
                    pipe.cmd("HDEL").arg(marks.key(&user)).arg(field_of(&connection, &mut field)).ignore();
                }
            }
        }
        if let Err(e) = marks.query(pipe).await {
            // Redis being away only makes users look offline (or online until their marks
            // lapse) until it is back.
            tracing::debug!(error = %e, "writing presence changes failed");
        }
    }
}

/// A connection's field in its user's presence hash: the id's hyphenated text, written into
/// `buf` (no allocation per mark).
fn field_of<'b>(connection: &Uuid, buf: &'b mut [u8]) -> &'b str {
    connection.hyphenated().encode_lower(buf)
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
