//! The read-model write executor (`Store::apply`) against the real store: FerretDB at
//! `AGORA_TEST_MONGO_URI` (by default 127.0.0.1:27017). Each test has its own database, dropped
//! at the end even when the test fails.
//!
//! What FerretDB 1.24 answers, which the executor relies on (see `store_reply_shapes`):
//! - `update`, ordered or not, stops at the first failing statement and reports exactly one
//!   write error, always with `index: 0` whatever the statement's position (no `n` either).
//! - `insert` with `ordered: false` goes on past errors and reports each with its true index.
//! - A duplicate key is code 11000; an upsert whose guard does not match collides on `_id`.
//! - An `update` command of about 200 statements or more deadlocks FerretDB's connection pool
//!   (for every client): see `MAX_UPDATES_PER_COMMAND`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_projector::readmodel::write::shard_id;
use agora_projector::readmodel::{Coll, EventOrigin, Store, Write, plan};
use agora_schemas::events::{
    CommentAdded, Event, PostCreated, PostLiked, ProfileUpdated, UserFollowed, UserRegistered,
};
use agora_schemas::{CommentId, Envelope, Metadata, PostId, UserId};
use futures::{FutureExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh database, its store, and how many `update` commands the client has sent.
struct Db {
    db: Database,
    store: Store,
    updates: Arc<AtomicUsize>,
    /// The most statements one `update` command has held.
    largest_update: Arc<AtomicUsize>,
    /// The most statements of `update` commands in flight at once.
    most_in_flight: Arc<AtomicUsize>,
}

impl Db {
    async fn apply(&self, writes: Vec<Write>) {
        if let Err(e) = self.store.apply(writes).await {
            panic!("apply failed: {e}");
        }
    }

    async fn get(&self, coll: Coll, id: &str) -> Option<Document> {
        self.store.collection(coll).find_one(doc! {"_id": id}).await.unwrap()
    }

    async fn all(&self, coll: Coll) -> Vec<Document> {
        let mut docs: Vec<Document> =
            self.store.collection(coll).find(doc! {}).await.unwrap().try_collect().await.unwrap();
        docs.sort_by_key(|d| d.get("_id").map(Bson::to_string));
        docs
    }

    /// Every document of every collection, in `_id` order.
    async fn snapshot(&self) -> BTreeMap<String, Vec<Document>> {
        let mut all = BTreeMap::new();
        for name in self.db.list_collection_names().await.unwrap() {
            let mut docs: Vec<Document> =
                self.db.collection::<Document>(&name).find(doc! {}).await.unwrap().try_collect().await.unwrap();
            docs.sort_by_key(|d| d.get("_id").map(Bson::to_string));
            all.insert(name, docs);
        }
        all
    }
}

/// Runs `test` against a fresh database and drops it afterwards, whatever the outcome.
async fn with_db<F, Fut>(test: F)
where
    F: FnOnce(Arc<Db>) -> Fut,
    Fut: Future<Output = ()>,
{
    let uri = std::env::var("AGORA_TEST_MONGO_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let mut options = ClientOptions::parse(&uri).await.unwrap();
    let updates = Arc::new(AtomicUsize::new(0));
    let largest_update = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let (counter, largest, most) = (updates.clone(), largest_update.clone(), most_in_flight.clone());
    // Statements of each update command in flight, by request id.
    let in_flight = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<i32, usize>::new()));
    options.command_event_handler = Some(EventHandler::callback(move |e: CommandEvent| {
        let mut flying = in_flight.lock().unwrap();
        match e {
            CommandEvent::Started(s) if s.command_name == "update" => {
                counter.fetch_add(1, Ordering::SeqCst);
                let n = s.command.get_array("updates").map(Vec::len).unwrap_or(0);
                largest.fetch_max(n, Ordering::SeqCst);
                flying.insert(s.request_id, n);
                most.fetch_max(flying.values().sum(), Ordering::SeqCst);
            }
            CommandEvent::Succeeded(s) => {
                flying.remove(&s.request_id);
            }
            CommandEvent::Failed(f) => {
                flying.remove(&f.request_id);
            }
            _ => {}
        }
    }));
    let client = Client::with_options(options).unwrap();
    let name = agora_testkit::names::test_prefix("tstore_");
    let db = client.database(&name);
    let t = Arc::new(Db { store: Store::new(&db), db: db.clone(), updates, largest_update, most_in_flight });
    let outcome = AssertUnwindSafe(test(t)).catch_unwind().await;
    db.drop().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn versioned(id: &str, version: u64, set: Document) -> Write {
    Write::set(Coll::Posts, id, version, set)
}

fn like_shard(post: &str, partition: i32, offset: i64) -> Write {
    let origin = EventOrigin { topic_base: "likes", partition, offset };
    Write::Shard {
        coll: Coll::PostCounters,
        id: shard_id(post, &origin),
        owner: post.into(),
        offset,
        inc: doc! {"likes": 1},
    }
}

fn envelope(event: impl Into<Event>, version: u64) -> Envelope {
    Envelope::new(event, version, Metadata { actor_id: None, correlation_id: uuid::Uuid::new_v4(), causation_id: None })
}

fn without_id(mut d: Document) -> Document {
    d.remove("_id");
    d
}

#[tokio::test]
async fn a_redelivered_batch_changes_no_document() {
    with_db(|t| async move {
        let (ann, bob) = (UserId::new(), UserId::new());
        let (post, comment) = (PostId::new(), CommentId::new());
        let events: Vec<(Envelope, EventOrigin)> = vec![
            (
                envelope(UserRegistered { user_id: ann, handle: "ann".into(), display_name: "Ann".into() }, 1),
                EventOrigin { topic_base: "users", partition: 0, offset: 10 },
            ),
            (
                envelope(UserRegistered { user_id: bob, handle: "bob".into(), display_name: "Bob".into() }, 1),
                EventOrigin { topic_base: "users", partition: 1, offset: 20 },
            ),
            (
                envelope(ProfileUpdated { user_id: ann, display_name: None, bio: Some("hi".into()) }, 2),
                EventOrigin { topic_base: "users", partition: 0, offset: 11 },
            ),
            (
                envelope(UserFollowed { follower_id: bob, followee_id: ann }, 1),
                EventOrigin { topic_base: "follows", partition: 2, offset: 30 },
            ),
            (
                envelope(PostCreated { post_id: post, author_id: ann, text: "hello".into() }, 1),
                EventOrigin { topic_base: "posts", partition: 3, offset: 40 },
            ),
            (
                envelope(
                    CommentAdded {
                        comment_id: comment,
                        post_id: post,
                        author_id: bob,
                        post_author_id: ann,
                        text: "nice".into(),
                    },
                    2,
                ),
                EventOrigin { topic_base: "posts", partition: 3, offset: 41 },
            ),
            (
                envelope(PostLiked { post_id: post, user_id: bob, post_author_id: ann }, 1),
                EventOrigin { topic_base: "likes", partition: 4, offset: 50 },
            ),
        ];
        let writes: Vec<Write> = events.iter().flat_map(|(e, o)| plan(e, o)).collect();
        t.apply(writes.clone()).await;
        let first = t.snapshot().await;

        // The first delivery did write what the events mean, so the comparison is not vacuous.
        let ann_doc = t.get(Coll::Users, &ann.to_string()).await.unwrap();
        assert_eq!((ann_doc.get_str("bio").ok(), ann_doc.get_i64("v").ok()), (Some("hi"), Some(2)));
        let p = t.get(Coll::Posts, &post.to_string()).await.unwrap();
        assert_eq!(p.get_i32("comment_count").ok(), Some(1));
        let likes = t.get(Coll::PostCounters, &format!("{post}|likes_4")).await.unwrap();
        assert_eq!(likes.get_i32("likes").ok(), Some(1));
        let followers = t.get(Coll::UserCounters, &format!("{ann}|follows_2")).await.unwrap();
        assert_eq!(followers.get_i32("followers").ok(), Some(1));
        assert!(t.get(Coll::Comments, &comment.to_string()).await.is_some());

        t.apply(writes).await;
        assert_eq!(t.snapshot().await, first);
    })
    .await;
}

#[tokio::test]
async fn two_versions_of_a_document_in_one_batch_both_apply_and_the_older_alone_changes_nothing() {
    with_db(|t| async move {
        let v1 = versioned("p", 1, doc! {"author_id": "ann", "text": "first", "deleted": false});
        let v2 = versioned("p", 2, doc! {"text": "edited"});
        t.apply(vec![v1.clone(), v2]).await;
        let after = t.get(Coll::Posts, "p").await.unwrap();
        assert_eq!(
            without_id(after.clone()),
            doc! {"author_id": "ann", "text": "edited", "deleted": false, "v": 2_i64}
        );

        t.apply(vec![v1]).await;
        assert_eq!(t.get(Coll::Posts, "p").await, Some(after));
    })
    .await;
}

#[tokio::test]
async fn an_older_version_is_ignored_and_the_writes_after_it_in_the_same_command_still_apply() {
    with_db(|t| async move {
        t.apply(vec![versioned("x", 3, doc! {"text": "v3"})]).await;
        // Stale writes at positions 1, 3 and 4 of one command: each stops FerretDB's command,
        // so what follows each must still be sent.
        t.apply(vec![
            versioned("y", 1, doc! {"text": "y1"}),
            versioned("x", 2, doc! {"text": "v2", "only_v2": true}),
            versioned("z", 1, doc! {"text": "z1"}),
            versioned("x", 3, doc! {"text": "v3 again", "only_v3_again": true}),
            versioned("x", 1, doc! {"text": "v1"}),
            versioned("w", 1, doc! {"text": "w1"}),
            versioned("x", 4, doc! {"text": "v4"}),
        ])
        .await;
        let texts: Vec<(String, String, i64)> = t
            .all(Coll::Posts)
            .await
            .iter()
            .map(|d| {
                (d.get_str("_id").unwrap().to_owned(), d.get_str("text").unwrap().to_owned(), d.get_i64("v").unwrap())
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                ("w".into(), "w1".into(), 1),
                ("x".into(), "v4".into(), 4),
                ("y".into(), "y1".into(), 1),
                ("z".into(), "z1".into(), 1),
            ]
        );
        let x = t.get(Coll::Posts, "x").await.unwrap();
        assert!(!x.contains_key("only_v2") && !x.contains_key("only_v3_again"), "a stale write leaked: {x}");
    })
    .await;
}

#[tokio::test]
async fn a_shard_counts_each_offset_once_and_an_owners_shards_sum_to_its_total() {
    with_db(|t| async move {
        t.apply((5..=7).map(|o| like_shard("p", 1, o)).collect()).await;
        let shard = t.get(Coll::PostCounters, "p|likes_1").await.unwrap();
        assert_eq!(without_id(shard.clone()), doc! {"likes": 3, "w": 7_i64, "owner_id": "p"});

        // Redelivery, as a batch and one by one, in and out of order.
        t.apply((5..=7).map(|o| like_shard("p", 1, o)).collect()).await;
        for o in [7, 5, 6] {
            t.apply(vec![like_shard("p", 1, o)]).await;
        }
        assert_eq!(t.get(Coll::PostCounters, "p|likes_1").await, Some(shard));

        // A redelivery that overlaps what was applied and goes past it (a crash mid-batch,
        // then a longer poll): only the new offsets count, another shard's writes summed in
        // one statement.
        t.apply((6..=9).map(|o| like_shard("p", 1, o)).chain((1..=3).map(|o| like_shard("r", 1, o))).collect()).await;
        let shard = t.get(Coll::PostCounters, "p|likes_1").await.unwrap();
        assert_eq!(without_id(shard.clone()), doc! {"likes": 5, "w": 9_i64, "owner_id": "p"});
        let r = t.get(Coll::PostCounters, "r|likes_1").await.unwrap();
        assert_eq!(without_id(r), doc! {"likes": 3, "w": 3_i64, "owner_id": "r"});

        // Another partition of the same owner, and another owner in the same partition.
        t.apply(vec![like_shard("p", 2, 3), like_shard("p", 2, 4), like_shard("q", 1, 8)]).await;
        let other = t.get(Coll::PostCounters, "p|likes_2").await.unwrap();
        assert_eq!(without_id(other), doc! {"likes": 2, "w": 4_i64, "owner_id": "p"});

        let shards: Vec<Document> = t
            .store
            .collection(Coll::PostCounters)
            .find(doc! {"owner_id": "p"})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(shards.len(), 2);
        let total: i32 = shards.iter().filter_map(|d| d.get_i32("likes").ok()).sum();
        assert_eq!(total, 7);
    })
    .await;
}

/// Shards are updated first and inserted only when a command matched fewer than it named:
/// one command (ids chosen to share a lane, and so a command) with a shard already applied,
/// one a crash left part-way and a new one counts each offset once.
#[tokio::test]
async fn a_command_of_an_applied_a_part_way_and_a_new_shard_counts_each_offset_once() {
    use agora_projector::readmodel::write::lane_of;
    with_db(|t| async move {
        let posts: Vec<String> =
            (0..).map(|i| format!("m{i}")).filter(|p| lane_of(&format!("{p}|likes_1")) == 0).take(3).collect();
        let (applied, part_way, new) = (&posts[0], &posts[1], &posts[2]);
        t.apply((1..=3).map(|o| like_shard(applied, 1, o)).collect()).await;
        t.apply(vec![like_shard(part_way, 1, 1)]).await;

        let batch =
            (1..=3).flat_map(|o| [like_shard(applied, 1, o), like_shard(part_way, 1, o), like_shard(new, 1, o)]);
        t.apply(batch.collect()).await;
        for p in [applied, part_way, new] {
            let shard = t.get(Coll::PostCounters, &format!("{p}|likes_1")).await.unwrap();
            assert_eq!(without_id(shard), doc! {"likes": 3, "w": 3_i64, "owner_id": p.as_str()}, "shard of {p}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_insert_once_document_keeps_its_first_version_through_duplicates() {
    with_db(|t| async move {
        let once = |id: &str, text: &str| Write::Once { coll: Coll::Comments, doc: doc! {"_id": id, "text": text} };
        t.apply(vec![once("a", "first"), once("b", "b"), once("a", "second"), once("c", "c")]).await;
        t.apply(vec![once("a", "third"), once("d", "d"), once("b", "again")]).await;
        let docs: Vec<Document> = t.all(Coll::Comments).await;
        assert_eq!(
            docs,
            vec![
                doc! {"_id": "a", "text": "first"},
                doc! {"_id": "b", "text": "b"},
                doc! {"_id": "c", "text": "c"},
                doc! {"_id": "d", "text": "d"},
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn more_inserts_than_one_command_holds_all_land_once() {
    with_db(|t| async move {
        const N: usize = 1200;
        let once =
            |i: usize, n: i64| Write::Once { coll: Coll::Comments, doc: doc! {"_id": format!("c{i:04}"), "n": n} };
        t.apply((0..N).map(|i| once(i, 1)).collect()).await;
        // Again, with other contents: every one a duplicate, in every command.
        t.apply((0..N).map(|i| once(i, 2)).collect()).await;
        let docs = t.all(Coll::Comments).await;
        let ids: Vec<String> = docs.iter().filter_map(|d| d.get_str("_id").ok().map(str::to_owned)).collect();
        assert_eq!(ids, (0..N).map(|i| format!("c{i:04}")).collect::<Vec<_>>());
        assert!(docs.iter().all(|d| d.get_i64("n") == Ok(1)), "the first insert wins");
    })
    .await;
}

/// FerretDB 1.24 (PostgreSQL backend) runs an update command's statements one by one and
/// keeps a PostgreSQL connection per statement until the whole command ends
/// (`updateDocument` defers each statement's iterator close inside its loop). Its pool has 200
/// connections (`pool_max_conns=200`), shared by every client: a command of about 200
/// statements or more deadlocks on the pool and stalls FerretDB for every client until it is
/// restarted. `Store::apply` sends at most `UPDATE_CHUNK` statements per update command.
const MAX_UPDATES_PER_COMMAND: usize = 50;

#[tokio::test]
async fn no_update_command_holds_more_statements_than_ferretdbs_pool_can_hold() {
    with_db(|t| async move {
        // Few enough statements that FerretDB's pool survives them.
        t.apply((0..80).map(|i| versioned(&format!("d{i}"), 1, doc! {})).collect()).await;
        let largest = t.largest_update.load(Ordering::SeqCst);
        assert!(largest <= MAX_UPDATES_PER_COMMAND, "an update command had {largest} statements");
    })
    .await;
}

/// FerretDB's pool (see above) is shared by every client; a batch's concurrent update
/// commands together hold at most this many of its connections.
const MAX_STATEMENTS_IN_FLIGHT: usize = 64;

#[tokio::test]
async fn concurrent_update_commands_hold_a_bounded_share_of_ferretdbs_pool() {
    with_db(|t| async move {
        // New documents are inserted whole; update existing ones, so every write is an update.
        let seed: Vec<Write> = (0..400).map(|i| versioned(&format!("d{i}"), 1, doc! {})).collect();
        let shards: Vec<Write> = (0..400).map(|i| like_shard(&format!("p{i}"), 0, 1)).collect();
        t.apply(seed.into_iter().chain(shards).collect()).await;
        let updates: Vec<Write> = (0..400).map(|i| versioned(&format!("d{i}"), 2, doc! {"n": 2})).collect();
        let shards: Vec<Write> = (0..400).map(|i| like_shard(&format!("p{i}"), 0, 2)).collect();
        t.apply(updates.into_iter().chain(shards).collect()).await;
        let most = t.most_in_flight.load(Ordering::SeqCst);
        assert!(most <= MAX_STATEMENTS_IN_FLIGHT, "{most} update statements were in flight at once");
        let docs = t.all(Coll::Posts).await;
        assert_eq!(docs.iter().filter(|d| d.get_i64("v") == Ok(2) && d.get_i32("n") == Ok(2)).count(), 400);
        let counters = t.all(Coll::PostCounters).await;
        assert_eq!(counters.len(), 400);
        assert!(counters.iter().all(|d| d.get_i32("likes") == Ok(2)), "every shard counted both likes once");
    })
    .await;
}

/// Chunking of versioned writes across commands (large commands wedged FerretDB; see above).
#[tokio::test]
async fn a_group_larger_than_one_command_lands_whole_and_in_order() {
    with_db(|t| async move {
        const N: u64 = 1200;
        // Each version also counts itself: a write skipped or applied out of order (and so
        // ignored as stale) would leave the count short.
        let one_doc = (1..=N).map(|v| Write::Versioned {
            coll: Coll::Posts,
            id: "p".into(),
            version: v,
            set: doc! {"last": v as i64},
            inc: doc! {"count": 1},
        });
        let many_docs = (0..N).map(|i| versioned(&format!("d{i:04}"), 1, doc! {"n": i as i64}));
        t.apply(one_doc.chain(many_docs).collect()).await;

        let p = t.get(Coll::Posts, "p").await.unwrap();
        assert_eq!(without_id(p), doc! {"last": N as i64, "v": N as i64, "count": N as i32});
        let ns: Vec<i64> = t.all(Coll::Posts).await.iter().filter_map(|d| d.get_i64("n").ok()).collect();
        assert_eq!(ns, (0..N as i64).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn a_write_error_other_than_a_duplicate_is_reported() {
    with_db(|t| async move {
        let conflict =
            Write::Versioned { coll: Coll::Posts, id: "p".into(), version: 1, set: doc! {"n": 1}, inc: doc! {"n": 1} };
        let bad_field = versioned("q", 1, doc! {"$text": "x"});
        let bad_shard = Write::Shard {
            coll: Coll::PostCounters,
            id: "p|likes_0".into(),
            owner: "p".into(),
            offset: 1,
            inc: doc! {"likes": "one"},
        };
        let bad_insert = Write::Once { coll: Coll::Comments, doc: doc! {"_id": "c", "$text": "x"} };
        for (what, w) in [("conflict", conflict), ("$ field", bad_field), ("shard", bad_shard), ("insert", bad_insert)]
        {
            assert!(t.store.apply(vec![w]).await.is_err(), "{what}: the error was swallowed");
        }

        // Behind a duplicate (which resumes the command) and among absorbed duplicates.
        t.apply(vec![versioned("s", 2, doc! {})]).await;
        let after_stale = vec![versioned("s", 1, doc! {}), versioned("q", 1, doc! {"$text": "x"})];
        assert!(t.store.apply(after_stale).await.is_err(), "an error after a stale write was swallowed");
        let once = |d: Document| Write::Once { coll: Coll::Comments, doc: d };
        t.apply(vec![once(doc! {"_id": "ok"})]).await;
        let among = vec![once(doc! {"_id": "ok"}), once(doc! {"_id": "bad", "$x": 1}), once(doc! {"_id": "ok"})];
        assert!(t.store.apply(among).await.is_err(), "an insert error among duplicates was swallowed");
    })
    .await;
}

/// The reply shapes `Store::apply` depends on; if the store changes them, this says how.
#[tokio::test]
async fn store_reply_shapes() {
    with_db(|t| async move {
        let stmt = |id: &str, v: i64| {
            Bson::Document(doc! {
                "q": {"_id": id, "$or": [{"v": {"$exists": false}}, {"v": {"$lt": v}}]},
                "u": {"$set": {"v": v}},
                "upsert": true,
            })
        };
        t.db.run_command(doc! {"update": "x", "updates": [stmt("a", 3)], "ordered": true}).await.unwrap();
        let errors = |r: Document| -> Vec<(i32, i32)> {
            r.get_array("writeErrors")
                .map(|es| {
                    es.iter()
                        .filter_map(Bson::as_document)
                        .map(|e| (e.get_i32("index").unwrap_or(-1), e.get_i32("code").unwrap_or(-1)))
                        .collect()
                })
                .unwrap_or_default()
        };
        for ordered in [true, false] {
            let (b, c) = (format!("b{ordered}"), format!("c{ordered}"));
            // The stale write is the second statement.
            let reply =
                t.db.run_command(
                    doc! {"update": "x", "updates": [stmt(&b, 1), stmt("a", 2), stmt(&c, 1)], "ordered": ordered},
                )
                .await
                .unwrap();
            // FerretDB: index 0 (MongoDB would say 1), and it stops even when not ordered.
            assert_eq!(errors(reply), vec![(0, 11000)], "update, ordered: {ordered}");
            assert!(t.db.collection::<Document>("x").find_one(doc! {"_id": &b}).await.unwrap().is_some());
            assert!(t.db.collection::<Document>("x").find_one(doc! {"_id": &c}).await.unwrap().is_none());
        }
        let reply =
            t.db.run_command(doc! {
                "insert": "y",
                "documents": [{"_id": "a"}, {"_id": "a"}, {"_id": "b", "$x": 1}, {"_id": "c"}],
                "ordered": false,
            })
            .await
            .unwrap();
        assert_eq!(errors(reply), vec![(1, 11000), (2, 2)]);
        assert_eq!(t.db.collection::<Document>("y").count_documents(doc! {}).await.unwrap(), 2);
    })
    .await;
}

/// FerretDB reports every update error at index 0 and stops there, so an executor that let
/// stale writes fail (the first design) resent the writes before each one, one round trip
/// each. A stale write must cost no more commands than the writes' own chunks.
#[tokio::test]
async fn one_stale_write_costs_a_bounded_number_of_round_trips() {
    with_db(|t| async move {
        t.apply(vec![versioned("old", 2, doc! {})]).await;
        let mut writes: Vec<Write> = (0..100).map(|i| versioned(&format!("d{i}"), 1, doc! {})).collect();
        writes.push(versioned("old", 1, doc! {}));
        let before = t.updates.load(Ordering::SeqCst);
        t.apply(writes).await;
        let sent = t.updates.load(Ordering::SeqCst) - before;
        use agora_projector::readmodel::write::{UPDATE_CHUNK, UPDATE_LANES};
        // Each lane's last command may be short.
        let bound = 101usize.div_ceil(UPDATE_CHUNK) + UPDATE_LANES;
        assert!(sent <= bound, "{sent} update commands for 101 writes with one stale write (at most {bound})");
    })
    .await;
}
