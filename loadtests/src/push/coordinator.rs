//! The benchmark's phases, per stack (Socket.IO first: Agora's last phase runs at a multiple of
//! the rate where Socket.IO's p99 passed the threshold):
//!
//! 1. **memory**: one server process, sockets opened in steps (default 10K, then 19K): RSS
//!    per socket = (RSS after the step - RSS before any socket) / sockets open;
//! 2. **fleet**: `--sockets` (default 100K) over `--servers` processes; RSS per socket the same way;
//! 3. **steady**: an open-loop schedule at `--steady-rate` events/s for `--steady-secs`:
//!    latency percentiles, frames lost, CPU of the servers (and of Redis, Kafka, the emitters
//!    and the clients beside them) and frames delivered per server CPU-second;
//! 4. **ramp** (Socket.IO; Agora with `--agora-ramp`): rates ×`--ramp-factor` from
//!    `--ramp-start`, `--ramp-secs` each, until p99 passes `--threshold-ms` (frames lost
//!    count as late): that rate is R;
//! 5. **at multiple** (Agora): `--multiple` × R for `--ramp-secs`.
//!
//! Every phase is bounded in time; the whole run by `--max-minutes`. What was actually run
//! (counts that were scaled down, sockets that did not open) is in the report.

use super::client::MAX_SOCKETS;
use super::feed::{self, Feeder, Rng};
use super::fleet::{self, ClientProc, Proc, Settings, Sources};
use super::procfs::{self, CpuMark};
use super::wire::{self, Stack};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stacks: Vec<Stack>,
    pub memory_steps: Vec<u64>,
    pub sockets: u64,
    pub servers: usize,
    /// How many of Agora's server processes also route (the rest only hold sockets).
    pub routers: usize,
    pub per_client: u64,
    pub per_source: u64,
    pub concurrency: usize,
    pub steady_rate: f64,
    pub steady_secs: f64,
    pub ramp_start: f64,
    pub ramp_factor: f64,
    pub ramp_max: f64,
    pub ramp_secs: f64,
    pub threshold_ms: f64,
    pub multiple: f64,
    /// R when Socket.IO is not run (`--knee-rate`).
    pub knee_rate: Option<f64>,
    pub agora_ramp: bool,
    pub warmup_rate: f64,
    pub drain_secs: f64,
    /// After a phase with frames left behind, how long to wait at most for them to stop coming.
    pub quiesce_secs: f64,
    pub settle_secs: f64,
    pub connect_secs: u64,
    pub min_free_mib: u64,
    pub emitters: usize,
    pub max_minutes: u64,
    pub kafka_pid: Option<u32>,
}

impl Plan {
    pub fn params(&self) -> Value {
        json!({
            "stacks": self.stacks.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "memory_steps": self.memory_steps,
            "sockets": self.sockets,
            "servers": self.servers,
            "agora_routers": self.routers,
            "sockets_per_client_process": self.per_client,
            "sockets_per_source_address": self.per_source,
            "connect_concurrency_per_client": self.concurrency,
            "steady_rate": self.steady_rate,
            "steady_secs": self.steady_secs,
            "ramp_start": self.ramp_start,
            "ramp_factor": self.ramp_factor,
            "ramp_max": self.ramp_max,
            "ramp_secs": self.ramp_secs,
            "threshold_ms": self.threshold_ms,
            "multiple": self.multiple,
            "knee_rate_given": self.knee_rate,
            "agora_ramp": self.agora_ramp,
            "warmup_rate": self.warmup_rate,
            "drain_secs": self.drain_secs,
            "quiesce_secs": self.quiesce_secs,
            "settle_secs": self.settle_secs,
            "connect_secs": self.connect_secs,
            "min_free_mib": self.min_free_mib,
            "emitters": self.emitters,
            "max_minutes": self.max_minutes,
        })
    }
}

/// The report, shared so that what was measured survives an error or a signal.
#[derive(Debug, Clone, Default)]
pub struct Report(Arc<Mutex<Value>>);

impl Report {
    pub fn set(&self, path: &[&str], v: Value) {
        let mut root = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = &mut *root;
        for key in path {
            // Indexing a null or an object by a key inserts it; anything else becomes an object.
            if !(at.is_object() || at.is_null()) {
                *at = json!({});
            }
            at = &mut at[*key];
        }
        *at = v;
    }

    pub fn push(&self, path: &[&str], v: Value) {
        let mut list = self.get(path);
        if !list.is_array() {
            list = json!([]);
        }
        if let Some(a) = list.as_array_mut() {
            a.push(v);
        }
        self.set(path, list);
    }

    pub fn get(&self, path: &[&str]) -> Value {
        let root = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = &*root;
        for key in path {
            at = &at[*key];
        }
        at.clone()
    }

    pub fn note(&self, text: String) {
        eprintln!("[bench-push] note: {text}");
        self.push(&["notes"], Value::String(text));
    }

