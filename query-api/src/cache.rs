//! The query side of the Redis caches (`agora_platform::cache`): read through, store only
//! what is still current, answer from MongoDB when Redis is away.

use crate::startup::AppState;
use agora_platform::cache::{CacheKey, Kind, Lookup};
use agora_platform::http::ApiError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::Duration;

/// TTLs per kind (`AGORA_CACHE_TTL_<KIND>_SECS`); 0 does not cache that kind.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub profile: Duration,
    pub followers: Duration,
    pub feed: Duration,
    pub unread: Duration,
    pub post: Duration,
}

impl Ttls {
    pub fn of(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Profile => self.profile,
            Kind::Followers | Kind::Following => self.followers,
            Kind::Feed => self.feed,
            Kind::Unread => self.unread,
            Kind::Post => self.post,
        }
    }
}

/// The cached value of `key`, or `load`'s (stored for next time unless the projector changed
/// the key meanwhile). A value that no longer decodes (an older shape) counts as a miss.
pub async fn read_through<T, F, Fut>(app: &AppState, key: CacheKey, load: F) -> Result<T, ApiError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    // A TTL of 0 turns the kind's cache off.
    if app.cache_ttls.of(key.kind).is_zero() {
        return load().await;
    }
    let stamp = match app.cache.get(&key).await {
        Lookup::Hit(text) => match serde_json::from_str(&text) {
            Ok(value) => return Ok(value),
            Err(_) => None,
        },
        Lookup::Miss(stamp) => Some(stamp),
        Lookup::Down => None,
    };
    let value = load().await?;
    if let Some(stamp) = stamp
        && let Ok(text) = serde_json::to_string(&value)
        && let Err(e) = app.cache.put(&key, &stamp, &text, app.cache_ttls.of(key.kind)).await
    {
        tracing::debug!(error = %e, "caching an answer failed");
    }
    Ok(value)
}
