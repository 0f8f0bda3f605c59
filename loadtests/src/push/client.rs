//! The `client` role: one process holding up to [`MAX_SOCKETS`] sockets, one per user, to
//! either stack, each from a 127.0.0.x source address (one address has ~28K ephemeral ports),
//! recording each message's push latency (receive time minus the planned send time in its
//! text) into an HDR histogram per phase.
//!
//! It is driven by the coordinator over stdin/stdout, one JSON line answering each command:
//! `status`, `stop` (open no more sockets), `count <phase>`, `report <phase>` (with the
//! histogram, base64 V2), `quit`. It exits when stdin closes, so it never outlives the
//! coordinator.

use super::wire::{self, Stack};
use agora_platform::auth::JwtKeys;
use anyhow::Context;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use secrecy::SecretString;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Sockets one client process may hold: each process has at most 20,000 open files.
pub const MAX_SOCKETS: u64 = 19_000;

/// How long one connection attempt (TCP connect + upgrade + the stack's hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct ClientArgs {
    pub stack: Stack,
    /// Server ports on 127.0.0.1; user `u` connects to `ports[u % ports.len()]`.
    pub ports: Vec<u16>,
    /// The global index of this process's first user, and how many users it connects.
    pub first: u64,
    pub count: u64,
    pub seed: u64,
    /// Socket `i` of this process binds 127.0.0.(source_first + i / per_source).
    pub source_first: u8,
    pub per_source: u64,
    /// Connection attempts in flight.
    pub concurrency: usize,
    pub threads: usize,
    /// Agora's JWT secret (from `AGORA_BENCH_SECRET`).
    pub secret: String,
}

impl ClientArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.ports.is_empty(), "client: --ports is empty");
        anyhow::ensure!(
            (1..=MAX_SOCKETS).contains(&self.count),
            "client: --count must be 1..={MAX_SOCKETS} (20,000 open files per process)"
        );
        anyhow::ensure!(self.per_source >= 1, "client: --per-source must be at least 1");
        let last = u64::from(self.source_first) + (self.count - 1) / self.per_source;
        anyhow::ensure!(
            self.source_first >= 1 && last <= 254,
            "client: source addresses 127.0.0.{}..{last} leave 127.0.0.1-254",
            self.source_first
        );
        anyhow::ensure!(
            self.stack == Stack::SocketIo || !self.secret.is_empty(),
            "client: AGORA_BENCH_SECRET is empty"
        );
        Ok(())
    }
}

#[derive(Debug)]
struct PhaseRecord {
    received: u64,
    hist: Histogram<u64>,
}

#[derive(Debug, Default)]
struct Shared {
    attempted: AtomicU64,
    finished: AtomicU64,
    open: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    /// Frames that carried no benchmark marker (other than hellos and pings).
    stray: AtomicU64,
    launching: AtomicBool,
    stop: AtomicBool,
    up: Vec<AtomicBool>,
    first_error: Mutex<Option<String>>,
    close_reasons: Mutex<HashMap<String, u64>>,
    phases: Mutex<HashMap<u32, PhaseRecord>>,
}

impl Shared {
    fn record(&self, text: &str) {
        let Some((phase, planned)) = wire::find_marker(text) else {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let us = (wire::now_ns().saturating_sub(planned) / 1_000).max(1);
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let rec = phases.entry(phase).or_insert_with(|| PhaseRecord { received: 0, hist: wire::histogram() });
        rec.received += 1;
        rec.hist.saturating_record(us);
    }

    fn note_error(&self, e: &anyhow::Error) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }

    fn note_close(&self, reason: String) {
        *self.close_reasons.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_insert(0) += 1;
    }
}

/// Runs the client role until stdin closes or `quit`.
pub fn main(args: ClientArgs) -> anyhow::Result<()> {
    args.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.clamp(1, 8))
        .enable_all()
        .build()
        .context("client runtime")?;
    rt.block_on(run(args))
}

async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let keys = match args.stack {
        Stack::Agora => Some(JwtKeys::new(&SecretString::from(args.secret.clone()), Duration::from_secs(86_400))?),
        Stack::SocketIo => None,
    };
    let shared = Arc::new(Shared {
        up: (0..args.count).map(|_| AtomicBool::new(false)).collect(),
        launching: AtomicBool::new(true),
        ..Shared::default()
    });
    tokio::spawn(launch(args.clone(), keys, shared.clone()));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next().and_then(|p| p.parse::<u32>().ok())) {
            (Some("status"), _) => status(&args, &shared),
            (Some("stop"), _) => {
                shared.stop.store(true, Ordering::Release);
                json!({"ok": true})
            }
            (Some("count"), Some(phase)) => {
                let phases = shared.phases.lock().unwrap_or_else(|p| p.into_inner());
                json!({"phase": phase, "received": phases.get(&phase).map_or(0, |r| r.received),
                       "open": shared.open.load(Ordering::Acquire)})
            }
            (Some("report"), Some(phase)) => {
                let rec = shared.phases.lock().unwrap_or_else(|p| p.into_inner()).remove(&phase);
                let (received, hist) = match rec {
                    Some(r) => (r.received, wire::encode_histogram(&r.hist)?),
                    None => (0, wire::encode_histogram(&wire::histogram())?),
                };
                json!({"phase": phase, "received": received, "hist": hist,
                       "open": shared.open.load(Ordering::Acquire), "stray": shared.stray.load(Ordering::Relaxed)})
            }
            (Some("quit"), _) => {
                say(&json!({"ok": true}))?;
                break;
            }
            _ => json!({"error": format!("unknown command {line:?}")}),
        };
        say(&answer)?;
    }
    // Sockets close with the process.
    std::process::exit(0)
}

