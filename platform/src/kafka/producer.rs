//! The event producer: one envelope, one Kafka message, keyed by aggregate id.

use crate::consistency::Position;
use agora_schemas::Envelope;
use agora_schemas::aggregate::{Topics, partition_key};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encoding the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// Kafka did not acknowledge within the delivery timeout; the event was not accepted.
    #[error("kafka did not acknowledge: {0}")]
    Unavailable(#[source] rdkafka::error::KafkaError),
}

#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
    topics: Topics,
    delivery_timeout: Duration,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer").field("topics", &self.topics).finish_non_exhaustive()
    }
}

impl EventProducer {
    pub fn new(brokers: &str, topics: Topics, delivery_timeout: Duration) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = super::config::producer_config(brokers, delivery_timeout).create()?;
        Ok(Self { producer, topics, delivery_timeout })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Appends one event and waits for the brokers' `acks=all` acknowledgement.
    pub async fn publish(&self, envelope: &Envelope) -> Result<Position, PublishError> {
        let value = envelope.to_json()?;
        let key = partition_key(envelope.aggregate_id());
        let topic = self.topics.of(envelope.aggregate_type());
        let event_id = envelope.event_id.to_string();
        let version = envelope.payload.schema_version().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "event_type", value: Some(envelope.event_type()) })
            .insert(Header { key: "schema_version", value: Some(version.as_str()) })
            .insert(Header { key: "event_id", value: Some(event_id.as_str()) });
        let record = FutureRecord::to(&topic).key(&key).payload(&value).headers(headers);
        let started = std::time::Instant::now();
        let outcome = self.producer.send(record, Timeout::After(self.delivery_timeout)).await;
        metrics::histogram!(crate::telemetry::names::KAFKA_PUBLISH_SECONDS).record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(delivery) => Ok(Position { topic, partition: delivery.partition, offset: delivery.offset }),
            Err((e, _)) => {
                metrics::counter!(crate::telemetry::names::KAFKA_PUBLISH_FAILURES).increment(1);
                Err(PublishError::Unavailable(e))
            }
        }
    }
}
