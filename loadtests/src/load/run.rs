//! The coordinator of a run: sets the virtual users up through the public API, starts one
//! generator process per shard (this binary's `worker` subcommand), starts them together,
//! merges what they measured and turns it into the report's JSON.

use super::graph::{FollowGraph, Shape};
use super::mix::{Preset, rates};
use super::plan::{LAG_PUSHED, LAG_VISIBLE, Plan, WorkerLine, merged_by_tier};
use super::record::{OpRecord, Records};
use super::report::{Figures, Latency, Machine, Step};
use super::split::{Limits, split};
use super::users::{self, Endpoints};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Where the system under load answers: `AGORA_LOAD_COMMAND_URL`, `AGORA_LOAD_QUERY_URL`,
/// `AGORA_LOAD_REALTIME_URL`, by default the contract's ports on 127.0.0.1.
pub fn endpoints_from_env() -> anyhow::Result<Endpoints> {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned()).trim_end_matches('/').to_owned();
    let ep = Endpoints {
        command: var("AGORA_LOAD_COMMAND_URL", "http://127.0.0.1:8081"),
        query: var("AGORA_LOAD_QUERY_URL", "http://127.0.0.1:8082"),
        realtime: var("AGORA_LOAD_REALTIME_URL", "http://127.0.0.1:8083"),
    };
    for url in [&ep.command, &ep.query, &ep.realtime] {
        crate::require_loopback(url)?;
    }
    Ok(ep)
}

/// One figure of a record over `secs`.
pub fn figures(r: &OpRecord, secs: f64) -> Figures {
    let n = r.attempts();
    Figures {
        count: n,
        per_sec: if secs > 0.0 { n as f64 / secs } else { 0.0 },
        latency: Latency { p50_ms: r.quantile_ms(0.5), p99_ms: r.quantile_ms(0.99), p999_ms: r.quantile_ms(0.999) },
        error_rate: r.error_rate(),
    }
}

/// A step of the report from the merged records of every worker.
pub fn step(multiple: f64, users: usize, secs: f64, records: &Records) -> Step {
    let tiers = merged_by_tier(records).into_iter().map(|(t, r)| (t.to_owned(), figures(&r, secs))).collect();
    let (mut lags, mut ops) = (BTreeMap::new(), BTreeMap::new());
    for (name, r) in &records.0 {
        if name == LAG_VISIBLE || name == LAG_PUSHED {
            lags.insert(name.clone(), figures(r, secs));
        } else if matches!(super::plan::tier_of(name), "command" | "query") {
            ops.insert(name.clone(), figures(r, secs));
        }
    }
    Step { multiple, offered_per_sec: rates(users, multiple).iter().sum(), secs, tiers, lags, ops }
}

/// What this machine is, for the report.
pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let name = std::env::var("AGORA_LOAD_MACHINE").ok().unwrap_or_else(|| read("/etc/hostname").trim().to_owned());
    let memory_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| Some(l.strip_prefix("PRETTY_NAME=")?.trim_matches('"').to_owned()))
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    Machine {
        name,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        os,
    }
}

/// A progress callback for `total` items of a shard that speaks at each tenth and at the end.
fn tenths<'a>(progress: &'a impl Fn(&str), shard: usize, done: &'a str, total: usize) -> impl Fn(usize) + 'a {
    let every = (total / 10).max(1);
    move |n| {
        if n % every == 0 || n == total {
            progress(&format!("shard {shard}: {done} {n}/{total}"));
        }
    }
}

/// What the setup made.
#[derive(Debug)]
pub struct Setup {
    pub plan: Plan,
    pub follows: usize,
}

/// Registers the preset's users, split over generator processes by `limits`, applies the
/// follow graph, seeds posts and games, and waits until the query API shows the last seeded
/// post.
pub async fn setup(
    ep: &Endpoints,
    preset: &Preset,
    (steps, step_secs): (Vec<f64>, u64),
    limits: Limits,
    seed: u64,
    progress: &impl Fn(&str),
) -> anyhow::Result<Setup> {
    let tag = format!("l{:08x}", seed & 0xffff_ffff);
    let shards = split(preset.users, limits);
    let mut all = Vec::with_capacity(preset.users);
    for shard in &shards {
        let told = tenths(progress, shard.index, "registered", shard.users.len());
        all.extend(users::register(ep, shard, &tag, 16, told).await?);
    }
    let graph = FollowGraph::power_law(preset.users, Shape::default(), seed);
    let mut follows = 0;
    for shard in &shards {
        let total: usize = shard.users.clone().map(|u| graph.follows[u].len()).sum();
        follows += users::follow(ep, shard, &all, &graph, 64, tenths(progress, shard.index, "followed", total)).await?;
    }
    let (mut posts, mut games) = (Vec::new(), Vec::new());
    for shard in &shards {
        posts.extend(users::posts(ep, shard, &all, 5, 64).await?);
        games.extend(users::games(ep, shard, &all, shard.users.len() / 10, 32).await?);
    }
    progress(&format!("seeded {} posts and {} games", posts.len(), games.len()));
    if let (Some(last), Some(author)) = (posts.last(), all.first()) {
        wait_visible(ep, last, &author.token).await?;
    }
    wait_followed(ep, &all, &graph, progress).await?;
    wait_groups(progress).await?;
    let plan = Plan { tag, seed, endpoints: ep.clone(), steps, step_secs, users: all, posts, games, shards };
    Ok(Setup { plan, follows })
}

