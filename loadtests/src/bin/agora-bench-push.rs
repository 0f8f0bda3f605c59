//! Issue 5's push benchmark: Agora's realtime tier beside Socket.IO with its Redis adapter (the
//! old system's stack, `loadtests/socketio/`), the same sockets and the same event rates, in
//! one run: memory per socket on one process (10K, 19K), a 100K-socket fleet over several
//! processes, push latency at a steady rate, Socket.IO's rate ramp to where its p99 passes
//! 100 ms (R), and Agora at 5R. See `agora_loadtests::push::coordinator` for the phases and
//! loadtests/README.md for the report. Usually run through `loadtests/bench-push.sh`.
//!
//! ```text
//! agora-bench-push [run] [--out FILE] [--prefix P] [--stacks agora,socketio]
//!     [--memory-steps 10000,19000] [--sockets 100000] [--servers 6] [--routers 2]
//!     [--steady-rate 1000] [--steady-secs 30] [--ramp-start 250] [--ramp-factor 2]
//!     [--ramp-max 256000] [--ramp-secs 20] [--threshold-ms 100] [--multiple 5]
//!     [--knee-rate R] [--agora-ramp true|false] [--warmup-rate 100] [--drain-secs 10] [--quiesce-secs 180]
//!     [--settle-secs 3] [--connect-secs 300] [--min-free-mib 1536] [--emitters 1]
//!     [--per-client 16000] [--per-source 8000] [--concurrency 200] [--max-minutes 90]
//!     [--kafka-pid PID] [--realtime-bin PATH] [--node PATH] [--socketio-dir DIR]
//!     [--realtime-env KEY=VALUE]...
//! agora-bench-push client ...   (a client process; started by the coordinator)
//! ```
//!
//! Kafka, MongoDB and Redis come from `AGORA_KAFKA_BROKERS`, `AGORA_MONGO_URI` and
//! `AGORA_REDIS_URL` (the local stack's addresses by default); all must be loopback.

use agora_loadtests::push::client::{self, ClientArgs};
use agora_loadtests::push::coordinator::{self, Plan, Report};
use agora_loadtests::push::fleet::Settings;
use agora_loadtests::push::wire::Stack;
use anyhow::Context;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("client") => {
            argv.remove(0);
            client::main(client_args(argv)?)
        }
        Some("run") => {
            argv.remove(0);
            coordinate(argv)
        }
        _ => coordinate(argv),
    }
}

fn pairs(argv: Vec<String>) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        anyhow::ensure!(flag.starts_with("--"), "unexpected argument {flag:?}");
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        out.push((flag, value));
    }
    Ok(out)
}

fn client_args(argv: Vec<String>) -> anyhow::Result<ClientArgs> {
    let mut a = ClientArgs {
        stack: Stack::Agora,
        ports: Vec::new(),
        first: 0,
        count: 0,
        seed: 0,
        source_first: 2,
        per_source: 8_000,
        concurrency: 200,
        threads: 2,
        secret: std::env::var("AGORA_BENCH_SECRET").unwrap_or_default(),
    };
    for (flag, value) in pairs(argv)? {
        match flag.as_str() {
            "--stack" => a.stack = Stack::parse(&value)?,
            "--ports" => {
                a.ports =
                    value.split(',').map(|p| p.trim().parse::<u16>()).collect::<Result<_, _>>().context("--ports")?
            }
            "--first" => a.first = value.parse()?,
            "--count" => a.count = value.parse()?,
            "--seed" => a.seed = value.parse()?,
            "--source-first" => a.source_first = value.parse()?,
            "--per-source" => a.per_source = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--threads" => a.threads = value.parse()?,
            other => anyhow::bail!("client: unknown flag {other}"),
        }
    }
    Ok(a)
}

fn list<T: std::str::FromStr>(value: &str) -> anyhow::Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<T>().map_err(|e| anyhow::anyhow!("{s:?}: {e}")))
        .collect()
}

