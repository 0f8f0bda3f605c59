//! The read models: what each event writes (pure, per concern) and the indexes they need.
//!
//! Ids are hyphenated UUID strings, so `_id` lookups reach the store's index even on FerretDB,
//! which pushes down little else. Every document has one writer (see [`write`]), so no
//! transaction and no atomic conditional update is needed, and applying an event again
//! changes nothing. Collections, by concern:
//! - [`users`]: `users` (profiles), `handles` (handle -> user id), `follows` (one edge per
//!   pair, queried both ways), `user_counters` (followers, following, posts: shards).
//! - [`posts`]: `posts` (with comment counts), `comments`, `likes` (one per user and post),
//!   `post_counters` (likes: shards).
//! - [`conversations`]: `conversation_members` (one per user and conversation, with the
//!   unread count), `messages`.
//! - [`games`]: `games`, `user_games`.
//! - [`notifications`]: `notifications`, `inboxes` (read marks).
//! - [`feeds`]: `feeds` (one entry per reader and post), `pull_authors`; written after the
//!   rest of a batch, since they read other read models.

pub mod conversations;
pub mod feeds;
pub mod games;
pub mod notifications;
pub mod posts;
pub mod users;
pub mod write;

use agora_schemas::Envelope;
use agora_schemas::events::Event;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Database, IndexModel};
pub use write::{Coll, Store, Write};

/// Where an event came from in the log: what a counter shard is keyed and guarded by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic_base: &'static str,
    pub partition: i32,
    pub offset: i64,
}

pub use Origin as EventOrigin;

/// Every write `envelope` causes in every read model. Pure: the same event always plans the
/// same writes, which is what makes replay and rebuild give the same documents.
pub fn plan(envelope: &Envelope, origin: &Origin) -> Vec<Write> {
    let mut writes = match &envelope.payload {
        Event::UserRegistered(_) | Event::ProfileUpdated(_) | Event::UserFollowed(_) | Event::UserUnfollowed(_) => {
            users::plan(envelope, origin)
        }
        Event::PostCreated(_)
        | Event::PostDeleted(_)
        | Event::CommentAdded(_)
        | Event::PostLiked(_)
        | Event::PostUnliked(_) => posts::plan(envelope, origin),
        Event::MessageSent(_) | Event::ConversationRead(_) => conversations::plan(envelope, origin),
        Event::GameChallenged(_) | Event::GameAccepted(_) | Event::MoveMade(_) | Event::GameResigned(_) => {
            games::plan(envelope, origin)
        }
        Event::NotificationsRead(_) => Vec::new(),
    };
    writes.extend(notifications::plan(envelope, origin));
    writes
}

/// An event's time as stored.
pub fn at(envelope: &Envelope) -> DateTime {
    DateTime::from_millis(envelope.occurred_at.timestamp_millis())
}

/// An index named `name` on `keys`.
pub fn index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(mongodb::options::IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// Creates every index; safe to run at every start and from several processes at once.
pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    users::ensure_indexes(db).await?;
    posts::ensure_indexes(db).await?;
    conversations::ensure_indexes(db).await?;
    games::ensure_indexes(db).await?;
    notifications::ensure_indexes(db).await?;
    feeds::ensure_indexes(db).await?;
    // Shards are summed by owner.
    for coll in [Coll::UserCounters, Coll::PostCounters] {
        db.collection::<Document>(coll.name()).create_index(index(doc! {"owner_id": 1}, "by_owner")).await?;
    }
    Ok(())
}
