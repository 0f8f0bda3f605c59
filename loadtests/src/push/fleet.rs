//! Starting and stopping the benchmark's processes: realtime or Socket.IO servers, Socket.IO
//! emitters and client processes. Every child is killed when its handle is dropped, so an
//! error or a signal in the coordinator leaves nothing running.

use super::client::MAX_SOCKETS;
use super::wire::Stack;
use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// What every process of a run shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub realtime_bin: PathBuf,
    pub node: String,
    pub socketio_dir: PathBuf,
    pub self_exe: PathBuf,
    pub log_dir: PathBuf,
    /// Topic prefix, Redis prefix, Mongo database, consumer group stem and Socket.IO key.
    pub prefix: String,
    pub secret: String,
    pub kafka: String,
    pub mongo: String,
    pub redis: String,
    pub seed: u64,
    /// `AGORA_*` settings for the realtime processes beyond the ones the run sets.
    pub realtime_env: Vec<(String, String)>,
}

impl Settings {
    pub fn socketio_key(&self) -> String {
        format!("{}-sio", self.prefix)
    }
}

/// A child process of the run.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    pub port: u16,
    child: Child,
    /// Held open: a Socket.IO server exits when it closes.
    _stdin: Option<ChildStdin>,
}

impl Proc {
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

pub async fn stop_all(procs: Vec<Proc>, grace: Duration) {
    futures::future::join_all(procs.into_iter().map(|p| p.stop(grace))).await;
}

fn log_file(s: &Settings, name: &str) -> anyhow::Result<Stdio> {
    let path = s.log_dir.join(format!("{name}.log"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    Ok(Stdio::from(f))
}

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn(mut cmd: Command, name: &str, port: u16, piped_stdin: bool) -> anyhow::Result<Proc> {
    cmd.kill_on_drop(true);
    if piped_stdin {
        cmd.stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let pid = child.id().with_context(|| format!("{name} has no pid"))?;
    let stdin = child.stdin.take();
    Ok(Proc { name: name.to_owned(), pid, port, child, _stdin: stdin })
}

/// `n` realtime processes, the first `routers` of them in one router group (the others only
/// hold sockets), each ready (`GET /ready` is 200).
pub async fn start_realtime(
    s: &Settings,
    n: usize,
    routers: usize,
    tag: &str,
    http: &reqwest::Client,
) -> anyhow::Result<Vec<Proc>> {
    let mut procs = Vec::new();
    for i in 0..n {
        let port = free_port()?;
        let name = format!("{tag}-realtime-{i}");
        let mut cmd = Command::new(&s.realtime_bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AGORA_REALTIME_ADDR", format!("127.0.0.1:{port}"))
            .env("AGORA_REALTIME_GROUP", format!("{}-router", s.prefix))
            .env("AGORA_TOPIC_PREFIX", &s.prefix)
            .env("AGORA_REDIS_PREFIX", &s.prefix)
            .env("AGORA_MONGO_DB", &s.prefix)
            .env("AGORA_JWT_SECRET", &s.secret)
            .env("AGORA_KAFKA_BROKERS", &s.kafka)
            .env("AGORA_MONGO_URI", &s.mongo)
            .env("AGORA_REDIS_URL", &s.redis)
            .env("AGORA_LOG", "warn")
            // One worker thread a process, like the Node servers beside them: the fleet is
            // several processes per core here, and a second worker per process is woken for
            // little work (2,807 -> 3,749 events per server CPU-s at 1,000 events/s).
            .env("TOKIO_WORKER_THREADS", "1")
            .envs(s.realtime_env.iter().map(|(k, v)| (k, v)))
            .env("AGORA_REALTIME_ROUTE", if i < routers.max(1) { "true" } else { "false" })
            .stdout(log_file(s, &name)?)
            .stderr(log_file(s, &name)?);
        procs.push(spawn(cmd, &name, port, false)?);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for p in &mut procs {
        loop {
            if let Some(why) = p.exited() {
                anyhow::bail!("{why} (see {})", s.log_dir.join(format!("{}.log", p.name)).display());
            }
            let ready = http
                .get(format!("http://127.0.0.1:{}/ready", p.port))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{} not ready after 90 s", p.name);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(procs)
}

async fn first_line(stdout: ChildStdout, name: &str, within: Duration) -> anyhow::Result<Value> {
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(within, lines.next_line())
        .await
        .with_context(|| format!("{name}: no ready line in {within:?}"))??
        .with_context(|| format!("{name} ended before it was ready"))?;
    let v: Value = serde_json::from_str(&line).with_context(|| format!("{name}: {line:?}"))?;
    anyhow::ensure!(v["ready"] == true, "{name}: {line}");
    // Keep reading (and dropping) whatever else it prints, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(v)
}

fn node_command(s: &Settings, script: &str) -> Command {
    let mut cmd = Command::new(&s.node);
    cmd.current_dir(&s.socketio_dir)
        .arg("--max-old-space-size=4096")
        .arg(script)
        .env("SIO_KEY", s.socketio_key())
        .env("REDIS_URL", &s.redis)
        .stdout(Stdio::piped());
    cmd
}

/// `n` Socket.IO servers sharing the Redis adapter under the run's key.
pub async fn start_socketio(s: &Settings, n: usize, tag: &str) -> anyhow::Result<Vec<Proc>> {
    let mut procs = Vec::new();
    for i in 0..n {
        let port = free_port()?;
        let name = format!("{tag}-socketio-{i}");
        let mut cmd = node_command(s, "server.js");
        cmd.env("SIO_PORT", port.to_string()).stderr(log_file(s, &name)?);
        let mut p = spawn(cmd, &name, port, true)?;
        let stdout = p.child.stdout.take().context("socket.io stdout")?;
        first_line(stdout, &name, Duration::from_secs(30)).await?;
        procs.push(p);
    }
    Ok(procs)
}

/// A Socket.IO emitter (emitter.js) and the pipe that feeds it one message per line.
#[derive(Debug)]
pub struct Emitter {
    pub proc: Proc,
    pub input: tokio::io::BufWriter<ChildStdin>,
}

pub async fn start_emitter(s: &Settings, i: usize) -> anyhow::Result<Emitter> {
    let name = format!("socketio-emitter-{i}");
    let mut cmd = node_command(s, "emitter.js");
    cmd.stdin(Stdio::piped()).stderr(log_file(s, &name)?).kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let pid = child.id().context("emitter pid")?;
    let stdin = child.stdin.take().context("emitter stdin")?;
    let stdout = child.stdout.take().context("emitter stdout")?;
    first_line(stdout, &name, Duration::from_secs(30)).await?;
    let proc = Proc { name, pid, port: 0, child, _stdin: None };
    Ok(Emitter { proc, input: tokio::io::BufWriter::with_capacity(256 * 1024, stdin) })
}

impl Emitter {
    /// Closes its input (it emits what is left, then exits) and waits for it.
    pub async fn finish(mut self) {
        let _ = self.input.shutdown().await;
        drop(self.input);
        self.proc.stop(Duration::from_secs(10)).await;
    }
}

/// A client process and its command pipe.
#[derive(Debug)]
pub struct ClientProc {
    pub proc: Proc,
    pub first: u64,
    pub count: u64,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientProc {
    /// Sends one command and reads its one-line answer.
    pub async fn ask(&mut self, command: &str) -> anyhow::Result<Value> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.with_context(|| self.proc.name.clone())?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .with_context(|| format!("{}: no answer to {command}", self.proc.name))??
            .with_context(|| format!("{} ended (see its log)", self.proc.name))?;
        serde_json::from_str(&line).with_context(|| format!("{}: {line:?}", self.proc.name))
    }
}

/// Where the next client's source addresses start (127.0.0.x), moving on with each client so
/// a new fleet never meets the TIME_WAIT ports of the last one.
#[derive(Debug)]
pub struct Sources {
    pub next: u8,
    pub per_source: u64,
}

impl Sources {
    fn take(&mut self, sockets: u64) -> u8 {
        let needed = sockets.div_ceil(self.per_source).max(1);
        if u64::from(self.next) + needed - 1 > 254 {
            self.next = 2;
        }
        let first = self.next;
        self.next = (u64::from(first) + needed).min(255) as u8;
        first
    }
}

/// Client processes for users `first..first + count` against `ports`, each with at most
/// `per_client` sockets.
#[allow(clippy::too_many_arguments)]
pub async fn start_clients(
    s: &Settings,
    stack: Stack,
    ports: &[u16],
    first: u64,
    count: u64,
    per_client: u64,
    sources: &mut Sources,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<Vec<ClientProc>> {
    let per_client = per_client.clamp(1, MAX_SOCKETS);
    let n = count.div_ceil(per_client).max(1);
    let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let mut clients = Vec::new();
    for c in 0..n {
        let begin = first + c * count / n;
        let end = first + (c + 1) * count / n;
        if end == begin {
            continue;
        }
        let name = format!("{tag}-client-{c}");
        let mut cmd = Command::new(&s.self_exe);
        cmd.arg("client")
            .args(["--stack", stack.as_str(), "--ports", &ports])
            .args(["--first", &begin.to_string(), "--count", &(end - begin).to_string()])
            .args(["--seed", &s.seed.to_string()])
            .args(["--source-first", &sources.take(end - begin).to_string()])
            .args(["--per-source", &sources.per_source.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .env("AGORA_BENCH_SECRET", &s.secret)
            .stdout(Stdio::piped())
            .stderr(log_file(s, &name)?);
        let mut proc = spawn(cmd, &name, 0, true)?;
        let stdin = proc._stdin.take().context("client stdin")?;
        let stdout = proc.child.stdout.take().context("client stdout")?;
        clients.push(ClientProc {
            proc,
            first: begin,
            count: end - begin,
            stdin,
            lines: BufReader::new(stdout).lines(),
        });
    }
    Ok(clients)
}

/// Which stack a fleet of servers is.
pub fn server_kind(stack: Stack) -> &'static str {
    match stack {
        Stack::Agora => "agora-realtime",
        Stack::SocketIo => "node server.js (socket.io + redis adapter)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_source_addresses_of_its_own_and_they_wrap_before_255() {
        let mut s = Sources { next: 2, per_source: 8_000 };
        assert_eq!(s.take(16_000), 2);
        assert_eq!(s.take(1), 4);
        assert_eq!(s.next, 5);
        s.next = 250;
        assert_eq!(s.take(40_000), 250, "5 addresses fit in 250..=254");
        assert_eq!(s.next, 255);
        assert_eq!(s.take(1), 2, "and the next one wraps");
        s.next = 250;
        assert_eq!(s.take(48_000), 2, "6 addresses do not fit in 250..=254");
        assert_eq!(s.next, 8);
    }
}
