//! `agora-projector replay`: history for analysts, streamed from the event log.
//! (Being written.)

use crate::config::ProjectorConfig;

/// Entry point of the `replay` subcommand; `args` are the words after `replay`.
pub async fn main(_config: &ProjectorConfig, _args: &[&str]) -> anyhow::Result<()> {
    anyhow::bail!("replay is not built yet")
}
