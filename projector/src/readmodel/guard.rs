//! The two write guards that make applying an event idempotent without transactions.

use mongodb::Collection;
use mongodb::bson::{Document, doc};

/// Where an event came from in the log: the key of a counter's per-partition watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic_base: &'static str,
    pub partition: i32,
    pub offset: i64,
}

impl Origin {
    fn watermark_field(&self) -> String {
        format!("w.{}_{}", self.topic_base, self.partition)
    }
}

fn absorb_duplicate(result: Result<(), mongodb::error::Error>) -> Result<(), mongodb::error::Error> {
    match result {
        // The guard did not match an existing document, so the upsert tried to insert its
        // `_id` again: the event was applied before.
        Err(e) if agora_platform::mongo::is_duplicate_key(&e) => Ok(()),
        other => other,
    }
}

/// Sets fields of a document owned by one aggregate, if `version` is newer than what it holds.
pub async fn set_versioned(
    coll: &Collection<Document>,
    id: &str,
    version: u64,
    mut set: Document,
) -> Result<(), mongodb::error::Error> {
    let version = version as i64;
    set.insert("v", version);
    let filter = doc! {"_id": id, "$or": [{"v": {"$exists": false}}, {"v": {"$lt": version}}]};
    absorb_duplicate(coll.update_one(filter, doc! {"$set": set}).upsert(true).await.map(|_| ()))
}

/// Adds `inc` to counters of a document, once per event: the per-partition watermark moves to
/// the event's offset in the same single-document update.
pub async fn bump_counters(
    coll: &Collection<Document>,
    id: &str,
    origin: &Origin,
    inc: Document,
) -> Result<(), mongodb::error::Error> {
    let field = origin.watermark_field();
    let filter = doc! {"_id": id, "$or": [{&field: {"$exists": false}}, {&field: {"$lt": origin.offset}}]};
    let update = doc! {"$inc": inc, "$set": {&field: origin.offset}};
    absorb_duplicate(coll.update_one(filter, update).upsert(true).await.map(|_| ()))
}
