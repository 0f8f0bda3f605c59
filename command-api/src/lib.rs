//! command-api: accepts commands, decides them against the write side, appends events to Kafka.
//!
//! - [`config`]: the service's settings.
//! - `domain`: pure rules: input validation newtypes and the decisions of each aggregate.
//! - `store`: the write side's durable state in MongoDB: credentials and aggregate heads with
//!   optimistic concurrency.
//! - `routes`: the HTTP handlers, one module per resource.
//! - [`openapi`]: the OpenAPI document, from the handlers' annotations.
//! - [`limits`], `idempotency`: the rate-limit and `Idempotency-Key` middleware.
//! - [`startup`]: `build(config)`, `port()`, `run(shutdown)`.

pub mod config;
pub mod domain;
mod idempotency;
pub mod limits;
pub mod openapi;
mod routes;
pub mod startup;
mod store;
pub mod telemetry;

pub use config::CommandConfig;
pub use startup::Application;
