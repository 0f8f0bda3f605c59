//! query-api: serves the read models the projector builds.
//!
//! - [`config`]: the service's settings.
//! - `cursor`: opaque, stable page cursors.
//! - `views`: read-model documents turned into the contract's JSON shapes.
//! - `routes`: the HTTP handlers, one module per resource.
//! - [`startup`]: `build(config)`, `port()`, `run(shutdown)`.

pub mod config;
pub mod cursor;
mod routes;
pub mod startup;
mod views;

pub use config::QueryConfig;
pub use startup::Application;