    pub fn value(&self) -> Value {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn say(text: impl AsRef<str>) {
    eprintln!("[bench-push] {}", text.as_ref());
}

struct Ctx {
    plan: Plan,
    settings: Settings,
    report: Report,
    http: reqwest::Client,
    redis: redis::aio::MultiplexedConnection,
    redis_pid: Option<u32>,
    tck: u64,
    sources: Sources,
    next_phase: u32,
    rng: Rng,
    deadline: Instant,
}

impl Ctx {
    fn time_left(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            Instant::now() < self.deadline,
            "out of time (--max-minutes {}) before {what}",
            self.plan.max_minutes
        );
        Ok(())
    }

    fn phase(&mut self) -> u32 {
        self.next_phase += 1;
        self.next_phase
    }

    async fn redis_info(&mut self, section: &str, field: &str) -> Option<u64> {
        let info: String = redis::cmd("INFO").arg(section).query_async(&mut self.redis).await.ok()?;
        info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).and_then(|v| v.trim().parse().ok())
    }
}

/// A stack's running servers and clients.
struct Fleet {
    stack: Stack,
    servers: Vec<Proc>,
    clients: Vec<ClientProc>,
    /// Global indices of users whose socket is open.
    up: Vec<u64>,
}

impl Fleet {
    fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|p| p.port).collect()
    }

    fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().map(|p| p.pid).collect()
    }

    fn client_pids(&self) -> Vec<u32> {
        self.clients.iter().map(|c| c.proc.pid).collect()
    }

    async fn stop_clients(&mut self) {
        let clients = std::mem::take(&mut self.clients);
        fleet::stop_all(clients.into_iter().map(|c| c.proc).collect(), Duration::from_secs(5)).await;
        self.up.clear();
    }

    async fn stop(mut self) {
        self.stop_clients().await;
        fleet::stop_all(std::mem::take(&mut self.servers), Duration::from_secs(15)).await;
    }
}

async fn start_servers(ctx: &Ctx, stack: Stack, n: usize, tag: &str) -> anyhow::Result<Vec<Proc>> {
    match stack {
        Stack::Agora => fleet::start_realtime(&ctx.settings, n, ctx.plan.routers, tag, &ctx.http).await,
        Stack::SocketIo => fleet::start_socketio(&ctx.settings, n, tag).await,
    }
}

/// Opens sockets for users `first..first + count`, adding client processes to `fleet`, and
/// waits until every client has tried every socket (or the time, or memory, bound stops it).
async fn connect(ctx: &mut Ctx, fleet: &mut Fleet, first: u64, count: u64, tag: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut new = fleet::start_clients(
        &ctx.settings,
        fleet.stack,
        &fleet.ports(),
        first,
        count,
        ctx.plan.per_client,
        &mut ctx.sources,
        ctx.plan.concurrency,
        tag,
    )
    .await?;
    let bound = started + Duration::from_secs(ctx.plan.connect_secs);
    let mut stopped: Option<String> = None;
    let mut last_print = Instant::now();
    let mut statuses;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        statuses = Vec::new();
        for c in fleet.clients.iter_mut().chain(new.iter_mut()) {
            statuses.push(c.ask("status").await?);
        }
        let open: u64 = statuses.iter().map(|s| s["open"].as_u64().unwrap_or(0)).sum();
        let connecting = statuses.iter().any(|s| s["connecting"] == true);
        if !connecting {
            break;
        }
        let free_mib = procfs::meminfo_kib("MemAvailable").unwrap_or(u64::MAX) / 1024;
        if stopped.is_none() && (free_mib < ctx.plan.min_free_mib || Instant::now() > bound) {
            let why = if free_mib < ctx.plan.min_free_mib {
                format!("MemAvailable {free_mib} MiB < --min-free-mib {}", ctx.plan.min_free_mib)
            } else {
                format!("--connect-secs {} passed", ctx.plan.connect_secs)
            };
            say(format!("{tag}: stopping at {open} open sockets: {why}"));
            for c in new.iter_mut() {
                c.ask("stop").await?;
            }
            stopped = Some(why);
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            say(format!("{tag}: {open} sockets open ({:.0} s)", started.elapsed().as_secs_f64()));
            last_print = Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < bound + Duration::from_secs(60),
            "{tag}: clients still connecting 60 s after stop"
        );
    }
    fleet.clients.append(&mut new);
    fleet.up = up_users(&fleet.clients, &statuses);
    let failed: u64 = statuses.iter().map(|s| s["failed"].as_u64().unwrap_or(0)).sum();
    let first_error = statuses.iter().find_map(|s| s["first_error"].as_str().map(str::to_owned));
    if let Some(why) = &stopped {
        ctx.report.note(format!("{tag}: connecting stopped early: {why}; {} sockets open", fleet.up.len()));
    }
    Ok(json!({
        "requested": first + count,
        "open": fleet.up.len(),
        "failed": failed,
        "first_error": first_error,
        "stopped_early": stopped,
        "connect_secs": started.elapsed().as_secs_f64(),
        "client_processes": fleet.clients.len(),
        "client_rss_kib": statuses.iter().map(|s| s["rss_kib"].as_u64().unwrap_or(0)).sum::<u64>(),
    }))
}

