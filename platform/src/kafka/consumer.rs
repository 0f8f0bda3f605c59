//! The ordered consumer loop both the projector and the realtime router run.
//!
//! Messages are handled one at a time in partition order; the offset of a message is stored
//! only after its handler says it is done, and stored offsets are committed every
//! `commit_every` and once more on shutdown, so a crash re-delivers rather than loses. A
//! batch handler may leave some partitions for later ([`Handled::DoneExcept`]): they are
//! paused, rewound and read again a moment later, and the others carry on meanwhile.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// What a handler did with a message (or a batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Its effects are durable: store its offset.
    Done,
    /// Shutdown came first: leave its offset so the message is handled again after restart.
    Interrupted,
    /// Done, but for these partitions from these offsets on: they cannot be handled yet
    /// (what they need is not there). Those partitions are paused for [`PARKED_FOR`] and
    /// read again from there, while the others go on: one partition's wait holds back no
    /// other. A batch handler's answer only.
    DoneExcept(Vec<Parked>),
}

/// A partition of a batch left to be read again, from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Parked {
    /// Whether the message at `(topic, partition, offset)` is left for later by one of `parked`.
    pub fn covers(parked: &[Parked], topic: &str, partition: i32, offset: i64) -> bool {
        parked.iter().any(|p| p.partition == partition && p.topic == topic && offset >= p.offset)
    }
}

/// How long a parked partition rests before it is read again.
pub const PARKED_FOR: Duration = Duration::from_secs(1);

/// How often librdkafka reports statistics, and so how fresh the lag gauge is.
const STATS_EVERY_MS: &str = "5000";

/// A consumer-group member: it commits what it has stored before giving partitions away, and
/// reports each partition's lag.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// The callbacks of a [`GroupConsumer`].
#[derive(Debug, Clone)]
pub struct GroupContext {
    group: String,
}

impl ClientContext for GroupContext {
    /// Per assigned partition, the messages between its committed offset and the end of the
    /// log; partitions this member does not own read 0, so the sum over members is the
    /// group's lag.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue;
                }
                let lag = if p.desired && p.consumer_lag >= 0 { p.consumer_lag } else { 0 };
                metrics::gauge!(crate::telemetry::names::CONSUMER_LAG, "group" => self.group.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    /// Runs inside a poll, so between two batches: what is stored is all that is done, and
    /// committing it now spares the partitions' next owner from re-reading it.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(error = %e, "committing before a rebalance failed"),
            }
            tracing::info!(group = %self.group, partitions = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(group = %self.group, partitions = partitions.count(), "partitions assigned");
        }
    }
}

/// How long a fetch may wait for events to gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The broker answers as soon as any event is there: the lowest latency, one fetch
    /// (and one batch) per event at low rates.
    Immediate,
    /// The broker answers once this has passed (or a megabyte is ready), so a fetch brings
    /// every event of that time: at most that much added latency, for far fewer fetches, and
    /// far less CPU per event in the broker and the client, once events come faster than one
    /// per interval.
    Gather(Duration),
}

impl Fetch {
    /// Gathering for up to `wait`; a zero wait is [`Fetch::Immediate`].
    pub fn up_to(wait: Duration) -> Self {
        if wait.is_zero() { Self::Immediate } else { Self::Gather(wait) }
    }
}

/// Creates a consumer-group member subscribed to `topics`.
pub fn subscribe(brokers: &str, group_id: &str, topics: &[String], fetch: Fetch) -> Result<GroupConsumer, KafkaError> {
    let mut config = super::consumer_config(brokers, group_id);
    config.set("statistics.interval.ms", STATS_EVERY_MS);
    if let Fetch::Gather(wait) = fetch {
        config.set("fetch.wait.max.ms", wait.as_millis().max(1).to_string()).set("fetch.min.bytes", "1048576");
    }
    let consumer: GroupConsumer = config.create_with_context(GroupContext { group: group_id.to_owned() })?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    Ok(consumer)
}

/// Handles one message at a time; see [`run`].
pub trait Handler: Sync {
    fn handle(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = Handled> + Send;
}

/// Runs until `shutdown` turns true, then commits what was stored: [`run_batches`] with
/// batches of one message.
pub async fn run<H: Handler>(
    consumer: &GroupConsumer,
    shutdown: watch::Receiver<bool>,
    commit_every: Duration,
    handler: &H,
) {
    run_batches(consumer, shutdown, commit_every, 1, &OneAtATime(handler)).await;
}

/// A [`Handler`] as a [`BatchHandler`].
struct OneAtATime<'a, H>(&'a H);

impl<H: Handler> BatchHandler for OneAtATime<'_, H> {
    async fn handle_batch(&self, messages: &[BorrowedMessage<'_>], shutdown: watch::Receiver<bool>) -> Handled {
        for message in messages {
            match self.0.handle(message, shutdown.clone()).await {
                Handled::Done => {}
                other => return other,
            }
        }
        Handled::Done
    }
}

