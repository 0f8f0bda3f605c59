//! The raw engine baselines of issue 6: what Kafka, Redis and the MongoDB-protocol store can
//! do on this machine, measured in the same run as Agora, so every Agora figure is also given
//! as a ratio to the engine beneath it (a figure alone says little on a shared 2-core box).
//!
//! Each engine is measured with its own tool where it has one, so the baseline is the
//! engine's and not a client library's: Kafka's `ProducerPerformance` and
//! `ConsumerPerformance` from the stack's own jars, `redis-benchmark`; FerretDB has no such
//! tool, so its baseline is `insert_many` of 500 small documents at a time, as
//! `agora-bench-read` measures it. Every tool is a child process bounded in time, its output
//! parsed by the pure `parse_*` functions below; a failed, late or unparseable run is an
//! error carrying the tail of its stderr.
//!
//! Environment (all optional; empty means unset, as in `deploy/local/stack.sh`):
//! - `AGORA_KAFKA_BROKERS`: Kafka bootstrap servers, comma-separated [`127.0.0.1:9092`]
//! - `AGORA_MONGO_URI`: the MongoDB-protocol store [`mongodb://127.0.0.1:27017/`]
//! - `AGORA_REDIS_URL`: Redis; only its host and port are used [`redis://127.0.0.1:6379`]
//! - `AGORA_CACHE_DIR`: the stack's cache, holding `kafka-<version>/libs`
//!   [`${XDG_CACHE_HOME:-$HOME/.cache}/agora`]
//! - `AGORA_STACK_KAFKA_VERSION`: which of the cache's Kafkas [`4.1.1`]
//! - `JAVA`: the java binary [`java`]
//! - `AGORA_LOAD_BASELINE_TOPIC`: the topic the Kafka baselines write and read back, created
//!   if missing (12 partitions, 10-minute retention) [`agora-load.baseline`]
//! - `AGORA_LOAD_BASELINE_KAFKA_RECORDS`: records produced, then consumed [500000]
//! - `AGORA_LOAD_BASELINE_RECORD_BYTES`: bytes of each record, about one stored `post.created`
//!   event [640]
//! - `AGORA_LOAD_BASELINE_REDIS_REQUESTS`: `redis-benchmark` GET requests [200000]
//! - `AGORA_LOAD_BASELINE_MONGO_DOCS`: documents bulk-inserted [200000]
//! - `AGORA_LOAD_BASELINE_TIMEOUT_SECS`: the bound of each tool's run [300]
//!
//! Every address must be loopback, as for every load test here.

use anyhow::{Context, anyhow, bail, ensure};
use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// As many partitions as the stack's own topics (`AGORA_TOPIC_PARTITIONS`' default).
const KAFKA_PARTITIONS: u32 = 12;
/// The baseline's records only need to outlive the run; rolling segments as often lets the
/// retention delete them, so repeated runs do not fill the disk.
const KAFKA_TOPIC_CONFIGS: [&str; 2] = ["retention.ms=600000", "segment.ms=600000"];
/// The producer settings of command-api and of `bench-posts.sh`'s baseline.
const PRODUCER_PROPS: [&str; 4] = ["acks=all", "enable.idempotence=true", "linger.ms=2", "compression.type=lz4"];
/// Enough for the tools, small beside the broker's heap on this machine.
const JVM_HEAP: &str = "-Xmx512m";
/// As `bench-read.sh`.
const REDIS_CLIENTS: u32 = 50;
/// Documents per `insert_many`, as `agora-bench-read`.
const MONGO_BATCH: usize = 500;
/// A database of its own, dropped before (a stopped run may have left it) and after.
const MONGO_DATABASE: &str = "agora_load_baseline";
/// How long a service may take to accept a connection before the baseline gives up: a tool
/// pointed at a closed port can wait far longer (`redis-benchmark` retries forever).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a tool's output an error quotes.
const TAIL_LINES: usize = 20;

/// Where the engines are and how much each baseline does.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub kafka_brokers: String,
    /// The jars of the stack's Kafka (`<cache>/kafka-4.1.1/libs`).
    pub kafka_libs: PathBuf,
    pub java: String,
    pub mongo_uri: String,
    pub redis_host: String,
    pub redis_port: u16,
    /// The run's own topic, never one of the system's.
    pub topic: String,
    pub kafka_records: u64,
    pub record_bytes: usize,
    pub redis_requests: u64,
    pub mongo_docs: usize,
    /// The bound of each tool's run (and of the bulk insert).
    pub timeout: Duration,
}

