//! The log side: which offsets of each partition to read, and a [`Source`] per partition over
//! one consumer that is assigned them. librdkafka wants a `group.id` for `assign`, so it gets a
//! fresh one per replay, but it never joins that group (no `subscribe`), gives every start
//! offset itself and commits nothing: no consumer group, the projector's included, notices a
//! replay. Blocking: run it off the async runtime.

use super::ReplayError;
use super::args::Selection;
use super::merge::{Record, Source};
use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Reader = BaseConsumer<DefaultConsumerContext>;
type PartitionQueue = rdkafka::consumer::base_consumer::PartitionQueue<DefaultConsumerContext>;

/// How long one partition poll waits before the main queue is served again.
const POLL: Duration = Duration::from_millis(100);

/// The offsets `[start, end)` to read of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl Span {
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A consumer that only reads what it is assigned.
pub fn reader(brokers: &str) -> Result<Arc<Reader>, KafkaError> {
    let consumer: Reader = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "agora-replay")
        .set("group.id", format!("agora-replay-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Reaching a partition's end is how a partition with gaps in its offsets still ends.
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // With a queue per partition these limits hold per partition; librdkafka's defaults
        // (64 MiB, 100k messages) would let dozens of partitions prefetch gigabytes.
        .set("queued.max.messages.kbytes", "4096")
        .set("queued.min.messages", "2000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("log_level", "3")
        .create()?;
    Ok(Arc::new(consumer))
}

/// The Kafka timestamps (milliseconds) to look offsets up for: `from - slack` and
/// `to + slack`, rounded outwards, never before 1970 (negative values are special to Kafka).
pub fn lookup_times(selection: &Selection, slack: Duration) -> (Option<i64>, Option<i64>) {
    let slack = TimeDelta::from_std(slack).unwrap_or(TimeDelta::MAX);
    let ms = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis().max(0));
    let from = selection.from.map(|f| f.checked_sub_signed(slack).unwrap_or(DateTime::<Utc>::MIN_UTC));
    let to = selection.to.map(|t| t.checked_add_signed(slack).unwrap_or(DateTime::<Utc>::MAX_UTC));
    (ms(from), ms(to).map(|t| t.saturating_add(1)))
}

/// The offsets of a partition to read: from its low watermark, or the first offset whose
/// timestamp is at least the `from` lookup time (none: nothing to read); up to its high
/// watermark at the start, or the first offset whose timestamp is at least the `to` lookup time.
pub fn bounds(low: i64, high: i64, from: Option<Offset>, to: Option<Offset>) -> (i64, i64) {
    let start = match from {
        None => low,
        Some(Offset::Offset(o)) => o.max(low),
        // `End`: no message as late as that.
        Some(_) => high,
    };
    let end = match to {
        Some(Offset::Offset(o)) => o.clamp(low, high),
        _ => high,
    };
    (start.min(end), end)
}

/// The span of every partition of `topics` (blocking). A topic that does not exist is an
/// error, since a replay of nothing would look like an empty log.
pub fn spans(
    consumer: &Reader,
    topics: &[String],
    selection: &Selection,
    slack: Duration,
    timeout: Duration,
) -> Result<Vec<Span>, ReplayError> {
    let kafka = |context: &'static str| move |source| ReplayError::Kafka { context, source };
    let mut spans = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(kafka("reading topic metadata"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let partitions: Vec<i32> = match found {
            Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
            _ => Vec::new(),
        };
        if partitions.is_empty() {
            return Err(ReplayError::MissingTopic(topic.clone()));
        }
        for partition in partitions {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition, timeout).map_err(kafka("reading watermarks"))?;
            spans.push(Span { topic: topic.clone(), partition, start: low, end: high });
        }
    }
    spans.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let (from_ms, to_ms) = lookup_times(selection, slack);
    let from = offsets_at(consumer, &spans, from_ms, timeout)?;
    let to = offsets_at(consumer, &spans, to_ms, timeout)?;
    for (i, span) in spans.iter_mut().enumerate() {
        let (start, end) = bounds(span.start, span.end, from.as_ref().map(|f| f[i]), to.as_ref().map(|t| t[i]));
        span.start = start;
        span.end = end;
    }
    Ok(spans)
}

/// Per span, the first offset whose timestamp is at least `ms` (`Offset::End` if none).
fn offsets_at(
    consumer: &Reader,
    spans: &[Span],
    ms: Option<i64>,
    timeout: Duration,
) -> Result<Option<Vec<Offset>>, ReplayError> {
    let Some(ms) = ms else { return Ok(None) };
    let kafka = |source| ReplayError::Kafka { context: "looking offsets up by time", source };
    let mut list = TopicPartitionList::new();
    for s in spans {
        list.add_partition_offset(&s.topic, s.partition, Offset::Offset(ms)).map_err(kafka)?;
    }
    let found = consumer.offsets_for_times(list, timeout).map_err(kafka)?;
    spans
        .iter()
        .map(|s| {
            let e = found.find_partition(&s.topic, s.partition).ok_or(ReplayError::Internal("a partition lost"))?;
            e.error().map_err(kafka)?;
            Ok(e.offset())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// What the consumer's main queue gave: records of split partitions that were fetched before
/// their queue was split off, and the last error it reported.
#[derive(Debug, Default)]
struct MainQueue {
    strays: HashMap<(String, i32), VecDeque<Record>>,
    last_error: Option<String>,
}

impl MainQueue {
    /// Serves the main queue's events (librdkafka needs it polled) without waiting.
    fn serve(&mut self, consumer: &Reader) {
        while let Some(event) = consumer.poll(Duration::ZERO) {
            match event {
                Ok(m) => {
                    let record = Record { offset: m.offset(), value: m.payload().map(<[u8]>::to_vec) };
                    self.strays.entry((m.topic().to_owned(), m.partition())).or_default().push_back(record);
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => self.last_error = Some(e.to_string()),
            }
        }
    }
}

/// One partition, read from its own queue of the shared consumer.
pub struct KafkaSource {
    consumer: Arc<Reader>,
    queue: PartitionQueue,
    main: Rc<RefCell<MainQueue>>,
    topic: String,
    partition: i32,
    /// The next offset still to read.
    next: i64,
    end: i64,
    /// How long a partition may give nothing before the replay fails.
    stall: Duration,
    polls: u32,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Assigns the non-empty spans and gives a source for each, in span order.
pub fn open(
    consumer: Arc<Reader>,
    spans: &[Span],
    stall: Duration,
) -> Result<Vec<(String, i32, KafkaSource)>, ReplayError> {
    let kafka = |context: &'static str| move |source| ReplayError::Kafka { context, source };
    let spans: Vec<&Span> = spans.iter().filter(|s| !s.is_empty()).collect();
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    for s in &spans {
        assignment.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.start)).map_err(kafka("assigning"))?;
    }
    // Assigning deactivates split queues, so split after it, before the first poll.
    consumer.assign(&assignment).map_err(kafka("assigning partitions"))?;
    let main = Rc::new(RefCell::new(MainQueue::default()));
    let mut sources = Vec::with_capacity(spans.len());
    for s in spans {
        let queue =
            consumer.split_partition_queue(&s.topic, s.partition).ok_or(ReplayError::Internal("no partition queue"))?;
        let source = KafkaSource {
            consumer: consumer.clone(),
            queue,
            main: main.clone(),
            topic: s.topic.clone(),
            partition: s.partition,
            next: s.start,
            end: s.end,
            stall,
            polls: 0,
        };
        sources.push((s.topic.clone(), s.partition, source));
    }
    // Anything fetched before the split is on the main queue; the rest comes to each queue.
    main.borrow_mut().serve(&consumer);
    Ok(sources)
}

enum Polled {
    Record(Record),
    Ended,
    Error(String),
    Nothing,
}

impl KafkaSource {
    /// Takes a record if it is the next one to read; past the end, ends the partition.
    fn accept(&mut self, record: Record) -> Option<Record> {
        if record.offset < self.next {
            None
        } else if record.offset >= self.end {
            self.next = self.end;
            None
        } else {
            self.next = record.offset + 1;
            Some(record)
        }
    }

    fn stray(&mut self) -> Option<Record> {
        let mut main = self.main.borrow_mut();
        let key = (self.topic.clone(), self.partition);
        main.strays.get_mut(&key).and_then(VecDeque::pop_front)
    }
}

impl Source for KafkaSource {
    fn next_record(&mut self) -> Result<Option<Record>, ReplayError> {
        let waiting = Instant::now();
        loop {
            if self.next >= self.end {
                return Ok(None);
            }
            if let Some(record) = self.stray() {
                if let Some(record) = self.accept(record) {
                    return Ok(Some(record));
                }
                continue;
            }
            self.polls = self.polls.wrapping_add(1);
            if self.polls.is_multiple_of(1024) {
                self.main.borrow_mut().serve(&self.consumer);
            }
            let polled = match self.queue.poll(POLL) {
                Some(Ok(m)) => Polled::Record(Record { offset: m.offset(), value: m.payload().map(<[u8]>::to_vec) }),
                Some(Err(KafkaError::PartitionEOF(_))) => Polled::Ended,
                Some(Err(e)) => Polled::Error(e.to_string()),
                None => Polled::Nothing,
            };
            match polled {
                Polled::Record(record) => {
                    if let Some(record) = self.accept(record) {
                        return Ok(Some(record));
                    }
                }
                // The partition's end now is at or past the end fixed at the start.
                Polled::Ended => self.next = self.end,
                Polled::Error(e) => self.main.borrow_mut().last_error = Some(e),
                Polled::Nothing => {
                    self.main.borrow_mut().serve(&self.consumer);
                    if waiting.elapsed() >= self.stall {
                        return Err(ReplayError::Stalled {
                            topic: self.topic.clone(),
                            partition: self.partition,
                            offset: self.next,
                            end: self.end,
                            waited: self.stall,
                            last_error: self.main.borrow().last_error.clone().unwrap_or_else(|| "none".to_owned()),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn spans_run_from_the_watermarks_or_the_looked_up_offsets() {
        assert_eq!(bounds(0, 100, None, None), (0, 100));
        assert_eq!(bounds(5, 100, Some(Offset::Offset(40)), None), (40, 100));
        assert_eq!(bounds(50, 100, Some(Offset::Offset(40)), None), (50, 100), "not before the log start");
        assert_eq!(bounds(0, 100, Some(Offset::End), None), (100, 100), "nothing that late: nothing to read");
        assert_eq!(bounds(0, 100, None, Some(Offset::Offset(60))), (0, 60));
        assert_eq!(bounds(0, 100, None, Some(Offset::Offset(160))), (0, 100), "not past the end fixed at the start");
        assert_eq!(bounds(0, 100, None, Some(Offset::End)), (0, 100), "nothing that late: read to the end");
        assert_eq!(bounds(0, 100, Some(Offset::Offset(70)), Some(Offset::Offset(60))), (60, 60), "never start > end");
        assert!(Span { topic: "t".into(), partition: 0, start: 60, end: 60 }.is_empty());
    }

    #[test]
    fn lookups_widen_the_range_by_the_slack() {
        let at = |s: u32| Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, s).single();
        let selection = Selection { from: at(10), to: at(20), ..Selection::default() };
        let (from, to) = lookup_times(&selection, Duration::from_secs(3));
        assert_eq!(from, at(7).map(|t| t.timestamp_millis()));
        assert_eq!(to, at(23).map(|t| t.timestamp_millis() + 1));
        assert_eq!(lookup_times(&Selection::default(), Duration::from_secs(3)), (None, None));
        let early = Selection { from: Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 1).single(), ..Selection::default() };
        assert_eq!(lookup_times(&early, Duration::from_secs(10)).0, Some(0), "never a negative (special) time");
    }
}