/// The users with an open socket: every client's range minus its `down` ranges.
fn up_users(clients: &[ClientProc], statuses: &[Value]) -> Vec<u64> {
    let mut up = Vec::new();
    for (c, s) in clients.iter().zip(statuses) {
        let mut down: Vec<(u64, u64)> = s["down"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| Some((r[0].as_u64()?, r[1].as_u64()?))).collect())
            .unwrap_or_default();
        down.sort_unstable();
        let mut d = down.iter().peekable();
        for u in c.first..c.first + c.count {
            while d.peek().is_some_and(|&&(_, end)| end <= u) {
                d.next();
            }
            if !d.peek().is_some_and(|&&(start, end)| start <= u && u < end) {
                up.push(u);
            }
        }
    }
    up
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn latency(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": h.mean() / 1e3,
    })
}

/// One measured schedule: the figures of a phase.
async fn measure(
    ctx: &mut Ctx,
    fleet: &mut Fleet,
    feeder: &mut Feeder,
    name: &str,
    rate: f64,
    secs: f64,
) -> anyhow::Result<Value> {
    // The last phase of a fleet needs no quiet after it: the fleet stops.
    let last = name == "at_multiple";
    ctx.time_left(name)?;
    let phase = ctx.phase();
    say(format!("{} {name}: {rate:.0} events/s for {secs:.0} s over {} sockets", fleet.stack.as_str(), fleet.up.len()));
    let servers = fleet.server_pids();
    let redis: Vec<u32> = ctx.redis_pid.into_iter().collect();
    let kafka: Vec<u32> = match fleet.stack {
        Stack::Agora => ctx.plan.kafka_pid.into_iter().collect(),
        Stack::SocketIo => Vec::new(),
    };
    let emitters = feeder.emitter_pids();
    let clients = fleet.client_pids();
    let marks: Vec<CpuMark> =
        [&servers, &redis, &kafka, &emitters, &clients].iter().map(|p| CpuMark::take(p)).collect();
    let started = Instant::now();
    let failed_before = feeder.failed();
    let sent = feed::run_schedule(feeder, ctx.settings.seed, &fleet.up, &mut ctx.rng, phase, rate, secs).await?;
    let expected = sent.events * 2;
    // Drain: until every frame has arrived, or the drain bound.
    let drain_started = Instant::now();
    let mut received;
    loop {
        received = 0;
        for c in fleet.clients.iter_mut() {
            received += c.ask(&format!("count {phase}")).await?["received"].as_u64().unwrap_or(0);
        }
        if received >= expected || drain_started.elapsed().as_secs_f64() > ctx.plan.drain_secs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let window = started.elapsed().as_secs_f64();
    let cpu: Vec<Vec<f64>> = marks.iter().map(|m| m.seconds_since(ctx.tck)).collect();
    let mut hist = wire::histogram();
    let mut open = 0;
    received = 0;
    for c in fleet.clients.iter_mut() {
        let r = c.ask(&format!("report {phase}")).await?;
        received += r["received"].as_u64().unwrap_or(0);
        open += r["open"].as_u64().unwrap_or(0);
        if let Some(text) = r["hist"].as_str() {
            hist.add(wire::decode_histogram(text)?).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
        }
    }
    let lost = expected.saturating_sub(received);
    let (late, quiesce_secs, backlog_cleared) =
        if lost > 0 && !last { quiesce(ctx, fleet, phase).await? } else { (0, 0.0, lost == 0) };
    if !backlog_cleared && !last {
        ctx.report.note(format!(
            "{} {name} at {rate}: backlog left after --quiesce-secs; the next phase starts behind",
            fleet.stack.as_str()
        ));
    }
    // A lost frame counts as later than anything measured: as late as the drain bound.
    let mut with_lost = hist.clone();
    let cap_us = ((window + 1.0) * 1e6) as u64;
    with_lost.saturating_record_n(cap_us.min(wire::MAX_LATENCY_US), lost);
    let p99_lost = if with_lost.is_empty() { None } else { Some(ms(with_lost.value_at_quantile(0.99))) };
    let sum = |v: &Vec<f64>| v.iter().sum::<f64>();
    let server_cpu = sum(&cpu[0]);
    let per = |n: u64, cpu: f64| if cpu > 0.0 { Some(n as f64 / cpu) } else { None };
    let r = json!({
        "name": name,
        "phase": phase,
        "rate": rate,
        "secs": secs,
        "sockets_open_before": fleet.up.len(),
        "sockets_open_after": open,
        "events_sent": sent.events,
        "events_skipped": sent.skipped,
        "events_not_acknowledged_by_kafka": feeder.failed() - failed_before,
        "generator_max_behind_ms": sent.max_behind_ms,
        "send_secs": sent.secs,
        "window_secs": window,
        "frames_expected": expected,
        "frames_received": received,
        "frames_lost": lost,
        "lost_ratio": if expected > 0 { lost as f64 / expected as f64 } else { 0.0 },
        "frames_late_after_drain": late,
        "frames_never_received": lost.saturating_sub(late),
        "quiesce_secs": quiesce_secs,
        "backlog_cleared": backlog_cleared,
        "latency_ms": latency(&hist),
        "p99_ms_lost_as_late": p99_lost,
        "cpu_secs": {
            "servers": server_cpu,
            "per_server": cpu[0],
            "redis": sum(&cpu[1]),
            "kafka": if kafka.is_empty() { Value::Null } else { json!(sum(&cpu[2])) },
            "emitters": if emitters.is_empty() { Value::Null } else { json!(sum(&cpu[3])) },
            "clients": sum(&cpu[4]),
        },
        "server_cpu_utilisation": server_cpu / window,
        "frames_per_server_cpu_sec": per(received, server_cpu),
        "events_per_server_cpu_sec": per(received / 2, server_cpu),
        "frames_per_cpu_sec_servers_redis_kafka_emitters": per(received, server_cpu + sum(&cpu[1]) + sum(&cpu[2]) + sum(&cpu[3])),
    });
    say(format!(
        "  -> received {received}/{expected} (lost {lost}), p50 {} ms, p99 {} ms, server CPU {server_cpu:.2} s, {} frames/server-CPU-s",
        r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["frames_per_server_cpu_sec"]
    ));
    Ok(r)
}

/// After a phase that left frames behind: waits until they stop arriving (2 s without one, at
/// most `bound` seconds), so the next phase does not pay for this one's backlog. How many
/// arrived after the drain, and how long it took.
/// For Agora, also until the router group has no lag left on the conversations topic.
async fn quiesce(ctx: &Ctx, fleet: &mut Fleet, phase: u32) -> anyhow::Result<(u64, f64, bool)> {
    let started = Instant::now();
    let bound = ctx.plan.quiesce_secs;
    let mut last = 0;
    let mut still = Instant::now();
    let clear = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut n = 0;
        for c in fleet.clients.iter_mut() {
            n += c.ask(&format!("count {phase}")).await?["received"].as_u64().unwrap_or(0);
        }
        if n != last {
            last = n;
            still = Instant::now();
        }
        let routed = fleet.stack == Stack::SocketIo || router_lag(&ctx.settings).await.is_some_and(|l| l == 0);
        if routed && still.elapsed() >= Duration::from_secs(2) {
            break true;
        }
        if started.elapsed().as_secs_f64() > bound {
            break false;
        }
    };
    for c in fleet.clients.iter_mut() {
        c.ask(&format!("report {phase}")).await?;
    }
    say(format!(
        "  -> {last} more frames arrived after the drain ({:.1} s to quiesce{})",
        started.elapsed().as_secs_f64(),
        if clear { "" } else { "; stopped by --quiesce-secs, backlog left" }
    ));
    Ok((last, started.elapsed().as_secs_f64(), clear))
}

