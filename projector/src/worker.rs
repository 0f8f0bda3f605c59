//! The consumer loop: decode a poll's events, plan their writes, apply them to the read models
//! as one batch, and only then store the offsets.
//!
//! The loop itself is `agora_platform::kafka::consumer::run_batches`. An event that cannot be
//! decoded goes to the dead-letter topic with its reason and processing goes on; a MongoDB
//! failure is retried with backoff instead, since skipping it would lose the event.

use crate::invalidation;
use crate::readmodel::feeds::{self, FeedSettings};
use crate::readmodel::{self, EventOrigin, Store};
use crate::telemetry as names;
use agora_platform::cache::Cache;
use agora_platform::kafka::consumer::GroupConsumer;
use agora_platform::kafka::consumer::{self, Handled};
use agora_schemas::Envelope;
use agora_schemas::aggregate::Topics;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use tokio::sync::watch;

const COMMIT_EVERY: Duration = Duration::from_millis(250);

pub struct Worker {
    consumer: GroupConsumer,
    cache: Cache,
    /// Invalidations were lost (Redis did not answer): the cache epoch must be bumped before
    /// any entry can be trusted again. Holds when that was last tried.
    epoch_owed: std::sync::Mutex<Option<std::time::Instant>>,
    dead_letters: FutureProducer,
    store: Store,
    topics: Topics,
    feeds: FeedSettings,
    /// Events per batch: one poll's worth, up to this many, go to the store together.
    max_batch: usize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("topics", &self.topics).finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(
        brokers: &str,
        group_id: &str,
        topics: Topics,
        store: Store,
        cache: Cache,
        feeds: FeedSettings,
        max_batch: usize,
    ) -> anyhow::Result<Self> {
        let consumer = consumer::subscribe(brokers, group_id, &topics.event_topics(), consumer::Fetch::Immediate)?;
        let dead_letters = agora_platform::kafka::producer_config(brokers, Duration::from_secs(30)).create()?;
        Ok(Self {
            consumer,
            cache,
            epoch_owed: std::sync::Mutex::new(None),
            dead_letters,
            store,
            topics,
            feeds,
            max_batch,
        })
    }

    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        // An epoch owed to the cache is paid as soon as Redis answers, even if no event comes.
        let settle_epoch = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.invalidate(&[]).await;
            }
        };
        tokio::select! {
            _ = consumer::run_batches(&self.consumer, shutdown, COMMIT_EVERY, self.max_batch, &self) => {}
            _ = settle_epoch => {}
        }
        tracing::info!("projector worker stopped; offsets committed");
    }
}

/// How long one attempt at a batch may take before it is abandoned and retried; a 1000-event
/// batch takes well under a second on the local stack, so this only catches a hang.
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

