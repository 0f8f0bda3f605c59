//! Pure rules of the write side: no I/O. Each aggregate has `decide` (state and command to
//! an event, nothing, or a rejection) and `apply` (state and event to the next state).

pub mod conversation;
pub mod follow;
pub mod game;
pub mod like;
pub mod post;
pub mod user;
pub mod validation;