/// Events of the conversations topic the Agora router group has not committed yet.
async fn router_lag(s: &Settings) -> Option<i64> {
    let brokers = s.kafka.clone();
    let group = format!("{}-router", s.prefix);
    let topics = vec![
        agora_schemas::aggregate::Topics::new(&s.prefix).of(agora_schemas::aggregate::AggregateType::Conversation),
    ];
    let rows = tokio::task::spawn_blocking(move || {
        agora_platform::kafka::lag::group_lag(&brokers, &group, &topics, Duration::from_secs(10))
    })
    .await
    .ok()?
    .ok()?;
    Some(rows.iter().map(|r| r.lag()).sum())
}

/// Low-rate schedules until one arrives whole: every server subscribed, Agora's router group
/// settled on its partitions.
async fn warm_up(ctx: &mut Ctx, fleet: &mut Fleet, feeder: &mut Feeder) -> anyhow::Result<Value> {
    let mut tries = Vec::new();
    for _ in 0..10 {
        let r = measure(ctx, fleet, feeder, "warm-up", ctx.plan.warmup_rate, 3.0).await?;
        let whole = r["frames_lost"] == 0;
        tries.push(json!({"lost": r["frames_lost"], "p99_ms": r["latency_ms"]["p99"]}));
        if whole {
            return Ok(json!({"rounds": tries, "settled": true}));
        }
    }
    ctx.report.note(format!("{}: warm-up never arrived whole in 10 rounds", fleet.stack.as_str()));
    Ok(json!({"rounds": tries, "settled": false}))
}

fn passes_threshold(r: &Value, threshold_ms: f64) -> bool {
    r["p99_ms_lost_as_late"].as_f64().is_none_or(|p| p > threshold_ms)
}

