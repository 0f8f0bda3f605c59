//! `agora-projector rebuild`: the read models rebuilt from the log into a fresh database.
//! (Being written.)

use crate::config::ProjectorConfig;

/// Entry point of the `rebuild` subcommand; `args` are the words after `rebuild`.
pub async fn main(_config: &ProjectorConfig, _args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("rebuild is not built yet")
}
