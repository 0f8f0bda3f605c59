//! Rate limits whose state is in Redis, so a limit holds across every instance of a service.
//!
//! Each limit is a GCRA (generic cell rate algorithm) bucket: `max` requests at once, refilled
//! evenly over `window`. One key per (class, subject) holds the bucket's theoretical arrival
//! time; one Lua script reads and moves it atomically using Redis's clock, so instances with
//! skewed clocks agree.

use redis::aio::ConnectionManager;
use std::str::FromStr;
use std::time::Duration;

/// `max` requests per `window`. Written `600/1m`, `10/15m`, `300/60s`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window: Duration,
}

impl Limit {
    pub const fn per_minute(max: u64) -> Option<Self> {
        Some(Self { max, window: Duration::from_secs(60) })
    }
}

/// Parses `N/<duration>` (`s`, `m`, `h`; a bare number is seconds) or `off`.
pub fn parse_limit(s: &str) -> Result<Option<Limit>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (max, window) = s.split_once('/').ok_or_else(|| format!("expected N/<window> or off, not {s:?}"))?;
    let max: u64 = max.trim().parse().map_err(|_| format!("bad count in {s:?}"))?;
    let window = window.trim();
    let (digits, unit) = window.split_at(window.find(|c: char| !c.is_ascii_digit()).unwrap_or(window.len()));
    let n: u64 = if digits.is_empty() { 1 } else { digits.parse().map_err(|_| format!("bad window in {s:?}"))? };
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad window unit in {s:?} (use s, m or h)")),
    };
    if max == 0 || secs == 0 {
        return Err(format!("{s:?}: count and window must be positive (use `off` to disable)"));
    }
    Ok(Some(Limit { max, window: Duration::from_secs(secs) }))
}

/// What to do when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDownPolicy {
    /// Let the request through (and count it): availability over strictness.
    Allow,
    /// Refuse with 503.
    Deny,
}

impl FromStr for RedisDownPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            other => Err(format!("expected `allow` or `deny`, not `{other}`")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited {
        retry_after: Duration,
    },
    /// Redis could not be asked and the policy is `Deny`.
    Unavailable,
}

// KEYS[1] bucket; ARGV[1] emission interval (ms), ARGV[2] tolerance (ms), ARGV[3] 1 = consume.
// Returns the milliseconds to wait before the request would be allowed (0 = allowed now).
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return wait end
if ARGV[3] == '1' then
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
end
return 0
";

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    on_redis_down: RedisDownPolicy,
    script: redis::Script,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("prefix", &self.prefix).field("on_redis_down", &self.on_redis_down).finish()
    }
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: &str, on_redis_down: RedisDownPolicy) -> Self {
        Self { redis, prefix: prefix.to_owned(), on_redis_down, script: redis::Script::new(GCRA) }
    }

    /// Counts one request of `subject` against `limit` and says whether it may go on.
    pub async fn hit(&self, class: &str, subject: &str, limit: Limit) -> Decision {
        self.ask(class, subject, limit, true).await
    }

    /// Whether one more request would be allowed, without counting it (failed logins are
    /// checked before the password, and counted only when it is wrong).
    pub async fn check(&self, class: &str, subject: &str, limit: Limit) -> Decision {
        self.ask(class, subject, limit, false).await
    }

    async fn ask(&self, class: &str, subject: &str, limit: Limit, consume: bool) -> Decision {
        let window_ms = limit.window.as_millis() as u64;
        let interval = (window_ms / limit.max).max(1);
        let tolerance = interval * (limit.max - 1);
        let mut conn = self.redis.clone();
        let key = format!("{}:rl:{class}:{subject}", self.prefix);
        let wait: Result<u64, _> = self
            .script
            .key(key)
            .arg(interval)
            .arg(tolerance)
            .arg(if consume { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await;
        match wait {
            Ok(0) => Decision::Allowed,
            Ok(ms) => {
                metrics::counter!(crate::telemetry::names::RATE_LIMITED, "class" => class.to_owned()).increment(1);
                Decision::Limited { retry_after: Duration::from_millis(ms) }
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::names::RATE_LIMIT_REDIS_ERRORS, "class" => class.to_owned())
                    .increment(1);
                tracing::warn!(error = %e, class, "rate limit not checked: redis unavailable");
                match self.on_redis_down {
                    RedisDownPolicy::Allow => Decision::Allowed,
                    RedisDownPolicy::Deny => Decision::Unavailable,
                }
            }
        }
    }
}

impl Decision {
    /// The API answer for a refused request: 429 with `Retry-After`, or 503.
    pub fn into_result(self) -> Result<(), crate::http::ApiError> {
        match self {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => Err(crate::http::ApiError::RateLimited {
                retry_after_secs: retry_after.as_millis().div_ceil(1000) as u64,
            }),
            Decision::Unavailable => Err(crate::http::ApiError::unavailable("redis", "rate limits cannot be checked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("600/1m"), Ok(Some(Limit { max: 600, window: Duration::from_secs(60) })));
        assert_eq!(parse_limit("10/15m"), Ok(Some(Limit { max: 10, window: Duration::from_secs(900) })));
        assert_eq!(parse_limit("300/60s"), Ok(Some(Limit { max: 300, window: Duration::from_secs(60) })));
        assert_eq!(parse_limit("5/h"), Ok(Some(Limit { max: 5, window: Duration::from_secs(3600) })));
        assert_eq!(parse_limit("off"), Ok(None));
        for bad in ["", "600", "x/1m", "600/1d", "0/1m", "600/0s"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }
}
