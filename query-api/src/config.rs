//! query-api settings.

use agora_platform::config::{CommonConfig, ConfigError, Env};

pub const KNOWN: &[&str] = &[
    "AGORA_CONSISTENCY_WAIT_MS",
    "AGORA_CACHE_TTL_PROFILE_SECS",
    "AGORA_CACHE_TTL_FOLLOWERS_SECS",
    "AGORA_CACHE_TTL_FEED_SECS",
    "AGORA_CACHE_TTL_UNREAD_SECS",
    "AGORA_CACHE_TTL_POST_SECS",
    "AGORA_RATE_LIMIT_QUERIES",
];

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub common: CommonConfig,
    /// `AGORA_QUERY_ADDR`, default `127.0.0.1:8082`.
    pub addr: String,
    /// `AGORA_CONSISTENCY_WAIT_MS`, default 2000: how long a query with `X-Consistency-Token`
    /// waits for the projector to reach it before answering with `X-Consistency: stale`.
    pub consistency_wait: std::time::Duration,
    /// `AGORA_CACHE_TTL_<KIND>_SECS`: profile 300, followers 120 (both lists), feed 60,
    /// unread 30, post 300.
    pub cache_ttls: crate::cache::Ttls,
    /// `AGORA_RATE_LIMIT_QUERIES`: `N/<window>` or `off`; default 3000/1m, from the contract.
    /// (`AGORA_RATE_LIMIT_REDIS_DOWN`, shared with command-api, is in `common`.)
    pub limits: crate::limits::Limits,
}

impl QueryConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_QUERY_ADDR", "127.0.0.1:8082"),
            consistency_wait: env.millis("AGORA_CONSISTENCY_WAIT_MS", 2000)?,
            cache_ttls: crate::cache::Ttls {
                profile: secs(env, "AGORA_CACHE_TTL_PROFILE_SECS", 300)?,
                followers: secs(env, "AGORA_CACHE_TTL_FOLLOWERS_SECS", 120)?,
                feed: secs(env, "AGORA_CACHE_TTL_FEED_SECS", 60)?,
                unread: secs(env, "AGORA_CACHE_TTL_UNREAD_SECS", 30)?,
                post: secs(env, "AGORA_CACHE_TTL_POST_SECS", 300)?,
            },
            limits: crate::limits::Limits { queries: env.limit("AGORA_RATE_LIMIT_QUERIES", "3000/1m")? },
        })
    }
}

fn secs(env: &Env, key: &str, default: u64) -> Result<std::time::Duration, ConfigError> {
    Ok(std::time::Duration::from_secs(env.parse(key, default)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_platform::ratelimit::Limit;

    #[test]
    fn the_queries_limit_defaults_to_the_contracts_and_can_be_set_or_turned_off() {
        let limit = |pairs: &[(&str, &str)]| {
            QueryConfig::from_env(&Env::from_pairs(pairs.iter().copied())).map(|c| c.limits.queries)
        };
        assert_eq!(limit(&[]).ok(), Some(Limit::per_minute(3000)));
        let five = Limit { max: 5, window: std::time::Duration::from_secs(60) };
        assert_eq!(limit(&[("AGORA_RATE_LIMIT_QUERIES", "5/1m")]).ok(), Some(Some(five)));
        assert_eq!(limit(&[("AGORA_RATE_LIMIT_QUERIES", "off")]).ok(), Some(None));
        assert!(limit(&[("AGORA_RATE_LIMIT_QUERIES", "lots")]).is_err());
    }
}
