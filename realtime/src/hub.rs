//! This process's connections, and the one Redis pub/sub connection that feeds them.
//!
//! Channels are subscribed while at least one local socket wants them. The pub/sub loop
//! reconnects with backoff after a Redis failure and subscribes again to every channel.

use crate::telemetry as names;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// What a socket's loop receives from the hub.
#[derive(Debug)]
pub struct Published {
    pub channel: Arc<str>,
    pub payload: Arc<str>,
}

/// The hub's handle on one socket.
#[derive(Debug, Clone)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Published>>,
    overflow: Arc<Overflow>,
}

/// Raised when a socket's queue is full: its loop closes it with 1013.
#[derive(Debug, Default)]
pub struct Overflow {
    raised: AtomicBool,
    notify: Notify,
}

impl Overflow {
    pub async fn wait(&self) {
        while !self.raised.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }

    fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            metrics::counter!(names::SLOW_CLIENTS_CLOSED).increment(1);
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

#[derive(Debug)]
enum Command {
    Subscribe(String),
    Unsubscribe(String),
}

#[derive(Debug, Default)]
struct Registry {
    channels: HashMap<String, Vec<Subscriber>>,
    per_user: HashMap<String, usize>,
    next_id: u64,
}

#[derive(Debug, Clone)]
pub struct Hub {
    registry: Arc<Mutex<Registry>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// A socket's registration; dropping it removes the socket from every channel.
#[derive(Debug)]
pub struct Membership {
    hub: Hub,
    id: u64,
    user: String,
    pub rx: mpsc::Receiver<Arc<Published>>,
    pub overflow: Arc<Overflow>,
    tx: mpsc::Sender<Arc<Published>>,
}

#[derive(Debug, thiserror::Error)]
#[error("too many connections for this user")]
pub struct TooManyConnections;

impl Hub {
    /// Starts the pub/sub loop for `redis_url`.
    pub fn start(redis_url: String) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let hub = Self { registry: Arc::default(), commands };
        tokio::spawn(pubsub_loop(redis_url, hub.registry.clone(), rx));
        hub
    }

    /// Registers a socket of `user`, subscribed to `user_channel`.
    pub fn join(
        &self,
        user: &str,
        user_channel: String,
        queue: usize,
        max_per_user: usize,
    ) -> Result<Membership, TooManyConnections> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let overflow = Arc::new(Overflow::default());
        let id = {
            let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            let count = reg.per_user.entry(user.to_owned()).or_insert(0);
            if *count >= max_per_user {
                return Err(TooManyConnections);
            }
            *count += 1;
            reg.next_id += 1;
            reg.next_id
        };
        let m = Membership { hub: self.clone(), id, user: user.to_owned(), rx, overflow, tx };
        m.subscribe(&user_channel);
        Ok(m)
    }
}

impl Membership {
    pub fn subscribe(&self, channel: &str) {
        let sub = Subscriber { id: self.id, tx: self.tx.clone(), overflow: self.overflow.clone() };
        let first = {
            let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
            let subs = reg.channels.entry(channel.to_owned()).or_default();
            if subs.iter().any(|s| s.id == self.id) {
                return;
            }
            subs.push(sub);
            subs.len() == 1
        };
        if first {
            let _ = self.hub.commands.send(Command::Subscribe(channel.to_owned()));
        }
    }

    pub fn unsubscribe(&self, channel: &str) {
        let last = {
            let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
            let Some(subs) = reg.channels.get_mut(channel) else {
                return;
            };
            subs.retain(|s| s.id != self.id);
            let empty = subs.is_empty();
            if empty {
                reg.channels.remove(channel);
            }
            empty
        };
        if last {
            let _ = self.hub.commands.send(Command::Unsubscribe(channel.to_owned()));
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let emptied: Vec<String> = {
            let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = reg.per_user.get_mut(&self.user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    reg.per_user.remove(&self.user);
                }
            }
            let mut emptied = Vec::new();
            reg.channels.retain(|channel, subs| {
                subs.retain(|s| s.id != self.id);
                if subs.is_empty() {
                    emptied.push(channel.clone());
                }
                !subs.is_empty()
            });
            emptied
        };
        for channel in emptied {
            let _ = self.hub.commands.send(Command::Unsubscribe(channel));
        }
    }
}

fn dispatch(registry: &Mutex<Registry>, channel: &str, payload: Arc<str>) {
    // `try_send` never waits, so the registry stays locked only for the hand-over.
    let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    let Some(subs) = reg.channels.get(channel) else { return };
    // One allocation per message, shared by every socket it goes to; a queue slot is a
    // pointer, which keeps each socket's first queue block (32 slots) small.
    let item = Arc::new(Published { channel: Arc::from(channel), payload });
    for s in subs {
        if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(item.clone()) {
            s.overflow.raise();
        }
    }
}

async fn pubsub_loop(
    redis_url: String,
    registry: Arc<Mutex<Registry>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        match run_pubsub(&redis_url, &registry, &mut commands).await {
            Ok(()) => return, // every hub handle is gone
            Err(e) => {
                tracing::warn!(error = %e, "redis pub/sub lost; reconnecting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn run_pubsub(
    redis_url: &str,
    registry: &Mutex<Registry>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let pubsub = client.get_async_pubsub().await?;
    let (mut sink, mut stream) = pubsub.split();
    let channels: Vec<String> = {
        let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.channels.keys().cloned().collect()
    };
    for c in channels {
        sink.subscribe(&c).await?;
    }
    tracing::info!("redis pub/sub connected");
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => return Ok(()),
                Some(Command::Subscribe(c)) => sink.subscribe(&c).await?,
                Some(Command::Unsubscribe(c)) => sink.unsubscribe(&c).await?,
            },
            msg = stream.next() => match msg {
                None => return Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub stream ended"))),
                Some(msg) => {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    dispatch(registry, msg.get_channel_name(), Arc::from(payload));
                }
            },
        }
    }
}
