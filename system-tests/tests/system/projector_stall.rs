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
use agora_platform::kafka::lag::group_lag;
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::write::position_id;
use agora_schemas::AggregateType;
use agora_schemas::aggregate::Topics;
use agora_testkit::ServiceProcess;
use mongodb::bson::{Document, doc};
use serde_json::Value;
use std::time::Duration;

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
    let keys = agora_platform::config::KNOWN_COMMON.iter().chain(agora_projector::config::KNOWN);
    let mut vars: Vec<(String, String)> =
        keys.filter_map(|k| env.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
    vars.push(("AGORA_LOG".into(), "warn,agora_projector=info,agora_platform::kafka::consumer=info".into()));
    vars.push(("AGORA_LOG_FORMAT".into(), "json".into()));
    // Started once its ops port is logged; then ready, with partitions, and projecting.
    let mut projector = ServiceProcess::start(bin.to_str().unwrap(), &vars);
    projector.wait_for_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["message"] == "partitions assigned" && v["partitions"].as_i64() > Some(0))
    });
    let ops = projector.base_url();
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
    assert!(projector.running(), "the projector exited by itself while ferretdb was paused:\n{}", projector.tail(30));
    // Panics if it is still running EXIT_WITHIN after SIGTERM (the grace is GRACE).
    let (projector, status, took) = tokio::task::spawn_blocking(move || {
        let (status, took) = projector.signal("TERM", EXIT_WITHIN);
        (projector, status, took)
    })
    .await
    .unwrap();
    drop(paused);
    eprintln!("the projector exited {took:?} after SIGTERM (shutdown grace {GRACE:?})");
    assert!(status.success(), "the projector exited with {status:?} {took:?} after SIGTERM:\n{}", projector.tail(30));
    assert!(
        projector.logged("projector worker stopped; offsets committed"),
        "the projector exited {took:?} after SIGTERM without its worker stopping and committing:\n{}",
        projector.tail(30)
    );
    assert!(
        !projector.logged("worker did not stop within the grace period"),
        "the projector's worker ran out the grace:\n{}",
        projector.tail(30)
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
