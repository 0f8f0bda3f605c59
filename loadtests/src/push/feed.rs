//! The open-loop event schedule, and where its events go.
//!
//! One benchmark *event* is one direct message between two connected users: Agora's
//! `message.sent` (written straight to `<prefix>.conversations`, keyed by the conversation,
//! as command-api writes it; the router pushes a `message` frame to both participants), and
//! for Socket.IO `io.to("user:<from>").to("user:<to>").emit("message", m)` through the Redis
//! adapter (emitter.js). Either way one event is two frames, one to each participant. The
//! message text is the event's phase and planned send time ([`wire::marker`]), so each
//! frame's latency is measured from when the event was due, not from when a possibly late
//! generator sent it.

use super::fleet::Emitter;
use super::wire;
use agora_schemas::aggregate::{AggregateType, Topics, partition_key};
use agora_schemas::events::{Event, MessageSent};
use agora_schemas::{ConversationId, Envelope, MessageId, Metadata, UserId};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where a run's events go.
pub enum Feeder {
    /// Straight to Kafka, as command-api would append them.
    Kafka {
        producer: FutureProducer,
        topic: String,
        acks: mpsc::UnboundedSender<DeliveryFuture>,
        failed: Arc<AtomicU64>,
    },
    /// To Socket.IO emitters, round robin, one message per line.
    SocketIo { emitters: Vec<Emitter>, next: usize },
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Feeder::Kafka { topic, .. } => {
                f.debug_struct("Feeder::Kafka").field("topic", topic).finish_non_exhaustive()
            }
            Feeder::SocketIo { emitters, .. } => {
                f.debug_struct("Feeder::SocketIo").field("emitters", &emitters.len()).finish()
            }
        }
    }
}

impl Feeder {
    pub fn kafka(brokers: &str, prefix: &str) -> anyhow::Result<Self> {
        // command-api's producer settings (idempotent, acks=all, linger 2 ms, lz4).
        let producer: FutureProducer =
            agora_platform::kafka::producer_config(brokers, Duration::from_secs(30)).create()?;
        let (acks, mut rx) = mpsc::unbounded_channel::<DeliveryFuture>();
        let failed = Arc::new(AtomicU64::new(0));
        let failed2 = failed.clone();
        tokio::spawn(async move {
            while let Some(ack) = rx.recv().await {
                if !matches!(ack.await, Ok(Ok(_))) {
                    failed2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Feeder::Kafka { producer, topic: Topics::new(prefix).of(AggregateType::Conversation), acks, failed })
    }

    pub fn socketio(emitters: Vec<Emitter>) -> anyhow::Result<Self> {
        anyhow::ensure!(!emitters.is_empty(), "no Socket.IO emitter");
        Ok(Feeder::SocketIo { emitters, next: 0 })
    }

    /// Events the log did not acknowledge (Kafka only).
    pub fn failed(&self) -> u64 {
        match self {
            Feeder::Kafka { failed, .. } => failed.load(Ordering::Relaxed),
            Feeder::SocketIo { .. } => 0,
        }
    }

    pub fn emitter_pids(&self) -> Vec<u32> {
        match self {
            Feeder::Kafka { .. } => Vec::new(),
            Feeder::SocketIo { emitters, .. } => emitters.iter().map(|e| e.proc.pid).collect(),
        }
    }

    async fn push(&mut self, from: UserId, to: UserId, text: String) -> anyhow::Result<()> {
        let sent = MessageSent {
            message_id: MessageId::new(),
            conversation_id: ConversationId::between(from, to),
            from,
            to,
            text,
        };
        match self {
            Feeder::Kafka { producer, topic, acks, .. } => {
                let envelope = Envelope::new(Event::from(sent), 1, Metadata::system());
                let key = partition_key(envelope.aggregate_id());
                let payload = envelope.to_json()?;
                let mut tries = 0;
                loop {
                    match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                        Ok(ack) => {
                            let _ = acks.send(ack);
                            return Ok(());
                        }
                        Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                            if tries < 5_000 =>
                        {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => anyhow::bail!("producing: {e}"),
                    }
                }
            }
            Feeder::SocketIo { emitters, next } => {
                // The same message object Agora's frame carries as its data.
                let line = serde_json::json!({
                    "message_id": sent.message_id.to_string(),
                    "conversation_id": sent.conversation_id.to_string(),
                    "from": from.to_string(),
                    "to": to.to_string(),
                    "text": sent.text,
                    "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                });
                let i = *next % emitters.len();
                *next = next.wrapping_add(1);
                let mut bytes = serde_json::to_vec(&line)?;
                bytes.push(b'\n');
                emitters[i].input.write_all(&bytes).await?;
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if let Feeder::SocketIo { emitters, .. } = self {
            for e in emitters {
                e.input.flush().await?;
            }
        }
        Ok(())
    }

    pub async fn finish(self) {
        match self {
            Feeder::Kafka { producer, .. } => {
                let _ = tokio::task::spawn_blocking(move || {
                    use rdkafka::producer::Producer;
                    let _ = producer.flush(Duration::from_secs(10));
                })
                .await;
            }
            Feeder::SocketIo { emitters, .. } => {
                futures::future::join_all(emitters.into_iter().map(Emitter::finish)).await;
            }
        }
    }
}

/// A small deterministic generator (xorshift), so runs pick the same pairs.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What a schedule sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub events: u64,
    /// Planned events not sent because the schedule ran out of its time bound.
    pub skipped: u64,
    /// How far behind its plan the generator fell at worst, in ms.
    pub max_behind_ms: f64,
    pub secs: f64,
}

/// Sends `rate × secs` events at their planned times between random pairs of `users` (global
/// indices of connected users), tagged with `phase`. Bounded: it stops after `secs × 2 + 10`
/// seconds even if the sink is slower than the plan.
pub async fn run_schedule(
    feeder: &mut Feeder,
    seed: u64,
    users: &[u64],
    rng: &mut Rng,
    phase: u32,
    rate: f64,
    secs: f64,
) -> anyhow::Result<Sent> {
    anyhow::ensure!(users.len() >= 2, "fewer than two connected users");
    anyhow::ensure!(rate > 0.0 && secs > 0.0, "rate and seconds must be positive");
    let total = (rate * secs).round() as u64;
    let bound = Duration::from_secs_f64(secs * 2.0 + 10.0);
    let started = Instant::now();
    let base_ns = wire::now_ns();
    let mut sent = 0u64;
    let mut max_behind = Duration::ZERO;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < total {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if elapsed > bound {
            break;
        }
        let due = ((elapsed.as_secs_f64() * rate) as u64 + 1).min(total);
        if sent < due {
            let planned = Duration::from_secs_f64(sent as f64 / rate);
            max_behind = max_behind.max(elapsed.saturating_sub(planned));
        }
        while sent < due {
            let planned_ns = base_ns + (sent as f64 / rate * 1e9) as u64;
            let a = users[rng.below(users.len())];
            let mut b = users[rng.below(users.len())];
            while b == a {
                b = users[rng.below(users.len())];
            }
            feeder.push(wire::user_id(seed, a), wire::user_id(seed, b), wire::marker(phase, planned_ns)).await?;
            sent += 1;
        }
        feeder.flush().await?;
    }
    Ok(Sent {
        events: sent,
        skipped: total - sent,
        max_behind_ms: max_behind.as_secs_f64() * 1e3,
        secs: started.elapsed().as_secs_f64(),
    })
}