/// One engine's rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// `Kafka`, `Redis`, `FerretDB`.
    pub engine: String,
    /// What was counted and how, e.g. `consumer records/s (640 B, ...)`.
    pub what: String,
    pub per_sec: f64,
}

impl Config {
    /// The configuration from the environment (see the module's doc), checked.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let text = |key: &str, default: &str| get(key).unwrap_or_else(|| default.to_owned());
        let number = |key: &str, default: u64, bounds: RangeInclusive<u64>| -> anyhow::Result<u64> {
            let Some(v) = get(key) else { return Ok(default) };
            let n: u64 = v.trim().parse().with_context(|| format!("{key}={v}: not a whole number"))?;
            Ok(n.clamp(*bounds.start(), *bounds.end()))
        };
        let cache = match (get("AGORA_CACHE_DIR"), get("XDG_CACHE_HOME"), get("HOME")) {
            (Some(dir), _, _) => PathBuf::from(dir),
            (None, Some(xdg), _) => PathBuf::from(xdg).join("agora"),
            (None, None, Some(home)) => PathBuf::from(home).join(".cache/agora"),
            (None, None, None) => bail!("neither AGORA_CACHE_DIR nor HOME is set: where are Kafka's jars?"),
        };
        let redis_url = text("AGORA_REDIS_URL", "redis://127.0.0.1:6379");
        let (redis_host, redis_port) = redis_host_port(&redis_url)?;
        let config = Self {
            kafka_brokers: text("AGORA_KAFKA_BROKERS", "127.0.0.1:9092"),
            kafka_libs: cache.join(format!("kafka-{}", text("AGORA_STACK_KAFKA_VERSION", "4.1.1"))).join("libs"),
            java: text("JAVA", "java"),
            mongo_uri: text("AGORA_MONGO_URI", "mongodb://127.0.0.1:27017/"),
            redis_host,
            redis_port,
            topic: text("AGORA_LOAD_BASELINE_TOPIC", "agora-load.baseline"),
            kafka_records: number("AGORA_LOAD_BASELINE_KAFKA_RECORDS", 500_000, 1_000..=10_000_000)?,
            // The broker takes records up to 1 MiB by default.
            record_bytes: usize::try_from(number("AGORA_LOAD_BASELINE_RECORD_BYTES", 640, 1..=1_000_000)?)?,
            redis_requests: number("AGORA_LOAD_BASELINE_REDIS_REQUESTS", 200_000, 1_000..=10_000_000)?,
            mongo_docs: usize::try_from(number("AGORA_LOAD_BASELINE_MONGO_DOCS", 200_000, 1_000..=2_000_000)?)?,
            timeout: Duration::from_secs(number("AGORA_LOAD_BASELINE_TIMEOUT_SECS", 300, 10..=3_600)?),
        };
        config.check()?;
        Ok(config)
    }

    /// Every address loopback, and a topic of the run's own.
    fn check(&self) -> anyhow::Result<()> {
        for broker in self.kafka_brokers.split(',') {
            crate::require_loopback(broker.trim())?;
        }
        crate::require_loopback(&self.mongo_uri)?;
        crate::require_loopback(&format!("redis://{}:{}", self.redis_host, self.redis_port))?;
        ensure!(
            !self.topic.is_empty() && self.topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{:?}: not a Kafka topic name",
            self.topic
        );
        // The stack's default prefix: the baseline's records in a system topic would reach
        // the projector and the realtime tier.
        ensure!(!self.topic.starts_with("agora."), "{}: the baselines need a topic of their own", self.topic);
        Ok(())
    }

    fn first_broker(&self) -> &str {
        self.kafka_brokers.split(',').next().unwrap_or_default().trim()
    }
}

/// The host and port of a `redis://` URL (`redis-benchmark` takes them apart).
fn redis_host_port(url: &str) -> anyhow::Result<(String, u16)> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info().with_context(|| format!("AGORA_REDIS_URL={url}"))?;
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => Ok((host.clone(), *port)),
        other => bail!("AGORA_REDIS_URL={url}: only plain TCP is measured, not {other:?}"),
    }
}

