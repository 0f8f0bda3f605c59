//! Metrics query-api emits, besides the shared HTTP ones (`agora_platform::telemetry`).

/// Counter, label `outcome` (`fresh`, `stale`): queries that carried `X-Consistency-Token`,
/// by whether the projector reached it within the wait.
pub const CONSISTENCY_WAITS: &str = "agora_query_consistency_waits_total";
