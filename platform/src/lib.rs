//! Plumbing shared by Agora's four services. No domain rules live here.
//!
//! - [`config`]: typed settings read once from an environment map (tests pass their own).
//! - [`telemetry`]: tracing (human or JSON) and the Prometheus recorder.
//! - [`kafka`]: producer, consumer and admin clients with the settings the design relies on.
//! - [`mongo`], [`redis`]: clients and their readiness probes.
//! - [`health`]: `/health`, `/ready` (live probes on every call) and `/metrics`.
//! - [`auth`]: JWT issue and verification, the `AuthUser` extractor.
//! - [`http`]: the problem-JSON error type, the JSON extractor and the common middleware.
//! - [`ratelimit`]: limits shared by every instance, kept in Redis.
//! - [`consistency`]: the consistency token that carries Kafka positions to the query API.
//! - [`cache`]: Redis read-through caches the projector invalidates.
//! - [`shutdown`]: SIGTERM / Ctrl-C.

pub mod auth;
pub mod cache;
pub mod config;
pub mod consistency;
pub mod health;
pub mod http;
pub mod kafka;
pub mod mongo;
pub mod ratelimit;
pub mod redis;
pub mod shutdown;
pub mod telemetry;
