//! This process's connections, and the one Redis pub/sub connection that feeds them.
//!
//! Channels are subscribed while at least one local socket wants them. The pub/sub loop
//! reconnects with backoff after a Redis failure and subscribes again to every channel.

use crate::telemetry as names;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

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
    mailbox: Arc<Mailbox>,
}

/// What the hub hands a socket's loop: its queue of frames, bounded, and signals as bits of
/// one word, behind one waker. Every socket of the process has one, so it is kept small: an
/// empty queue holds no memory, and the loop waits on one future for all of it.
#[derive(Debug, Default)]
pub struct Mailbox {
    bits: AtomicU8,
    queue: Mutex<VecDeque<Arc<Published>>>,
    capacity: usize,
    notify: Notify,
}

/// What [`Mailbox::next`] found.
#[derive(Debug)]
pub enum Mail {
    /// Raised signal bits (of the mask asked for).
    Signal(u8),
    Frame(Arc<Published>),
}

impl Mailbox {
    /// The socket's queue overflowed, or a write waited too long: close it with 1013.
    pub const TOO_SLOW: u8 = 1;
    /// The process is shutting down: close with 1012.
    pub const RESTART: u8 = 2;
    /// The pub/sub connection was re-established: what was published meanwhile never came,
    /// so the socket catches up from its stream. Cleared when [`Mailbox::wait`] reports it.
    pub const RECONNECTED: u8 = 4;

    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), ..Self::default() }
    }

    /// Waits until one of the bits of `mask` is raised, and answers the raised ones of them.
    pub async fn wait(&self, mask: u8) -> u8 {
        loop {
            if let Some(raised) = self.raised(mask) {
                return raised;
            }
            self.notify.notified().await;
        }
    }

    /// The next raised bits of `mask`, or else (if `frames`) the next frame. Signals come
    /// first: a socket to be closed gets nothing more.
    pub async fn next(&self, mask: u8, frames: bool) -> Mail {
        loop {
            // `notify_one` leaves a permit when nobody waits, so a raise or a push between
            // these checks and the wait below still wakes it.
            if let Some(raised) = self.raised(mask) {
                return Mail::Signal(raised);
            }
            if frames && let Some(frame) = self.lock().pop_front() {
                return Mail::Frame(frame);
            }
            self.notify.notified().await;
        }
    }

    fn raised(&self, mask: u8) -> Option<u8> {
        let raised = self.bits.load(Ordering::Acquire) & mask;
        if raised == 0 {
            return None;
        }
        if raised & Self::RECONNECTED != 0 {
            self.bits.fetch_and(!Self::RECONNECTED, Ordering::AcqRel);
        }
        Some(raised)
    }

    /// Queues `frame`, or, the queue being full, marks the socket too slow.
    fn push(&self, frame: Arc<Published>) {
        let mut queue = self.lock();
        if queue.len() >= self.capacity {
            drop(queue);
            self.raise(Self::TOO_SLOW);
            return;
        }
        queue.push_back(frame);
        drop(queue);
        self.notify.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Published>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises `bit` and wakes the socket's loop. Too slow is counted once per socket.
    pub fn raise(&self, bit: u8) {
        let before = self.bits.fetch_or(bit, Ordering::AcqRel);
        if bit == Self::TOO_SLOW && before & Self::TOO_SLOW == 0 {
            metrics::counter!(names::SLOW_CLIENTS_CLOSED).increment(1);
        }
        self.notify.notify_one();
    }
}

#[derive(Debug)]
enum Command {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
}

/// Who listens on which channel. A user channel's subscribers are exactly that user's sockets
/// here, so its list's length is their count: no second map per user. Each channel name is
/// allocated once, shared by the map and every membership in it.
#[derive(Debug, Default)]
struct Registry {
    channels: HashMap<Arc<str>, Vec<Subscriber>>,
    next_id: u64,
}

