//! `/ready` follows each dependency down and back up, without restarting any service.
//!
//! The test runs its own stack instance (`deploy/local/stack.sh` with a temporary
//! `AGORA_STACK_DIR` and free ports), so stopping its Kafka disturbs no other test.

use crate::helpers::{OwnStack, TestApp, eventually};
use std::time::{Duration, Instant};

fn failing(body: &serde_json::Value) -> Vec<String> {
    body["failing"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_turns_503_naming_each_stopped_dependency_and_recovers() {
    let own = OwnStack::up("readiness");
    let app = TestApp::spawn_on(own.stack()).await;
    let services = [
        ("command-api", app.command.clone(), vec!["kafka", "mongodb", "redis"]),
        ("query-api", app.query.clone(), vec!["mongodb", "redis"]),
        ("realtime", app.realtime.clone(), vec!["kafka", "mongodb", "redis"]),
        ("projector", app.projector.clone(), vec!["kafka", "mongodb", "redis"]),
    ];
    for (name, base, _) in &services {
        // The body of the answer that was 200: asking again could meet a probe that timed out
        // on this busy machine, which is the next phase's business, not this one's.
        let body = eventually(Duration::from_secs(30), &format!("{name} ready"), || async {
            let (status, body) = app.ready(base).await;
            (status == 200).then_some(body)
        })
        .await;
        assert_eq!(body, serde_json::json!({"status": "ready"}), "{name}");
    }

    for (dependency, stack_name) in [("kafka", "kafka"), ("mongodb", "ferretdb"), ("redis", "redis")] {
        own.stop(stack_name);
        let stopped = Instant::now();
        for (name, base, uses) in &services {
            let (status, body) = app.ready(base).await;
            if uses.contains(&dependency) {
                assert_eq!(status, 503, "{name} with {stack_name} down: {body}");
                assert_eq!(body["status"], "unavailable");
                assert_eq!(failing(&body), vec![dependency.to_owned()], "{name} with {stack_name} down");
            } else {
                assert_eq!(status, 200, "{name} does not use {stack_name}: {body}");
            }
        }
        let noticed = stopped.elapsed();
        assert!(noticed < Duration::from_secs(5), "503s took {noticed:?} after {stack_name} stopped");

        own.start(stack_name);
        for (name, base, _) in &services {
            eventually(Duration::from_secs(60), &format!("{name} ready again after {stack_name} restart"), || async {
                (app.ready(base).await.0 == 200).then_some(())
            })
            .await;
        }
    }
    app.shutdown().await;
}