fn say(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

fn status(args: &ClientArgs, shared: &Shared) -> serde_json::Value {
    let launching = shared.launching.load(Ordering::Acquire);
    let attempted = shared.attempted.load(Ordering::Acquire);
    let finished = shared.finished.load(Ordering::Acquire);
    // Users (global indices) without an open socket right now.
    let down: Vec<[u64; 2]> = wire::ranges(args.count, |i| !shared.up[i as usize].load(Ordering::Acquire))
        .into_iter()
        .map(|(s, e)| [args.first + s, args.first + e])
        .collect();
    json!({
        "attempted": attempted,
        "finished": finished,
        "connecting": launching || finished < attempted,
        "open": shared.open.load(Ordering::Acquire),
        "failed": shared.failed.load(Ordering::Acquire),
        "closed": shared.closed.load(Ordering::Acquire),
        "down": down,
        "first_error": *shared.first_error.lock().unwrap_or_else(|p| p.into_inner()),
        "close_reasons": *shared.close_reasons.lock().unwrap_or_else(|p| p.into_inner()),
        "rss_kib": super::procfs::rss_kib(std::process::id()),
    })
}

async fn launch(args: ClientArgs, keys: Option<JwtKeys>, shared: Arc<Shared>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency.clamp(1, 4096)));
    for i in 0..args.count {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let Ok(permit) = gate.clone().acquire_owned().await else { break };
        shared.attempted.fetch_add(1, Ordering::AcqRel);
        let (args2, keys, shared) = (args.clone(), keys.clone(), shared.clone());
        tokio::spawn(async move {
            let mut tries = 0;
            let ws = loop {
                tries += 1;
                match tokio::time::timeout(CONNECT_TIMEOUT, open(&args2, keys.as_ref(), i)).await {
                    Ok(Ok(ws)) => break Some(ws),
                    Ok(Err(e)) if tries < 3 => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(250 * tries)).await;
                    }
                    Ok(Err(e)) => {
                        shared.note_error(&e);
                        break None;
                    }
                    Err(_) if tries < 3 => {}
                    Err(_) => {
                        shared.note_error(&anyhow::anyhow!("connecting timed out after {CONNECT_TIMEOUT:?}"));
                        break None;
                    }
                }
            };
            let Some(ws) = ws else {
                shared.failed.fetch_add(1, Ordering::AcqRel);
                shared.finished.fetch_add(1, Ordering::AcqRel);
                drop(permit);
                return;
            };
            shared.up[i as usize].store(true, Ordering::Release);
            shared.open.fetch_add(1, Ordering::AcqRel);
            shared.finished.fetch_add(1, Ordering::AcqRel);
            drop(permit);
            let reason = receive(args2.stack, ws, &shared).await;
            shared.up[i as usize].store(false, Ordering::Release);
            shared.open.fetch_sub(1, Ordering::AcqRel);
            shared.closed.fetch_add(1, Ordering::AcqRel);
            shared.note_close(reason);
        });
    }
    shared.launching.store(false, Ordering::Release);
}

/// Connects user `i` of this process and waits for the stack's hello.
async fn open(args: &ClientArgs, keys: Option<&JwtKeys>, i: u64) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let global = args.first + i;
    let user = wire::user_id(args.seed, global);
    let port = args.ports[(global % args.ports.len() as u64) as usize];
    let source = wire::source_addr(args.source_first + (i / args.per_source) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0)).with_context(|| format!("binding {source}"))?;
    let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let url = match (args.stack, keys) {
        (Stack::Agora, Some(keys)) => format!("ws://127.0.0.1:{port}/v1/stream?token={}", keys.issue(user)?),
        (Stack::Agora, None) => anyhow::bail!("no JWT keys"),
        (Stack::SocketIo, _) => format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&user={user}"),
    };
    // Small buffers: the client's memory is not what is measured, and 19K sockets a process
    // at tungstenite's default 128 KiB read buffer would be 2.4 GiB.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await.context("upgrade")?;
    match args.stack {
        Stack::Agora => {
            let first = next_text(&mut ws).await?;
            anyhow::ensure!(first.starts_with(r#"{"type":"ready""#), "first frame is not ready: {first:.80}");
        }
        Stack::SocketIo => {
            let open = next_text(&mut ws).await?;
            anyhow::ensure!(open.starts_with("0{"), "no Engine.IO open packet: {open:.80}");
            ws.send(Message::Text("40".into())).await?;
            loop {
                let t = next_text(&mut ws).await?;
                if t.starts_with("40") {
                    break;
                }
                if t == "2" {
                    ws.send(Message::Text("3".into())).await?;
                    continue;
                }
                anyhow::bail!("no Socket.IO connect answer: {t:.80}");
            }
        }
    }
    Ok(ws)
}

async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => anyhow::bail!("closed during the hello: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("ended during the hello"),
        }
    }
}

/// Receives until the socket ends; the reason it ended.
async fn receive(stack: Stack, mut ws: WebSocketStream<TcpStream>, shared: &Shared) -> String {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                match stack {
                    // Engine.IO heartbeat: the server pings, the client answers.
                    Stack::SocketIo if t == "2" => {
                        if ws.send(Message::Text("3".into())).await.is_err() {
                            return "send failed".into();
                        }
                    }
                    Stack::SocketIo if t.starts_with("42") => shared.record(t),
                    Stack::SocketIo => {}
                    Stack::Agora if t.starts_with(r#"{"type":"event""#) => shared.record(t),
                    Stack::Agora => {}
                }
            }
            Some(Ok(Message::Close(c))) => {
                return c.map_or_else(|| "close".to_owned(), |c| format!("close {}", u16::from(c.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return format!("error: {e}"),
            None => return "ended".into(),
        }
    }
}
