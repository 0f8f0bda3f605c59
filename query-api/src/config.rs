//! query-api settings.

use agora_platform::config::{CommonConfig, ConfigError, Env};

pub const KNOWN: &[&str] = &[];

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub common: CommonConfig,
    /// `AGORA_QUERY_ADDR`, default `127.0.0.1:8082`.
    pub addr: String,
}

impl QueryConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { common: CommonConfig::from_env(env)?, addr: env.string("AGORA_QUERY_ADDR", "127.0.0.1:8082") })
    }
}
