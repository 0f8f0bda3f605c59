//! Metrics realtime emits.

/// Gauge: WebSocket connections open on this process.
pub const CONNECTIONS_OPEN: &str = "agora_realtime_connections_open";
/// Counter, label `event_type`: frames written to sockets.
pub const FRAMES_PUSHED: &str = "agora_realtime_frames_pushed_total";
/// Counter, label `event_type`: frames the router delivered into user streams.
pub const FRAMES_ROUTED: &str = "agora_realtime_frames_routed_total";
/// Histogram, seconds: from an event's `occurred_at` to the socket write.
pub const PUSH_LATENCY_SECONDS: &str = "agora_realtime_push_latency_seconds";
/// Counter: connections closed with 1013 because their queue was full.
pub const SLOW_CLIENTS_CLOSED: &str = "agora_realtime_slow_clients_closed_total";
/// Counter, label `reason`: connection attempts refused before the upgrade.
pub const UPGRADES_REFUSED: &str = "agora_realtime_upgrades_refused_total";
/// Counter, label `outcome` (`replayed`, `reset`): `resume` ops served.
pub const RESUMES: &str = "agora_realtime_resumes_total";
/// Counter: events whose frames were never pushed because the read models they show did not
/// catch up within 60 s (the query API still shows them; a client may refetch).
pub const EVENTS_UNPUSHED: &str = "agora_realtime_events_unpushed_total";
/// Counter: connections dropped because nothing came from the client for a heartbeat
/// interval after a ping (the peer is gone).
pub const PEERS_GONE: &str = "agora_realtime_peers_gone_total";
