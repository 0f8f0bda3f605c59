//! Aggregate heads with optimistic concurrency, and the append that ties a head to the log.
//!
//! An append (1) reserves version N+1 on the head, conditional on it still being at N with
//! nothing pending, (2) publishes the event to Kafka and waits for `acks=all`, then (3) records
//! the event's position and clears the reservation. If Kafka does not acknowledge, the
//! reservation is rolled back and the command fails, so no event and no state change remain.
//! A head with a reservation in flight makes other commands on the same aggregate wait.

use agora_platform::consistency::Position;
use agora_platform::kafka::{EventProducer, PublishError};
use agora_platform::mongo::is_duplicate_key;
use agora_schemas::Envelope;
use mongodb::bson::{self, Document, doc};
use mongodb::{Collection, Database};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// What a decision needs: the version the aggregate is at, its state, its last position.
#[derive(Debug, Clone, PartialEq)]
pub struct Head<S> {
    pub version: u64,
    pub state: S,
    pub position: Option<Position>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another command moved the aggregate first; decide again on fresh state.
    #[error("the aggregate moved on")]
    Conflict,
    /// An earlier append on this aggregate is still unresolved.
    #[error("the aggregate is busy")]
    Busy,
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
    #[error("encoding state: {0}")]
    Encode(#[from] bson::ser::Error),
}

#[derive(Debug, Clone)]
pub struct AggregateStore {
    coll: Collection<Document>,
    /// How long to wait for another append on the same aggregate before giving up.
    busy_wait: Duration,
}

pub fn key(aggregate_type: agora_schemas::AggregateType, id: impl std::fmt::Display) -> String {
    format!("{aggregate_type}:{id}")
}

impl AggregateStore {
    pub fn new(db: &Database, busy_wait: Duration) -> Self {
        Self { coll: db.collection("aggregates"), busy_wait }
    }

    /// The head as it is now; version 0 and default state if the aggregate has no event yet.
    pub async fn load<S: DeserializeOwned + Default>(&self, key: &str) -> Result<Head<S>, AppendError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let Some(d) = self.coll.find_one(doc! {"_id": key}).await? else {
                return Ok(Head { version: 0, state: S::default(), position: None });
            };
            if d.get_str("pending").unwrap_or_default().is_empty() {
                return Ok(head_from(&d));
            }
            if started.elapsed() > self.busy_wait {
                return Err(AppendError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Appends `envelope` (at `head.version + 1`) and moves the head to `new_state`.
    pub async fn append<S: Serialize>(
        &self,
        key: &str,
        head: &Head<S>,
        new_state: &S,
        envelope: &Envelope,
        producer: &EventProducer,
    ) -> Result<Position, AppendError> {
        let pending = envelope.event_id.to_string();
        let next = head.version + 1;
        let state = bson::to_document(new_state)?;
        if head.version == 0 {
            let reserved = self
                .coll
                .insert_one(
                    doc! {"_id": key, "v": next as i64, "state": &state, "pending": &pending, "pos": bson::Bson::Null},
                )
                .await;
            match reserved {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => return Err(AppendError::Conflict),
                Err(e) => return Err(e.into()),
            }
        } else {
            let moved = self
                .coll
                .update_one(
                    doc! {"_id": key, "v": head.version as i64, "pending": ""},
                    doc! {"$set": {"v": next as i64, "state": &state, "pending": &pending}},
                )
                .await?;
            if moved.matched_count == 0 {
                return Err(AppendError::Conflict);
            }
        }
        match producer.publish(envelope).await {
            Ok(position) => {
                let pos = doc! {"topic": &position.topic, "partition": position.partition, "offset": position.offset};
                self.settle(doc! {"_id": key, "pending": &pending}, doc! {"$set": {"pending": "", "pos": pos}}).await;
                Ok(position)
            }
            Err(e) => {
                if head.version == 0 {
                    if let Err(err) = self.coll.delete_one(doc! {"_id": key, "pending": &pending}).await {
                        tracing::error!(%key, error = %err, "rolling back a reservation failed");
                    }
                } else {
                    let old = bson::to_document(&head.state)?;
                    self.settle(
                        doc! {"_id": key, "pending": &pending},
                        doc! {"$set": {"v": head.version as i64, "state": old, "pending": ""}},
                    )
                    .await;
                }
                Err(e.into())
            }
        }
    }

    /// Clears a reservation, retrying briefly: a head left pending blocks its aggregate.
    async fn settle(&self, filter: Document, update: Document) {
        for attempt in 0..5u32 {
            match self.coll.update_one(filter.clone(), update.clone()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "settling an aggregate head failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        tracing::error!(?filter, "aggregate head left pending");
    }
}

fn head_from<S: DeserializeOwned + Default>(d: &Document) -> Head<S> {
    let version = d.get_i64("v").unwrap_or(0).max(0) as u64;
    let state = d.get_document("state").ok().and_then(|s| bson::from_document(s.clone()).ok()).unwrap_or_default();
    let position = d.get_document("pos").ok().and_then(|p| {
        Some(Position {
            topic: p.get_str("topic").ok()?.to_owned(),
            partition: p.get_i32("partition").ok()?,
            offset: p.get_i64("offset").ok()?,
        })
    });
    Head { version, state, position }
}