/// Kafka's `ProducerPerformance`: `kafka_records` records of `record_bytes` into the
/// baseline topic (created first if missing), with Agora's producer settings.
pub async fn kafka_producer(c: &Config) -> anyhow::Result<Measured> {
    c.check()?;
    reachable(c.first_broker(), "Kafka").await?;
    let partitions = KAFKA_PARTITIONS.to_string();
    let mut create = vec!["--bootstrap-server", &c.kafka_brokers, "--create", "--if-not-exists"];
    create.extend(["--topic", &c.topic, "--partitions", &partitions]);
    for config in KAFKA_TOPIC_CONFIGS {
        create.extend(["--config", config]);
    }
    java(c, "org.apache.kafka.tools.TopicCommand", &create).await.context("creating the baseline topic")?;

    let (records, bytes) = (c.kafka_records.to_string(), c.record_bytes.to_string());
    let servers = format!("bootstrap.servers={}", c.kafka_brokers);
    let mut args = vec!["--topic", &c.topic, "--num-records", &records, "--record-size", &bytes];
    // Unthrottled; `--producer-props` takes the rest of the line.
    args.extend(["--throughput", "-1", "--producer-props", &servers]);
    args.extend(PRODUCER_PROPS);
    let out = java(c, "org.apache.kafka.tools.ProducerPerformance", &args).await?;
    let (sent, per_sec) = parse_producer(&out.stdout).ok_or_else(|| out.unparseable("ProducerPerformance"))?;
    // Only acknowledged records are counted; the others' errors are on stderr.
    ensure!(
        sent == c.kafka_records,
        "ProducerPerformance had {sent} of {} records acknowledged; stderr ended with:\n{}",
        c.kafka_records,
        tail(&out.stderr)
    );
    Ok(Measured {
        engine: "Kafka".into(),
        what: format!("producer records/s ({} B, acks=all, idempotent, linger.ms=2, lz4)", c.record_bytes),
        per_sec,
    })
}

/// Kafka's `ConsumerPerformance`: one consumer reading `kafka_records` records of the baseline
/// topic from its start (what [`kafka_producer`] wrote). The rate is over the fetch time, after
/// the consumer has joined its group: the join is a fixed cost of a second or so here, which
/// would otherwise weigh on the figure more the faster the machine.
pub async fn kafka_consumer(c: &Config) -> anyhow::Result<Measured> {
    c.check()?;
    reachable(c.first_broker(), "Kafka").await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let group = format!("{}.consumer-perf.{}", c.topic, &run[..8]);
    // Without commits every run reads the topic from its start, and the broker forgets the
    // empty group by itself at its next offsets check.
    let props = std::env::temp_dir().join(format!("agora-load-baseline-{run}.properties"));
    tokio::fs::write(&props, "enable.auto.commit=false\n")
        .await
        .with_context(|| format!("writing {}", props.display()))?;
    let messages = c.kafka_records.to_string();
    let props_arg = props.to_string_lossy().into_owned();
    let args = [
        "--bootstrap-server",
        &c.kafka_brokers,
        "--topic",
        &c.topic,
        "--messages",
        &messages,
        "--group",
        &group,
        "--consumer.config",
        &props_arg,
    ];
    let ran = java(c, "org.apache.kafka.tools.ConsumerPerformance", &args).await;
    let _ = tokio::fs::remove_file(&props).await;
    let out = ran?;
    let s = parse_consumer(&out.stdout).ok_or_else(|| out.unparseable("ConsumerPerformance"))?;
    // Short of records, it waited out its --timeout (10 s), which is then in the rate; it may
    // read a little past the count (every record of its last poll is counted).
    ensure!(
        s.records >= c.kafka_records,
        "ConsumerPerformance read {} of {} records of {} (has kafka_producer run?); its output ended with:\n{}",
        s.records,
        c.kafka_records,
        c.topic,
        tail(&out.stdout)
    );
    Ok(Measured {
        engine: "Kafka".into(),
        what: format!(
            "consumer records/s ({} B, one consumer, {KAFKA_PARTITIONS} partitions, group join excluded)",
            c.record_bytes
        ),
        per_sec: s.fetch_per_sec,
    })
}

