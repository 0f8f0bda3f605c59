//! Agora's events: immutable facts with a schema version. No I/O lives here.
//!
//! - [`ids`]: typed identifiers (`UserId`, `PostId`, ...) and the deterministic ids of
//!   pair-shaped aggregates (a follow edge, a like, a conversation).
//! - [`aggregate`]: the aggregate types, the Kafka topic each one's events go to and the
//!   partition key that keeps one aggregate's events in order.
//! - [`events`]: one payload type per fact, and [`Event`], the union of them all.
//! - [`envelope`]: [`Envelope`], what travels on the wire: ids, versions, metadata, payload.
//! - [`upcast`]: the hook that turns an old schema version into the current one on decode.
//! - [`catalog`]: the list of every event type with a sample, used to generate the JSON
//!   Schema files under `schemas/json/` and the v1 fixtures under `schemas/fixtures/`.

pub mod aggregate;
pub mod catalog;
pub mod envelope;
pub mod events;
pub mod ids;
pub mod upcast;

pub use aggregate::AggregateType;
pub use envelope::{DecodeError, Envelope, Metadata, RawEnvelope};
pub use events::Event;
pub use ids::*;
