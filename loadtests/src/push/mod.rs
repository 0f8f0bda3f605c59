//! The push benchmark (`agora-bench-push`, issue 5's "Measure"): Agora's realtime tier beside
//! the old system's Socket.IO + Redis adapter stack, with the same sockets and event rates.
//!
//! - [`wire`]: what both sides share: user ids, the latency marker carried in each message,
//!   histogram transport between processes, the stacks' URLs.
//! - [`procfs`]: CPU seconds and resident memory of a process, from `/proc`.
//! - [`client`]: the `client` role: one process holding up to ~19K sockets from 127.0.0.x
//!   source addresses, measuring push latency into HDR histograms per phase.
//! - [`fleet`]: starting and stopping the servers (realtime or Socket.IO processes), the
//!   Socket.IO emitters and the client processes.
//! - [`feed`]: the open-loop event schedule, written to Kafka (Agora) or to the Socket.IO
//!   emitter (through the Redis adapter).
//! - [`coordinator`]: the phases, their figures and the JSON report.

pub mod client;
pub mod coordinator;
pub mod feed;
pub mod fleet;
pub mod procfs;
pub mod wire;
