//! command-api settings.

use agora_platform::config::{CommonConfig, ConfigError, Env};
use std::time::Duration;

/// Variables only command-api reads.
pub const KNOWN: &[&str] = &["AGORA_WRITE_DB", "AGORA_KAFKA_DELIVERY_TIMEOUT_MS"];

#[derive(Debug, Clone)]
pub struct CommandConfig {
    pub common: CommonConfig,
    /// `AGORA_COMMAND_ADDR`, default `127.0.0.1:8081`.
    pub addr: String,
    /// `AGORA_WRITE_DB`, default `agora_write`: credentials and aggregate heads.
    pub write_db: String,
    /// `AGORA_KAFKA_DELIVERY_TIMEOUT_MS`, default 5000: after this a command answers 503.
    pub delivery_timeout: Duration,
}

impl CommandConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_COMMAND_ADDR", "127.0.0.1:8081"),
            write_db: env.string("AGORA_WRITE_DB", "agora_write"),
            delivery_timeout: env.millis("AGORA_KAFKA_DELIVERY_TIMEOUT_MS", 5000)?,
        })
    }
}
