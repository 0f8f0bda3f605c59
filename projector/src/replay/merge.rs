//! The k-way merge: many partitions, each read in log order, become one stream in
//! `occurred_at` order (ties broken by topic, partition, offset), holding only a window of
//! each partition in memory.
//!
//! Within one partition the log order is close to, but not exactly, `occurred_at` order: an
//! event's time is taken when its command is decided, and another command's event can reach
//! the partition first. So each partition goes through a small reorder buffer: an event is
//! released once the partition has shown an event at least `slack` later than it, or has
//! ended. An event that reaches the log more than `slack` after it occurred still comes out,
//! as soon as it is read, and is counted as out of order.

use super::ReplayError;
use super::render::{LogPosition, Processed};
use chrono::{DateTime, TimeDelta, Utc};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Undecodable records named in the summary; the rest are only counted.
pub const EXAMPLES_KEPT: usize = 5;

/// One record as read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub value: Option<Vec<u8>>,
}

/// One partition's records in log order, up to the end fixed when the replay started.
pub trait Source {
    /// The next record, or `None` once the end is reached.
    fn next_record(&mut self) -> Result<Option<Record>, ReplayError>;
}

/// The output order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    pub occurred_at: DateTime<Utc>,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A rendered line waiting for its turn; ordered by its key alone.
#[derive(Debug)]
struct Pending {
    key: SortKey,
    line: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

struct Lane<S> {
    topic: Arc<str>,
    partition: i32,
    source: S,
    buffer: BinaryHeap<Reverse<Pending>>,
    /// The latest `occurred_at` read from this partition, selected or not.
    latest: Option<DateTime<Utc>>,
    ended: bool,
}

impl<S> Lane<S> {
    /// Whether its first buffered line can go out: nothing this partition still holds can
    /// come before it.
    fn releasable(&self, slack: TimeDelta) -> bool {
        match self.buffer.peek() {
            None => false,
            Some(_) if self.ended => true,
            Some(Reverse(head)) => self.latest.is_some_and(|l| l.signed_duration_since(head.key.occurred_at) >= slack),
        }
    }
}

/// What the merge has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records read, whatever became of them.
    pub read: u64,
    pub undecodable: u64,
    /// The first [`EXAMPLES_KEPT`] undecodable records: position and reason.
    pub undecodable_examples: Vec<String>,
    pub filtered_out: u64,
    /// Lines that came out after a line with a later key.
    pub out_of_order: u64,
}

/// Merges [`Source`]s; `process` turns each record into a [`Processed`].
pub struct Merge<S, P> {
    lanes: Vec<Lane<S>>,
    /// The first line of every lane that has one ready, by key.
    heads: BinaryHeap<Reverse<(SortKey, usize)>>,
    slack: TimeDelta,
    process: P,
    started: bool,
    last: Option<SortKey>,
    counts: Counts,
}

impl<S, P> std::fmt::Debug for Merge<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge").field("lanes", &self.lanes.len()).field("counts", &self.counts).finish_non_exhaustive()
    }
}

