//! The load generator of virtual users and its report (issue 6).
//!
//! ```text
//! agora-load run [--preset 1k|10k|100k] [--step-secs N] [--steps 0.5,1,2] [--json FILE]
//!                [--docs DIR] [--no-baselines] [--per-process N]
//! agora-load report [--json docs/benchmarks.json] [--docs docs] [--check]
//! agora-load worker --plan FILE --shard I        (started by `run`, one per shard)
//! ```
//! `run` needs the system up (`deploy/local/system.sh up`): it registers the preset's users
//! through the public API, applies a power-law follow graph, seeds posts and games, starts one
//! worker process per shard of at most 16,000 users (a process here may hold 20,000 files;
//! `--per-process` lowers that, to spread a run over more processes and cores),
//! runs each load step with every user holding a WebSocket, measures the raw engine baselines
//! and writes the JSON; with `--docs`, also the markdown and plots (`report` does that from the
//! JSON alone). `report --check` writes nothing and fails, naming the files, if what is there
//! differs from what the JSON gives.

use agora_loadtests::load::baselines;
use agora_loadtests::load::mix::{PRESETS, preset};
use agora_loadtests::load::plan::{Plan, WorkerLine};
use agora_loadtests::load::report::{Baseline, RunReport, files, stale};
use agora_loadtests::load::split::Limits;
use agora_loadtests::load::{run, worker};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn say(message: &str) {
    eprintln!("[load {:>6.1}s] {message}", START.get_or_init(Instant::now).elapsed().as_secs_f64());
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn main() -> anyhow::Result<()> {
    START.get_or_init(Instant::now);
    let mut args = std::env::args().skip(1);
    let usage = "usage: agora-load run|report|worker [flags] (see the module docs)";
    match args.next().as_deref() {
        Some("report") => report(args),
        Some("run") => tokio::runtime::Runtime::new()?.block_on(run_cmd(args)),
        Some("worker") => tokio::runtime::Runtime::new()?.block_on(worker_cmd(args)),
        other => anyhow::bail!("{usage} (got {other:?})"),
    }
}

fn report(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let (mut json, mut docs, mut check) = (PathBuf::from("docs/benchmarks.json"), PathBuf::from("docs"), false);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--json" => json = args.next().context("--json needs a file")?.into(),
            "--docs" => docs = args.next().context("--docs needs a folder")?.into(),
            "--check" => check = true,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let text = std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let report: RunReport =
        serde_json::from_str(&text).with_context(|| format!("{} is not a run report", json.display()))?;
    if check {
        let stale: Vec<String> =
            stale(&report, &docs).iter().map(|name| docs.join(name).display().to_string()).collect();
        anyhow::ensure!(
            stale.is_empty(),
            "these differ from what {} gives (regenerate with `agora-load report`, never edit by hand): {}",
            json.display(),
            stale.join(", ")
        );
        return Ok(());
    }
    write_docs(&report, &docs)
}

fn write_docs(report: &RunReport, docs: &Path) -> anyhow::Result<()> {
    for (name, contents) in files(report) {
        let path = docs.join(&name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        say(&format!("wrote {}", path.display()));
    }
    Ok(())
}

async fn run_cmd(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut chosen = preset("1k").context("the 1k preset")?;
    let (mut step_secs, mut steps, mut json, mut docs, mut with_baselines) =
        (None, None, PathBuf::from(".local/bench/load.json"), None, true);
    let mut limits = Limits::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--preset" => {
                let name = value()?;
                chosen = preset(&name).with_context(|| {
                    let names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
                    format!("no preset {name}; there are {}", names.join(", "))
                })?;
            }
            "--step-secs" => {
                let v: u64 = value()?.parse().context("--step-secs takes whole seconds")?;
                anyhow::ensure!((1..=600).contains(&v), "--step-secs must be 1-600");
                step_secs = Some(v);
            }
            "--steps" => {
                let v: Result<Vec<f64>, _> = value()?.split(',').map(|s| s.trim().parse::<f64>()).collect();
                let v = v.context("--steps takes multiples such as 0.5,1,2")?;
                anyhow::ensure!(
                    !v.is_empty() && v.len() <= 20 && v.iter().all(|m| *m > 0.0 && *m <= 100.0),
                    "--steps takes 1-20 multiples in (0, 100]"
                );
                steps = Some(v);
            }
            "--json" => json = value()?.into(),
            "--docs" => docs = Some(PathBuf::from(value()?)),
            "--no-baselines" => with_baselines = false,
            "--per-process" => {
                let v: usize = value()?.parse().context("--per-process takes a number of users")?;
                let most = Limits::default().per_process;
                anyhow::ensure!(
                    (1..=most).contains(&v),
                    "--per-process must be 1-{most} (a process here may hold 20,000 open files)"
                );
                limits.per_process = v;
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let ep = run::endpoints_from_env()?;
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let seed = std::env::var("AGORA_LOAD_SEED")
        .ok()
        .map(|s| s.parse::<u64>().context("AGORA_LOAD_SEED is a number"))
        .transpose()?
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let steps = steps.unwrap_or_else(|| chosen.steps.to_vec());
    let step_secs = step_secs.unwrap_or(chosen.step_secs);
    say(&format!(
        "preset {}: {} users, steps {:?} x {step_secs} s, against {} / {} / {}",
        chosen.name, chosen.users, steps, ep.command, ep.query, ep.realtime
    ));
    let setup = run::setup(&ep, &chosen, (steps, step_secs), limits, seed, &say).await?;
    let plan = setup.plan;
    let plan_file = run::write_plan(Path::new("."), &plan)?;
    let exe = std::env::current_exe().context("this program's path")?;
    let measured = run::drive(&exe, &plan_file, &plan, &say).await?;
    let report_steps = run::steps(&plan, &measured);
    for s in &report_steps {
        for (tier, f) in s.tiers.iter().chain(&s.lags) {
            say(&format!(
                "{}x {tier}: {} at {:.1}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {:.3} %",
                s.multiple,
                f.count,
                f.per_sec,
                f.latency.p50_ms,
                f.latency.p99_ms,
                f.latency.p999_ms,
                f.error_rate * 100.0
            ));
        }
    }
    let mut baseline_rows = Vec::new();
    if with_baselines {
        let top = run::top_per_sec(&report_steps);
        let config = baselines::Config::from_env()?;
        for result in baselines::run_all(&config, say).await {
            match result {
                Ok(m) => {
                    say(&format!("baseline {} {}: {:.0}/s", m.engine, m.what, m.per_sec));
                    let tier = run::baseline_tier(&m.engine, &m.what);
                    baseline_rows.push(Baseline {
                        engine: m.engine,
                        what: m.what,
                        per_sec: m.per_sec,
                        agora_tier: tier.to_owned(),
                        agora_per_sec: top.get(tier).copied().unwrap_or(0.0),
                    });
                }
                Err(e) => say(&format!("a baseline failed: {e:#}")),
            }
        }
    }
    let report = RunReport {
        schema: 1,
        started_at,
        machine: run::machine(),
        preset: chosen.name.to_owned(),
        users: plan.users.len() as u64,
        follows: setup.follows as u64,
        sockets: measured.sockets,
        generator_processes: plan.shards.len() as u32,
        steps: report_steps,
        baselines: baseline_rows,
    };
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    say(&format!("wrote {}", json.display()));
    if measured.sockets_closed > 0 {
        say(&format!("{} sockets were closed by the server during the run", measured.sockets_closed));
    }
    if let Some(docs) = docs {
        write_docs(&report, &docs)?;
    }
    Ok(())
}

async fn worker_cmd(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let (mut plan_file, mut shard) = (None, None);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--plan" => plan_file = Some(PathBuf::from(args.next().context("--plan needs a file")?)),
            "--shard" => shard = Some(args.next().context("--shard needs a number")?.parse::<usize>()?),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let plan_file = plan_file.context("--plan is required")?;
    let shard = shard.context("--shard is required")?;
    let plan: Plan = serde_json::from_slice(&std::fs::read(&plan_file)?)
        .with_context(|| format!("{} is not a plan", plan_file.display()))?;
    for url in [&plan.endpoints.command, &plan.endpoints.query, &plan.endpoints.realtime] {
        agora_loadtests::require_loopback(url)?;
    }
    let line = |l: &WorkerLine| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(l)?)?;
        out.flush()?;
        Ok(())
    };
    let ready = |sockets| {
        if let Err(e) = line(&WorkerLine::Ready { sockets }) {
            say(&format!("telling the coordinator: {e:#}"));
        }
    };
    let go = async {
        let mut input = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(tokio::io::stdin()), &mut input).await?;
        anyhow::ensure!(input.trim() == "go", "expected go from the coordinator, got {input:?}");
        Ok(())
    };
    let outcomes = worker::run(plan, shard, ready, go, say).await?;
    line(&WorkerLine::Done { steps: outcomes.steps, sockets_closed: outcomes.sockets_closed })
}
