//! Kafka clients: the idempotent event producer, consumer settings, topic admin, readiness.

pub mod admin;
pub mod config;
pub mod consumer;
pub mod lag;
pub mod producer;

pub use admin::ensure_topics;
pub use config::{consumer_config, producer_config};
pub use producer::{EventProducer, PublishError};

use crate::health::Probe;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;
use std::time::Duration;

/// A readiness probe: a live metadata round trip to the brokers on every call.
pub fn probe(brokers: &str, timeout: Duration) -> Result<Probe, rdkafka::error::KafkaError> {
    let client: BaseConsumer = config::base_config(brokers).create()?;
    let client = Arc::new(client);
    Ok(Probe::new("kafka", move || {
        let client = client.clone();
        async move {
            tokio::task::spawn_blocking(move || client.fetch_metadata(None, timeout).map(|_| ()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
    }))
}
