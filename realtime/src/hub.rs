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
use tokio::sync::{Notify, mpsc, watch};

/// Channels per `SUBSCRIBE` when (re)subscribing all of them.
const SUBSCRIBE_CHUNK: usize = 1000;

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

    /// Marks the socket too slow (counted once) and wakes its loop.
    pub fn raise(&self) {
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
    /// Counts pub/sub (re)connections: messages published while it was down never arrive, so
    /// each socket then catches up from its user stream.
    connections: watch::Receiver<u64>,
}

/// A socket's registration; dropping it removes the socket from every channel.
#[derive(Debug)]
pub struct Membership {
    hub: Hub,
    id: u64,
    user: String,
    pub rx: mpsc::Receiver<Arc<Published>>,
    pub overflow: Arc<Overflow>,
    /// Changes when the hub's pub/sub connection was re-established.
    pub reconnected: watch::Receiver<u64>,
    tx: mpsc::Sender<Arc<Published>>,
    /// The channels this socket is subscribed to.
    channels: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("too many connections for this user")]
pub struct TooManyConnections;

impl Hub {
    /// Starts the pub/sub loop for `redis_url`.
    pub fn start(redis_url: String) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (connected, connections) = watch::channel(0);
        let hub = Self { registry: Arc::default(), commands, connections };
        tokio::spawn(pubsub_loop(redis_url, hub.registry.clone(), rx, connected));
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
        let mut reconnected = self.connections.clone();
        reconnected.mark_unchanged();
        let mut m = Membership {
            hub: self.clone(),
            id,
            user: user.to_owned(),
            rx,
            overflow,
            reconnected,
            tx,
            channels: Vec::new(),
        };
        m.subscribe(&user_channel);
        Ok(m)
    }
}

impl Membership {
    pub fn subscribe(&mut self, channel: &str) {
        let sub = Subscriber { id: self.id, tx: self.tx.clone(), overflow: self.overflow.clone() };
        // Commands are queued while the registry is locked, so a subscribe and an unsubscribe
        // of one channel reach Redis in the order the registry saw them.
        let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
        let subs = reg.channels.entry(channel.to_owned()).or_default();
        if subs.iter().any(|s| s.id == self.id) {
            return;
        }
        subs.push(sub);
        if subs.len() == 1 {
            let _ = self.hub.commands.send(Command::Subscribe(channel.to_owned()));
        }
        drop(reg);
        self.channels.push(channel.to_owned());
    }

    /// How many channels the socket is subscribed to (its own user channel included).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn unsubscribe(&mut self, channel: &str) {
        self.channels.retain(|c| c != channel);
        let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = reg.channels.get_mut(channel) else {
            return;
        };
        subs.retain(|s| s.id != self.id);
        if subs.is_empty() {
            reg.channels.remove(channel);
            let _ = self.hub.commands.send(Command::Unsubscribe(channel.to_owned()));
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut reg = self.hub.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = reg.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                reg.per_user.remove(&self.user);
            }
        }
        // Only this socket's own channels: a scan of every channel would make each
        // disconnect cost as much as all the process's sockets.
        for channel in &self.channels {
            if let Some(subs) = reg.channels.get_mut(channel) {
                subs.retain(|s| s.id != self.id);
                if subs.is_empty() {
                    reg.channels.remove(channel);
                    let _ = self.hub.commands.send(Command::Unsubscribe(channel.clone()));
                }
            }
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
    connected: watch::Sender<u64>,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        match run_pubsub(&redis_url, &registry, &mut commands, &connected).await {
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
    connected: &watch::Sender<u64>,
) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let pubsub = client.get_async_pubsub().await?;
    let (mut sink, mut stream) = pubsub.split();
    let channels: Vec<String> = {
        let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.channels.keys().cloned().collect()
    };
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        sink.subscribe(chunk.to_vec()).await?;
    }
    tracing::info!(channels = channels.len(), "redis pub/sub connected");
    connected.send_modify(|n| *n += 1);
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