/// Waits until the query API shows the graph's follows of a sample of users (every 20th), so
/// the first step does not measure the projector still catching up with the setup.
async fn wait_followed(
    ep: &Endpoints,
    all: &[users::VirtualUser],
    graph: &FollowGraph,
    progress: &impl Fn(&str),
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let sample: Vec<&users::VirtualUser> = all.iter().step_by((all.len() / 20).max(1)).collect();
    let started = std::time::Instant::now();
    let mut last_report = started;
    loop {
        let mut behind = 0;
        for u in &sample {
            let url = format!("{}/v1/users/{}", ep.query, u.id);
            let shown = match http.get(&url).bearer_auth(&u.token).send().await {
                Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            };
            if shown.and_then(|v| v["following"].as_u64()) != Some(graph.follows[u.index].len() as u64) {
                behind += 1;
            }
        }
        if behind == 0 {
            progress(&format!("the query API shows the follow graph ({:.0} s)", started.elapsed().as_secs_f64()));
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the query API still lacks follows of {behind} of {} sampled users after 15 minutes",
            sample.len()
        );
        if last_report.elapsed() >= Duration::from_secs(15) {
            progress(&format!(
                "waiting for the projector: {behind} of {} sampled users' follows not shown yet",
                sample.len()
            ));
            last_report = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the consumer groups behind the system (`AGORA_LOAD_GROUPS`, default the
/// projector's and the realtime router's) have read everything the setup wrote, so the first
/// step measures the load, not a backlog: the setup's follows alone are some 20 events a user,
/// each a notification to route.
async fn wait_groups(progress: &impl Fn(&str)) -> anyhow::Result<()> {
    let brokers = std::env::var("AGORA_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let prefix = std::env::var("AGORA_TOPIC_PREFIX").unwrap_or_else(|_| "agora".to_owned());
    let groups =
        std::env::var("AGORA_LOAD_GROUPS").unwrap_or_else(|_| "agora-projector,agora-realtime-router".to_owned());
    let topics = agora_schemas::aggregate::Topics::new(prefix).event_topics();
    let started = std::time::Instant::now();
    for group in groups.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut last_report = std::time::Instant::now();
        loop {
            let (b, g, t) = (brokers.clone(), group.to_owned(), topics.clone());
            let rows = tokio::task::spawn_blocking(move || {
                agora_platform::kafka::lag::group_lag(&b, &g, &t, Duration::from_secs(10))
            })
            .await?
            .with_context(|| format!("reading group {group}'s lag"))?;
            let left: i64 = rows.iter().map(|r| r.lag()).sum();
            if left == 0 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "group {group} still has {left} events to read after 15 minutes"
            );
            if last_report.elapsed() >= Duration::from_secs(10) {
                progress(&format!("waiting for group {group}: {left} events to read"));
                last_report = std::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    progress(&format!("consumer groups caught up ({:.0} s)", started.elapsed().as_secs_f64()));
    Ok(())
}

async fn wait_visible(ep: &Endpoints, post: &str, token: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/posts/{post}", ep.query);
    for _ in 0..6000 {
        if http.get(&url).bearer_auth(token).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the query API did not show the seeded post {post} within 10 minutes: is the projector running?")
}

/// What the workers measured, merged: one `Records` per step.
#[derive(Debug)]
pub struct Measured {
    pub steps: Vec<Records>,
    pub sockets: u64,
    pub sockets_closed: u64,
}

/// Starts one worker per shard (`exe worker --plan <file> --shard <i>`), starts them together
/// once all are ready, and merges their records.
pub async fn drive(exe: &Path, plan_file: &Path, plan: &Plan, progress: &impl Fn(&str)) -> anyhow::Result<Measured> {
    let mut children = Vec::new();
    for shard in &plan.shards {
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .arg("--plan")
            .arg(plan_file)
            .arg("--shard")
            .arg(shard.index.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {} ({})", shard.index, exe.display()))?;
        let stdout = child.stdout.take().context("worker stdout")?;
        children.push((child, BufReader::new(stdout).lines()));
    }
    let mut sockets = 0;
    for (i, (_, lines)) in children.iter_mut().enumerate() {
        match next_line(lines, Duration::from_secs(600)).await.with_context(|| format!("worker {i} getting ready"))? {
            WorkerLine::Ready { sockets: n } => sockets += n,
            other => anyhow::bail!("worker {i} said {other:?} before it was ready"),
        }
    }
    progress(&format!("{} workers ready, {sockets} sockets open; load starts", children.len()));
    for (child, _) in &mut children {
        let stdin = child.stdin.as_mut().context("worker stdin")?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    }
    let run_secs = plan.steps.len() as u64 * plan.step_secs + 120;
    let mut steps: Vec<Records> = plan.steps.iter().map(|_| Records::default()).collect();
    let mut sockets_closed = 0;
    for (i, (child, lines)) in children.iter_mut().enumerate() {
        match next_line(lines, Duration::from_secs(run_secs)).await.with_context(|| format!("worker {i} finishing"))? {
            WorkerLine::Done { steps: theirs, sockets_closed: closed } => {
                anyhow::ensure!(theirs.len() == steps.len(), "worker {i} reported {} steps", theirs.len());
                for (mine, wire) in steps.iter_mut().zip(&theirs) {
                    mine.merge(&Records::from_wire(wire).with_context(|| format!("worker {i}'s records"))?);
                }
                sockets_closed += closed;
            }
            other => anyhow::bail!("worker {i} said {other:?} instead of its results"),
        }
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "worker {i} exited with {status}");
    }
    Ok(Measured { steps, sockets, sockets_closed })
}

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    within: Duration,
) -> anyhow::Result<WorkerLine> {
    let line = tokio::time::timeout(within, lines.next_line())
        .await
        .with_context(|| format!("no answer within {within:?}"))??
        .context("it exited without answering (its stderr above says why)")?;
    serde_json::from_str(&line).with_context(|| format!("not a worker line: {line:.200}"))
}

/// The run's folder for its plan (which holds tokens: git-ignored `.local`, never committed).
pub fn run_dir(root: &Path, tag: &str) -> PathBuf {
    root.join(".local/bench/load").join(tag)
}

/// Writes `plan` to its run's folder under `root`, for the workers; the file.
pub fn write_plan(root: &Path, plan: &Plan) -> anyhow::Result<PathBuf> {
    let dir = run_dir(root, &plan.tag);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("plan.json");
    std::fs::write(&file, serde_json::to_vec(plan)?).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Merged steps as the report's steps.
pub fn steps(plan: &Plan, measured: &Measured) -> Vec<Step> {
    plan.steps.iter().zip(&measured.steps).map(|(&m, r)| step(m, plan.users.len(), plan.step_secs as f64, r)).collect()
}

/// Per-tier throughput at the highest step, for the baselines' ratios.
pub fn top_per_sec(steps: &[Step]) -> BTreeMap<String, f64> {
    steps.last().map(|s| s.tiers.iter().map(|(t, f)| (t.clone(), f.per_sec)).collect()).unwrap_or_default()
}

/// The Agora tier a raw engine bounds: Kafka's producer and the document store's inserts the
/// command tier (a command is one durable append, then one projected write), Redis the query
/// tier (a cached read), Kafka's consumer the push tier (pushes are consumed off the log).
pub fn baseline_tier(engine: &str, what: &str) -> &'static str {
    let (engine, what) = (engine.to_ascii_lowercase(), what.to_ascii_lowercase());
    if engine.contains("redis") {
        "query"
    } else if engine.contains("kafka") && what.contains("consum") {
        "push"
    } else {
        "command"
    }
}

#[cfg(test)]
mod tests {
    use super::super::mix::Op;
    use super::super::record::Outcome;
    use super::*;

    #[test]
    fn a_step_holds_its_tiers_and_lags_with_rates_over_its_length() {
        let mut r = Records::default();
        for i in 1..=100 {
            r.op(Op::Feed.name()).record(Duration::from_millis(i), Outcome::Ok);
        }
        r.op(Op::Post.name()).record(Duration::from_millis(5), Outcome::Ok);
        r.op(Op::Post.name()).record(Duration::from_millis(5), Outcome::Failed);
        r.op(LAG_VISIBLE).record(Duration::from_millis(40), Outcome::Ok);
        let s = step(2.0, 1_000, 10.0, &r);
        assert_eq!(s.tiers["query"].count, 100);
        assert!((s.tiers["query"].per_sec - 10.0).abs() < 1e-9);
        assert!((s.tiers["query"].latency.p50_ms - 50.0).abs() < 0.1, "{:?}", s.tiers["query"].latency);
        assert!((s.tiers["command"].error_rate - 0.5).abs() < 1e-9);
        assert_eq!(s.lags[LAG_VISIBLE].count, 1);
        assert_eq!(s.ops.keys().collect::<Vec<_>>(), [Op::Feed.name(), Op::Post.name()]);
        assert!(!s.tiers.contains_key("lag"));
        assert!((s.offered_per_sec - rates(1_000, 2.0).iter().sum::<f64>()).abs() < 1e-9);
    }

    #[test]
    fn each_engine_bounds_the_tier_that_runs_on_it() {
        assert_eq!(baseline_tier("Kafka", "ProducerPerformance, acks=all"), "command");
        assert_eq!(baseline_tier("Kafka", "ConsumerPerformance"), "push");
        assert_eq!(baseline_tier("Redis", "redis-benchmark GET"), "query");
        assert_eq!(baseline_tier("FerretDB", "insert_many of 500"), "command");
    }
}
