//! Read-through caches in Redis that the projector invalidates: a cached answer is never
//! older than the read model it was read from.
//!
//! Every cached key has a generation (`<prefix>:cache:gen:<kind>:<id>`) that the projector
//! increments after the writes that change it are durable, and the whole cache has an epoch
//! (`<prefix>:cache:epoch`) it increments when it could not reach Redis for some batch (so
//! entries it could not invalidate are dropped at once when Redis is back). A reader:
//! 1. reads epoch, generation and entry in one `MGET`; the entry is a hit if it was stored
//!    under the same epoch and generation;
//! 2. on a miss reads MongoDB, then stores the answer only if epoch and generation are still
//!    what it read before reading MongoDB (one Lua script). If the projector changed the key
//!    in between, the answer may be old, and it is not stored.
//!
//! So an entry is either stored before an invalidation (and the generation bump retires it)
//! or after one, by a reader that started after it. TTLs bound everything else (and the cost
//! of a generation key, which lives a day longer than any entry).

use redis::aio::ConnectionManager;
use std::time::Duration;

/// What is cached, each with its own TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A profile with its counts.
    Profile,
    /// The first page of a user's followers.
    Followers,
    /// The first page of whom a user follows.
    Following,
    /// The head of a user's home feed.
    Feed,
    /// A user's unread notification count.
    Unread,
    /// A post with its counts (without the caller's `liked_by_me`).
    Post,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Profile => "profile",
            Kind::Followers => "followers",
            Kind::Following => "following",
            Kind::Feed => "feed",
            Kind::Unread => "unread",
            Kind::Post => "post",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    pub kind: Kind,
    pub id: String,
}

impl CacheKey {
    pub fn new(kind: Kind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }
}

/// The epoch and generation a reader saw before reading MongoDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(String);

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(String),
    /// Read MongoDB, then [`Cache::put`] with this stamp.
    Miss(Stamp),
    /// Redis did not answer: read MongoDB and do not cache.
    Down,
}

/// How long a generation key outlives the longest entry.
const GENERATION_TTL: Duration = Duration::from_secs(86_400 * 2);

const PUT_IF_UNCHANGED: &str = r"
local stamp = (redis.call('GET', KEYS[1]) or '') .. ':' .. (redis.call('GET', KEYS[2]) or '')
if stamp == ARGV[1] then
  redis.call('SET', KEYS[3], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
";

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    prefix: String,
    put: redis::Script,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Cache {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, prefix: prefix.to_owned(), put: redis::Script::new(PUT_IF_UNCHANGED) }
    }

    fn epoch_key(&self) -> String {
        format!("{}:cache:epoch", self.prefix)
    }

    fn generation_key(&self, key: &CacheKey) -> String {
        format!("{}:cache:gen:{}:{}", self.prefix, key.kind.name(), key.id)
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}:cache:{}:{}", self.prefix, key.kind.name(), key.id)
    }

    /// The projector's side: retires every entry of `keys`, after the writes that changed
    /// them are durable.
    pub async fn invalidate(&self, keys: &[CacheKey]) -> Result<(), redis::RedisError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            let generation = self.generation_key(key);
            pipe.incr(&generation, 1).ignore().expire(&generation, GENERATION_TTL.as_secs() as i64).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// Retires every entry at once (after invalidations were lost while Redis was away).
    pub async fn bump_epoch(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("INCR").arg(self.epoch_key()).query_async::<i64>(&mut conn).await.map(|_| ())
    }

    /// The reader's side, step 1.
    pub async fn get(&self, key: &CacheKey) -> Lookup {
        let mut conn = self.conn.clone();
        let keys = [self.epoch_key(), self.generation_key(key), self.entry_key(key)];
        let found: Result<(Option<String>, Option<String>, Option<String>), _> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await;
        let Ok((epoch, generation, entry)) = found else {
            metrics::counter!(crate::telemetry::names::CACHE_LOOKUPS, "kind" => key.kind.name(), "outcome" => "error")
                .increment(1);
            return Lookup::Down;
        };
        let stamp = format!("{}:{}", epoch.unwrap_or_default(), generation.unwrap_or_default());
        if let Some(value) =
            entry.as_deref().and_then(|e| e.strip_prefix(stamp.as_str())).and_then(|r| r.strip_prefix('|'))
        {
            metrics::counter!(crate::telemetry::names::CACHE_LOOKUPS, "kind" => key.kind.name(), "outcome" => "hit")
                .increment(1);
            return Lookup::Hit(value.to_owned());
        }
        metrics::counter!(crate::telemetry::names::CACHE_LOOKUPS, "kind" => key.kind.name(), "outcome" => "miss")
            .increment(1);
        Lookup::Miss(Stamp(stamp))
    }

    /// The reader's side, step 2: stores `value` unless the key changed since `stamp`.
    /// Returns whether it was stored.
    pub async fn put(
        &self,
        key: &CacheKey,
        stamp: &Stamp,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, redis::RedisError> {
        let mut conn = self.conn.clone();
        let stored: i64 = self
            .put
            .key(self.epoch_key())
            .key(self.generation_key(key))
            .key(self.entry_key(key))
            .arg(&stamp.0)
            .arg(value)
            .arg(ttl.as_secs().max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(stored == 1)
    }
}
