//! The read models and how events change them.
//!
//! Collections (ids are hyphenated UUID strings, so `_id` lookups reach the store's index even
//! on FerretDB, which pushes down little else):
//! - `users`: profile and follower / following / post counts.
//! - `handles`: handle -> user id, for `GET /v1/users/by-handle/{handle}`.
//! - `posts`: posts with their counters; `(author_id, _id desc)` pages a user's posts.
//! - `follows`: one document per edge, queried both ways.
//!
//! Idempotence: a document owned by one aggregate stores the aggregate version `v` it has
//! applied and only moves forward. A counter touched by events of many aggregates (a user's
//! follower count) stores, per source partition, the highest offset applied (`w.<topic>_<p>`):
//! one partition is applied in order by one worker, so a redelivered event is never counted
//! twice. Neither needs a transaction.

mod guard;

use agora_schemas::Envelope;
use agora_schemas::events::Event;
use guard::{Origin, bump_counters, set_versioned};
use mongodb::bson::{DateTime, doc};
use mongodb::{Collection, Database, IndexModel, bson::Document};

pub use guard::Origin as EventOrigin;

#[derive(Debug, Clone)]
pub struct ReadModels {
    pub users: Collection<Document>,
    pub handles: Collection<Document>,
    pub posts: Collection<Document>,
    pub follows: Collection<Document>,
}

impl ReadModels {
    pub fn new(db: &Database) -> Self {
        Self {
            users: db.collection("users"),
            handles: db.collection("handles"),
            posts: db.collection("posts"),
            follows: db.collection("follows"),
        }
    }

    /// Creates every index; safe to run at every start and from several processes at once.
    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        let idx = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(mongodb::options::IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        self.posts.create_index(idx(doc! {"author_id": 1, "_id": -1}, "author_newest")).await?;
        self.follows
            .create_index(idx(doc! {"followee_id": 1, "active": 1, "created_at": -1}, "followers_newest"))
            .await?;
        self.follows
            .create_index(idx(doc! {"follower_id": 1, "active": 1, "created_at": -1}, "following_newest"))
            .await?;
        Ok(())
    }

    /// Applies one event. Applying it again, or any earlier event again, changes nothing.
    pub async fn apply(&self, envelope: &Envelope, origin: &Origin) -> Result<(), mongodb::error::Error> {
        let v = envelope.aggregate_version;
        let at = DateTime::from_millis(envelope.occurred_at.timestamp_millis());
        match &envelope.payload {
            Event::UserRegistered(e) => {
                let user = e.user_id.to_string();
                self.handles
                    .update_one(doc! {"_id": &e.handle}, doc! {"$set": {"user_id": &user}})
                    .upsert(true)
                    .await?;
                set_versioned(
                    &self.users,
                    &user,
                    v,
                    doc! {"handle": &e.handle, "display_name": &e.display_name, "bio": "", "created_at": at},
                )
                .await
            }
            Event::ProfileUpdated(e) => {
                let mut set = Document::new();
                if let Some(name) = &e.display_name {
                    set.insert("display_name", name);
                }
                if let Some(bio) = &e.bio {
                    set.insert("bio", bio);
                }
                set_versioned(&self.users, &e.user_id.to_string(), v, set).await
            }
            Event::UserFollowed(e) => {
                let edge = envelope.aggregate_id().to_string();
                let (follower, followee) = (e.follower_id.to_string(), e.followee_id.to_string());
                bump_counters(&self.users, &followee, origin, doc! {"followers": 1}).await?;
                bump_counters(&self.users, &follower, origin, doc! {"following": 1}).await?;
                set_versioned(
                    &self.follows,
                    &edge,
                    v,
                    doc! {"follower_id": follower, "followee_id": followee, "active": true, "created_at": at},
                )
                .await
            }
            Event::UserUnfollowed(e) => {
                let edge = envelope.aggregate_id().to_string();
                let (follower, followee) = (e.follower_id.to_string(), e.followee_id.to_string());
                bump_counters(&self.users, &followee, origin, doc! {"followers": -1}).await?;
                bump_counters(&self.users, &follower, origin, doc! {"following": -1}).await?;
                set_versioned(
                    &self.follows,
                    &edge,
                    v,
                    doc! {"follower_id": follower, "followee_id": followee, "active": false},
                )
                .await
            }
            Event::PostCreated(e) => {
                let author = e.author_id.to_string();
                bump_counters(&self.users, &author, origin, doc! {"posts": 1}).await?;
                set_versioned(
                    &self.posts,
                    &e.post_id.to_string(),
                    v,
                    doc! {"author_id": author, "text": &e.text, "created_at": at, "deleted": false},
                )
                .await
            }
            Event::PostDeleted(e) => {
                bump_counters(&self.users, &e.author_id.to_string(), origin, doc! {"posts": -1}).await?;
                set_versioned(&self.posts, &e.post_id.to_string(), v, doc! {"deleted": true}).await
            }
            // The remaining read models (likes, comments, feeds, notifications, conversations,
            // games) are built by the read-side work of issue 4; their events pass through.
            _ => Ok(()),
        }
    }
}