async fn memory_phase(ctx: &mut Ctx, stack: Stack) -> anyhow::Result<()> {
    let key = stack.as_str();
    let steps: Vec<u64> = ctx.plan.memory_steps.iter().map(|&s| s.min(MAX_SOCKETS)).collect();
    if steps.iter().zip(&ctx.plan.memory_steps).any(|(a, b)| a != b) {
        ctx.report.note(format!("memory steps capped at {MAX_SOCKETS} sockets (20,000 open files per process)"));
    }
    ctx.time_left("the memory phase")?;
    let servers = start_servers(ctx, stack, 1, &format!("{key}-mem")).await?;
    let pid = servers[0].pid;
    let mut fleet = Fleet { stack, servers, clients: Vec::new(), up: Vec::new() };
    let redis0 = ctx.redis_info("memory", "used_memory").await;
    let rss0 = procfs::settled_rss(&[pid], Duration::from_secs_f64(ctx.plan.settle_secs)).await[0];
    ctx.report.set(&[key, "memory", "server_rss_kib_before"], json!(rss0));
    say(format!("{key} memory: one server, RSS {rss0} KiB before any socket"));
    let mut done = 0;
    let result = async {
        for (i, &target) in steps.iter().enumerate() {
            if target <= done {
                continue;
            }
            let c = connect(ctx, &mut fleet, done, target - done, &format!("{key}-mem{i}")).await?;
            done = target;
            let rss = procfs::settled_rss(&[pid], Duration::from_secs_f64(ctx.plan.settle_secs)).await[0];
            let redis1 = ctx.redis_info("memory", "used_memory").await;
            let open = fleet.up.len() as u64;
            let per = |kib: u64| if open > 0 { Some(kib as f64 * 1024.0 / open as f64) } else { None };
            let step = json!({
                "sockets_requested": target,
                "sockets_open": open,
                "connect": c,
                "server_rss_kib": rss,
                "server_hwm_kib": procfs::status_kib(pid, "VmHWM"),
                "server_open_fds": procfs::open_fds(pid),
                "bytes_per_socket": per(rss.saturating_sub(rss0)),
                "redis_bytes_per_socket": match (redis0, redis1) {
                    (Some(a), Some(b)) if open > 0 => json!(b.saturating_sub(a) as f64 / open as f64),
                    _ => Value::Null,
                },
            });
            say(format!("{key} memory: {open} sockets, RSS {rss} KiB, {} bytes/socket", step["bytes_per_socket"]));
            ctx.report.push(&[key, "memory", "steps"], step);
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    fleet.stop().await;
    result
}

async fn fleet_phases(ctx: &mut Ctx, stack: Stack) -> anyhow::Result<()> {
    let key = stack.as_str();
    ctx.time_left("the fleet phase")?;
    let servers_wanted = ctx.plan.servers.max(1);
    let per_server = ctx.plan.sockets.div_ceil(servers_wanted as u64);
    anyhow::ensure!(
        per_server <= MAX_SOCKETS,
        "{} sockets over {servers_wanted} servers is {per_server} a process: over {MAX_SOCKETS} (20,000 open files); use more --servers",
        ctx.plan.sockets
    );
    let servers = start_servers(ctx, stack, servers_wanted, &format!("{key}-fleet")).await?;
    let pids: Vec<u32> = servers.iter().map(|p| p.pid).collect();
    let mut fleet = Fleet { stack, servers, clients: Vec::new(), up: Vec::new() };
    let mut feeder = match stack {
        Stack::Agora => Feeder::kafka(&ctx.settings.kafka, &ctx.settings.prefix)?,
        Stack::SocketIo => {
            let mut emitters = Vec::new();
            for i in 0..ctx.plan.emitters.max(1) {
                emitters.push(fleet::start_emitter(&ctx.settings, i).await?);
            }
            Feeder::socketio(emitters)?
        }
    };
    let result = async {
        let redis0 = ctx.redis_info("memory", "used_memory").await;
        let rss0 = procfs::settled_rss(&pids, Duration::from_secs_f64(ctx.plan.settle_secs)).await;
        let c = connect(ctx, &mut fleet, 0, ctx.plan.sockets, &format!("{key}-fleet")).await?;
        let rss1 = procfs::settled_rss(&pids, Duration::from_secs_f64(ctx.plan.settle_secs)).await;
        let redis1 = ctx.redis_info("memory", "used_memory").await;
        let open = fleet.up.len() as u64;
        let ports = fleet.ports();
        let per_server: Vec<Value> = fleet
            .servers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let sockets = fleet.up.iter().filter(|&&u| (u % ports.len() as u64) as usize == i).count();
                json!({
                    "pid": p.pid, "port": p.port, "sockets": sockets,
                    "rss_kib_before": rss0[i], "rss_kib_after": rss1[i],
                    "open_fds": procfs::open_fds(p.pid),
                    "bytes_per_socket": if sockets > 0 { json!(rss1[i].saturating_sub(rss0[i]) as f64 * 1024.0 / sockets as f64) } else { Value::Null },
                })
            })
            .collect();
        let delta: u64 = rss1.iter().zip(&rss0).map(|(a, b)| a.saturating_sub(*b)).sum();
        let fleet_v = json!({
            "servers": fleet.servers.len(),
            "sockets_requested": ctx.plan.sockets,
            "sockets_open": open,
            "connect": c,
            "per_server": per_server,
            "rss_kib_total_after": rss1.iter().sum::<u64>(),
            "bytes_per_socket": if open > 0 { json!(delta as f64 * 1024.0 / open as f64) } else { Value::Null },
            "redis_bytes_per_socket": match (redis0, redis1) {
                (Some(a), Some(b)) if open > 0 => json!(b.saturating_sub(a) as f64 / open as f64),
                _ => Value::Null,
            },
            "mem_available_mib": procfs::meminfo_kib("MemAvailable").map(|k| k / 1024),
        });
        say(format!("{key} fleet: {open} sockets over {} servers, {} bytes/socket", fleet.servers.len(), fleet_v["bytes_per_socket"]));
        ctx.report.set(&[key, "fleet"], fleet_v);
        anyhow::ensure!(open >= 2, "{key}: fewer than two sockets open");

        let w = warm_up(ctx, &mut fleet, &mut feeder).await?;
        ctx.report.set(&[key, "warm_up"], w);
        let steady = measure(ctx, &mut fleet, &mut feeder, "steady", ctx.plan.steady_rate, ctx.plan.steady_secs).await?;
        ctx.report.set(&[key, "steady"], steady);

        let ramp = stack == Stack::SocketIo || ctx.plan.agora_ramp;
        if ramp {
            let mut rate = ctx.plan.ramp_start;
            let mut knee = None;
            loop {
                let r = measure(ctx, &mut fleet, &mut feeder, "ramp", rate, ctx.plan.ramp_secs).await?;
                let over = passes_threshold(&r, ctx.plan.threshold_ms);
                ctx.report.push(&[key, "ramp", "steps"], r);
                if over {
                    knee = Some(rate);
                    break;
                }
                if rate * ctx.plan.ramp_factor > ctx.plan.ramp_max || ctx.time_left("the next ramp step").is_err() {
                    break;
                }
                rate *= ctx.plan.ramp_factor;
            }
            ctx.report.set(&[key, "ramp", "knee_rate"], json!(knee));
            ctx.report.set(&[key, "ramp", "highest_rate_tried"], json!(rate));
            if knee.is_none() {
                ctx.report.note(format!(
                    "{key}: p99 stayed under {} ms up to {rate} events/s (--ramp-max {}): its knee is above that",
                    ctx.plan.threshold_ms, ctx.plan.ramp_max
                ));
            }
        }
        // Last: Agora at the multiple (each phase before waited for its own backlog to clear).
        if stack == Stack::Agora {
            let sio = ctx.report.get(&["socketio", "ramp"]);
            let (knee, lower_bound) = match (sio["knee_rate"].as_f64(), sio["highest_rate_tried"].as_f64(), ctx.plan.knee_rate)
            {
                (_, _, Some(given)) => (Some(given), false),
                (Some(k), _, None) => (Some(k), false),
                (None, Some(highest), None) => (Some(highest), true),
                (None, None, None) => (None, false),
            };
            match knee {
                Some(knee) => {
                    let rate = knee * ctx.plan.multiple;
                    let mut r = measure(ctx, &mut fleet, &mut feeder, "at_multiple", rate, ctx.plan.ramp_secs).await?;
                    r["knee_rate"] = json!(knee);
                    r["knee_is_lower_bound"] = json!(lower_bound);
                    ctx.report.set(&[key, "at_multiple"], r);
                }
                None => ctx.report.note("agora: no Socket.IO knee rate (run socketio or give --knee-rate): at_multiple skipped".into()),
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    fleet.stop().await;
    feeder.finish().await;
    result
}

/// Deletes the run's Redis keys (`<prefix>:*`) with SCAN and UNLINK; how many.
pub async fn delete_keys(redis_url: &str, prefix: &str) -> anyhow::Result<u64> {
    let mut conn = redis::Client::open(redis_url)?.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(2000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(deleted);
        }
    }
}

fn machine(tck: u64) -> Value {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    json!({
        "host": host,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "mem_total_mib": procfs::meminfo_kib("MemTotal").map(|k| k / 1024),
        "mem_available_mib_at_start": procfs::meminfo_kib("MemAvailable").map(|k| k / 1024),
        "clk_tck": tck,
        "open_files_limit": std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
            l.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse::<u64>().ok()
        }),
    })
}

