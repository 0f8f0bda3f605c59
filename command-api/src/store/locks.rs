//! In-process turn-taking per aggregate: a fixed set of async mutexes, chosen by key hash.
//!
//! Only an optimisation: correctness across instances comes from the conditional head update.
//! Serialising same-aggregate commands here turns most races into plain waits instead of
//! version conflicts and retries. Two aggregates sharing a shard merely take turns.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

const SHARDS: usize = 1024;

#[derive(Debug, Clone)]
pub struct AggregateLocks {
    shards: Arc<Vec<Mutex<()>>>,
}

impl Default for AggregateLocks {
    fn default() -> Self {
        Self { shards: Arc::new((0..SHARDS).map(|_| Mutex::new(())).collect()) }
    }
}

impl AggregateLocks {
    pub async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.shards[(h.finish() as usize) % SHARDS].lock().await
    }
}
