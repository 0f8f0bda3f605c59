use agora_platform::config::Env;
use agora_realtime::{Application, RealtimeConfig};
use anyhow::Context;

// glibc's malloc keeps freed memory per thread arena (argon2's 19 MiB blocks stayed resident
// as gigabytes) and spent ~15% of command-api's CPU under load; mimalloc does neither.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let config = RealtimeConfig::from_env(&env).context("reading configuration")?;
    agora_platform::telemetry::init_tracing(&config.common.log_filter, config.common.log_format);
    for key in env.unknown_agora_keys(agora_realtime::config::KNOWN) {
        tracing::warn!(%key, "unknown AGORA_ variable ignored");
    }
    let app = Application::build(config).await.context("starting realtime")?;
    tracing::info!(port = app.port(), "realtime listening");
    app.run(agora_platform::shutdown::signal()).await.context("serving")?;
    tracing::info!("realtime stopped");
    Ok(())
}
