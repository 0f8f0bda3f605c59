//! Metrics command-api emits, besides the shared HTTP and Kafka ones (`agora_platform::telemetry`).

/// Counter, label `type`: events appended to Kafka, by event type.
pub const EVENTS_APPENDED: &str = "agora_command_events_appended_total";
/// Counter, label `reason`: commands refused because the aggregate moved on (`version`).
pub const CONFLICTS: &str = "agora_command_conflicts_total";
/// Counter: commands that changed nothing and appended nothing.
pub const NO_OPS: &str = "agora_command_noops_total";
