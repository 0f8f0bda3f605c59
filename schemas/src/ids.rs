//! Typed identifiers. A bare `Uuid` never crosses a module boundary: the type says what it names.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The text was not a UUID in its hyphenated form, the only form the contract uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a hyphenated UUID")]
pub struct IdParseError;

fn parse_hyphenated(s: &str) -> Result<Uuid, IdParseError> {
    if s.len() != 36 {
        return Err(IdParseError);
    }
    Uuid::try_parse(s).map_err(|_| IdParseError)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hyphenated(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// A registered user.
    UserId
);
id_type!(
    /// A post.
    PostId
);
id_type!(
    /// A comment on a post.
    CommentId
);
id_type!(
    /// A direct message.
    MessageId
);
id_type!(
    /// The one conversation between two users; see [`ConversationId::between`].
    ConversationId
);
id_type!(
    /// A chess game.
    GameId
);
id_type!(
    /// One event; UUIDv7, so ids sort by creation time.
    EventId
);
id_type!(
    /// A follow edge `follower -> followee`; see [`FollowId::of`].
    FollowId
);
id_type!(
    /// A like of one post by one user; see [`LikeId::of`].
    LikeId
);
id_type!(
    /// A notification; derived from the event and recipient, so a replay yields the same id.
    NotificationId
);

/// Namespaces of the name-based (v5) ids. Changing one would orphan every stored id.
mod ns {
    use uuid::Uuid;
    pub const FOLLOW: Uuid = Uuid::from_u128(0x6a1f_0e3c_51b2_4c1e_9d1a_6f00_0000_0001);
    pub const LIKE: Uuid = Uuid::from_u128(0x6a1f_0e3c_51b2_4c1e_9d1a_6f00_0000_0002);
    pub const CONVERSATION: Uuid = Uuid::from_u128(0x6a1f_0e3c_51b2_4c1e_9d1a_6f00_0000_0003);
    pub const NOTIFICATION: Uuid = Uuid::from_u128(0x6a1f_0e3c_51b2_4c1e_9d1a_6f00_0000_0004);
}

fn name_id(namespace: &Uuid, a: Uuid, b: Uuid) -> Uuid {
    let mut name = [0u8; 32];
    name[..16].copy_from_slice(a.as_bytes());
    name[16..].copy_from_slice(b.as_bytes());
    Uuid::new_v5(namespace, &name)
}

impl FollowId {
    /// The edge id is a function of its ends, so "follows are a set" is one aggregate per edge.
    pub fn of(follower: UserId, followee: UserId) -> Self {
        Self(name_id(&ns::FOLLOW, follower.0, followee.0))
    }
}

impl LikeId {
    pub fn of(post: PostId, user: UserId) -> Self {
        Self(name_id(&ns::LIKE, post.0, user.0))
    }
}

impl ConversationId {
    /// One conversation per pair of users, whichever of them writes first.
    pub fn between(a: UserId, b: UserId) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Self(name_id(&ns::CONVERSATION, lo.0, hi.0))
    }
}

impl NotificationId {
    pub fn of(event: EventId, recipient: UserId) -> Self {
        Self(name_id(&ns::NOTIFICATION, event.0, recipient.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_id_is_symmetric_and_pair_specific() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        assert_eq!(ConversationId::between(a, b), ConversationId::between(b, a));
        assert_ne!(ConversationId::between(a, b), ConversationId::between(a, c));
    }

    #[test]
    fn follow_id_is_directed() {
        let (a, b) = (UserId::new(), UserId::new());
        assert_eq!(FollowId::of(a, b), FollowId::of(a, b));
        assert_ne!(FollowId::of(a, b), FollowId::of(b, a));
    }

    #[test]
    fn ids_parse_only_hyphenated_form() {
        let id = PostId::new();
        assert_eq!(id.to_string().parse::<PostId>().ok(), Some(id));
        assert!(id.0.simple().to_string().parse::<PostId>().is_err());
        assert!("not-a-uuid".parse::<PostId>().is_err());
        assert!(format!("{{{id}}}").parse::<PostId>().is_err());
    }
}
