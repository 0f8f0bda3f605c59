//! projector settings.

use agora_platform::config::{CommonConfig, ConfigError, Env};

/// Variables only the projector reads.
pub const KNOWN: &[&str] = &["AGORA_PROJECTOR_GROUP"];

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub common: CommonConfig,
    /// `AGORA_PROJECTOR_ADDR`, default `127.0.0.1:8084`: ops endpoints only.
    pub addr: String,
    /// `AGORA_PROJECTOR_GROUP`, default `agora-projector`: the consumer group all projector
    /// processes share; add processes to scale out.
    pub group_id: String,
}

impl ProjectorConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_PROJECTOR_ADDR", "127.0.0.1:8084"),
            group_id: env.string("AGORA_PROJECTOR_GROUP", "agora-projector"),
        })
    }
}
