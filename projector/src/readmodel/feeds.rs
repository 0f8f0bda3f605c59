//! Home feeds: fan-out on write for most authors, merged at read time for the few with many
//! followers (the capacity reasoning is in `docs/architecture.md`).
//!
//! A feed is one `feeds` document per (reader, post): `{_id: "<reader>|<post>", user_id,
//! post_id, author_id}`, read newest first by post id (UUIDv7, so id order is time order).
//! - `post.created` by an author with fewer followers than the threshold writes an entry for
//!   the author and each follower; at or above it, only the author's own entry, and the
//!   author joins `pull_authors`, whose posts the query API merges into their followers'
//!   feeds at read time.
//! - `post.deleted` removes the post's entries; `follow.created` copies the followee's newest
//!   posts in; `follow.removed` takes them out.
//! - Each reader keeps about `cap` entries: about one delivery in [`TRIM_EVERY`] to a
//!   reader (chosen by the pair, so a replay trims at the same deliveries) cuts the rest.
//!
//! Unlike the other read models, these writes need reads (an author's followers, a
//! followee's posts), so they run after the batch's own writes are durable: a post and a
//! follow projected at the same time on different partitions each write their own document
//! first and then read the other's, so at least one of them sees the other and the entry is
//! never missed. The same argument keeps an unfollow from leaving an entry behind: it writes
//! its edge and then deletes the pair's entries, while a delivery inserts and then reads the
//! edges again, taking back the entries of readers who are gone. A post deleted while a
//! follow copies it in can leave an entry; the query API serves live posts only.

use super::{Coll, Store, Write, index};
use agora_platform::cache::{CacheKey, Kind};
use agora_schemas::Envelope;
use agora_schemas::events::Event;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use mongodb::options::FindOptions;
use std::collections::BTreeSet;

/// About one delivery to a reader in this many trims the reader's feed to the cap.
pub const TRIM_EVERY: u64 = 64;

/// How feeds are built (`AGORA_FEED_FANOUT_THRESHOLD`, `AGORA_FEED_CAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettings {
    /// Authors with at least this many followers are merged at read time instead.
    pub fanout_threshold: u64,
    /// Entries kept per reader.
    pub cap: u64,
}

impl FeedSettings {
    pub const DEFAULT: FeedSettings = FeedSettings { fanout_threshold: 10_000, cap: 800 };

    /// Posts a new follow copies into the follower's feed.
    pub fn backfill(&self) -> i64 {
        self.cap.min(200) as i64
    }
}

/// What an event asks of the feeds, decided from the event alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Deliver { post: String, author: String },
    Retract { post: String },
    Backfill { follower: String, followee: String },
    Drop { follower: String, followee: String },
}

pub fn task(envelope: &Envelope) -> Option<Task> {
    match &envelope.payload {
        Event::PostCreated(e) => Some(Task::Deliver { post: e.post_id.to_string(), author: e.author_id.to_string() }),
        Event::PostDeleted(e) => Some(Task::Retract { post: e.post_id.to_string() }),
        Event::UserFollowed(e) => {
            Some(Task::Backfill { follower: e.follower_id.to_string(), followee: e.followee_id.to_string() })
        }
        Event::UserUnfollowed(e) => {
            Some(Task::Drop { follower: e.follower_id.to_string(), followee: e.followee_id.to_string() })
        }
        _ => None,
    }
}

pub fn entry_id(reader: &str, post: &str) -> String {
    format!("{reader}|{post}")
}

fn entry(reader: &str, post: &str, author: &str) -> Write {
    Write::Once {
        coll: Coll::Feeds,
        doc: doc! {"_id": entry_id(reader, post), "user_id": reader, "post_id": post, "author_id": author},
    }
}

