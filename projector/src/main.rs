use agora_platform::config::Env;
use agora_projector::{Application, ProjectorConfig};
use anyhow::Context;

// glibc's malloc keeps freed memory per thread arena (argon2's 19 MiB blocks stayed resident
// as gigabytes) and spent ~15% of command-api's CPU under load; mimalloc does neither.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let config = ProjectorConfig::from_env(&env).context("reading configuration")?;
    agora_platform::telemetry::init_tracing(&config.common.log_filter, config.common.log_format);
    for key in env.unknown_agora_keys(agora_projector::config::KNOWN) {
        tracing::warn!(%key, "unknown AGORA_ variable ignored");
    }
    let app = Application::build(config).await.context("starting the projector")?;
    tracing::info!(port = app.port(), "projector ops endpoints listening");
    app.run(agora_platform::shutdown::signal()).await.context("running")?;
    tracing::info!("projector stopped");
    Ok(())
}