impl Registry {
    /// Adds `sub` to `channel` (its name shared if the channel is known) and answers the
    /// name, or `None` if `sub` was in it already. The first subscriber makes the hub
    /// subscribe in Redis.
    fn add(&mut self, channel: &str, sub: Subscriber, commands: &mpsc::UnboundedSender<Command>) -> Option<Arc<str>> {
        if let Some((name, subs)) = self.channels.get_key_value(channel) {
            if subs.iter().any(|s| s.id == sub.id) {
                return None;
            }
            let name = name.clone();
            self.channels.get_mut(channel)?.push(sub);
            return Some(name);
        }
        let name: Arc<str> = Arc::from(channel);
        // Most channels have one socket here: `vec!` makes room for exactly one, where a first
        // `push` would make room for four.
        self.channels.insert(name.clone(), vec![sub]);
        let _ = commands.send(Command::Subscribe(name.clone()));
        Some(name)
    }

    /// Takes socket `id` out of `channel`; the last one out makes the hub unsubscribe.
    fn remove(&mut self, channel: &str, id: u64, commands: &mpsc::UnboundedSender<Command>) {
        let Some(subs) = self.channels.get_mut(channel) else { return };
        subs.retain(|s| s.id != id);
        if subs.is_empty()
            && let Some((name, _)) = self.channels.remove_entry(channel)
        {
            let _ = commands.send(Command::Unsubscribe(name));
        }
    }
}

/// The process's hub: one pointer, as every socket's membership holds one.
#[derive(Debug, Clone)]
pub struct Hub(Arc<HubShared>);

#[derive(Debug)]
struct HubShared {
    registry: Arc<Mutex<Registry>>,
    commands: mpsc::UnboundedSender<Command>,
    /// Set once the process shuts down: a socket joining later is told to restart at once.
    closing: AtomicBool,
}

impl Hub {
    fn new(commands: mpsc::UnboundedSender<Command>) -> Self {
        Self(Arc::new(HubShared { registry: Arc::default(), commands, closing: AtomicBool::new(false) }))
    }
}

/// A socket's registration; dropping it removes the socket from every channel.
#[derive(Debug)]
pub struct Membership {
    hub: Hub,
    id: u64,
    pub mailbox: Arc<Mailbox>,
    /// The user's channel, always subscribed.
    user_channel: Arc<str>,
    /// The game channels this socket watches (most sockets: none, and no allocation).
    games: Vec<Arc<str>>,
}

#[derive(Debug, thiserror::Error)]
#[error("too many connections for this user")]
pub struct TooManyConnections;

impl Hub {
    /// Starts the pub/sub loop for `redis_url`.
    pub fn start(redis_url: String) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let hub = Self::new(commands);
        tokio::spawn(pubsub_loop(redis_url, hub.0.registry.clone(), rx));
        hub
    }

    /// Tells every socket, and every one that joins from now on, to close with 1012.
    pub fn restart_all(&self) {
        let reg = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        self.0.closing.store(true, Ordering::Release);
        raise_all(&reg, Mailbox::RESTART);
    }

    /// Registers a socket subscribed to its user's `user_channel`, unless that user already
    /// has `max_per_user` sockets here.
    pub fn join(
        &self,
        user_channel: &str,
        queue: usize,
        max_per_user: usize,
    ) -> Result<Membership, TooManyConnections> {
        let mailbox = Arc::new(Mailbox::new(queue));
        let mut reg = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.closing.load(Ordering::Acquire) {
            mailbox.raise(Mailbox::RESTART);
        }
        if reg.channels.get(user_channel).map_or(0, Vec::len) >= max_per_user {
            return Err(TooManyConnections);
        }
        reg.next_id += 1;
        let id = reg.next_id;
        // Commands are queued while the registry is locked, so a subscribe and an unsubscribe
        // of one channel reach Redis in the order the registry saw them.
        let sub = Subscriber { id, mailbox: mailbox.clone() };
        let user_channel = reg.add(user_channel, sub, &self.0.commands).unwrap_or_else(|| Arc::from(user_channel));
        drop(reg);
        Ok(Membership { hub: self.clone(), id, mailbox, user_channel, games: Vec::new() })
    }
}

impl Membership {
    /// The user's channel this socket is subscribed to.
    pub fn user_channel(&self) -> &Arc<str> {
        &self.user_channel
    }

    /// Subscribes the socket to the game channel `channel`.
    pub fn subscribe(&mut self, channel: &str) {
        let sub = Subscriber { id: self.id, mailbox: self.mailbox.clone() };
        let mut reg = self.hub.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = reg.add(channel, sub, &self.hub.0.commands) {
            self.games.push(name);
        }
    }

