//! Idempotency keys, in the write store so that every command-api instance sees them and a
//! Redis flush or a restart forgets nothing.
//!
//! A record is keyed by caller and key. The first request inserts it as pending with the hash
//! of its method, path and body; when it finishes, its answer is stored. A retry with the same
//! body gets that answer; one while the first is in flight waits for it (bounded) and then
//! answers 409; the same key with another body is refused. Records older than 24 h are
//! replaced (MongoDB TTL indexes are not used: FerretDB lacks them).

use mongodb::bson::{self, Binary, Document, doc, spec::BinarySubtype};
use mongodb::{Collection, Database};
use std::time::Duration;

/// How long a key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time: go ahead, then `complete` or `abandon`.
    Fresh,
    /// Answered before: send this again.
    Replay(StoredAnswer),
    /// The first request with this key is still in flight.
    InFlight,
    /// The key was used with another request.
    Mismatch,
}

#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    coll: Collection<Document>,
}

impl IdempotencyStore {
    pub fn new(db: &Database) -> Self {
        Self { coll: db.collection("idempotency") }
    }

    fn id(scope: &str, key: &str) -> String {
        format!("{scope}|{key}")
    }

    pub async fn begin(&self, scope: &str, key: &str, request_hash: &str) -> Result<Begin, mongodb::error::Error> {
        let id = Self::id(scope, key);
        for _ in 0..3 {
            let now = bson::DateTime::now();
            let inserted = self
                .coll
                .insert_one(doc! {"_id": &id, "hash": request_hash, "state": "pending", "created_at": now})
                .await;
            match inserted {
                Ok(_) => return Ok(Begin::Fresh),
                Err(e) if agora_platform::mongo::is_duplicate_key(&e) => {}
                Err(e) => return Err(e),
            }
            let Some(existing) = self.coll.find_one(doc! {"_id": &id}).await? else {
                continue; // removed meanwhile: try to take it
            };
            let created = existing.get_datetime("created_at").map(|t| t.timestamp_millis()).unwrap_or(0);
            if now.timestamp_millis() - created > RETENTION.as_millis() as i64 {
                self.coll.delete_one(doc! {"_id": &id, "created_at": bson::DateTime::from_millis(created)}).await?;
                continue;
            }
            if existing.get_str("hash").unwrap_or_default() != request_hash {
                return Ok(Begin::Mismatch);
            }
            return Ok(match existing.get_document("answer") {
                Ok(a) => Begin::Replay(StoredAnswer {
                    status: a.get_i32("status").unwrap_or(200) as u16,
                    content_type: a.get_str("content_type").unwrap_or("application/json").to_owned(),
                    body: a.get_binary_generic("body").cloned().unwrap_or_default(),
                }),
                Err(_) => Begin::InFlight,
            });
        }
        Ok(Begin::InFlight)
    }

    pub async fn complete(&self, scope: &str, key: &str, answer: &StoredAnswer) -> Result<(), mongodb::error::Error> {
        let body = Binary { subtype: BinarySubtype::Generic, bytes: answer.body.clone() };
        self.coll
            .update_one(
                // Only the request that inserted the record completes it; `_id` alone keeps the
                // write an index lookup on FerretDB.
                doc! {"_id": Self::id(scope, key)},
                doc! {"$set": {"state": "done", "answer": {
                    "status": answer.status as i32, "content_type": &answer.content_type, "body": body,
                }}},
            )
            .await
            .map(|_| ())
    }

    /// Forgets a request that failed in a way worth retrying (a 5xx): the key is free again.
    pub async fn abandon(&self, scope: &str, key: &str) -> Result<(), mongodb::error::Error> {
        self.coll.delete_one(doc! {"_id": Self::id(scope, key)}).await.map(|_| ())
    }
}