fn coordinate(argv: Vec<String>) -> anyhow::Result<()> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let ms = chrono::Utc::now().timestamp_millis();
    let exe = std::env::current_exe().context("locating this executable")?;
    let exe_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let mut plan = Plan {
        stacks: vec![Stack::SocketIo, Stack::Agora],
        memory_steps: vec![10_000, 19_000],
        sockets: 100_000,
        servers: 6,
        routers: 2,
        per_client: 16_000,
        per_source: 8_000,
        concurrency: 200,
        steady_rate: 1_000.0,
        steady_secs: 30.0,
        ramp_start: 250.0,
        ramp_factor: 2.0,
        ramp_max: 256_000.0,
        ramp_secs: 20.0,
        threshold_ms: 100.0,
        multiple: 5.0,
        knee_rate: None,
        agora_ramp: true,
        warmup_rate: 100.0,
        drain_secs: 10.0,
        quiesce_secs: 180.0,
        settle_secs: 3.0,
        connect_secs: 300,
        min_free_mib: 1_536,
        emitters: 1,
        max_minutes: 90,
        kafka_pid: None,
    };
    let mut out = PathBuf::from(".local/bench/push.json");
    let mut prefix = format!("benchpush{ms}");
    let mut realtime_bin = exe_dir.join("agora-realtime");
    let mut node = "node".to_owned();
    let mut socketio_dir = PathBuf::from("loadtests/socketio");
    let mut log_dir: Option<PathBuf> = None;
    let mut realtime_env = vec![
        // The router keeps each frame (and a delivered mark per frame) for the retention time:
        // an hour is plenty for a benchmark, and whatever cleanup misses expires by itself.
        ("AGORA_STREAM_RETENTION_SECS".to_owned(), "3600".to_owned()),
    ];
    let positive = |v: f64, flag: &str| {
        anyhow::ensure!(v.is_finite() && v > 0.0, "{flag} must be positive");
        Ok(v)
    };
    for (flag, value) in pairs(argv)? {
        match flag.as_str() {
            "--out" => out = PathBuf::from(value),
            "--prefix" => prefix = value,
            "--stacks" => plan.stacks = value.split(',').map(|s| Stack::parse(s.trim())).collect::<Result<_, _>>()?,
            "--memory-steps" => plan.memory_steps = list(&value)?,
            "--sockets" => plan.sockets = value.parse::<u64>()?.min(250_000),
            "--servers" => plan.servers = value.parse::<usize>()?.clamp(1, 32),
            "--routers" => plan.routers = value.parse::<usize>()?.clamp(1, 32),
            "--per-client" => plan.per_client = value.parse::<u64>()?.clamp(100, client::MAX_SOCKETS),
            "--per-source" => plan.per_source = value.parse::<u64>()?.clamp(100, 28_000),
            "--concurrency" => plan.concurrency = value.parse::<usize>()?.clamp(1, 2_000),
            "--steady-rate" => plan.steady_rate = positive(value.parse()?, &flag)?,
            "--steady-secs" => plan.steady_secs = positive(value.parse::<f64>()?.min(600.0), &flag)?,
            "--ramp-start" => plan.ramp_start = positive(value.parse()?, &flag)?,
            "--ramp-factor" => plan.ramp_factor = value.parse::<f64>()?.clamp(1.1, 10.0),
            "--ramp-max" => plan.ramp_max = positive(value.parse::<f64>()?.min(1_000_000.0), &flag)?,
            "--ramp-secs" => plan.ramp_secs = positive(value.parse::<f64>()?.min(300.0), &flag)?,
            "--threshold-ms" => plan.threshold_ms = positive(value.parse()?, &flag)?,
            "--multiple" => plan.multiple = positive(value.parse()?, &flag)?,
            "--knee-rate" => plan.knee_rate = Some(positive(value.parse()?, &flag)?),
            "--agora-ramp" => plan.agora_ramp = value.parse()?,
            "--warmup-rate" => plan.warmup_rate = positive(value.parse()?, &flag)?,
            "--drain-secs" => plan.drain_secs = value.parse::<f64>()?.clamp(1.0, 120.0),
            "--quiesce-secs" => plan.quiesce_secs = value.parse::<f64>()?.clamp(0.0, 600.0),
            "--settle-secs" => plan.settle_secs = value.parse::<f64>()?.clamp(0.0, 60.0),
            "--connect-secs" => plan.connect_secs = value.parse::<u64>()?.clamp(10, 1_800),
            "--min-free-mib" => plan.min_free_mib = value.parse()?,
            "--emitters" => plan.emitters = value.parse::<usize>()?.clamp(1, 8),
            "--max-minutes" => plan.max_minutes = value.parse::<u64>()?.clamp(1, 240),
            "--kafka-pid" => plan.kafka_pid = Some(value.parse()?),
            "--realtime-bin" => realtime_bin = PathBuf::from(value),
            "--node" => node = value,
            "--socketio-dir" => socketio_dir = PathBuf::from(value),
            "--log-dir" => log_dir = Some(PathBuf::from(value)),
            "--realtime-env" => {
                let (k, v) = value.split_once('=').context("--realtime-env takes KEY=VALUE")?;
                anyhow::ensure!(
                    ["AGORA_", "TOKIO_", "MIMALLOC_"].iter().any(|p| k.starts_with(p)),
                    "--realtime-env: {k} is not an AGORA_, TOKIO_ or MIMALLOC_ variable"
                );
                realtime_env.retain(|(key, _)| key != k);
                realtime_env.push((k.to_owned(), v.to_owned()));
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(
        prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "--prefix: letters, digits, . _ -"
    );
    let kafka = env("AGORA_KAFKA_BROKERS", "127.0.0.1:9092");
    let mongo = env("AGORA_MONGO_URI", "mongodb://127.0.0.1:27017/");
    let redis = env("AGORA_REDIS_URL", "redis://127.0.0.1:6379");
    for url in kafka.split(',').chain([mongo.as_str(), redis.as_str()]) {
        agora_loadtests::require_loopback(url)?;
    }
    if plan.stacks.contains(&Stack::Agora) {
        anyhow::ensure!(
            realtime_bin.exists(),
            "{} is missing: cargo build --release -p agora-realtime",
            realtime_bin.display()
        );
    }
    if plan.stacks.contains(&Stack::SocketIo) {
        anyhow::ensure!(
            socketio_dir.join("node_modules").exists(),
            "{}/node_modules is missing: (cd {0} && npm ci)",
            socketio_dir.display()
        );
    }
    let log_dir = log_dir.unwrap_or_else(|| PathBuf::from(format!(".local/bench/push-logs/{prefix}")));
    std::fs::create_dir_all(&log_dir).with_context(|| log_dir.display().to_string())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let settings = Settings {
        realtime_bin,
        node,
        socketio_dir: std::fs::canonicalize(&socketio_dir).unwrap_or(socketio_dir),
        self_exe: exe,
        log_dir: log_dir.clone(),
        secret: format!("bench-push-secret-{prefix}-{}", uuid::Uuid::new_v4().simple()),
        seed: ms as u64,
        prefix: prefix.clone(),
        kafka,
        mongo,
        redis: redis.clone(),
        realtime_env,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let report = Report::default();
        let outcome = tokio::select! {
            r = coordinator::run(plan, settings, report.clone()) => r.map(|_| ()),
            _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
        };
        // Every child was killed by now (dropping a child handle kills it).
        if let Err(e) = &outcome {
            report.set(&["error"], serde_json::json!(format!("{e:#}")));
        }
        let deleted = coordinator::delete_keys(&redis, &prefix).await;
        report.set(
            &["cleanup"],
            serde_json::json!({
                "redis_keys_deleted": deleted.as_ref().ok(),
                "redis_error": deleted.as_ref().err().map(|e| format!("{e:#}")),
                "kafka_topics_left": format!("{prefix}.* (left for Kafka's retention; delete with kafka-topics.sh if wanted)"),
                "logs": log_dir.display().to_string(),
            }),
        );
        let value = report.value();
        std::fs::write(&out, serde_json::to_vec_pretty(&value)?).with_context(|| out.display().to_string())?;
        println!("{}", coordinator::summary(&value));
        eprintln!("[bench-push] report in {}; logs in {}", out.display(), log_dir.display());
        outcome
    })
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
