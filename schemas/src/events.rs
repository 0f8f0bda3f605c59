//! Event payloads: one type per fact, and [`Event`], their union.
//!
//! A payload carries what a reader needs to apply the fact and nothing more: no password,
//! no hash, no token, no e-mail. Where a projection would otherwise need a lookup in another
//! aggregate to address a notification (a like's post author), the deciding command-api already
//! knows it and records it, so replays never depend on read-model state.

use crate::aggregate::AggregateType;
use crate::ids::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What every payload type states about itself.
pub trait EventPayload: Serialize + for<'de> Deserialize<'de> + JsonSchema + Into<Event> {
    /// Dotted, lowercase, past tense: `post.created`.
    const EVENT_TYPE: &'static str;
    /// Version of this payload's shape; bumped (with an upcaster) on any change.
    const SCHEMA_VERSION: u16;
    const AGGREGATE: AggregateType;
    fn aggregate_id(&self) -> Uuid;
}

/// A user signed up. The credential is kept by command-api's credential store, never here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub handle: String,
    pub display_name: String,
}

/// A user changed their profile; absent fields were left as they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdated {
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserFollowed {
    pub follower_id: UserId,
    pub followee_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUnfollowed {
    pub follower_id: UserId,
    pub followee_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostCreated {
    pub post_id: PostId,
    pub author_id: UserId,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostDeleted {
    pub post_id: PostId,
    pub author_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentAdded {
    pub comment_id: CommentId,
    pub post_id: PostId,
    pub author_id: UserId,
    /// Who is notified.
    pub post_author_id: UserId,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostLiked {
    pub post_id: PostId,
    pub user_id: UserId,
    /// Who is notified.
    pub post_author_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostUnliked {
    pub post_id: PostId,
    pub user_id: UserId,
}

/// A direct message. Its text is personal data: analysts' replays redact it by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSent {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub from: UserId,
    pub to: UserId,
    pub text: String,
}

/// A participant read the conversation up to (and including) a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationRead {
    pub conversation_id: ConversationId,
    pub reader_id: UserId,
    pub up_to: MessageId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Color {
    White,
    Black,
}

/// A player challenged another; the colors are already drawn when the challenger asked for
/// `random`, so a replay never draws again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GameChallenged {
    pub game_id: GameId,
    pub challenger_id: UserId,
    pub white_id: UserId,
    pub black_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GameAccepted {
    pub game_id: GameId,
    pub accepted_by: UserId,
}

/// How a finished game scored, in PGN notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GameResult {
    #[serde(rename = "1-0")]
    WhiteWins,
    #[serde(rename = "0-1")]
    BlackWins,
    #[serde(rename = "1/2-1/2")]
    Draw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Checkmate,
    Stalemate,
    InsufficientMaterial,
    ThreefoldRepetition,
    FiftyMoveRule,
    Resignation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GameOutcome {
    pub result: GameResult,
    pub reason: EndReason,
}

/// One legal move. The move that ends the game carries its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveMade {
    pub game_id: GameId,
    pub player_id: UserId,
    /// Plies played before this one: the first move of a game has ply 0.
    pub ply: u32,
    /// UCI notation, lowercase promotion letter: `e2e4`, `e7e8q`.
    pub uci: String,
    /// Standard FEN of the position after the move.
    pub fen_after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<GameOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GameResigned {
    pub game_id: GameId,
    pub player_id: UserId,
    pub outcome: GameOutcome,
}

/// A user marked notifications read: up to one of them, or (`up_to` absent) all that existed
/// when the event occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsRead {
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<NotificationId>,
}

macro_rules! events {
    ($($variant:ident => $event_type:literal, version $version:literal, $aggregate:ident, |$p:ident| $id:expr;)*) => {
        /// Every fact Agora records, at its current schema version.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $($variant($variant),)*
        }

        $(
            impl EventPayload for $variant {
                const EVENT_TYPE: &'static str = $event_type;
                const SCHEMA_VERSION: u16 = $version;
                const AGGREGATE: AggregateType = AggregateType::$aggregate;
                fn aggregate_id(&self) -> Uuid {
                    let $p = self;
                    $id
                }
            }

            impl From<$variant> for Event {
                fn from(p: $variant) -> Self {
                    Event::$variant(p)
                }
            }
        )*

        impl Event {
            /// Every event type with its current schema version and aggregate.
            pub const TYPES: &'static [(&'static str, u16, AggregateType)] = &[
                $(($event_type, $version, AggregateType::$aggregate),)*
            ];

            pub fn event_type(&self) -> &'static str {
                match self { $(Event::$variant(_) => $event_type,)* }
            }

            pub fn schema_version(&self) -> u16 {
                match self { $(Event::$variant(_) => $version,)* }
            }

            pub fn aggregate_type(&self) -> AggregateType {
                match self { $(Event::$variant(_) => AggregateType::$aggregate,)* }
            }

            pub fn aggregate_id(&self) -> Uuid {
                match self { $(Event::$variant(p) => p.aggregate_id(),)* }
            }

            /// The payload as JSON.
            pub fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $(Event::$variant(p) => serde_json::to_value(p),)* }
            }

            /// Decodes a payload that is already at the current version of its type.
            pub(crate) fn from_current_payload(
                event_type: &str,
                payload: serde_json::Value,
            ) -> Option<Result<Event, serde_json::Error>> {
                match event_type {
                    $($event_type => Some(serde_json::from_value::<$variant>(payload).map(Event::$variant)),)*
                    _ => None,
                }
            }

            /// The current schema version of an event type, if it is one.
            pub fn current_version(event_type: &str) -> Option<u16> {
                Self::TYPES.iter().find(|(t, _, _)| *t == event_type).map(|(_, v, _)| *v)
            }

            /// The JSON Schema of each event type's current payload, by event type.
            pub fn payload_schemas() -> Vec<(&'static str, u16, schemars::Schema)> {
                vec![$(($event_type, $version, schemars::schema_for!($variant)),)*]
            }
        }
    };
}

