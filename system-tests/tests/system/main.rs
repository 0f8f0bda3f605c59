//! One test binary for the whole system, as clients see it: every test boots the four services
//! on port 0 against the real stack, with topics, databases, groups and keys of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod commands;
mod feed;
mod fold;
mod games;
mod heads;
mod helpers;
mod hygiene;
mod idempotency;
mod kafka_down;
mod lag;
mod limits;
mod load_run;
mod load_setup;
mod overload;
mod presence;
mod projector_stall;
mod races;
mod read_conversations;
mod read_games;
mod read_notifications;
mod read_posts;
mod readiness;
mod readmodels;
mod realtime_tier;
mod rebuild;
mod replay;
mod resume;
mod slice;
