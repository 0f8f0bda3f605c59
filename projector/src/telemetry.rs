//! Metrics the projector emits.

/// Counter, label `type`: events applied to the read models.
pub const EVENTS_APPLIED: &str = "agora_projector_events_applied_total";
/// Counter, label `reason`: events sent to the dead-letter topic.
pub const DEAD_LETTERS: &str = "agora_projector_dead_letters_total";
/// Counter: read-model writes retried after a MongoDB error.
pub const APPLY_RETRIES: &str = "agora_projector_apply_retries_total";
/// Histogram, seconds: from an event's `occurred_at` to its read-model write.
pub const APPLY_LAG_SECONDS: &str = "agora_projector_apply_lag_seconds";
/// Histogram, seconds, label `stage` (`writes`, `feeds`, `cache`, `positions`): how long
/// each stage of one attempt at a batch took.
pub const APPLY_STAGE_SECONDS: &str = "agora_projector_apply_stage_seconds";
/// Histogram: events per batch (one poll's worth) written to the read models together.
pub const BATCH_EVENTS: &str = "agora_projector_batch_events";
/// Counter: batches whose cache invalidations did not reach Redis.
pub const CACHE_INVALIDATION_FAILURES: &str = "agora_projector_cache_invalidation_failures_total";