/// `redis-benchmark` GET, 50 clients, `redis_requests` requests.
pub async fn redis_get(c: &Config) -> anyhow::Result<Measured> {
    c.check()?;
    reachable(&format!("{}:{}", c.redis_host, c.redis_port), "Redis").await?;
    let mut command = Command::new("redis-benchmark");
    command.args(["-h", &c.redis_host, "-p", &c.redis_port.to_string(), "-t", "get"]);
    command.args(["-n", &c.redis_requests.to_string(), "-c", &REDIS_CLIENTS.to_string(), "-q", "--csv"]);
    let out = run(command, "redis-benchmark", c.timeout).await?;
    let per_sec = parse_redis(&out.stdout).ok_or_else(|| out.unparseable("redis-benchmark"))?;
    Ok(Measured { engine: "Redis".into(), what: format!("GET requests/s ({REDIS_CLIENTS} clients)"), per_sec })
}

/// Writes `docs` documents of a feed entry's shape, [`MONGO_BATCH`] to an unordered
/// `insert_many`; how many were written. Shared with agora-bench-read's raw rate.
pub async fn insert_feed_entries(coll: &mongodb::Collection<Document>, docs: usize) -> anyhow::Result<usize> {
    let mut written = 0;
    while written < docs {
        let batch: Vec<Document> = (0..MONGO_BATCH.min(docs - written))
            .map(|i| {
                doc! {
                    "_id": format!("{}|{}", uuid::Uuid::now_v7(), i),
                    "user_id": uuid::Uuid::new_v4().to_string(),
                    "post_id": uuid::Uuid::now_v7().to_string(),
                    "author_id": uuid::Uuid::new_v4().to_string(),
                }
            })
            .collect();
        written += batch.len();
        coll.insert_many(batch).ordered(false).await?;
    }
    Ok(written)
}

/// `insert_many` of `mongo_docs` small documents, 500 at a time, into a database of its own,
/// dropped afterwards.
pub async fn mongo_bulk_insert(c: &Config) -> anyhow::Result<Measured> {
    c.check()?;
    let client = mongodb::Client::with_uri_str(&c.mongo_uri).await.with_context(|| c.mongo_uri.clone())?;
    let db = client.database(MONGO_DATABASE);
    db.drop().await.with_context(|| format!("dropping {MONGO_DATABASE} before the run"))?;
    let coll = db.collection::<Document>("docs");
    let started = Instant::now();
    let inserted = tokio::time::timeout(c.timeout, insert_feed_entries(&coll, c.mongo_docs)).await;
    let secs = started.elapsed().as_secs_f64();
    let dropped = db.drop().await;
    let written = inserted
        .map_err(|_| anyhow!("the bulk insert was still running after {} s", c.timeout.as_secs()))?
        .with_context(|| format!("bulk insert into {MONGO_DATABASE} at {}", c.mongo_uri))?;
    dropped.with_context(|| format!("dropping {MONGO_DATABASE} after the run"))?;
    Ok(Measured {
        engine: "FerretDB".into(),
        what: format!("documents inserted/s (insert_many, {MONGO_BATCH} a batch)"),
        per_sec: written as f64 / secs.max(1e-9),
    })
}

/// Every baseline in turn (one at a time: each would take cores from the others), with a
/// progress message before each. The consumer is skipped when the producer failed, since it
/// reads what the producer writes.
pub async fn run_all(c: &Config, progress: impl Fn(&str)) -> Vec<anyhow::Result<Measured>> {
    progress(&format!(
        "baseline: Kafka ProducerPerformance, {} records of {} B into {}",
        c.kafka_records, c.record_bytes, c.topic
    ));
    let producer = kafka_producer(c).await;
    let consumer = if producer.is_ok() {
        progress(&format!("baseline: Kafka ConsumerPerformance, {} records of {}", c.kafka_records, c.topic));
        kafka_consumer(c).await
    } else {
        Err(anyhow!("the Kafka consumer baseline was skipped: it reads back the producer baseline's records"))
    };
    progress(&format!("baseline: redis-benchmark GET, {} requests, {REDIS_CLIENTS} clients", c.redis_requests));
    let redis = redis_get(c).await;
    progress(&format!("baseline: bulk insert of {} documents into {MONGO_DATABASE}", c.mongo_docs));
    let mongo = mongo_bulk_insert(c).await;
    vec![producer, consumer, redis, mongo]
}