    /// How many channels the socket is subscribed to (its own user channel included).
    pub fn channel_count(&self) -> usize {
        1 + self.games.len()
    }

    /// Unsubscribes the socket from the game channel `channel`.
    pub fn unsubscribe(&mut self, channel: &str) {
        if *self.user_channel == *channel {
            return;
        }
        self.games.retain(|c| **c != *channel);
        let mut reg = self.hub.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.remove(channel, self.id, &self.hub.0.commands);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut reg = self.hub.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Only this socket's own channels: a scan of every channel would make each
        // disconnect cost as much as all the process's sockets.
        reg.remove(&self.user_channel, self.id, &self.hub.0.commands);
        for channel in &self.games {
            reg.remove(channel, self.id, &self.hub.0.commands);
        }
    }
}

fn dispatch(registry: &Mutex<Registry>, channel: &str, payload: Arc<str>) {
    // A push never waits, so the registry stays locked only for the hand-over.
    let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    let Some((name, subs)) = reg.channels.get_key_value(channel) else { return };
    // One allocation per message, shared by every socket it goes to.
    let item = Arc::new(Published { channel: name.clone(), payload });
    for s in subs {
        s.mailbox.push(item.clone());
    }
}

/// Raises `bit` on every socket of the process (each is in at least its user channel).
fn raise_all(reg: &Registry, bit: u8) {
    for s in reg.channels.values().flatten() {
        s.mailbox.raise(bit);
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
    let channels: Vec<Arc<str>> = {
        let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.channels.keys().cloned().collect()
    };
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        sink.subscribe(chunk.iter().map(|c| &**c).collect::<Vec<&str>>()).await?;
    }
    tracing::info!(channels = channels.len(), "redis pub/sub connected");
    // Messages published while it was down never arrive: each socket catches up.
    raise_all(&registry.lock().unwrap_or_else(|p| p.into_inner()), Mailbox::RECONNECTED);
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => return Ok(()),
                Some(Command::Subscribe(c)) => sink.subscribe(&*c).await?,
                Some(Command::Unsubscribe(c)) => sink.unsubscribe(&*c).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_raised_before_the_wait_is_seen_and_a_reconnect_is_reported_once() {
        let signal = Mailbox::new(4);
        signal.raise(Mailbox::RECONNECTED);
        let all = Mailbox::TOO_SLOW | Mailbox::RESTART | Mailbox::RECONNECTED;
        assert_eq!(signal.wait(all).await, Mailbox::RECONNECTED);
        // Reported, it is cleared: the next wait sleeps until something else is raised.
        let pending = tokio::time::timeout(Duration::from_millis(20), signal.wait(all)).await;
        assert!(pending.is_err(), "a reconnect reported twice");
        signal.raise(Mailbox::RESTART);
        assert_eq!(signal.wait(all).await, Mailbox::RESTART);
        // Restart and too slow stay raised.
        assert_eq!(signal.wait(all).await, Mailbox::RESTART);
    }

    #[tokio::test]
    async fn a_wait_for_some_bits_sleeps_through_the_others_and_leaves_them_raised() {
        let signal = Arc::new(Mailbox::new(4));
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.wait(Mailbox::TOO_SLOW).await }
        });
        signal.raise(Mailbox::RECONNECTED);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woke for a bit it does not wait for");
        signal.raise(Mailbox::TOO_SLOW);
        assert_eq!(waiter.await.ok(), Some(Mailbox::TOO_SLOW));
        assert_eq!(signal.wait(Mailbox::RECONNECTED).await, Mailbox::RECONNECTED, "the other bit stays raised");
    }

    /// A hub without its pub/sub loop, and what it would have told Redis.
    fn bare_hub() -> (Hub, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        (Hub::new(commands), rx)
    }

    fn told(rx: &mut mpsc::UnboundedReceiver<Command>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| match c {
                Command::Subscribe(c) => format!("+{c}"),
                Command::Unsubscribe(c) => format!("-{c}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_user_s_sockets_share_one_subscription_up_to_the_limit_and_each_gets_every_frame() {
        let (hub, mut rx) = bare_hub();
        let a = hub.join("u:a", 4, 2).unwrap_or_else(|_| panic!("first socket refused"));
        let b = hub.join("u:a", 4, 2).unwrap_or_else(|_| panic!("second socket refused"));
        assert!(hub.join("u:a", 4, 2).is_err(), "a third socket over the limit of 2");
        assert!(hub.join("u:b", 4, 2).is_ok(), "another user's socket is not counted against u:a");
        assert_eq!(told(&mut rx), ["+u:a", "+u:b", "-u:b"], "one SUBSCRIBE per channel; u:b's socket dropped at once");
        assert!(Arc::ptr_eq(a.user_channel(), b.user_channel()), "one name for the channel");
        dispatch(&hub.0.registry, "u:a", Arc::from("hello"));
        assert_eq!(next_frame(&a.mailbox).await.as_deref(), Some("hello"));
        assert_eq!(next_frame(&b.mailbox).await.as_deref(), Some("hello"));
        drop(a);
        assert!(told(&mut rx).is_empty(), "the channel stays while a socket of u:a is here");
        assert!(hub.join("u:a", 4, 2).is_ok(), "a slot is free again");
        drop(b);
        assert_eq!(told(&mut rx), ["-u:a"], "the last socket out unsubscribes");
    }

    #[tokio::test]
    async fn a_game_channel_is_watched_while_any_socket_subscribes_it_and_dropped_with_the_last() {
        let (hub, mut rx) = bare_hub();
        let mut a = hub.join("u:a", 4, 5).unwrap_or_else(|_| panic!("refused"));
        let mut b = hub.join("u:b", 4, 5).unwrap_or_else(|_| panic!("refused"));
        a.subscribe("g:1");
        a.subscribe("g:1");
        b.subscribe("g:1");
        assert_eq!(a.channel_count(), 2, "a second subscribe of the same game is one channel");
        assert_eq!(told(&mut rx), ["+u:a", "+u:b", "+g:1"]);
        a.unsubscribe("g:1");
        dispatch(&hub.0.registry, "g:1", Arc::from("move"));
        assert_eq!(next_frame(&b.mailbox).await.as_deref(), Some("move"));
        assert_eq!(next_frame(&a.mailbox).await, None, "unsubscribed");
        a.unsubscribe(&a.user_channel().clone());
        dispatch(&hub.0.registry, "u:a", Arc::from("own"));
        assert_eq!(next_frame(&a.mailbox).await.as_deref(), Some("own"), "a socket cannot leave its user channel");
        drop(b);
        assert_eq!(told(&mut rx), ["-u:b", "-g:1"]);
    }

    fn frame(n: usize) -> Arc<Published> {
        Arc::new(Published { channel: Arc::from("c"), payload: Arc::from(n.to_string()) })
    }

    async fn next_frame(mailbox: &Mailbox) -> Option<String> {
        next_frame_within(mailbox, Duration::from_millis(20)).await
    }

    #[tokio::test]
    async fn frames_come_in_order_only_when_asked_for_and_a_full_queue_marks_the_socket_too_slow() {
        let mailbox = Mailbox::new(3);
        for n in 0..3 {
            mailbox.push(frame(n));
        }
        let held = tokio::time::timeout(Duration::from_millis(20), mailbox.next(Mailbox::TOO_SLOW, false)).await;
        assert!(held.is_err(), "a frame came while frames were held");
        assert_eq!(next_frame(&mailbox).await.as_deref(), Some("0"));
        mailbox.push(frame(3));
        // Three queued again: the next one overflows, and the signal comes before any frame.
        mailbox.push(frame(4));
        match mailbox.next(Mailbox::TOO_SLOW, true).await {
            Mail::Signal(bits) => assert_eq!(bits, Mailbox::TOO_SLOW),
            Mail::Frame(f) => panic!("frame {} before the overflow", f.payload),
        }
    }

    #[tokio::test]
    async fn a_waiting_socket_wakes_for_a_frame_pushed_later() {
        let mailbox = Arc::new(Mailbox::new(8));
        let waiter = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { next_frame_within(&mailbox, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        mailbox.push(frame(7));
        assert_eq!(waiter.await.ok().flatten().as_deref(), Some("7"));
    }

    async fn next_frame_within(mailbox: &Mailbox, within: Duration) -> Option<String> {
        match tokio::time::timeout(within, mailbox.next(Mailbox::TOO_SLOW, true)).await {
            Ok(Mail::Frame(f)) => Some(f.payload.to_string()),
            _ => None,
        }
    }
}