/// The three targets of issue 5, from what was measured.
fn targets(report: &Report, plan: &Plan) -> Value {
    let agora = report.get(&["agora"]);
    let sio = report.get(&["socketio"]);
    // No growth at all is no measurement (the process measured is not the one holding the
    // sockets: a `--realtime-bin` wrapper that keeps the server as its child), not a target met.
    let mem = agora["fleet"]["bytes_per_socket"].as_f64().filter(|m| *m > 0.0);
    let open = agora["fleet"]["sockets_open"].as_u64();
    let a = agora["steady"]["events_per_server_cpu_sec"].as_f64();
    let s = sio["steady"]["events_per_server_cpu_sec"].as_f64();
    let ratio = match (a, s) {
        (Some(a), Some(s)) if s > 0.0 => Some(a / s),
        _ => None,
    };
    let p99 = agora["at_multiple"]["p99_ms_lost_as_late"].as_f64();
    // Each rate both ramps ran, side by side.
    let empty = Vec::new();
    let agora_steps = agora["ramp"]["steps"].as_array().unwrap_or(&empty);
    let side_by_side: Vec<Value> = sio["ramp"]["steps"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|st| {
            let rate = st["rate"].as_f64()?;
            let ag = agora_steps.iter().find(|a| a["rate"].as_f64() == Some(rate))?;
            let (x, y) = (ag["events_per_server_cpu_sec"].as_f64(), st["events_per_server_cpu_sec"].as_f64());
            Some(json!({
                "rate": rate,
                "agora_p99_ms": ag["p99_ms_lost_as_late"], "socketio_p99_ms": st["p99_ms_lost_as_late"],
                "agora_events_per_server_cpu_sec": x, "socketio_events_per_server_cpu_sec": y,
                "ratio": match (x, y) { (Some(x), Some(y)) if y > 0.0 => json!(x / y), _ => Value::Null },
            }))
        })
        .collect();
    json!({
        "ramp_side_by_side": side_by_side,
        "sockets_on_this_machine": {
            "agora_sockets_open": open, "target": 100_000,
            "met": open.map(|o| o >= 100_000),
        },
        "memory_per_socket": {
            "agora_bytes": mem, "socketio_bytes": sio["fleet"]["bytes_per_socket"].as_f64(),
            "target_bytes": 4096, "ratio_to_target": mem.map(|m| m / 4096.0), "met": mem.map(|m| m <= 4096.0),
            "measured_over": "the fleet phase: RSS growth of all server processes / sockets open",
        },
        "events_per_cpu_second": {
            "agora": a, "socketio": s, "ratio": ratio, "target_ratio": 5, "met": ratio.map(|r| r >= 5.0),
            "measured_over": "the steady phase: frames received / 2 per CPU-second of the server processes",
        },
        "p99_at_multiple_of_socketio_knee": {
            "socketio_knee_rate": agora["at_multiple"]["knee_rate"].as_f64(),
            "knee_is_lower_bound": agora["at_multiple"]["knee_is_lower_bound"].as_bool(),
            "multiple": plan.multiple,
            "agora_rate": agora["at_multiple"]["rate"].as_f64(),
            "agora_p99_ms": p99, "target_ms": plan.threshold_ms,
            "ratio_to_target": p99.map(|p| p / plan.threshold_ms),
            "met": p99.map(|p| p < plan.threshold_ms),
            "lost_frames_count_as_late": true,
        },
    })
}

