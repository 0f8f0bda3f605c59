//! Aggregate heads, and the append that ties a head to the log with optimistic concurrency.
//!
//! The primitive that makes two writers of one aggregate exclusive is the unique `_id` of an
//! insert, the one guarantee FerretDB and MongoDB share under concurrency (FerretDB v1 applies
//! an update's filter and its write in separate steps, so a conditional update is not a
//! compare-and-set there). An append of version N+1:
//! 1. claims `<key>#<N+1>` by inserting it into `aggregate_claims`, pending, with the new state;
//!    a duplicate means another command took that version first: decide again;
//! 2. publishes the event to Kafka and waits for `acks=all`;
//! 3. marks the claim done with the event's position and moves the head (a cache of the last
//!    done claim), or, if Kafka did not acknowledge, deletes the claim: no event, no change.
//!
//! Loading reads the head and then the claim of the version after it: none means the head is
//! current; a pending one means an append is in flight (wait); a done one means the head lags
//! (a crash between 2 and 3, or a slow writer) and is rolled forward from it.

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
    heads: Collection<Document>,
    claims: Collection<Document>,
    /// How long to wait for another append on the same aggregate before giving up.
    busy_wait: Duration,
}

pub fn key(aggregate_type: agora_schemas::AggregateType, id: impl std::fmt::Display) -> String {
    format!("{aggregate_type}:{id}")
}

fn claim_id(key: &str, version: u64) -> String {
    format!("{key}#{version}")
}

impl AggregateStore {
    pub fn new(db: &Database, busy_wait: Duration) -> Self {
        Self { heads: db.collection("aggregates"), claims: db.collection("aggregate_claims"), busy_wait }
    }

    /// The head as it is now; version 0 and default state if the aggregate has no event yet.
    pub async fn load<S: DeserializeOwned + Default>(&self, key: &str) -> Result<Head<S>, AppendError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let head = self.heads.find_one(doc! {"_id": key}).await?;
            let version = head.as_ref().map(|d| d.get_i64("v").unwrap_or(0).max(0) as u64).unwrap_or(0);
            let Some(next) = self.claims.find_one(doc! {"_id": claim_id(key, version + 1)}).await? else {
                return Ok(match head {
                    Some(d) => head_from(&d),
                    None => Head { version: 0, state: S::default(), position: None },
                });
            };
            if next.get_bool("pending").unwrap_or(false) {
                if started.elapsed() > self.busy_wait {
                    return Err(AppendError::Busy);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
                continue;
            }
            // The head lags a recorded event: roll it forward and look again.
            let mut set = doc! {"v": (version + 1) as i64, "state": next.get("state").cloned().unwrap_or_default()};
            if let Some(pos) = next.get("pos") {
                set.insert("pos", pos.clone());
            }
            self.heads.update_one(doc! {"_id": key}, doc! {"$set": set}).upsert(true).await?;
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
        let event_id = envelope.event_id.to_string();
        let next = head.version + 1;
        let claim = claim_id(key, next);
        let state = bson::to_document(new_state)?;
        let claimed = self
            .claims
            .insert_one(doc! {
                "_id": &claim, "event_id": &event_id, "state": &state, "pending": true,
                "at": bson::DateTime::now(),
            })
            .await;
        match claimed {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Err(AppendError::Conflict),
            Err(e) => return Err(e.into()),
        }
        match producer.publish(envelope).await {
            Ok(position) => {
                let pos = doc! {"topic": &position.topic, "partition": position.partition, "offset": position.offset};
                // Filters are by `_id` alone: the claim is ours (its insert succeeded), and FerretDB
                // turns any other filter into a scan of the collection.
                self.settle(
                    &self.claims,
                    doc! {"_id": &claim},
                    doc! {"$set": {"pending": false, "pos": pos.clone()}},
                    false,
                )
                .await;
                self.settle(
                    &self.heads,
                    doc! {"_id": key},
                    doc! {"$set": {"v": next as i64, "state": &state, "pos": pos}},
                    true,
                )
                .await;
                Ok(position)
            }
            Err(e) => {
                // Not in the log: give the version back.
                let released = self.claims.delete_one(doc! {"_id": &claim}).await;
                if let Err(err) = released {
                    tracing::error!(%key, error = %err, "releasing a claim failed; the aggregate waits for it");
                }
                Err(e.into())
            }
        }
    }

    /// A write that must land (a claim left pending blocks its aggregate), retried briefly.
    async fn settle(&self, coll: &Collection<Document>, filter: Document, update: Document, upsert: bool) {
        for attempt in 0..5u32 {
            match coll.update_one(filter.clone(), update.clone()).upsert(upsert).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "settling an append failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        tracing::error!(?filter, "an append was not settled");
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