/// What a finished tool wrote.
#[derive(Debug)]
struct Output {
    stdout: String,
    stderr: String,
}

impl Output {
    fn unparseable(&self, tool: &str) -> anyhow::Error {
        anyhow!(
            "{tool}: no figure in its output; stdout ended with:\n{}\nstderr ended with:\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// One of Kafka's tools from the stack's jars.
async fn java(c: &Config, class: &str, args: &[&str]) -> anyhow::Result<Output> {
    ensure!(
        c.kafka_libs.is_dir(),
        "no Kafka jars in {} (deploy/local/stack.sh install puts them there; see AGORA_CACHE_DIR)",
        c.kafka_libs.display()
    );
    let mut classpath = OsString::from(c.kafka_libs.as_os_str());
    classpath.push("/*");
    let mut command = Command::new(&c.java);
    command.arg(JVM_HEAP).arg("-cp").arg(classpath).arg(class).args(args);
    let tool = class.rsplit('.').next().unwrap_or(class);
    run(command, tool, c.timeout).await
}

/// Runs `command` to its end within `limit`, capturing its output; killed if late. Both
/// pipes are read while it runs (a full pipe would stall it) and kept when it is killed, so
/// the error can say what it was doing.
async fn run(mut command: Command, tool: &str, limit: Duration) -> anyhow::Result<Output> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().with_context(|| format!("starting {tool}"))?;
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes).await;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = tokio::time::timeout(limit, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    // A grandchild could hold a pipe open after the tool is gone: wait for the rest briefly.
    let collect = |reader: tokio::task::JoinHandle<String>| async {
        tokio::time::timeout(Duration::from_secs(5), reader).await.ok().and_then(Result::ok).unwrap_or_default()
    };
    let out = Output { stdout: collect(stdout).await, stderr: collect(stderr).await };
    match status {
        Err(_) => bail!(
            "{tool}: still running after {} s, stopped; stderr ended with:\n{}",
            limit.as_secs(),
            tail(&out.stderr)
        ),
        Ok(Err(e)) => Err(e).with_context(|| format!("waiting for {tool}")),
        Ok(Ok(s)) if !s.success() => bail!("{tool}: {s}; stderr ended with:\n{}", tail(&out.stderr)),
        Ok(Ok(_)) => Ok(out),
    }
}

/// Fails fast, and clearly, when nothing listens at `addr`.
async fn reachable(addr: &str, what: &str) -> anyhow::Result<()> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e).with_context(|| format!("{what} at {addr} (is deploy/local/stack.sh up?)")),
        Err(_) => bail!("{what} at {addr}: no connection within {} s", CONNECT_TIMEOUT.as_secs()),
    }
}

/// The last lines of a tool's output, for an error.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(nothing)".into();
    }
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// `ProducerPerformance`'s final summary, `N records sent, X records/sec (...), ... 50th, ...`:
/// (N, X). Its interim lines (every 5 s) have the same start but no percentiles, and a run
/// cut short has no summary at all.
fn parse_producer(stdout: &str) -> Option<(u64, f64)> {
    let line = stdout.lines().rev().find(|l| l.contains(" records sent, ") && l.contains(" 50th"))?;
    let (sent, rest) = line.trim().split_once(" records sent, ")?;
    let per_sec = rest.split_once(" records/sec")?.0.trim().parse::<f64>().ok()?;
    Some((sent.trim().parse().ok()?, per_sec))
}

/// `ConsumerPerformance`'s figures, from the columns of its one summary line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ConsumerSummary {
    /// `data.consumed.in.nMsg`
    records: u64,
    /// `fetch.nMsg.sec`: over the fetch time, after the join (`nMsg.sec` is over the whole
    /// run, the join, `rebalance.time.ms`, included).
    fetch_per_sec: f64,
}

/// `ConsumerPerformance`'s output: a header of comma-separated column names, then (after a
/// `WARNING: ...` line when it timed out) one line of values.
fn parse_consumer(stdout: &str) -> Option<ConsumerSummary> {
    let columns = |line: &str| line.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>();
    let mut lines = stdout.lines();
    let header = columns(lines.find(|l| l.contains("nMsg.sec"))?);
    let values = lines.map(columns).find(|v| v.len() == header.len())?;
    let column = |name: &str| values.get(header.iter().position(|h| h == name)?);
    Some(ConsumerSummary {
        records: column("data.consumed.in.nMsg")?.parse().ok()?,
        fetch_per_sec: column("fetch.nMsg.sec")?.parse().ok()?,
    })
}