/// Whether delivering `post` to `reader` trims the reader's feed: a fixed function of the
/// pair (FNV-1a), true for about one pair in [`TRIM_EVERY`].
pub fn trims(reader: &str, post: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in reader.bytes().chain([b'|']).chain(post.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.is_multiple_of(TRIM_EVERY)
}

/// How many reads a batch's feed tasks have in flight at once.
const CONCURRENCY: usize = 16;

type BoxedPlan<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Planned, mongodb::error::Error>> + Send + 'a>>;

/// What delivering or backfilling one task writes.
#[derive(Default)]
struct Planned {
    entries: Vec<Write>,
    /// (author, posts, followers they went to): re-checked once the entries are written.
    delivered: Option<(String, Vec<String>, Vec<String>)>,
    trim: Vec<String>,
    touched: Vec<String>,
}

/// Runs `tasks`; returns the feed heads they changed. Deliveries and backfills have no order
/// among themselves (their entries are distinct inserts), so their reads run concurrently;
/// a retraction or a drop waits for everything before it.
pub async fn apply(
    store: &Store,
    settings: FeedSettings,
    tasks: &[Task],
) -> Result<Vec<CacheKey>, mongodb::error::Error> {
    use futures::StreamExt;
    let db = store.db();
    let mut touched = BTreeSet::new();
    let mut to_trim = BTreeSet::new();
    for segment in tasks.split_inclusive(|t| matches!(t, Task::Retract { .. } | Task::Drop { .. })) {
        let (adds, barrier) = match segment.split_last() {
            Some((last @ (Task::Retract { .. } | Task::Drop { .. }), rest)) => (rest, Some(last)),
            _ => (segment, None),
        };
        // Boxed futures from a plain loop: a stream over a borrowing closure is not `Send`
        // enough for the worker's future (rust-lang/rust#102211).
        // One read of an author's followers serves all of the author's posts in the segment.
        let mut by_author: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
        let mut plans: Vec<BoxedPlan<'_>> = Vec::with_capacity(adds.len());
        for t in adds {
            match t {
                Task::Deliver { post, author } => by_author.entry(author.as_str()).or_default().push(post.as_str()),
                other => plans.push(Box::pin(plan_backfill(store, settings, other))),
            }
        }
        for (author, posts) in by_author {
            plans.push(Box::pin(plan_deliveries(store, settings, author, posts)));
        }
        let planned: Vec<Result<Planned, mongodb::error::Error>> =
            futures::stream::iter(plans).buffered(CONCURRENCY).collect().await;
        let mut entries = Vec::new();
        let mut delivered = Vec::new();
        for p in planned {
            let p = p?;
            entries.extend(p.entries);
            delivered.extend(p.delivered);
            to_trim.extend(p.trim);
            touched.extend(p.touched);
        }
        store.apply(entries).await?;
        // An unfollow projected between a delivery's read of the followers and its insert
        // would leave an entry behind: the unfollow writes its edge, then deletes entries; a
        // delivery inserts, then reads the edges again and takes back what it finds gone.
        let checks: Vec<_> =
            delivered.iter().map(|(author, posts, readers)| retract_unfollowed(db, author, posts, readers)).collect();
        let rechecked: Vec<Result<(), mongodb::error::Error>> =
            futures::stream::iter(checks).buffer_unordered(CONCURRENCY).collect().await;
        rechecked.into_iter().collect::<Result<Vec<()>, _>>()?;
        match barrier {
            Some(Task::Retract { post }) => {
                let feeds = db.collection::<Document>(Coll::Feeds.name());
                let readers: Vec<Document> =
                    feeds.find(doc! {"post_id": post}).projection(doc! {"user_id": 1}).await?.try_collect().await?;
                touched.extend(readers.iter().filter_map(|d| d.get_str("user_id").ok().map(str::to_owned)));
                feeds.delete_many(doc! {"post_id": post}).await?;
            }
            Some(Task::Drop { follower, followee }) => {
                db.collection::<Document>(Coll::Feeds.name())
                    .delete_many(doc! {"user_id": follower, "author_id": followee})
                    .await?;
                touched.insert(follower.clone());
            }
            _ => {}
        }
    }
    let trims: Vec<_> = to_trim.iter().map(|reader| trim(db, reader, settings.cap)).collect();
    let trimmed: Vec<Result<(), mongodb::error::Error>> =
        futures::stream::iter(trims).buffer_unordered(CONCURRENCY).collect().await;
    trimmed.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(touched.into_iter().map(|u| CacheKey::new(Kind::Feed, u)).collect())
}

/// The entries of `author`'s new `posts`: one for the author and one per follower, unless
/// the author has too many followers to fan out.
async fn plan_deliveries(
    store: &Store,
    settings: FeedSettings,
    author: &str,
    posts: Vec<&str>,
) -> Result<Planned, mongodb::error::Error> {
    let db = store.db();
    let mut out = Planned::default();
    let readers = if followers(db, author).await? >= settings.fanout_threshold as i64 {
        store.apply(vec![Write::Once { coll: Coll::PullAuthors, doc: doc! {"_id": author} }]).await?;
        Vec::new()
    } else {
        active_followers(db, author).await?
    };
    let author_owned = author.to_owned();
    for reader in readers.iter().chain([&author_owned]) {
        for post in &posts {
            if trims(reader, post) {
                out.trim.push(reader.clone());
            }
            out.entries.push(entry(reader, post, author));
        }
        out.touched.push(reader.clone());
    }
    if !readers.is_empty() {
        out.delivered = Some((author_owned, posts.iter().map(|p| (*p).to_owned()).collect(), readers));
    }
    Ok(out)
}

/// The entries a follow copies in (nothing for the other tasks).
async fn plan_backfill(store: &Store, settings: FeedSettings, task: &Task) -> Result<Planned, mongodb::error::Error> {
    let db = store.db();
    let mut out = Planned::default();
    let Task::Backfill { follower, followee } = task else { return Ok(out) };
    let pulled = db.collection::<Document>(Coll::PullAuthors.name()).find_one(doc! {"_id": followee}).await?.is_some();
    if pulled {
        return Ok(out);
    }
    let options =
        FindOptions::builder().sort(doc! {"_id": -1}).limit(settings.backfill()).projection(doc! {"_id": 1}).build();
    let posts: Vec<Document> = db
        .collection::<Document>(Coll::Posts.name())
        .find(doc! {"author_id": followee, "deleted": false})
        .with_options(options)
        .await?
        .try_collect()
        .await?;
    for p in posts {
        if let Ok(post) = p.get_str("_id") {
            out.entries.push(entry(follower, post, followee));
        }
    }
    out.trim.push(follower.clone());
    out.touched.push(follower.clone());
    Ok(out)
}

/// Deletes the entries of `posts` delivered to readers who no longer follow their author.
async fn retract_unfollowed(
    db: &Database,
    author: &str,
    posts: &[String],
    readers: &[String],
) -> Result<(), mongodb::error::Error> {
    let now: BTreeSet<String> = active_followers(db, author).await?.into_iter().collect();
    for reader in readers.iter().filter(|r| !now.contains(*r)) {
        for post in posts {
            db.collection::<Document>(Coll::Feeds.name()).delete_one(doc! {"_id": entry_id(reader, post)}).await?;
        }
    }
    Ok(())
}

/// The author's followers, summed from their counter shards.
async fn followers(db: &Database, author: &str) -> Result<i64, mongodb::error::Error> {
    let shards: Vec<Document> = db
        .collection::<Document>(Coll::UserCounters.name())
        .find(doc! {"owner_id": author})
        .projection(doc! {"followers": 1})
        .await?
        .try_collect()
        .await?;
    Ok(shards
        .iter()
        .map(|d| d.get_i64("followers").or_else(|_| d.get_i32("followers").map(i64::from)).unwrap_or(0))
        .sum())
}

async fn active_followers(db: &Database, author: &str) -> Result<Vec<String>, mongodb::error::Error> {
    let edges: Vec<Document> = db
        .collection::<Document>(Coll::Follows.name())
        .find(doc! {"followee_id": author, "active": true})
        .projection(doc! {"follower_id": 1})
        .await?
        .try_collect()
        .await?;
    Ok(edges.iter().filter_map(|d| d.get_str("follower_id").ok().map(str::to_owned)).collect())
}

/// Keeps the reader's newest `cap` entries.
async fn trim(db: &Database, reader: &str, cap: u64) -> Result<(), mongodb::error::Error> {
    let feeds = db.collection::<Document>(Coll::Feeds.name());
    let options =
        FindOptions::builder().sort(doc! {"post_id": -1}).skip(cap).limit(1).projection(doc! {"post_id": 1}).build();
    let oldest_kept_past: Option<Document> =
        feeds.find(doc! {"user_id": reader}).with_options(options).await?.try_next().await?;
    if let Some(first_cut) = oldest_kept_past.as_ref().and_then(|d| d.get_str("post_id").ok()) {
        feeds.delete_many(doc! {"user_id": reader, "post_id": {"$lte": first_cut}}).await?;
    }
    Ok(())
}

pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let feeds = db.collection::<Document>(Coll::Feeds.name());
    feeds.create_index(index(doc! {"user_id": 1, "post_id": -1}, "reader_newest")).await?;
    feeds.create_index(index(doc! {"post_id": 1}, "by_post")).await?;
    feeds.create_index(index(doc! {"user_id": 1, "author_id": 1}, "reader_author")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_schemas::events::{PostCreated, UserUnfollowed};
    use agora_schemas::{Metadata, PostId, UserId};

    #[test]
    fn posts_and_follows_become_feed_tasks_and_other_events_none() {
        let (a, b, p) = (UserId::new(), UserId::new(), PostId::new());
        let created = Envelope::new(
            Event::from(PostCreated { post_id: p, author_id: a, text: "x".into() }),
            1,
            Metadata::system(),
        );
        assert_eq!(task(&created), Some(Task::Deliver { post: p.to_string(), author: a.to_string() }));
        let unfollowed =
            Envelope::new(Event::from(UserUnfollowed { follower_id: b, followee_id: a }), 2, Metadata::system());
        assert_eq!(task(&unfollowed), Some(Task::Drop { follower: b.to_string(), followee: a.to_string() }));
        let registered = Envelope::new(
            Event::from(agora_schemas::events::UserRegistered {
                user_id: a,
                handle: "ann".into(),
                display_name: "Ann".into(),
            }),
            1,
            Metadata::system(),
        );
        assert_eq!(task(&registered), None);
    }

    #[test]
    fn about_one_delivery_in_trim_every_trims_and_always_the_same_ones() {
        let reader = UserId::new().to_string();
        let posts: Vec<String> = (0..4000).map(|_| PostId::new().to_string()).collect();
        let chosen: Vec<&String> = posts.iter().filter(|p| trims(&reader, p)).collect();
        let expected = posts.len() as f64 / TRIM_EVERY as f64;
        assert!((chosen.len() as f64 - expected).abs() < expected * 0.3, "{} of {}", chosen.len(), posts.len());
        assert!(chosen.iter().all(|p| trims(&reader, p)));
    }

    #[test]
    fn a_new_follow_copies_at_most_the_cap_and_at_most_two_hundred() {
        assert_eq!(FeedSettings { fanout_threshold: 1, cap: 50 }.backfill(), 50);
        assert_eq!(FeedSettings::DEFAULT.backfill(), 200);
    }
}
