//! `/ready` follows each dependency down and back up, without restarting any service.
//!
//! The test runs its own stack instance (`deploy/local/stack.sh` with a temporary
//! `AGORA_STACK_DIR` and free ports), so stopping its Kafka disturbs no other test.

use crate::helpers::{Stack, TestApp, eventually};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct OwnStack {
    dir: PathBuf,
    ports: [u16; 4],
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/stack.sh")
}

impl OwnStack {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("agora-readiness-{}", uuid::Uuid::new_v4().simple()));
        Self { dir, ports: [free_port(), free_port(), free_port(), free_port()] }
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .env("AGORA_STACK_DIR", &self.dir)
            .env("AGORA_STACK_KAFKA_PORT", self.ports[0].to_string())
            .env("AGORA_STACK_KAFKA_CONTROLLER_PORT", self.ports[1].to_string())
            .env("AGORA_STACK_MONGO_PORT", self.ports[2].to_string())
            .env("AGORA_STACK_REDIS_PORT", self.ports[3].to_string())
            .env("AGORA_TOPIC_PREFIX", "unused")
            .output()
            .expect("running deploy/local/stack.sh");
        assert!(
            out.status.success(),
            "stack.sh {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stack(&self) -> Stack {
        Stack {
            kafka: format!("127.0.0.1:{}", self.ports[0]),
            mongo: format!("mongodb://127.0.0.1:{}", self.ports[2]),
            redis: format!("redis://127.0.0.1:{}", self.ports[3]),
        }
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        // Leave no process behind, even when an assertion failed.
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .env("AGORA_STACK_DIR", &self.dir)
            .env("AGORA_STACK_KAFKA_PORT", self.ports[0].to_string())
            .env("AGORA_STACK_KAFKA_CONTROLLER_PORT", self.ports[1].to_string())
            .env("AGORA_STACK_MONGO_PORT", self.ports[2].to_string())
            .env("AGORA_STACK_REDIS_PORT", self.ports[3].to_string())
            .env("AGORA_STACK_STOP_SECS", "5")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn ready(app: &TestApp, base: &str) -> (u16, serde_json::Value) {
    let res = app.http.get(format!("{base}/ready")).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

fn failing(body: &serde_json::Value) -> Vec<String> {
    body["failing"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_turns_503_naming_each_stopped_dependency_and_recovers() {
    let own = OwnStack::new();
    own.run(&["up"]);
    let app = TestApp::spawn_on(own.stack()).await;
    let services = [
        ("command-api", app.command.clone(), vec!["kafka", "mongodb", "redis"]),
        ("query-api", app.query.clone(), vec!["mongodb", "redis"]),
        ("realtime", app.realtime.clone(), vec!["kafka", "mongodb", "redis"]),
        ("projector", app.projector.clone(), vec!["kafka", "mongodb", "redis"]),
    ];
    for (name, base, _) in &services {
        eventually(Duration::from_secs(30), &format!("{name} ready"), || async {
            (ready(&app, base).await.0 == 200).then_some(())
        })
        .await;
        let (_, body) = ready(&app, base).await;
        assert_eq!(body, serde_json::json!({"status": "ready"}), "{name}");
    }

    for (dependency, stack_name) in [("kafka", "kafka"), ("mongodb", "ferretdb"), ("redis", "redis")] {
        own.run(&["stop", stack_name]);
        let stopped = Instant::now();
        for (name, base, uses) in &services {
            let (status, body) = ready(&app, base).await;
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

        own.run(&["start", stack_name]);
        for (name, base, _) in &services {
            eventually(Duration::from_secs(60), &format!("{name} ready again after {stack_name} restart"), || async {
                (ready(&app, base).await.0 == 200).then_some(())
            })
            .await;
        }
    }
    app.shutdown().await;
}
