//! projector settings.

use crate::readmodel::feeds::FeedSettings;
use agora_platform::config::{CommonConfig, ConfigError, Env};

/// Variables only the projector reads.
pub const KNOWN: &[&str] =
    &["AGORA_PROJECTOR_GROUP", "AGORA_FEED_FANOUT_THRESHOLD", "AGORA_FEED_CAP", "AGORA_PROJECTOR_MAX_BATCH"];

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub common: CommonConfig,
    /// `AGORA_PROJECTOR_ADDR`, default `127.0.0.1:8084`: ops endpoints only.
    pub addr: String,
    /// `AGORA_PROJECTOR_GROUP`, default `agora-projector`: the consumer group all projector
    /// processes share; add processes to scale out.
    pub group_id: String,
    /// `AGORA_FEED_FANOUT_THRESHOLD` (default 10000): authors with at least this many
    /// followers are merged into feeds at read time instead of fanned out;
    /// `AGORA_FEED_CAP` (default 800): entries kept per home feed.
    pub feeds: FeedSettings,
    /// `AGORA_PROJECTOR_MAX_BATCH` (default 1000): events applied to the store together; 1
    /// writes one event at a time (what the batching benchmark compares against).
    pub max_batch: usize,
}

impl ProjectorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_PROJECTOR_ADDR", "127.0.0.1:8084"),
            group_id: env.string("AGORA_PROJECTOR_GROUP", "agora-projector"),
            max_batch: env.parse::<usize>("AGORA_PROJECTOR_MAX_BATCH", 1000)?.max(1),
            feeds: FeedSettings {
                fanout_threshold: env.parse("AGORA_FEED_FANOUT_THRESHOLD", FeedSettings::DEFAULT.fanout_threshold)?,
                cap: env.parse::<u64>("AGORA_FEED_CAP", FeedSettings::DEFAULT.cap)?.max(1),
            },
        })
    }
}