impl<S, P> Merge<S, P>
where
    S: Source,
    P: FnMut(LogPosition<'_>, Option<&[u8]>) -> Processed,
{
    /// `sources`: (topic, partition, source) per partition.
    pub fn new(sources: Vec<(String, i32, S)>, slack: std::time::Duration, process: P) -> Self {
        let lanes = sources
            .into_iter()
            .map(|(topic, partition, source)| Lane {
                topic: topic.into(),
                partition,
                source,
                buffer: BinaryHeap::new(),
                latest: None,
                ended: false,
            })
            .collect();
        let slack = TimeDelta::from_std(slack).unwrap_or(TimeDelta::MAX);
        Self { lanes, heads: BinaryHeap::new(), slack, process, started: false, last: None, counts: Counts::default() }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The next line in order, or `None` once every partition is done.
    pub fn next_line(&mut self) -> Result<Option<(SortKey, Vec<u8>)>, ReplayError> {
        if !self.started {
            self.started = true;
            for i in 0..self.lanes.len() {
                self.fill(i)?;
            }
        }
        let Some(Reverse((key, i))) = self.heads.pop() else { return Ok(None) };
        let Some(Reverse(pending)) = self.lanes[i].buffer.pop() else {
            // A lane's head is in `heads` only while it is first in that lane's buffer.
            return Err(ReplayError::Internal("a merge head without its line"));
        };
        debug_assert_eq!(pending.key, key);
        if self.last.as_ref().is_some_and(|last| key < *last) {
            self.counts.out_of_order += 1;
        } else {
            self.last = Some(key.clone());
        }
        self.fill(i)?;
        Ok(Some((key, pending.line)))
    }

    /// Reads lane `i` until its first line can be released or it ends, then offers that line.
    fn fill(&mut self, i: usize) -> Result<(), ReplayError> {
        let lane = &mut self.lanes[i];
        while !lane.ended && !lane.releasable(self.slack) {
            let Some(record) = lane.source.next_record()? else {
                lane.ended = true;
                break;
            };
            self.counts.read += 1;
            let position = LogPosition { topic: &lane.topic, partition: lane.partition, offset: record.offset };
            match (self.process)(position, record.value.as_deref()) {
                Processed::Undecodable(reason) => {
                    self.counts.undecodable += 1;
                    if self.counts.undecodable_examples.len() < EXAMPLES_KEPT {
                        self.counts.undecodable_examples.push(format!("{position}: {reason}"));
                    }
                }
                Processed::Filtered { occurred_at } => {
                    self.counts.filtered_out += 1;
                    lane.latest = lane.latest.max(Some(occurred_at));
                }
                Processed::Selected { occurred_at, line } => {
                    lane.latest = lane.latest.max(Some(occurred_at));
                    let key = SortKey {
                        occurred_at,
                        topic: lane.topic.clone(),
                        partition: lane.partition,
                        offset: record.offset,
                    };
                    lane.buffer.push(Reverse(Pending { key, line }));
                }
            }
        }
        if let Some(Reverse(head)) = lane.buffer.peek() {
            self.heads.push(Reverse((head.key.clone(), i)));
        }
        Ok(())
    }

    /// The lines buffered now, over every partition (for tests of the memory bound).
    pub fn buffered(&self) -> usize {
        self.lanes.iter().map(|l| l.buffer.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::render::Undecodable;
    use chrono::TimeZone;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// A partition in memory: each record's value is its `occurred_at` in milliseconds, as
    /// text; `x` is undecodable.
    struct Fake {
        records: VecDeque<Record>,
        /// Records read so far, shared with the test to check how far ahead the merge reads.
        read: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Source for Fake {
        fn next_record(&mut self) -> Result<Option<Record>, ReplayError> {
            let r = self.records.pop_front();
            if r.is_some() {
                self.read.set(self.read.get() + 1);
            }
            Ok(r)
        }
    }

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_767_268_800_000 + ms).single().unwrap_or_default()
    }

    fn fake(times: &[&str]) -> Fake {
        let records = times
            .iter()
            .enumerate()
            .map(|(i, v)| Record { offset: i as i64, value: Some(v.as_bytes().to_vec()) })
            .collect();
        Fake { records, read: Default::default() }
    }

    /// Values are `<ms>` (selected) or `<ms>f` (filtered out) or anything else (undecodable).
    fn process(position: LogPosition<'_>, value: Option<&[u8]>) -> Processed {
        let text = String::from_utf8_lossy(value.unwrap_or_default()).into_owned();
        let (ms, filtered) = match text.strip_suffix('f') {
            Some(ms) => (ms.parse::<i64>(), true),
            None => (text.parse::<i64>(), false),
        };
        match ms {
            Err(_) => Processed::Undecodable(Undecodable::Empty),
            Ok(ms) if filtered => Processed::Filtered { occurred_at: t(ms) },
            Ok(ms) => Processed::Selected { occurred_at: t(ms), line: format!("{position}").into_bytes() },
        }
    }

    type Out = Vec<(i64, String)>;

    fn merge_all(parts: Vec<(&str, i32, Fake)>, slack_ms: u64) -> (Out, Counts) {
        let sources = parts.into_iter().map(|(topic, p, f)| (topic.to_owned(), p, f)).collect();
        let mut m = Merge::new(sources, Duration::from_millis(slack_ms), process);
        let mut out = Vec::new();
        while let Some((key, line)) = m.next_line().unwrap_or_else(|e| panic!("{e}")) {
            out.push((key.occurred_at.timestamp_millis() - 1_767_268_800_000, String::from_utf8_lossy(&line).into()));
        }
        (out, m.counts().clone())
    }

    #[test]
    fn partitions_interleave_by_time_with_ties_by_topic_partition_offset() {
        let (out, counts) = merge_all(
            vec![
                ("p.users", 0, fake(&["10", "30", "50"])),
                ("p.posts", 1, fake(&["20", "30", "40"])),
                ("p.posts", 0, fake(&["30"])),
                ("p.likes", 2, fake(&[])),
            ],
            0,
        );
        let lines: Vec<&str> = out.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "p.users[0]@0",
                "p.posts[1]@0",
                "p.posts[0]@0", // 30 ms three times: p.posts < p.users, partition 0 < 1
                "p.posts[1]@1",
                "p.users[0]@1",
                "p.posts[1]@2",
                "p.users[0]@2",
            ]
        );
        assert_eq!(counts, Counts { read: 7, ..Counts::default() });
    }

    #[test]
    fn a_partition_slightly_out_of_time_order_comes_out_sorted_within_the_slack() {
        // Offsets 1 and 2 occurred 5 ms apart but reached the log the other way round.
        let (out, counts) =
            merge_all(vec![("p.posts", 0, fake(&["0", "15", "10", "30", "25"])), ("p.users", 0, fake(&["12"]))], 10);
        let times: Vec<i64> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [0, 10, 12, 15, 25, 30]);
        assert_eq!(counts.out_of_order, 0);
    }

    #[test]
    fn an_event_later_than_the_slack_still_comes_out_and_is_counted() {
        let (out, counts) = merge_all(vec![("p.posts", 0, fake(&["0", "100", "200", "50", "300"]))], 10);
        let times: Vec<i64> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(times.len(), 5, "nothing is dropped");
        assert_eq!(counts.out_of_order, 1, "{times:?}");
        let mut sorted = times.clone();
        sorted.sort();
        assert_ne!(times, sorted);
    }

    #[test]
    fn undecodable_and_filtered_records_are_counted_and_filtered_ones_still_move_time_on() {
        let (out, counts) =
            merge_all(vec![("p.posts", 0, fake(&["0", "x", "5f", "{", "9"])), ("p.users", 3, fake(&["7f"]))], 0);
        let lines: Vec<&str> = out.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["p.posts[0]@0", "p.posts[0]@4"]);
        assert_eq!(counts.read, 6);
        assert_eq!(counts.undecodable, 2);
        assert_eq!(counts.filtered_out, 2);
        assert_eq!(counts.undecodable_examples.len(), 2);
        assert!(counts.undecodable_examples[0].starts_with("p.posts[0]@1: "), "{:?}", counts.undecodable_examples);
    }

    #[test]
    fn only_a_slack_window_of_each_partition_is_held() {
        // Two partitions of 1000 events 1 ms apart, slack 20 ms: the merge never holds more
        // than a window of each, nor reads a partition far ahead of the other.
        let times: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = times.iter().map(String::as_str).collect();
        let (a, b) = (fake(&refs), fake(&refs));
        let (read_a, read_b) = (a.read.clone(), b.read.clone());
        let mut m =
            Merge::new(vec![("p.a".to_owned(), 0, a), ("p.b".to_owned(), 0, b)], Duration::from_millis(20), process);
        let mut n = 0;
        let mut most = 0;
        while m.next_line().unwrap_or_else(|e| panic!("{e}")).is_some() {
            n += 1;
            most = most.max(m.buffered());
            assert!(read_a.get().abs_diff(read_b.get()) <= 22, "{} vs {}", read_a.get(), read_b.get());
        }
        assert_eq!(n, 2000);
        assert!(most <= 2 * 22, "held {most} lines at once");
    }

    #[test]
    fn source_errors_stop_the_merge() {
        struct Broken;
        impl Source for Broken {
            fn next_record(&mut self) -> Result<Option<Record>, ReplayError> {
                Err(ReplayError::Internal("broken"))
            }
        }
        let mut m = Merge::new(vec![("p.a".to_owned(), 0, Broken)], Duration::ZERO, process);
        assert!(m.next_line().is_err());
    }
}
