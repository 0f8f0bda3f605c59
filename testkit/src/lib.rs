//! Helpers for the services' integration tests. Used only as a dev-dependency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod names;
pub mod schemathesis;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A service binary started as its own process, with JSON logs on stdout.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    pub port: u16,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Environment for a service process against the local stack, isolated by a fresh prefix.
pub fn isolated_env(addr_var: &str) -> Vec<(String, String)> {
    let prefix = names::test_prefix("t");
    vec![
        (addr_var.to_owned(), "127.0.0.1:0".to_owned()),
        ("AGORA_TOPIC_PREFIX".to_owned(), prefix.clone()),
        ("AGORA_REDIS_PREFIX".to_owned(), prefix.clone()),
        ("AGORA_MONGO_DB".to_owned(), format!("{prefix}_read")),
        ("AGORA_WRITE_DB".to_owned(), format!("{prefix}_write")),
        ("AGORA_PROJECTOR_GROUP".to_owned(), format!("{prefix}-projector")),
        ("AGORA_REALTIME_GROUP".to_owned(), format!("{prefix}-realtime")),
        ("AGORA_LOG".to_owned(), "info".to_owned()),
        ("AGORA_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("AGORA_SHUTDOWN_TIMEOUT_MS".to_owned(), "5000".to_owned()),
    ]
}

impl ServiceProcess {
    /// Starts `binary` and waits for its JSON log line carrying the bound `port`.
    pub fn start(binary: &str, env: &[(String, String)]) -> Self {
        let mut child = Command::new(binary)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Self { child, port: 0, lines, seen: Vec::new() };
        let line = p.wait_for_line(Duration::from_secs(30), |l| {
            serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["port"].as_u64()).is_some()
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        p.port = v["port"].as_u64().unwrap() as u16;
        p
    }

    /// The first stdout line (old or new) matching `pred`, or a panic showing what was seen.
    pub fn wait_for_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no matching log line within {within:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the process to exit; returns its exit
    /// status and how long it took.
    pub fn signal(&mut self, signal: &str, within: Duration) -> (std::process::ExitStatus, Duration) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Drain what it logged on the way out.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < within, "still running {within:?} after SIG{signal}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its last `n` stdout lines seen so far, for assertion messages.
    pub fn tail(&self, n: usize) -> String {
        self.seen[self.seen.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots `binary`, checks `/health`, sends SIGTERM and then (to a second process) SIGINT, as
/// Ctrl-C does, and asserts each time a clean, bounded exit that logged `stopped_message`.
pub async fn assert_graceful_shutdown(binary: &str, addr_var: &str, stopped_message: &str) {
    for signal in ["TERM", "INT"] {
        let mut p = ServiceProcess::start(binary, &isolated_env(addr_var));
        let health = reqwest::get(format!("{}/health", p.base_url())).await.unwrap();
        assert_eq!(health.status(), 200);
        let (status, took) = p.signal(signal, Duration::from_secs(15));
        assert!(status.success(), "exit status after SIG{signal}: {status}");
        assert!(took < Duration::from_secs(10), "shutdown after SIG{signal} took {took:?}");
        assert!(p.logged("shutdown requested"), "no shutdown log line after SIG{signal}");
        assert!(p.logged(stopped_message), "no {stopped_message:?} log line after SIG{signal}");
    }
}