/// `redis-benchmark -q --csv`: the `"GET","<requests/s>",...` line (7.x puts a header line
/// before it; 6.x had none, and the rate is the second field in both).
fn parse_redis(stdout: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        (fields.next()? == "GET").then_some(())?;
        fields.next()?.parse().ok()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    // Real output of the stack's Kafka 4.1.1 and redis-benchmark 7.0.15 on this machine.
    const PRODUCER: &str = "20000 records sent, 6311.1 records/sec (3.85 MB/sec), 518.52 ms avg latency, \
        1197.00 ms max latency, 455 ms 50th, 890 ms 95th, 924 ms 99th, 986 ms 99.9th.\n";
    const PRODUCER_WITH_INTERIM: &str = "\
2500 records sent, 500.0 records/sec (0.31 MB/sec), 12.3 ms avg latency, 680.0 ms max latency.
3500 records sent, 496.4 records/sec (0.30 MB/sec), 10.00 ms avg latency, 680.00 ms max latency, 3 ms 50th, 60 ms 95th, 82 ms 99th, 93 ms 99.9th.
";
    const CONSUMER: &str = "\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-02 05:03:06:845, 2026-12-02 05:03:10:243, 12.2070, 3.5924, 20000, 5885.8152, 1539, 1859, 6.5665, 10758.4723
";
    // --messages 30000 with 20000 in the topic and --timeout 3000.
    const CONSUMER_SHORT: &str = "\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
WARNING: Exiting before consuming the expected number of messages: timeout (3000 ms) exceeded. You can use the --timeout option to increase the timeout.
2026-12-02 05:04:14:211, 2026-12-02 05:04:18:680, 12.2070, 2.7315, 20000, 4475.2741, 783, 3686, 3.3117, 5425.9360
";
    const REDIS: &str = "\
\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"
\"GET\",\"41067.76\",\"0.793\",\"0.080\",\"0.551\",\"2.583\",\"5.039\",\"8.855\"
";

    #[test]
    fn the_producer_figure_is_the_final_summary_and_never_an_interim_line() {
        assert_eq!(parse_producer(PRODUCER), Some((20_000, 6311.1)));
        assert_eq!(parse_producer(PRODUCER_WITH_INTERIM), Some((3_500, 496.4)));
        let interim_only = PRODUCER_WITH_INTERIM.lines().next().unwrap();
        assert_eq!(parse_producer(interim_only), None);
        assert_eq!(parse_producer(""), None);
        assert_eq!(parse_producer("x records sent, y records/sec, 1 ms 50th"), None);
    }

    #[test]
    fn the_consumer_columns_are_read_by_name_past_a_timeout_warning() {
        let full = parse_consumer(CONSUMER).unwrap();
        assert_eq!(full, ConsumerSummary { records: 20_000, fetch_per_sec: 10758.4723 });
        let short = parse_consumer(CONSUMER_SHORT).unwrap();
        assert_eq!(short, ConsumerSummary { records: 20_000, fetch_per_sec: 5425.9360 });
        let header_only = CONSUMER.lines().next().unwrap();
        assert_eq!(parse_consumer(header_only), None);
        assert_eq!(parse_consumer("Exception in thread \"main\" ...\n"), None);
    }

    #[test]
    fn the_redis_figure_is_the_get_line_with_or_without_a_header() {
        assert_eq!(parse_redis(REDIS), Some(41067.76));
        assert_eq!(parse_redis(REDIS.lines().nth(1).unwrap()), Some(41067.76));
        assert_eq!(parse_redis("Could not connect to Redis at 127.0.0.1:6390: Connection refused\n"), None);
        assert_eq!(parse_redis("\"GET\",\"n/a\"\n"), None);
    }

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn the_defaults_are_the_local_stacks() {
        let c = Config::from_lookup(lookup(&[("HOME", "/home/u"), ("AGORA_MONGO_URI", "")])).unwrap();
        assert_eq!(c.kafka_brokers, "127.0.0.1:9092");
        assert_eq!(c.kafka_libs, PathBuf::from("/home/u/.cache/agora/kafka-4.1.1/libs"));
        assert_eq!(c.mongo_uri, "mongodb://127.0.0.1:27017/", "empty is unset");
        assert_eq!((c.redis_host.as_str(), c.redis_port), ("127.0.0.1", 6379));
        assert_eq!(c.topic, "agora-load.baseline");
        assert_eq!((c.kafka_records, c.record_bytes, c.redis_requests, c.mongo_docs), (500_000, 640, 200_000, 200_000));
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert_eq!(c.java, "java");
    }

    #[test]
    fn settings_come_from_the_environment_within_bounds() {
        let c = Config::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("AGORA_CACHE_DIR", "/cache"),
            ("AGORA_REDIS_URL", "redis://127.0.0.2:6380/"),
            ("AGORA_LOAD_BASELINE_KAFKA_RECORDS", "20000"),
            ("AGORA_LOAD_BASELINE_REDIS_REQUESTS", "5"),
            ("AGORA_LOAD_BASELINE_TIMEOUT_SECS", "99999"),
        ]))
        .unwrap();
        assert_eq!(c.kafka_libs, PathBuf::from("/cache/kafka-4.1.1/libs"));
        assert_eq!((c.redis_host.as_str(), c.redis_port), ("127.0.0.2", 6380));
        assert_eq!((c.kafka_records, c.redis_requests), (20_000, 1_000));
        assert_eq!(c.timeout, Duration::from_secs(3_600));
        let xdg = Config::from_lookup(lookup(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")])).unwrap();
        assert_eq!(xdg.kafka_libs, PathBuf::from("/xdg/agora/kafka-4.1.1/libs"));

        let bad = Config::from_lookup(lookup(&[("HOME", "/h"), ("AGORA_LOAD_BASELINE_MONGO_DOCS", "lots")]));
        assert!(format!("{:#}", bad.unwrap_err()).contains("AGORA_LOAD_BASELINE_MONGO_DOCS=lots"));
    }

    #[test]
    fn only_loopback_engines_and_a_topic_of_its_own_are_accepted() {
        for (key, value) in [
            ("AGORA_KAFKA_BROKERS", "127.0.0.1:9092,10.0.0.2:9092"),
            ("AGORA_MONGO_URI", "mongodb://db.example.com:27017/"),
            ("AGORA_REDIS_URL", "redis://192.168.1.2:6379"),
            ("AGORA_LOAD_BASELINE_TOPIC", "agora.posts"),
            ("AGORA_LOAD_BASELINE_TOPIC", "two words"),
        ] {
            assert!(Config::from_lookup(lookup(&[("HOME", "/h"), (key, value)])).is_err(), "{key}={value}");
        }
        let local =
            Config::from_lookup(lookup(&[("HOME", "/h"), ("AGORA_KAFKA_BROKERS", "127.0.0.1:9092, localhost:9094")]));
        assert_eq!(local.unwrap().first_broker(), "127.0.0.1:9092");
    }

    #[tokio::test]
    async fn a_failed_or_late_tool_is_an_error_quoting_its_stderr() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo out; echo err >&2"]);
        let out = run(ok, "sh", Duration::from_secs(10)).await.unwrap();
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out\n", "err\n"));

        let mut failing = Command::new("sh");
        failing.args(["-c", "echo why it failed >&2; exit 3"]);
        let e = format!("{:#}", run(failing, "sh", Duration::from_secs(10)).await.unwrap_err());
        assert!(e.contains("why it failed") && e.contains('3'), "{e}");

        let mut late = Command::new("sh");
        late.args(["-c", "echo started >&2; exec sleep 30"]);
        let t = Instant::now();
        let e = format!("{:#}", run(late, "sh", Duration::from_millis(300)).await.unwrap_err());
        assert!(e.contains("still running") && e.contains("started"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));

        let e = run(Command::new("/nonexistent/tool"), "tool", Duration::from_secs(1)).await.unwrap_err();
        assert!(format!("{e:#}").contains("starting tool"));
    }

    #[test]
    fn an_error_quotes_the_last_lines_only() {
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(&long);
        assert!(t.starts_with("line 80\n") && t.ends_with("line 99"), "{t}");
        assert_eq!(tail("\n \n"), "(nothing)");
    }
}