/// Runs the whole benchmark; the report, also when a phase failed (its error is in it).
pub async fn run(plan: Plan, settings: Settings, report: Report) -> anyhow::Result<Value> {
    let tck = procfs::clk_tck();
    let mut redis = redis::Client::open(settings.redis.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("connecting to redis")?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut redis).await?;
    let redis_pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok());
    let started = chrono::Utc::now();
    report.set(&["benchmark"], json!("push"));
    report.set(&["started_at"], json!(started.to_rfc3339()));
    report.set(&["machine"], machine(tck));
    report.set(&["params"], plan.params());
    report.set(&["prefix"], json!(settings.prefix));
    report.set(
        &["event"],
        json!(
            "one direct message between two connected users = 2 frames, one to each participant. Agora: a message.sent \
               event written to Kafka (<prefix>.conversations, keyed by conversation), routed by the realtime router \
               group into each user's Redis stream + channel. Socket.IO: emitter.js does \
               io.to('user:<from>').to('user:<to>').emit('message', m) through the Redis adapter (one PUBLISH; every \
               server receives it). Latency = client receive time - the event's planned send time (open loop)."
        ),
    );
    report.set(&["pids"], json!({"redis": redis_pid, "kafka": plan.kafka_pid}));
    let mut ctx = Ctx {
        deadline: Instant::now() + Duration::from_secs(plan.max_minutes * 60),
        plan: plan.clone(),
        settings,
        report: report.clone(),
        http: reqwest::Client::new(),
        redis,
        redis_pid,
        tck,
        sources: Sources { next: 2, per_source: plan.per_source },
        next_phase: 0,
        rng: Rng(0x9e37_79b9_7f4a_7c15 ^ plan.sockets),
    };
    // Socket.IO first: Agora's last phase runs at a multiple of Socket.IO's knee.
    let mut order = plan.stacks.clone();
    order.sort_by_key(|s| *s == Stack::Agora);
    order.dedup();
    for stack in order {
        let key = stack.as_str();
        report.set(&[key, "servers"], json!(fleet::server_kind(stack)));
        if !plan.memory_steps.is_empty()
            && let Err(e) = memory_phase(&mut ctx, stack).await
        {
            say(format!("{key} memory phase failed: {e:#}"));
            report.set(&[key, "memory", "error"], json!(format!("{e:#}")));
        }
        if plan.sockets > 0
            && let Err(e) = fleet_phases(&mut ctx, stack).await
        {
            say(format!("{key} fleet phases failed: {e:#}"));
            report.set(&[key, "error"], json!(format!("{e:#}")));
        }
    }
    report.set(&["targets"], targets(&report, &plan));
    let finished = chrono::Utc::now();
    report.set(&["finished_at"], json!(finished.to_rfc3339()));
    report.set(&["duration_secs"], json!((finished - started).num_milliseconds() as f64 / 1e3));
    Ok(report.value())
}

