//! A consumer group's lag per partition, read from the brokers (for `projector lag`).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// One partition of a group's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next message it will read), `None` if it has none.
    pub committed: Option<i64>,
    /// The log start (first retained offset).
    pub start: i64,
    /// The log end (the offset the next message will get).
    pub end: i64,
}

impl PartitionLag {
    /// Messages the group has still to read: from its committed offset, or from the log
    /// start if it has never committed (the projector starts at the earliest message).
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.start).max(self.start)).max(0)
    }
}

/// The lag of `group` on every partition of `topics` (blocking: call off the async runtime).
pub fn group_lag(
    brokers: &str,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>, KafkaError> {
    // A consumer with the group's id reads its committed offsets without joining the group.
    let consumer: BaseConsumer = super::config::base_config(brokers).set("group.id", group).create()?;
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                list.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (start, end) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let committed = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        out.push(PartitionLag { topic: e.topic().to_owned(), partition: e.partition(), committed, start, end });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// The rows as a text table, with a total line.
pub fn table(rows: &[PartitionLag]) -> String {
    let width = rows.iter().map(|r| r.topic.len()).max().unwrap_or(5).max(5);
    let mut out =
        format!("{:<width$}  {:>9}  {:>12}  {:>12}  {:>10}\n", "topic", "partition", "committed", "end", "lag");
    for r in rows {
        let committed = r.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
        out.push_str(&format!(
            "{:<width$}  {:>9}  {:>12}  {:>12}  {:>10}\n",
            r.topic,
            r.partition,
            committed,
            r.end,
            r.lag()
        ));
    }
    let total: i64 = rows.iter().map(PartitionLag::lag).sum();
    out.push_str(&format!("{:<width$}  {:>9}  {:>12}  {:>12}  {:>10}\n", "total", "", "", "", total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(committed: Option<i64>, start: i64, end: i64) -> PartitionLag {
        PartitionLag { topic: "agora.posts".into(), partition: 3, committed, start, end }
    }

    #[test]
    fn lag_counts_from_the_commit_or_from_the_log_start() {
        assert_eq!(row(Some(40), 0, 100).lag(), 60);
        assert_eq!(row(None, 10, 100).lag(), 90, "never committed: everything retained is to read");
        assert_eq!(row(Some(5), 10, 100).lag(), 90, "a commit before the log start reads from the start");
        assert_eq!(row(Some(100), 0, 100).lag(), 0);
    }

    #[test]
    fn the_table_has_a_row_per_partition_and_a_total() {
        let text = table(&[row(Some(40), 0, 100), row(None, 0, 7)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].ends_with("60") && lines[2].contains(" - ") && lines[3].ends_with("67"), "{text}");
    }
}
