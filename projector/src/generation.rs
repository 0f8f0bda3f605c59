//! Which database holds the read models being served, and which consumer group builds it.
//!
//! A rebuild projects the log from the start into a fresh database with a consumer group of
//! its own, then points every reader and projector at it by rewriting one document: `active`
//! in the `meta` collection of the base database (`AGORA_MONGO_DB`). Until the first rebuild
//! there is no such document and generation 0 is the base database with the configured group.
//! query-api processes and projector processes poll it and switch without a restart.

use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Client, Database};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often readers and projectors look at the pointer.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

const META: &str = "meta";
const ACTIVE: &str = "active";

/// A generation of the read models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The database holding them.
    pub db: String,
    /// The consumer group that builds them.
    pub group: String,
}

impl Generation {
    /// Generation 0: the base database, built by the configured group.
    pub fn initial(base_db: &str, base_group: &str) -> Self {
        Self { db: base_db.to_owned(), group: base_group.to_owned() }
    }

    /// A new generation named after `stamp` (e.g. the rebuild's start, in seconds).
    pub fn next(base_db: &str, base_group: &str, stamp: i64) -> Self {
        Self { db: format!("{base_db}_r{stamp}"), group: format!("{base_group}-r{stamp}") }
    }
}

fn meta(client: &Client, base_db: &str) -> mongodb::Collection<Document> {
    client.database(base_db).collection(META)
}

/// The generation being served.
pub async fn active(client: &Client, base_db: &str, base_group: &str) -> Result<Generation, mongodb::error::Error> {
    let pointer = meta(client, base_db).find_one(doc! {"_id": ACTIVE}).await?;
    Ok(match pointer {
        Some(d) => match (d.get_str("db"), d.get_str("group")) {
            (Ok(db), Ok(group)) => Generation { db: db.to_owned(), group: group.to_owned() },
            _ => Generation::initial(base_db, base_group),
        },
        None => Generation::initial(base_db, base_group),
    })
}

/// Serves `next` from now on.
pub async fn switch(client: &Client, base_db: &str, next: &Generation) -> Result<(), mongodb::error::Error> {
    meta(client, base_db)
        .update_one(
            doc! {"_id": ACTIVE},
            doc! {"$set": {"db": &next.db, "group": &next.group, "since": DateTime::now()}},
        )
        .upsert(true)
        .await?;
    Ok(())
}

/// The database of `generation` on `client`.
pub fn database(client: &Client, generation: &Generation) -> Database {
    client.database(&generation.db)
}

/// The read-model database a reader serves from: the active generation, polled so that a
/// rebuild's switch reaches every query-api and realtime process without a restart. A request
/// keeps the handle it started with, so a switch never fails one.
#[derive(Debug, Clone)]
pub struct ReadDb {
    current: Arc<RwLock<Database>>,
}

impl ReadDb {
    /// The active generation's database of `client`, followed from now on (until dropped).
    pub async fn follow(client: Client, base_db: String) -> Self {
        let first = match active(&client, &base_db, "").await {
            Ok(g) => client.database(&g.db),
            Err(e) => {
                // The base database until the pointer can be read: correct unless a rebuild
                // ever switched, and then corrected on the next poll.
                tracing::warn!(error = %e, "reading the active read-model generation failed");
                client.database(&base_db)
            }
        };
        let current = Arc::new(RwLock::new(first));
        let weak = Arc::downgrade(&current);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL_EVERY).await;
                let Some(current) = weak.upgrade() else { return };
                match active(&client, &base_db, "").await {
                    Ok(g) => {
                        let changed = current.read().map(|db| db.name() != g.db).unwrap_or(false);
                        if changed && let Ok(mut db) = current.write() {
                            tracing::info!(from = db.name(), to = %g.db, "serving the rebuilt read models");
                            *db = client.database(&g.db);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "polling the active read-model generation failed"),
                }
            }
        });
        Self { current }
    }

    /// The database to serve this request from.
    pub fn get(&self) -> Database {
        match self.current.read() {
            Ok(db) => db.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_has_a_database_and_a_group_of_its_own() {
        let first = Generation::initial("agora_read", "agora-projector");
        let next = Generation::next("agora_read", "agora-projector", 1_700_000_000);
        assert_eq!(
            next,
            Generation { db: "agora_read_r1700000000".into(), group: "agora-projector-r1700000000".into() }
        );
        assert_ne!(first.db, next.db);
        assert_ne!(first.group, next.group);
    }
}
