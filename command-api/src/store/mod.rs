//! The write side's durable state, in MongoDB, beside the event log in Kafka.
//!
//! - `credentials`: handle -> user id and argon2 hash; the unique `_id` makes a handle one
//!   user's, across any number of command-api instances.
//! - `aggregates`: one head per aggregate (`<type>:<id>`): its version, the small state its
//!   decisions need, and the log position of its last event. Appends are optimistic: a head
//!   moves from version N to N+1 only if it is still at N, so two instances deciding on the
//!   same aggregate cannot both win. See docs/architecture.md.
//! - `keeper`: the consumer that writes, from the log, the first head of each post (a post's
//!   first event is appended without a claim).

pub mod aggregates;
pub mod credentials;
pub mod idempotency;
pub mod keeper;
pub mod locks;

pub use aggregates::{AggregateStore, AppendError, Head};
pub use credentials::{Credential, CredentialStore};
