//! realtime: stateless WebSocket push fed by the event stream.
//!
//! The route from the log to a socket has two halves, so that no process needs to know
//! where any user is connected:
//! - [`router`]: a Kafka consumer group shared by all realtime processes. For each event it
//!   works out who must hear of it, appends one frame per recipient to that user's Redis
//!   stream (kept for resume) and publishes it on the user's Redis channel, atomically and
//!   at most once per (event, recipient).
//! - [`hub`]: per process, one Redis pub/sub connection subscribed to the channels of the
//!   users connected here, fanning frames out to their sockets' bounded queues.
//! - [`connection`]: one socket's loop (ready, frames, client ops, heartbeats, 1013 / 1012).
//! - [`frames`]: the JSON frames of the contract.
//! - [`presence`]: who is online, in Redis, for `GET /v1/presence`.
//! - [`startup`]: `build(config)`, `port()`, `run(shutdown)`.

pub mod config;
pub mod connection;
pub mod frames;
pub mod games;
pub mod hub;
pub mod presence;
pub mod router;
pub mod startup;
pub mod telemetry;

pub use config::RealtimeConfig;
pub use startup::Application;
