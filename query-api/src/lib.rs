//! query-api: serves the read models the projector builds.
//!
//! - [`config`]: the service's settings.
//! - `cache`: Redis read-through caches the projector invalidates.
//! - `consistency`: read-your-writes through `X-Consistency-Token`.
//! - `cursor`: opaque, stable page cursors.
//! - `etag`: `ETag` / `If-None-Match` on every successful `GET`.
//! - [`limits`]: the per-user rate limit on queries, in Redis.
//! - [`openapi`]: the OpenAPI 3.1 document served at `GET /openapi.json`.
//! - `views`: read-model documents turned into the contract's JSON shapes.
//! - `routes`: the HTTP handlers, one module per resource.
//! - [`startup`]: `build(config)`, `port()`, `run(shutdown)`.

pub mod cache;
pub mod config;
pub mod consistency;
pub mod cursor;
pub mod etag;
pub mod limits;
pub mod openapi;
mod routes;
pub mod startup;
pub mod telemetry;
mod views;

pub use config::QueryConfig;
pub use startup::Application;