events! {
    UserRegistered => "user.registered", version 1, User, |p| p.user_id.0;
    ProfileUpdated => "user.profile_updated", version 1, User, |p| p.user_id.0;
    UserFollowed => "follow.created", version 1, Follow, |p| FollowId::of(p.follower_id, p.followee_id).0;
    UserUnfollowed => "follow.removed", version 1, Follow, |p| FollowId::of(p.follower_id, p.followee_id).0;
    PostCreated => "post.created", version 1, Post, |p| p.post_id.0;
    PostDeleted => "post.deleted", version 1, Post, |p| p.post_id.0;
    CommentAdded => "post.comment_added", version 1, Post, |p| p.post_id.0;
    PostLiked => "like.added", version 1, Like, |p| LikeId::of(p.post_id, p.user_id).0;
    PostUnliked => "like.removed", version 1, Like, |p| LikeId::of(p.post_id, p.user_id).0;
    MessageSent => "message.sent", version 1, Conversation, |p| p.conversation_id.0;
    ConversationRead => "conversation.read", version 1, Conversation, |p| p.conversation_id.0;
    GameChallenged => "game.challenged", version 1, Game, |p| p.game_id.0;
    GameAccepted => "game.accepted", version 1, Game, |p| p.game_id.0;
    MoveMade => "game.move_made", version 1, Game, |p| p.game_id.0;
    GameResigned => "game.resigned", version 1, Game, |p| p.game_id.0;
    NotificationsRead => "inbox.notifications_read", version 1, Inbox, |p| p.user_id.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_unique_and_dotted() {
        let mut seen = std::collections::HashSet::new();
        for (t, v, _) in Event::TYPES {
            assert!(seen.insert(*t), "duplicate event type {t}");
            assert!(t.contains('.') && t.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'));
            assert!(*v >= 1);
        }
    }

    #[test]
    fn game_result_uses_pgn_notation() {
        let json = serde_json::to_string(&[GameResult::WhiteWins, GameResult::BlackWins, GameResult::Draw])
            .unwrap_or_default();
        assert_eq!(json, r#"["1-0","0-1","1/2-1/2"]"#);
    }

    #[test]
    fn follow_events_of_one_edge_share_an_aggregate() {
        let (a, b) = (UserId::new(), UserId::new());
        let followed = Event::from(UserFollowed { follower_id: a, followee_id: b });
        let unfollowed = Event::from(UserUnfollowed { follower_id: a, followee_id: b });
        assert_eq!(followed.aggregate_id(), unfollowed.aggregate_id());
        assert_eq!(followed.aggregate_type(), AggregateType::Follow);
    }
}