/// A few lines for a person, from the report.
pub fn summary(r: &Value) -> String {
    let mut out = Vec::new();
    let f = |v: &Value| match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    };
    out.push(format!(
        "push benchmark on {} ({} cpus), {:.0} s",
        r["machine"]["host"].as_str().unwrap_or("?"),
        r["machine"]["cpus"],
        r["duration_secs"].as_f64().unwrap_or(0.0)
    ));
    for key in ["agora", "socketio"] {
        let s = &r[key];
        if s.is_null() {
            continue;
        }
        out.push(format!("{key}:"));
        if let Some(steps) = s["memory"]["steps"].as_array() {
            for st in steps {
                out.push(format!(
                    "  memory, 1 process: {} sockets, {} bytes/socket (RSS {} KiB)",
                    st["sockets_open"],
                    f(&st["bytes_per_socket"]),
                    st["server_rss_kib"]
                ));
            }
        }
        if !s["fleet"].is_null() {
            out.push(format!(
                "  fleet: {} of {} sockets open over {} processes, {} bytes/socket",
                s["fleet"]["sockets_open"],
                s["fleet"]["sockets_requested"],
                s["fleet"]["servers"],
                f(&s["fleet"]["bytes_per_socket"])
            ));
        }
        let phase = |name: &str, p: &Value| {
            format!(
                "  {name} {} ev/s: p50 {} ms, p99 {} ms, p99.9 {} ms, lost {}/{}, server CPU {} s, {} events/server-CPU-s",
                f(&p["rate"]),
                f(&p["latency_ms"]["p50"]),
                f(&p["latency_ms"]["p99"]),
                f(&p["latency_ms"]["p999"]),
                p["frames_lost"],
                p["frames_expected"],
                f(&p["cpu_secs"]["servers"]),
                f(&p["events_per_server_cpu_sec"])
            )
        };
        if !s["steady"].is_null() {
            out.push(phase("steady", &s["steady"]));
        }
        if let Some(steps) = s["ramp"]["steps"].as_array() {
            for st in steps {
                out.push(phase("ramp", st));
            }
            out.push(format!("  ramp knee (p99 > threshold): {}", s["ramp"]["knee_rate"]));
        }
        if !s["at_multiple"].is_null() {
            out.push(phase("at multiple", &s["at_multiple"]));
        }
        if let Some(e) = s["error"].as_str() {
            out.push(format!("  error: {e}"));
        }
    }
    let t = &r["targets"];
    out.push("targets:".into());
    out.push(format!(
        "  100K sockets: {} open (met: {})",
        t["sockets_on_this_machine"]["agora_sockets_open"], t["sockets_on_this_machine"]["met"]
    ));
    out.push(format!(
        "  memory/socket: {} B vs 4096 B (met: {})",
        f(&t["memory_per_socket"]["agora_bytes"]),
        t["memory_per_socket"]["met"]
    ));
    out.push(format!(
        "  events per CPU-s: agora {} / socket.io {} = {} vs 5 (met: {})",
        f(&t["events_per_cpu_second"]["agora"]),
        f(&t["events_per_cpu_second"]["socketio"]),
        f(&t["events_per_cpu_second"]["ratio"]),
        t["events_per_cpu_second"]["met"]
    ));
    let m = &t["p99_at_multiple_of_socketio_knee"];
    out.push(format!(
        "  p99 at {}x Socket.IO's knee ({} -> {} ev/s): {} ms vs {} ms (met: {})",
        m["multiple"],
        f(&m["socketio_knee_rate"]),
        f(&m["agora_rate"]),
        f(&m["agora_p99_ms"]),
        m["target_ms"],
        m["met"]
    ));
    if let Some(rows) = t["ramp_side_by_side"].as_array() {
        for row in rows {
            out.push(format!(
                "  at {} ev/s: p99 agora {} ms / socket.io {} ms; events per server CPU-s agora {} / socket.io {} = {}",
                f(&row["rate"]),
                f(&row["agora_p99_ms"]),
                f(&row["socketio_p99_ms"]),
                f(&row["agora_events_per_server_cpu_sec"]),
                f(&row["socketio_events_per_server_cpu_sec"]),
                f(&row["ratio"])
            ));
        }
    }
    if let Some(notes) = r["notes"].as_array() {
        for n in notes {
            out.push(format!("note: {}", n.as_str().unwrap_or_default()));
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_keeps_nested_values_and_lists() {
        let r = Report::default();
        r.set(&["a", "b"], json!(1));
        r.push(&["a", "list"], json!("x"));
        r.push(&["a", "list"], json!("y"));
        assert_eq!(r.get(&["a", "b"]), json!(1));
        assert_eq!(r.get(&["a", "list"]), json!(["x", "y"]));
        assert_eq!(r.get(&["missing", "deep"]), Value::Null);
    }

    #[test]
    fn a_step_passes_the_threshold_when_its_p99_is_over_it_or_unknown() {
        assert!(passes_threshold(&json!({"p99_ms_lost_as_late": 150.0}), 100.0));
        assert!(!passes_threshold(&json!({"p99_ms_lost_as_late": 20.0}), 100.0));
        assert!(passes_threshold(&json!({}), 100.0));
    }
}
