//! projector: consumer-group workers that fold the event log into MongoDB read models.
//!
//! - [`config`]: the service's settings.
//! - [`readmodel`]: the collections, their indexes, and how each event changes them; every
//!   write is guarded so applying an event twice changes nothing.
//! - [`worker`]: the Kafka consumer loop: decode, apply, then store the offset; dead letters.
//! - [`startup`]: `build(config)`, `port()`, `run(shutdown)`.
//! - [`telemetry`]: the metrics it emits.

pub mod config;
pub mod generation;
pub mod invalidation;
pub mod readmodel;
pub mod rebuild;
pub mod replay;
pub mod startup;
pub mod telemetry;
pub mod worker;

pub use config::ProjectorConfig;
pub use startup::Application;
