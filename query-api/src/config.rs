//! query-api settings.

use agora_platform::config::{CommonConfig, ConfigError, Env};

pub const KNOWN: &[&str] = &["AGORA_CONSISTENCY_WAIT_MS"];

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub common: CommonConfig,
    /// `AGORA_QUERY_ADDR`, default `127.0.0.1:8082`.
    pub addr: String,
    /// `AGORA_CONSISTENCY_WAIT_MS`, default 2000: how long a query with `X-Consistency-Token`
    /// waits for the projector to reach it before answering with `X-Consistency: stale`.
    pub consistency_wait: std::time::Duration,
}

impl QueryConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_QUERY_ADDR", "127.0.0.1:8082"),
            consistency_wait: env.millis("AGORA_CONSISTENCY_WAIT_MS", 2000)?,
        })
    }
}