impl consumer::BatchHandler for Worker {
    async fn handle_batch(&self, messages: &[BorrowedMessage<'_>], mut shutdown: watch::Receiver<bool>) -> Handled {
        let mut writes = Vec::new();
        let mut applied = Vec::with_capacity(messages.len());
        let mut feed_tasks = Vec::new();
        let mut positions: Vec<(String, i32, i64)> = Vec::new();
        for message in messages {
            match positions.iter_mut().find(|(t, p, _)| t == message.topic() && *p == message.partition()) {
                Some(position) => position.2 = position.2.max(message.offset()),
                None => positions.push((message.topic().to_owned(), message.partition(), message.offset())),
            }
        }
        for message in messages {
            let Some(aggregate) = self.topics.aggregate_of(message.topic()) else {
                self.dead_letter(message, "not an event topic").await;
                continue;
            };
            let origin = EventOrigin {
                topic_base: aggregate.topic_base(),
                partition: message.partition(),
                offset: message.offset(),
            };
            match Envelope::from_json(message.payload().unwrap_or_default()) {
                Ok(envelope) => {
                    writes.extend(readmodel::plan(&envelope, &origin));
                    feed_tasks.extend(feeds::task(&envelope));
                    applied.push(envelope);
                }
                Err(e) => self.dead_letter(message, &e.to_string()).await,
            }
        }
        // A store failure is retried rather than skipped: skipping would lose the events.
        // Feeds read what the batch wrote, so they go after it. The cached answers the batch
        // changed are retired next, and positions go last: a query whose consistency token
        // they satisfy must find neither an old read model nor an old cached answer.
        let mut pause = Duration::from_millis(50);
        loop {
            let done = async {
                let mut stage = Stage::start();
                self.store.apply(writes.clone()).await?;
                stage.done("writes");
                let feed_heads = feeds::apply(&self.store, self.feeds, &feed_tasks).await?;
                stage.done("feeds");
                let mut stale = invalidation::affected(&writes);
                stale.extend(feed_heads);
                stale.extend(self.slot_owners(&invalidation::slots_to_resolve(&writes)).await);
                self.invalidate(&stale).await;
                stage.done("cache");
                self.store.advance_positions(&positions).await?;
                stage.done("positions");
                Ok::<(), mongodb::error::Error>(())
            };
            // Bounded: a store call that never answers (seen once on FerretDB under a load
            // test: the whole projector waited, idle, with nothing logged) must become a retry,
            // not a stall. The writes are idempotent, so redoing a half-applied batch is safe.
            // A stop request does not wait for it either: the batch's offsets are not
            // committed, so it is redelivered after the restart.
            let outcome = tokio::select! {
                r = tokio::time::timeout(APPLY_TIMEOUT, done) => match r {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer from the store within {APPLY_TIMEOUT:?}")),
                },
                _ = shutdown.wait_for(|s| *s) => return Handled::Interrupted,
            };
            match outcome {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!(names::APPLY_RETRIES).increment(1);
                    tracing::warn!(error = %e, events = applied.len(), "applying a batch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait_for(|s| *s) => return Handled::Interrupted,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::histogram!(names::BATCH_EVENTS).record(messages.len() as f64);
        let now = chrono::Utc::now();
        for envelope in &applied {
            metrics::counter!(names::EVENTS_APPLIED, "type" => envelope.event_type()).increment(1);
            let lag = (now - envelope.occurred_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!(names::APPLY_LAG_SECONDS).record(lag);
        }
        Handled::Done
    }
}

/// Times the stages of one attempt at a batch, so an operator sees where a slow batch waits.
struct Stage(std::time::Instant);

impl Stage {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    fn done(&mut self, stage: &'static str) {
        metrics::histogram!(names::APPLY_STAGE_SECONDS, "stage" => stage).record(self.0.elapsed().as_secs_f64());
        self.0 = std::time::Instant::now();
    }
}

impl Worker {
    /// Retires the cached answers a batch changed. Redis being away must not stop the
    /// projection, so a failure is remembered instead, and the whole cache is retired (one
    /// epoch bump, tried at most once a second) before anything is invalidated again.
    async fn invalidate(&self, keys: &[agora_platform::cache::CacheKey]) {
        let owed = self.epoch_owed.lock().map(|g| *g).unwrap_or(None);
        if let Some(last) = owed {
            if last.elapsed() < Duration::from_secs(1) {
                return;
            }
            if let Err(e) = self.cache.bump_epoch().await {
                tracing::debug!(error = %e, "cache epoch not bumped yet");
                self.owe_epoch();
                return;
            }
            if let Ok(mut g) = self.epoch_owed.lock() {
                *g = None;
            }
            tracing::info!("redis is back: every cached answer retired");
        }
        if let Err(e) = self.cache.invalidate(keys).await {
            metrics::counter!(names::CACHE_INVALIDATION_FAILURES).increment(1);
            tracing::warn!(error = %e, "cache invalidation failed; the cache epoch will be bumped");
            self.owe_epoch();
        }
    }

    /// The unread counts of the players whose game slots moved. A slot that cannot be read
    /// now costs an epoch bump instead, so no count stays cached wrong.
    async fn slot_owners(&self, slots: &[String]) -> Vec<agora_platform::cache::CacheKey> {
        let coll = self.store.collection(readmodel::Coll::Notifications);
        let mut keys = Vec::with_capacity(slots.len());
        for slot in slots {
            match coll.find_one(mongodb::bson::doc! {"_id": slot}).projection(mongodb::bson::doc! {"user_id": 1}).await
            {
                Ok(Some(d)) => {
                    if let Ok(user) = d.get_str("user_id") {
                        keys.push(agora_platform::cache::CacheKey::new(agora_platform::cache::Kind::Unread, user));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "looking up a game slot's player failed; the cache epoch will be bumped");
                    self.owe_epoch();
                }
            }
        }
        keys
    }

    fn owe_epoch(&self) {
        if let Ok(mut g) = self.epoch_owed.lock() {
            *g = Some(std::time::Instant::now());
        }
    }

    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) {
        metrics::counter!(names::DEAD_LETTERS, "reason" => "undecodable").increment(1);
        tracing::error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "dead-lettering an event");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "reason", value: Some(reason) })
            .insert(Header { key: "source_topic", value: Some(message.topic()) })
            .insert(Header { key: "source_partition", value: Some(partition.as_str()) })
            .insert(Header { key: "source_offset", value: Some(offset.as_str()) });
        let dlq = self.topics.deadletter();
        let record = || {
            let mut record = FutureRecord::<[u8], [u8]>::to(&dlq).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            record
        };
        // Keep trying: moving on without the dead letter would lose the event silently.
        let mut pause = Duration::from_millis(100);
        loop {
            match self.dead_letters.send(record(), Duration::from_secs(30)).await {
                Ok(_) => return,
                Err((e, _)) => {
                    tracing::warn!(error = %e, "dead-letter publish failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
