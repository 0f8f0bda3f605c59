//! Aggregates, their topics and partition keys.
//!
//! Every event belongs to one aggregate; all events of one aggregate go to one topic with the
//! aggregate id as the Kafka key, so they land in one partition and stay in order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    /// A user's account and profile; id = user id.
    User,
    /// One follow edge; id = `FollowId::of(follower, followee)`.
    Follow,
    /// A post with its comments; id = post id.
    Post,
    /// One like; id = `LikeId::of(post, user)`.
    Like,
    /// The conversation of a pair of users; id = `ConversationId::between(a, b)`.
    Conversation,
    /// A chess game; id = game id.
    Game,
    /// A user's notification inbox (read marks); id = user id.
    Inbox,
}

impl AggregateType {
    pub const ALL: [AggregateType; 7] = [
        AggregateType::User,
        AggregateType::Follow,
        AggregateType::Post,
        AggregateType::Like,
        AggregateType::Conversation,
        AggregateType::Game,
        AggregateType::Inbox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::User => "user",
            AggregateType::Follow => "follow",
            AggregateType::Post => "post",
            AggregateType::Like => "like",
            AggregateType::Conversation => "conversation",
            AggregateType::Game => "game",
            AggregateType::Inbox => "inbox",
        }
    }

    /// The topic's base name; the deployed name is `<prefix>.<base>` (see [`Topics`]).
    pub fn topic_base(self) -> &'static str {
        match self {
            AggregateType::User => "users",
            AggregateType::Follow => "follows",
            AggregateType::Post => "posts",
            AggregateType::Like => "likes",
            AggregateType::Conversation => "conversations",
            AggregateType::Game => "games",
            AggregateType::Inbox => "inbox",
        }
    }

    pub fn from_topic_base(base: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.topic_base() == base)
    }
}

impl fmt::Display for AggregateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kafka key of an aggregate's events: its id, hyphenated. Same key, same partition.
pub fn partition_key(aggregate_id: Uuid) -> String {
    aggregate_id.as_hyphenated().to_string()
}

/// Base name of the dead-letter topic, where events that cannot be decoded or applied go.
pub const DEADLETTER_TOPIC_BASE: &str = "deadletter";

/// Topic names under one prefix (`agora` by default; tests use their own prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn of(&self, aggregate: AggregateType) -> String {
        format!("{}.{}", self.prefix, aggregate.topic_base())
    }

    pub fn deadletter(&self) -> String {
        format!("{}.{}", self.prefix, DEADLETTER_TOPIC_BASE)
    }

    /// Every event topic, in [`AggregateType::ALL`] order.
    pub fn event_topics(&self) -> Vec<String> {
        AggregateType::ALL.iter().map(|a| self.of(*a)).collect()
    }

    /// Every topic to create: the event topics and the dead-letter topic.
    pub fn all(&self) -> Vec<String> {
        let mut all = self.event_topics();
        all.push(self.deadletter());
        all
    }

    /// The aggregate whose events a topic holds, if it is one of ours.
    pub fn aggregate_of(&self, topic: &str) -> Option<AggregateType> {
        let base = topic.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        AggregateType::from_topic_base(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_to_their_aggregate() {
        let topics = Topics::new("t-1");
        for a in AggregateType::ALL {
            assert_eq!(topics.aggregate_of(&topics.of(a)), Some(a));
        }
        assert_eq!(topics.aggregate_of("t-1.deadletter"), None);
        assert_eq!(topics.aggregate_of("agora.posts"), None);
        assert_eq!(topics.all().len(), AggregateType::ALL.len() + 1);
    }

    #[test]
    fn topic_bases_are_distinct() {
        let mut bases: Vec<_> = AggregateType::ALL.iter().map(|a| a.topic_base()).collect();
        bases.push(DEADLETTER_TOPIC_BASE);
        let n = bases.len();
        bases.sort();
        bases.dedup();
        assert_eq!(bases.len(), n);
    }
}
