//! command-api settings.

use crate::limits::Limits;
use agora_platform::config::{CommonConfig, ConfigError, Env};
use std::time::Duration;

/// Variables only command-api reads.
pub const KNOWN: &[&str] = &[
    "AGORA_WRITE_DB",
    "AGORA_KAFKA_DELIVERY_TIMEOUT_MS",
    "AGORA_COMMAND_HEADS_GROUP",
    "AGORA_COMMAND_HEAD_WAIT_MS",
    "AGORA_RATE_LIMIT_LOGIN_FAILURES",
    "AGORA_RATE_LIMIT_AUTH",
    "AGORA_RATE_LIMIT_WRITES",
    "AGORA_RATE_LIMIT_MESSAGES",
    "AGORA_RATE_LIMIT_MOVES",
];

#[derive(Debug, Clone)]
pub struct CommandConfig {
    pub common: CommonConfig,
    /// `AGORA_COMMAND_ADDR`, default `127.0.0.1:8081`.
    pub addr: String,
    /// `AGORA_WRITE_DB`, default `agora_write`: credentials and aggregate heads.
    pub write_db: String,
    /// `AGORA_KAFKA_DELIVERY_TIMEOUT_MS`, default 5000: after this a command answers 503.
    pub delivery_timeout: Duration,
    /// `AGORA_COMMAND_HEADS_GROUP`, default `agora-command-heads`: the consumer group of the
    /// head keepers (one per command-api process), which write post heads from the log.
    pub heads_group: String,
    /// `AGORA_COMMAND_HEAD_WAIT_MS`, default 5000: how long after a post's id was minted a
    /// command on it waits for the keeper to write its head before answering 404.
    pub head_wait: Duration,
    /// `AGORA_RATE_LIMIT_*`: `N/<window>` or `off`; defaults from the contract.
    pub limits: Limits,
}

impl CommandConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_COMMAND_ADDR", "127.0.0.1:8081"),
            write_db: env.string("AGORA_WRITE_DB", "agora_write"),
            delivery_timeout: env.millis("AGORA_KAFKA_DELIVERY_TIMEOUT_MS", 5000)?,
            heads_group: env.string("AGORA_COMMAND_HEADS_GROUP", "agora-command-heads"),
            head_wait: env.millis("AGORA_COMMAND_HEAD_WAIT_MS", 5000)?,
            limits: Limits {
                login_failures: env.limit("AGORA_RATE_LIMIT_LOGIN_FAILURES", "10/15m")?,
                auth: env.limit("AGORA_RATE_LIMIT_AUTH", "300/1m")?,
                writes: env.limit("AGORA_RATE_LIMIT_WRITES", "600/1m")?,
                messages: env.limit("AGORA_RATE_LIMIT_MESSAGES", "600/1m")?,
                moves: env.limit("AGORA_RATE_LIMIT_MOVES", "1200/1m")?,
            },
        })
    }
}
