//! Logging and metrics set-up, once per process.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the tracing subscriber; later calls (several services in one test process) are no-ops.
pub fn init_tracing(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Bucket bounds of histograms of counts (names ending in `_events`).
pub const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Bucket bounds of every other histogram, seconds: 1 ms to 10 s.
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// The process's Prometheus recorder, installed on first use.
///
/// A process holds one recorder; when tests run several services in one process they share it.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            // Buckets, not the exporter's default summaries: a histogram can be summed over
            // processes. Histograms are in seconds, but for
            // the counts of `*_events`.
            let builder = PrometheusBuilder::new()
                .set_buckets(&SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), &COUNT_BUCKETS));
            let builder = builder.unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is already installed; then ours simply stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Metric names defined by the shared plumbing. Each service documents its own in its
/// `telemetry` module; `docs/metrics.md` lists them all.
pub mod names {
    /// Histogram, seconds: time from handing an event to Kafka to its `acks=all` acknowledgement.
    pub const KAFKA_PUBLISH_SECONDS: &str = "agora_kafka_publish_seconds";
    /// Counter, labels `kind`, `outcome` (`hit`, `miss`, `error`): read-through cache lookups.
    pub const CACHE_LOOKUPS: &str = "agora_cache_lookups_total";
    /// Gauge, labels `group`, `topic`, `partition`: messages after the committed offset of a
    /// partition this process owns (0 for the partitions it does not own).
    pub const CONSUMER_LAG: &str = "agora_consumer_lag";
    /// Counter: events Kafka did not acknowledge within the delivery timeout.
    pub const KAFKA_PUBLISH_FAILURES: &str = "agora_kafka_publish_failures_total";
    /// Counter, label `route`, `status`: HTTP responses served.
    pub const HTTP_RESPONSES: &str = "agora_http_responses_total";
    /// Counter, label `class`: requests refused by a rate limit.
    pub const RATE_LIMITED: &str = "agora_rate_limited_total";
    /// Counter, label `class`: rate-limit checks skipped because Redis did not answer.
    pub const RATE_LIMIT_REDIS_ERRORS: &str = "agora_rate_limit_redis_errors_total";
    /// Counter: MongoDB operations refused because no turn at the pool came within
    /// `AGORA_MONGO_WAIT_MS` (the query answered 503, or stale after a consistency wait).
    pub const MONGO_BUSY: &str = "agora_mongo_busy_total";
    /// Histogram, seconds, label `route`: HTTP request latency.
    pub const HTTP_SECONDS: &str = "agora_http_request_seconds";
}
