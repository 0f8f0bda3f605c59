//! A projector whose MongoDB stops answering still stops on SIGTERM within seconds, its worker
//! stopped and its offsets committed, rather than hanging until the shutdown grace is over.
//!
//! Why: the projector looks at the active generation of the read models (one MongoDB read)
//! every second. That look was once awaited in place of the worker, so while such a read did not
//! answer nothing of the worker ran: no Kafka polls, no log lines, and SIGTERM went unheeded
//! until the grace ran out ("worker did not stop within the grace period", no final commit). An
//! operator restarting or scaling projectors during a store hiccup saw each one hang for the
//! whole grace.
//!
//! The test runs on a stack instance of its own, so pausing its FerretDB (SIGSTOP: connections
//! stay open, nothing answers) disturbs no other test.

use crate::helpers::{OwnStack, TestApp, eventually, service_binary};
use agora_platform::config::Env;
use agora_platform::kafka::lag::group_lag;
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::write::position_id;
use agora_schemas::AggregateType;
use agora_schemas::aggregate::Topics;
use mongodb::bson::{Document, doc};
use serde_json::Value;
use std::io::{BufRead, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shutdown grace the projector is given: long, so that running it out cannot pass for
/// stopping.
const GRACE: Duration = Duration::from_secs(30);
/// How soon after SIGTERM it must be gone: a third of the grace.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// How long FerretDB stays paused before SIGTERM: a few of the projector's generation checks
/// (one a second), the first of which then waits on a read that gets no answer.
const STALL: Duration = Duration::from_secs(3);
/// The projector's `AGORA_MONGO_TIMEOUT_MS` (the driver's connect and server-selection timeout,
/// and so its heartbeat's): past the test's window, so the driver's monitor does not declare the
/// paused server gone and cut the read off. The read stays unanswered throughout, as the one
/// that froze a projector did while its server still answered heartbeats.
const MONGO_TIMEOUT_MS: &str = "60000";

/// `agora-projector run` as an OS process (SIGTERM needs one), logging JSON lines, which it
/// keeps and also writes to a file of the test's. Killed on drop if it is still running.
#[derive(Debug)]
struct ProjectorProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ProjectorProcess {
    fn spawn(bin: &Path, env: &Env, log: &Path) -> Self {
        let keys = agora_platform::config::KNOWN_COMMON.iter().chain(agora_projector::config::KNOWN);
        let vars: Vec<(&str, String)> = keys.filter_map(|k| env.get(k).map(|v| (*k, v.to_owned()))).collect();
        let mut child = Command::new(bin)
            .arg("run")
            .env_clear()
            .envs(vars)
            .env("AGORA_LOG", "warn,agora_projector=info,agora_platform::kafka::consumer=info")
            .env("AGORA_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let file = Arc::new(Mutex::new(std::fs::File::create(log).unwrap()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        let readers = [out, err]
            .into_iter()
            .map(|pipe| {
                let (file, lines) = (file.clone(), lines.clone());
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                        let _ = writeln!(file.lock().unwrap(), "{line}");
                        lines.lock().unwrap().push(line);
                    }
                })
            })
            .collect();
        Self { child, lines, readers }
    }

    /// The first JSON log line so far that satisfies `what`.
    fn logged(&self, what: impl Fn(&Value) -> bool) -> Option<Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(what)
    }

    /// Whether a log line so far has `message`.
    fn said(&self, message: &str) -> bool {
        self.logged(|v| v["message"] == message).is_some()
    }

    /// The last lines of its log, for assertion messages.
    fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} the projector");
    }

    /// Its exit status if it exits within `within`, its log then read to the end.
    async fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Its pipes close with it: the readers are at the end of its output.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        // Leave no process behind, even when an assertion failed.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A service of an [`OwnStack`] paused (SIGSTOP) until this is dropped (SIGCONT), also when an
/// assertion failed, so the stack's teardown finds it running.
#[derive(Debug)]
struct Paused<'a> {
    stack: &'a OwnStack,
    service: &'static str,
}

