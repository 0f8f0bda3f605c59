//! The client settings the design depends on, in one place.

use rdkafka::ClientConfig;
use std::time::Duration;

pub(crate) fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // Brokers come and go in fault tests; reconnect quickly but without a storm.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("log_level", "4");
    c
}

/// An idempotent producer with `acks=all`: an acknowledged event is durable and written once.
/// `delivery_timeout` bounds how long a send may take before it is reported failed.
pub fn producer_config(brokers: &str, delivery_timeout: Duration) -> ClientConfig {
    // librdkafka scans for timed-out messages about once a second, so a failure is reported
    // up to ~1 s after `message.timeout.ms`; aim that much earlier to keep within the bound.
    let delivery_timeout =
        delivery_timeout.saturating_sub(Duration::from_millis(1200)).max(Duration::from_millis(1000));
    let mut c = base_config(brokers);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("message.timeout.ms", delivery_timeout.as_millis().to_string())
        .set("request.timeout.ms", delivery_timeout.as_millis().min(30_000).to_string())
        .set("linger.ms", "2")
        .set("compression.type", "lz4");
    c
}

/// A consumer-group member that commits only what the caller has stored, after its side
/// effects are durable, and shares partitions incrementally when members join or leave.
pub fn consumer_config(brokers: &str, group_id: &str) -> ClientConfig {
    let mut c = base_config(brokers);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    c
}
