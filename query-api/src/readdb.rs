//! The read-model database being served: the active generation (`agora_projector::generation`),
//! polled so that a rebuild's switch reaches every query-api process without a restart.
//! A request keeps the handle it started with, so a switch never fails one.

use agora_projector::generation;
use mongodb::{Client, Database};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone)]
pub struct ReadDb {
    current: Arc<RwLock<Database>>,
}

impl ReadDb {
    /// The active generation's database of `client`, followed from now on (until dropped).
    pub async fn follow(client: Client, base_db: String) -> Self {
        let first = match generation::active(&client, &base_db, "").await {
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
                tokio::time::sleep(generation::POLL_EVERY).await;
                let Some(current) = weak.upgrade() else { return };
                match generation::active(&client, &base_db, "").await {
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
