//! Metrics command-api emits, besides the shared HTTP and Kafka ones (`agora_platform::telemetry`).

/// Counter, label `type`: events appended to Kafka, by event type.
pub const EVENTS_APPENDED: &str = "agora_command_events_appended_total";
/// Counter, label `reason`: commands refused because the aggregate moved on (`version`).
pub const CONFLICTS: &str = "agora_command_conflicts_total";
/// Counter: commands that changed nothing and appended nothing.
pub const NO_OPS: &str = "agora_command_noops_total";
/// Counter: post heads the head keeper wrote from the log (redeliveries included).
pub const KEEPER_HEADS: &str = "agora_command_keeper_heads_total";
/// Counter: events the head keeper could not decode and skipped.
pub const KEEPER_UNDECODABLE: &str = "agora_command_keeper_undecodable_total";
/// Counter, label `outcome` (`found`, `absent`): commands that waited for the head of a
/// post younger than the head wait, because the keeper had not written it yet.
pub const HEAD_WAITS: &str = "agora_command_head_waits_total";
