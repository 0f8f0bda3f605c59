use agora_platform::config::Env;
use agora_projector::{Application, ProjectorConfig};
use anyhow::Context;

// glibc's malloc keeps freed memory per thread arena (argon2's 19 MiB blocks stayed resident
// as gigabytes) and spent ~15% of command-api's CPU under load; mimalloc does neither.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: agora-projector [run]            project the event log (default)
       agora-projector lag [--group G]  per-partition lag of the projector's consumer group
                                        (or of G), read from the brokers
       agora-projector rebuild [--no-switch]
                                        project the whole log into a fresh database, then serve it
       agora-projector replay [options]  history as NDJSON/CSV for analysts (replay --help)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let config = ProjectorConfig::from_env(&env).context("reading configuration")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["run"] => run(env, config).await,
        ["lag"] => lag(config.group_id.clone(), &config).await,
        ["lag", "--group", group] => lag((*group).to_owned(), &config).await,
        ["replay", rest @ ..] => agora_projector::replay::main(&config, rest).await,
        ["rebuild", rest @ ..] => agora_projector::rebuild::main(&config, rest).await,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn run(env: Env, config: ProjectorConfig) -> anyhow::Result<()> {
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

async fn lag(group: String, config: &ProjectorConfig) -> anyhow::Result<()> {
    let brokers = config.common.kafka_brokers.clone();
    let topics = config.common.topics().event_topics();
    let timeout = config.common.ready_timeout.max(std::time::Duration::from_secs(5));
    let rows =
        tokio::task::spawn_blocking(move || agora_platform::kafka::lag::group_lag(&brokers, &group, &topics, timeout))
            .await?
            .context("reading the group's offsets from kafka")?;
    print!("{}", agora_platform::kafka::lag::table(&rows));
    Ok(())
}
