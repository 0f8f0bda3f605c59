//! realtime settings.

use agora_platform::config::{CommonConfig, ConfigError, Env};
use std::num::NonZeroU64;
use std::time::Duration;

pub const KNOWN: &[&str] = &[
    "AGORA_REALTIME_GROUP",
    "AGORA_MAX_CONNECTIONS_PER_USER",
    "AGORA_CONNECTION_QUEUE",
    "AGORA_STREAM_RETENTION_SECS",
    "AGORA_HEARTBEAT_SECS",
    "AGORA_SOCKET_SEND_BUFFER",
    "AGORA_ROUTER_DEDUPE_SECS",
    "AGORA_ROUTER_FETCH_WAIT_MS",
    "AGORA_REALTIME_ROUTE",
];

/// Socket.IO's default `pingInterval`: the old system's clients and load balancers live with it.
const DEFAULT_HEARTBEAT_SECS: NonZeroU64 = NonZeroU64::MIN.saturating_add(24);

#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    pub common: CommonConfig,
    /// `AGORA_REALTIME_ADDR`, default `127.0.0.1:8083`.
    pub addr: String,
    /// `AGORA_REALTIME_GROUP`, default `agora-realtime-router`.
    pub group_id: String,
    /// `AGORA_MAX_CONNECTIONS_PER_USER`, default 5.
    pub max_connections_per_user: usize,
    /// `AGORA_CONNECTION_QUEUE`, default 256 frames: a socket further behind is closed (1013).
    pub connection_queue: usize,
    /// `AGORA_STREAM_RETENTION_SECS`, default 86400: how long a user's frames stay resumable.
    pub stream_retention: Duration,
    /// `AGORA_HEARTBEAT_SECS`, default 25 (Socket.IO's `pingInterval`, the old system's),
    /// at least 1: WebSocket ping interval; a client that answers nothing for one interval
    /// after a ping is dropped.
    pub heartbeat: Duration,
    /// `AGORA_SOCKET_SEND_BUFFER`, default 65536 bytes: each socket's kernel send buffer,
    /// fixed, so a client that stops reading fills it and its queue soon (then 1013).
    pub socket_send_buffer: u32,
    /// `AGORA_ROUTER_DEDUPE_SECS`, default 3600: how long a recipient's delivery watermarks
    /// (per partition, the last offset delivered to them) live after their last frame, so a
    /// redelivered event is not pushed twice. Redelivery covers what was routed but not yet
    /// committed when a router died or lost its partitions: seconds.
    pub router_dedupe: Duration,
    /// `AGORA_ROUTER_FETCH_WAIT_MS`, default 10: how long the router's Kafka fetch waits for
    /// events to gather. It adds up to that to a push; in return a fetch brings every event
    /// of the interval, which about halves the router's and the broker's CPU per event at a
    /// steady 1,000 events/s (docs/architecture.md). 0: each fetch returns at the first event.
    pub router_fetch_wait: Duration,
    /// `AGORA_REALTIME_ROUTE`, default true: whether this process also routes events (joins
    /// the router group). Sockets grow with users and routing with events, and a group is
    /// no wider than the topics' partitions: a large fleet can hold sockets on every process
    /// and route on a few, each then fetching more events per request.
    pub route: bool,
}

impl RealtimeConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env)?,
            addr: env.string("AGORA_REALTIME_ADDR", "127.0.0.1:8083"),
            group_id: env.string("AGORA_REALTIME_GROUP", "agora-realtime-router"),
            max_connections_per_user: env.parse("AGORA_MAX_CONNECTIONS_PER_USER", 5)?,
            connection_queue: env.parse("AGORA_CONNECTION_QUEUE", 256)?,
            stream_retention: Duration::from_secs(env.parse("AGORA_STREAM_RETENTION_SECS", 86_400)?),
            heartbeat: Duration::from_secs(env.parse("AGORA_HEARTBEAT_SECS", DEFAULT_HEARTBEAT_SECS)?.get()),
            socket_send_buffer: env.parse("AGORA_SOCKET_SEND_BUFFER", 65_536)?,
            router_dedupe: Duration::from_secs(env.parse("AGORA_ROUTER_DEDUPE_SECS", 3_600)?),
            router_fetch_wait: env.millis("AGORA_ROUTER_FETCH_WAIT_MS", 10)?,
            route: env.parse("AGORA_REALTIME_ROUTE", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_defaults_to_socket_io_s_interval_and_refuses_zero() {
        let config = RealtimeConfig::from_env(&Env::default()).map(|c| c.heartbeat);
        assert_eq!(config.ok(), Some(Duration::from_secs(25)));
        let zero = RealtimeConfig::from_env(&Env::from_pairs([("AGORA_HEARTBEAT_SECS", "0")]));
        let err = zero.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("AGORA_HEARTBEAT_SECS=\"0\""), "{err}");
    }
}