/// Handles the messages of one poll together; see [`run_batches`].
pub trait BatchHandler: Sync {
    /// `messages` is never empty and keeps each partition's order.
    fn handle_batch(
        &self,
        messages: &[BorrowedMessage<'_>],
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = Handled> + Send;
}

/// Like [`run`], but hands the handler every message already fetched (up to `max_batch`)
/// at once, so that their writes can go to the store in one round trip; the offsets of a
/// batch are stored only after the handler says the whole batch is done.
pub async fn run_batches<H: BatchHandler>(
    consumer: &GroupConsumer,
    mut shutdown: watch::Receiver<bool>,
    commit_every: Duration,
    max_batch: usize,
    handler: &H,
) {
    use futures::FutureExt;
    let mut commit = tokio::time::interval(commit_every);
    let mut batch = Vec::with_capacity(max_batch);
    // Paused partitions, and when each is read again.
    let mut parked: Vec<(Parked, tokio::time::Instant)> = Vec::new();
    loop {
        let next_resume = parked.iter().map(|(_, at)| *at).min();
        let received = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            () = sleep_until(next_resume) => {
                let now = tokio::time::Instant::now();
                let (due, resting): (Vec<_>, Vec<_>) = parked.drain(..).partition(|(_, at)| *at <= now);
                parked = resting;
                resume(consumer, due.iter().map(|(p, _)| p));
                continue;
            }
            _ = commit.tick() => {
                commit_stored(consumer, CommitMode::Async);
                continue;
            }
            received = consumer.recv() => received,
        };
        // What was fetched of a parked partition before it was paused is read again later.
        let resting =
            |m: &BorrowedMessage<'_>| parked.iter().any(|(p, _)| p.partition == m.partition() && p.topic == m.topic());
        match received {
            Ok(message) if resting(&message) => continue,
            Ok(message) => batch.push(message),
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        // Whatever librdkafka has already fetched joins the batch; nothing waits for more.
        while batch.len() < max_batch.max(1) {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) if resting(&message) => {}
                Some(Ok(message)) => batch.push(message),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka receive failed");
                    break;
                }
                None => break,
            }
        }
        let left = match handler.handle_batch(&batch, shutdown.clone()).await {
            Handled::Done => Vec::new(),
            Handled::DoneExcept(left) => left,
            Handled::Interrupted => {
                batch.clear();
                continue;
            }
        };
        for message in &batch {
            if Parked::covers(&left, message.topic(), message.partition(), message.offset()) {
                continue;
            }
            if let Err(e) = consumer.store_offset_from_message(message) {
                tracing::debug!(error = %e, "offset not stored");
            }
        }
        batch.clear();
        let at = tokio::time::Instant::now() + PARKED_FOR;
        for p in left {
            park(consumer, &p);
            parked.push((p, at));
        }
    }
    commit_stored(consumer, CommitMode::Sync);
}

/// Sleeps until `at`, or for ever if there is none.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn partition_list(p: &Parked, offset: Option<i64>) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    match offset {
        Some(o) => list.add_partition_offset(&p.topic, p.partition, Offset::Offset(o))?,
        None => {
            list.add_partition(&p.topic, p.partition);
        }
    }
    Ok(list)
}

/// Pauses `p`'s partition and moves its read position back to `p.offset`: librdkafka drops
/// what it had fetched of it beyond that, and reads from there once resumed. If that fails
/// the partition is read on where it was once resumed, its skipped offsets not stored, so
/// what was left is read again after a restart or a rebalance: delayed, not lost.
fn park(consumer: &GroupConsumer, p: &Parked) {
    let done = partition_list(p, None)
        .and_then(|list| consumer.pause(&list))
        .and_then(|()| partition_list(p, Some(p.offset)))
        .and_then(|list| consumer.seek_partitions(list, Duration::from_secs(1)))
        .and_then(|result| match result.elements().first().map(|e| e.error()) {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        });
    if let Err(e) = &done {
        tracing::warn!(topic = %p.topic, partition = p.partition, offset = p.offset, error = %e, "parking a partition failed");
    }
}

/// Resumes the partitions of `parked`. A partition given away meanwhile is not ours to
/// resume: its new owner reads it from its committed offset.
fn resume<'a>(consumer: &GroupConsumer, parked: impl Iterator<Item = &'a Parked>) {
    for p in parked {
        if let Err(e) = partition_list(p, None).and_then(|list| consumer.resume(&list)) {
            tracing::debug!(topic = %p.topic, partition = p.partition, error = %e, "resuming a parked partition failed");
        }
    }
}

fn commit_stored(consumer: &GroupConsumer, mode: CommitMode) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_partition_leaves_its_messages_from_the_offset_on_and_nothing_else() {
        let parked = [Parked { topic: "games".into(), partition: 3, offset: 40 }];
        assert!(!Parked::covers(&parked, "games", 3, 39), "before it: done, stored");
        assert!(Parked::covers(&parked, "games", 3, 40));
        assert!(Parked::covers(&parked, "games", 3, 41));
        assert!(!Parked::covers(&parked, "games", 4, 41), "another partition");
        assert!(!Parked::covers(&parked, "posts", 3, 41), "another topic's partition 3");
        assert!(!Parked::covers(&[], "games", 3, 41));
    }
}