impl<'a> Paused<'a> {
    fn new(stack: &'a OwnStack, service: &'static str) -> Self {
        stack.signal(service, "STOP");
        Self { stack, service }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        // This may run while a failed assertion unwinds: no panic may leave it.
        let resumed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stack.signal(self.service, "CONT")));
        if resumed.is_err() {
            eprintln!("could not resume {} (SIGCONT)", self.service);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_whose_mongodb_stops_answering_still_stops_on_sigterm_within_seconds_and_commits() {
    let bin = tokio::task::spawn_blocking(|| service_binary("agora-projector")).await.unwrap();
    let own = OwnStack::up("projector-stall");
    let app = TestApp::spawn_on(own.stack()).await;
    // A projector process of its own: a database, a group and a Redis prefix of its own.
    let mut env = app.env.clone();
    env.set("AGORA_MONGO_DB", format!("{}_stall", app.prefix));
    env.set("AGORA_PROJECTOR_GROUP", format!("{}-stall", app.prefix));
    env.set("AGORA_REDIS_PREFIX", format!("{}-stall", app.prefix));
    env.set("AGORA_SHUTDOWN_TIMEOUT_MS", GRACE.as_millis().to_string());
    env.set("AGORA_MONGO_TIMEOUT_MS", MONGO_TIMEOUT_MS);
    let log = std::env::temp_dir().join(format!("{}-stalled-projector.log", app.prefix));
    let mut projector = ProjectorProcess::spawn(&bin, &env, &log);

    // Ready, with partitions, and projecting.
    let started = format!("the projector's ops port and partitions (its log: {})", log.display());
    let ops = eventually(Duration::from_secs(60), &started, || async {
        let port = projector.logged(|v| v["message"] == "projector ops endpoints listening")?["port"].as_u64()?;
        projector.logged(|v| v["message"] == "partitions assigned" && v["partitions"].as_i64() > Some(0))?;
        Some(format!("http://127.0.0.1:{port}"))
    })
    .await;
    // No pooled connection to its ops server outlives the request.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap();
    eventually(Duration::from_secs(30), "the projector's /ready to answer 200", || async {
        let res = http.get(format!("{ops}/ready")).send().await.ok()?;
        (res.status() == 200).then_some(())
    })
    .await;
    app.user("stall").await;
    let records = app.log_records(AggregateType::User).await;
    assert_eq!(records.len(), 1, "one registration in the log: {records:?}");
    let registered = &records[0];
    let topic = Topics::new(app.prefix.clone()).of(AggregateType::User);
    let position = position_id(&topic, registered.partition);
    let client = mongodb::Client::with_uri_str(&own.stack().mongo).await.unwrap();
    let positions = client.database(&env.string("AGORA_MONGO_DB", "")).collection::<Document>(Coll::Positions.name());
    eventually(Duration::from_secs(30), "the projector to apply the registration", || async {
        let d = positions.find_one(doc! {"_id": position.as_str()}).await.ok()??;
        let offset = d.get_i64("offset").or_else(|_| d.get_i32("offset").map(i64::from)).ok()?;
        (offset >= registered.offset).then_some(())
    })
    .await;

    // The store stops answering; the projector has nothing to apply, only its generation checks.
    let paused = Paused::new(&own, "ferretdb");
    tokio::time::sleep(STALL).await;
    assert!(
        projector.child.try_wait().unwrap().is_none(),
        "the projector exited by itself while ferretdb was paused:\n{}",
        projector.tail()
    );
    projector.signal("TERM");
    let sent = Instant::now();
    let exited = projector.exited_within(EXIT_WITHIN).await;
    let took = sent.elapsed();
    drop(paused);

    let Some(status) = exited else {
        panic!(
            "the projector was still running {EXIT_WITHIN:?} after SIGTERM (shutdown grace {GRACE:?}) while its \
             MongoDB did not answer; the last of its log ({}):\n{}",
            log.display(),
            projector.tail()
        );
    };
    eprintln!("the projector exited {took:?} after SIGTERM");
    assert!(status.success(), "the projector exited with {status:?} {took:?} after SIGTERM:\n{}", projector.tail());
    assert!(
        projector.said("projector worker stopped; offsets committed"),
        "the projector exited {took:?} after SIGTERM without its worker stopping and committing:\n{}",
        projector.tail()
    );
    assert!(
        !projector.said("worker did not stop within the grace period"),
        "the projector's worker ran out the grace:\n{}",
        projector.tail()
    );
    // What it applied is committed: a projector started after it would not apply it again.
    let (brokers, group) = (own.stack().kafka, env.string("AGORA_PROJECTOR_GROUP", ""));
    let topics = Topics::new(app.prefix.clone()).event_topics();
    let rows = tokio::task::spawn_blocking(move || group_lag(&brokers, &group, &topics, Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    let row = rows.iter().find(|r| r.topic == topic && r.partition == registered.partition);
    assert_eq!(
        row.and_then(|r| r.committed),
        Some(registered.offset + 1),
        "the group's committed offset of {topic}[{}] after the stop: {rows:?}",
        registered.partition
    );
    app.shutdown().await;
}
