//! The head keeper: writes, from the log, the first head of aggregates appended without a claim.
//!
//! A post's id is minted by the command that creates it and nobody can know it before the
//! 202, so nothing can race that first event: it goes straight to Kafka, with no FerretDB
//! round trip on the answer path (a claimed append costs three). The commands that follow
//! (delete, like, comment) still need the post's head, and it comes from the log: every
//! command-api process is a member of one consumer group over the posts topic and inserts
//! the head of each `post.created` it reads, a batch per poll. An insert, never an upsert: a
//! head that exists already (a redelivery, or a later command that got there first) is at
//! least as new, and stays. Offsets are stored only after a batch is written, so a crash
//! re-reads it and no head is lost; a command on a post whose head is not written yet waits
//! for it (see `routes::load_head`).

use crate::domain::post::{self, PostState};
use crate::store::aggregates::key;
use crate::telemetry as names;
use agora_platform::kafka::consumer::GroupConsumer;
use agora_platform::kafka::consumer::{self, BatchHandler, Handled};
use agora_platform::mongo::only_duplicate_keys;
use agora_schemas::{AggregateType, Envelope, Event};
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use std::time::Duration;
use tokio::sync::watch;

const COMMIT_EVERY: Duration = Duration::from_millis(250);
const MAX_BATCH: usize = 500;

/// The aggregate types whose first append skips the claim (their head is kept from the log).
const KEPT: [AggregateType; 1] = [AggregateType::Post];

/// Whether appends that start a new aggregate of this type skip the claim.
pub fn keeps(aggregate: AggregateType) -> bool {
    KEPT.contains(&aggregate)
}

/// Whether `key` (`<type>:<id>`) names an aggregate of a kept type.
pub fn keeps_key(key: &str) -> bool {
    key.split_once(':').is_some_and(|(t, _)| KEPT.iter().any(|a| a.as_str() == t))
}

pub struct HeadKeeper {
    consumer: GroupConsumer,
    heads: Collection<Document>,
}

impl std::fmt::Debug for HeadKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadKeeper").finish_non_exhaustive()
    }
}

impl HeadKeeper {
    pub fn new(
        brokers: &str,
        group_id: &str,
        topics: &agora_schemas::aggregate::Topics,
        db: &Database,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer =
            consumer::subscribe(brokers, group_id, &[topics.of(AggregateType::Post)], consumer::Fetch::Immediate)?;
        Ok(Self { consumer, heads: db.collection("aggregates") })
    }

    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        consumer::run_batches(&self.consumer, shutdown, COMMIT_EVERY, MAX_BATCH, &self).await;
        tracing::info!("head keeper stopped; offsets committed");
    }
}

/// The head a kept aggregate has after its first event, or `None` for any other event.
pub fn first_head(envelope: &Envelope, topic: &str, partition: i32, offset: i64) -> Option<Document> {
    if envelope.aggregate_version != 1 {
        return None;
    }
    let Event::PostCreated(created) = &envelope.payload else { return None };
    let state = post::apply(PostState::default(), &envelope.payload);
    let state = bson::to_document(&state).ok()?;
    Some(doc! {
        "_id": key(AggregateType::Post, created.post_id),
        "v": 1_i64,
        "state": state,
        "pos": {"topic": topic, "partition": partition, "offset": offset},
    })
}

impl BatchHandler for HeadKeeper {
    async fn handle_batch(&self, messages: &[BorrowedMessage<'_>], mut shutdown: watch::Receiver<bool>) -> Handled {
        let mut docs = Vec::new();
        for message in messages {
            match Envelope::from_json(message.payload().unwrap_or_default()) {
                Ok(envelope) => {
                    docs.extend(first_head(&envelope, message.topic(), message.partition(), message.offset()))
                }
                // The projector dead-letters it; a head cannot come from it either way.
                Err(e) => {
                    metrics::counter!(names::KEEPER_UNDECODABLE).increment(1);
                    tracing::warn!(partition = message.partition(), offset = message.offset(), error = %e, "head keeper skipped an undecodable event");
                }
            }
        }
        if docs.is_empty() {
            return Handled::Done;
        }
        let count = docs.len() as u64;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.heads.insert_many(docs.clone()).ordered(false).await {
                Ok(_) => break,
                Err(e) if only_duplicate_keys(&e) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "head keeper: writing heads failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait_for(|s| *s) => return Handled::Interrupted,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::counter!(names::KEEPER_HEADS).increment(count);
        Handled::Done
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use agora_schemas::events::{PostCreated, PostDeleted};
    use agora_schemas::{Metadata, PostId, UserId};

    fn envelope(event: Event, version: u64) -> Envelope {
        Envelope::new(event, version, Metadata::system())
    }

    #[test]
    fn a_created_post_gets_a_head_at_version_one_with_its_author() {
        let (post_id, author_id) = (PostId::new(), UserId::new());
        let e = envelope(PostCreated { post_id, author_id, text: "hi".into() }.into(), 1);
        let head = first_head(&e, "agora.posts", 3, 42).expect("a head");
        assert_eq!(head.get_str("_id").ok(), Some(key(AggregateType::Post, post_id).as_str()));
        assert_eq!(head.get_i64("v").ok(), Some(1));
        let state: PostState = bson::from_document(head.get_document("state").expect("state").clone()).expect("state");
        assert_eq!(state, PostState { author_id: Some(author_id), deleted: false });
        let pos = head.get_document("pos").expect("pos");
        assert_eq!((pos.get_i32("partition").ok(), pos.get_i64("offset").ok()), (Some(3), Some(42)));
    }

    #[test]
    fn later_events_and_other_aggregates_get_no_head() {
        let (post_id, author_id) = (PostId::new(), UserId::new());
        let deleted = envelope(PostDeleted { post_id, author_id }.into(), 2);
        assert!(first_head(&deleted, "agora.posts", 0, 1).is_none());
        assert!(keeps(AggregateType::Post));
        assert!(!keeps(AggregateType::Game) && !keeps(AggregateType::User));
        assert!(keeps_key(&key(AggregateType::Post, post_id)));
        assert!(!keeps_key(&key(AggregateType::Game, post_id)) && !keeps_key("post"));
    }
}
