//! The projector's read models stay exact under crashes and scaling: a projector process
//! SIGKILLed five times at different points while it has lag, and two projectors in one group
//! of which one leaves mid-stream, each end with the same documents as a from-scratch rebuild
//! of the same log (a checksum over every document of every read model), and the counters
//! equal what the commands imply.
//!
//! - [`Workload`]: a mixed scenario driven through the command API (follows and unfollows,
//!   posts, likes and unlikes, comments, deletions, messages and their reads, profiles,
//!   notification reads, chess games), with a model of what it must leave behind.
//! - [`Snapshot`]: every document of every read model, canonical, with a checksum and a diff
//!   that names the first differing documents.
//! - [`ProjectorProcess`]: the `agora-projector` binary as an OS process, so it can be SIGKILLed;
//!   [`InProcessProjector`]: a projector `Application` in this process, stopped gracefully.

use crate::helpers::{TestApp, User, assert_accepted, service_binary};
use agora_platform::config::Env;
use agora_platform::kafka::lag::{PartitionLag, group_lag};
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::write::position_id;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

// ---------------------------------------------------------------------------------------------
// The workload and its model

/// xorshift64*: a small reproducible generator (the seed is printed; `AGORA_TEST_SEED` replays it).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("AGORA_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("readmodels: seed {seed} (AGORA_TEST_SEED={seed} replays the workload's choices)");
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One command, by one user.
#[derive(Debug, Clone)]
enum Op {
    Post(String),
    Delete(usize),
    Like(usize),
    Unlike(usize),
    Comment(usize, String),
    Follow(usize),
    Unfollow(usize),
    Message(usize, String),
    Read(String),
    Bio(String),
    ReadNotifications,
    Challenge { game: usize, opponent: usize, color: &'static str },
    Accept(usize),
    Move { game: usize, uci: &'static str, ply: u32 },
    Resign(usize),
}

/// What an executed command created that later rounds refer to.
#[derive(Debug)]
enum Created {
    Post { author: usize, id: String },
    Conversation { pair: (usize, usize), id: String },
    Game { game: usize, id: String },
}

#[derive(Debug, Clone)]
struct PostModel {
    id: String,
    author: usize,
    alive: bool,
    comments: u64,
}

/// The scenario's users and what its commands must leave in the read models.
#[derive(Debug)]
struct Workload {
    users: Vec<User>,
    rng: Rng,
    round: usize,
    posts: Vec<PostModel>,
    /// Active follow edges, (follower, followee).
    follows: BTreeSet<(usize, usize)>,
    /// Active likes, (user, post).
    likes: BTreeSet<(usize, usize)>,
    /// The conversation of each pair of users that has one, (lower, higher).
    conversations: BTreeMap<(usize, usize), String>,
    games: HashMap<usize, String>,
    /// Commands that appended an event.
    appended: usize,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Workload {
    /// Registers `users` users (at least 6: the games need three pairs).
    async fn new(app: &TestApp, users: usize) -> Self {
        assert!(users >= 6, "the games need six players");
        let users =
            futures::future::join_all((0..users).map(|i| async move { app.user(&format!("rm{i}")).await })).await;
        let appended = users.len();
        Self {
            users,
            rng: Rng::seeded(),
            round: 0,
            posts: Vec::new(),
            follows: BTreeSet::new(),
            likes: BTreeSet::new(),
            conversations: BTreeMap::new(),
            games: HashMap::new(),
            appended,
        }
    }

    /// One script per user (their own follows, likes, posts, comments, messages and reads),
    /// plus one for the chess games. Scripts run at the same time, so a script only touches
    /// state it alone changes, and posts from earlier rounds that no script deletes this round.
    fn plan(&mut self) -> Vec<Vec<(usize, Op)>> {
        let n = self.users.len();
        let round = self.round;
        let mut deleting = BTreeSet::new();
        for author in 0..n {
            let theirs: Vec<usize> =
                (0..self.posts.len()).filter(|&p| self.posts[p].alive && self.posts[p].author == author).collect();
            if theirs.len() >= 2 && self.rng.chance(40) {
                deleting.insert(theirs[self.rng.below(theirs.len())]);
            }
        }
        let targets: Vec<usize> =
            (0..self.posts.len()).filter(|p| self.posts[*p].alive && !deleting.contains(p)).collect();
        let mut scripts = Vec::new();
        for u in 0..n {
            let mut ops = Vec::new();
            for i in 0..1 + self.rng.below(2) {
                ops.push(Op::Post(format!("post {i} of user {u} in round {round}")));
            }
            let doomed: Vec<usize> = deleting.iter().copied().filter(|p| self.posts[*p].author == u).collect();
            for p in doomed {
                self.posts[p].alive = false;
                ops.push(Op::Delete(p));
            }
            // Distinct targets: a script runs in shuffled order, so a follow and an unfollow of
            // one user in the same round could come in either order.
            let mut whom = BTreeSet::new();
            for _ in 0..2 {
                let v = (u + 1 + self.rng.below(n - 1)) % n;
                if !whom.insert(v) {
                    continue;
                }
                if self.follows.remove(&(u, v)) {
                    ops.push(Op::Unfollow(v));
                } else {
                    self.follows.insert((u, v));
                    ops.push(Op::Follow(v));
                }
            }
            if !targets.is_empty() {
                let mut liked = BTreeSet::new();
                for _ in 0..3 {
                    let p = targets[self.rng.below(targets.len())];
                    if !liked.insert(p) {
                        continue;
                    }
                    if self.likes.remove(&(u, p)) {
                        ops.push(Op::Unlike(p));
                    } else {
                        self.likes.insert((u, p));
                        ops.push(Op::Like(p));
                    }
                }
                for i in 0..1 + self.rng.below(2) {
                    let p = targets[self.rng.below(targets.len())];
                    self.posts[p].comments += 1;
                    ops.push(Op::Comment(p, format!("comment {i} by {u} in round {round}")));
                }
            }
            let to = (u + 1 + self.rng.below(n - 1)) % n;
            ops.push(Op::Message(to, format!("message from {u} to {to} in round {round}")));
            let mine: Vec<String> =
                self.conversations.iter().filter(|((a, b), _)| *a == u || *b == u).map(|(_, c)| c.clone()).collect();
            if !mine.is_empty() && self.rng.chance(60) {
                ops.push(Op::Read(mine[self.rng.below(mine.len())].clone()));
            }
            if self.rng.chance(30) {
                ops.push(Op::Bio(format!("bio of {u} as of round {round}")));
            }
            if self.rng.chance(25) {
                ops.push(Op::ReadNotifications);
            }
            self.rng.shuffle(&mut ops);
            scripts.push(ops.into_iter().map(|op| (u, op)).collect());
        }
        // A fool's mate between users 0 and 1, a resigned game between 2 and 3, and a pending
        // challenge, spread over the first rounds.
        let games: Vec<(usize, Op)> = match round {
            1 => vec![
                (0, Op::Challenge { game: 0, opponent: 1, color: "white" }),
                (1, Op::Accept(0)),
                (0, Op::Move { game: 0, uci: "f2f3", ply: 0 }),
                (1, Op::Move { game: 0, uci: "e7e5", ply: 1 }),
            ],
            2 => vec![
                (0, Op::Move { game: 0, uci: "g2g4", ply: 2 }),
                (1, Op::Move { game: 0, uci: "d8h4", ply: 3 }),
                (2, Op::Challenge { game: 1, opponent: 3, color: "black" }),
                (3, Op::Accept(1)),
                (3, Op::Move { game: 1, uci: "e2e4", ply: 0 }),
                (2, Op::Resign(1)),
            ],
            3 => vec![(4, Op::Challenge { game: 2, opponent: 5, color: "random" })],
            _ => Vec::new(),
        };
        scripts.push(games);
        scripts
    }

    /// Plans a round and runs its scripts at the same time; every command must be accepted.
    async fn round(&mut self, app: &TestApp) {
        self.round += 1;
        let scripts = self.plan();
        let (users, posts, games) = (&self.users, &self.posts, &self.games);
        let results = futures::future::join_all(scripts.into_iter().map(|script| async move {
            let mut games = games.clone();
            let mut created = Vec::new();
            let mut appended = 0;
            for (actor, op) in script {
                let (c, a) = run_op(app, (users, posts), actor, &op, &mut games).await;
                created.extend(c);
                appended += usize::from(a);
            }
            (created, appended)
        }))
        .await;
        for (created, appended) in results {
            self.appended += appended;
            for c in created {
                self.record(c);
            }
        }
    }

    fn record(&mut self, created: Created) {
        match created {
            Created::Post { author, id } => self.posts.push(PostModel { id, author, alive: true, comments: 0 }),
            Created::Conversation { pair, id } => {
                self.conversations.insert(pair, id);
            }
            Created::Game { game, id } => {
                self.games.insert(game, id);
            }
        }
    }

    /// One post by each of `authors` at once; returns the highest log offset each landed at.
    async fn burst(&mut self, app: &TestApp, authors: &[usize]) -> BTreeMap<String, i64> {
        let answers = futures::future::join_all(authors.iter().map(|&u| {
            let token = self.users[u].token.clone();
            async move { app.post(&token, &format!("burst post by {u}")).await }
        }))
        .await;
        let mut known = BTreeMap::new();
        for (&author, answer) in authors.iter().zip(&answers) {
            let accepted = assert_accepted(answer);
            note_position(&mut known, accepted.position.as_ref());
            self.appended += 1;
            self.record(Created::Post { author, id: answer.str("post_id") });
        }
        known
    }

    fn followers(&self, u: usize) -> usize {
        self.follows.iter().filter(|(_, v)| *v == u).count()
    }

    fn following(&self, u: usize) -> usize {
        self.follows.iter().filter(|(f, _)| *f == u).count()
    }

    fn posts_of(&self, u: usize) -> usize {
        self.posts.iter().filter(|p| p.alive && p.author == u).count()
    }

    fn likes_of(&self, p: usize) -> usize {
        self.likes.iter().filter(|(_, q)| *q == p).count()
    }
}

fn note_position(known: &mut BTreeMap<String, i64>, position: Option<&(String, i32, i64)>) {
    if let Some((topic, partition, offset)) = position {
        let e = known.entry(position_id(topic, *partition)).or_insert(*offset);
        *e = (*e).max(*offset);
    }
}

/// Runs one command; what it created, and whether it appended an event.
async fn run_op(
    app: &TestApp,
    (users, posts): (&[User], &[PostModel]),
    actor: usize,
    op: &Op,
    games: &mut HashMap<usize, String>,
) -> (Option<Created>, bool) {
    let token = users[actor].token.as_str();
    let answer = match op {
        Op::Post(text) => app.post(token, text).await,
        Op::Delete(p) => app.delete(&format!("/v1/posts/{}", posts[*p].id), token).await,
        Op::Like(p) => app.put(&format!("/v1/posts/{}/like", posts[*p].id), token).await,
        Op::Unlike(p) => app.delete(&format!("/v1/posts/{}/like", posts[*p].id), token).await,
        Op::Comment(p, text) => {
            app.post_json(&format!("/v1/posts/{}/comments", posts[*p].id), token, &json!({ "text": text })).await
        }
        Op::Follow(v) => app.put(&format!("/v1/follows/{}", users[*v].id), token).await,
        Op::Unfollow(v) => app.delete(&format!("/v1/follows/{}", users[*v].id), token).await,
        Op::Message(to, text) => {
            app.post_json("/v1/messages", token, &json!({"to": users[*to].id, "text": text})).await
        }
        Op::Read(conversation) => {
            app.call(Method::POST, &format!("/v1/conversations/{conversation}/read")).token(token).send().await
        }
        Op::Bio(bio) => app.patch_json("/v1/me", token, &json!({ "bio": bio })).await,
        Op::ReadNotifications => app.call(Method::POST, "/v1/notifications/read").token(token).send().await,
        Op::Challenge { opponent, color, .. } => {
            app.post_json("/v1/games", token, &json!({"opponent_id": users[*opponent].id, "color": color})).await
        }
        Op::Accept(g) => app.call(Method::POST, &format!("/v1/games/{}/accept", games[g])).token(token).send().await,
        Op::Move { game, uci, ply } => {
            app.post_json(&format!("/v1/games/{}/moves", games[game]), token, &json!({"uci": uci, "ply": ply})).await
        }
        Op::Resign(g) => app.call(Method::POST, &format!("/v1/games/{}/resign", games[g])).token(token).send().await,
    };
    let accepted = assert_accepted(&answer);
    // Every command of the workload changes something, so the model stays exact; only a read
    // mark may find the conversation read already (its reader sent the last message).
    assert!(
        accepted.event_id.is_some() || matches!(op, Op::Read(_)),
        "{op:?} by user {actor} appended nothing: {answer}"
    );
    let created = match op {
        Op::Post(_) => Some(Created::Post { author: actor, id: answer.str("post_id") }),
        Op::Message(to, _) => Some(Created::Conversation { pair: pair(actor, *to), id: answer.str("conversation_id") }),
        Op::Challenge { game, .. } => {
            let id = answer.str("game_id");
            games.insert(*game, id.clone());
            Some(Created::Game { game: *game, id })
        }
        _ => None,
    };
    (created, accepted.event_id.is_some())
}

// ---------------------------------------------------------------------------------------------
// Snapshots of the read models

/// Collections the checksum leaves out. `feeds` stores what each home feed was given as posts
/// and follows on different partitions arrived, which may legitimately differ between two
/// correct runs (an entry can outlive an unfollow that raced its delivery, and trims sweep it
/// later); the feed is compared through what the query API serves, in the feed tests.
const NOT_COMPARED: &[Coll] = &[Coll::Feeds];

/// Every document of every compared read model of one database, as canonical JSON by `_id`.
#[derive(Debug)]
struct Snapshot {
    label: String,
    colls: BTreeMap<&'static str, BTreeMap<String, String>>,
}

/// JSON with every object's keys sorted, so field order (which differs with the order in
/// which a document's writes landed) does not count.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Canonical extended JSON keeps BSON types apart (an `Int32` 1 is not an `Int64` 1).
fn canonical_bson(b: Bson) -> String {
    let mut out = String::new();
    canonical(&b.into_canonical_extjson(), &mut out);
    out
}

impl Snapshot {
    async fn take(db: &mongodb::Database, label: &str) -> Self {
        Self::of(db, label, Coll::ALL.into_iter().filter(|c| !NOT_COMPARED.contains(c))).await
    }

    async fn of(db: &mongodb::Database, label: &str, colls_to_take: impl Iterator<Item = Coll>) -> Self {
        let mut colls = BTreeMap::new();
        for coll in colls_to_take {
            let mut docs = BTreeMap::new();
            let mut cursor = db.collection::<Document>(coll.name()).find(doc! {}).await.unwrap();
            while let Some(mut d) = cursor.try_next().await.unwrap() {
                let id = canonical_bson(d.remove("_id").unwrap_or(Bson::Null));
                let previous = docs.insert(id.clone(), canonical_bson(Bson::Document(d)));
                assert!(previous.is_none(), "{label}: two documents with _id {id} in {}", coll.name());
            }
            colls.insert(coll.name(), docs);
        }
        Self { label: label.to_owned(), colls }
    }

    /// FNV-1a over every collection, `_id` and document, in order.
    fn checksum(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (coll, docs) in &self.colls {
            for (id, d) in docs {
                for part in [coll.as_bytes(), b"\0", id.as_bytes(), b"\0", d.as_bytes(), b"\n"] {
                    for byte in part {
                        h ^= u64::from(*byte);
                        h = h.wrapping_mul(0x0100_0000_01b3);
                    }
                }
            }
        }
        h
    }

    fn len(&self, coll: Coll) -> usize {
        self.colls.get(coll.name()).map_or(0, BTreeMap::len)
    }

    /// Per collection that differs: the first documents only one side has and the first that
    /// both have with different contents.
    fn diff(&self, other: &Snapshot) -> String {
        const SHOW: usize = 3;
        let mut out = String::new();
        let empty = BTreeMap::new();
        for (coll, mine) in &self.colls {
            let theirs = other.colls.get(coll).unwrap_or(&empty);
            let only_mine: Vec<&String> = mine.keys().filter(|k| !theirs.contains_key(*k)).collect();
            let only_theirs: Vec<&String> = theirs.keys().filter(|k| !mine.contains_key(*k)).collect();
            let changed: Vec<&String> =
                mine.keys().filter(|k| theirs.get(*k).is_some_and(|d| d != &mine[*k])).collect();
            if only_mine.is_empty() && only_theirs.is_empty() && changed.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "\n{coll}: {} vs {} documents; {} only in {}, {} only in {}, {} differ\n",
                mine.len(),
                theirs.len(),
                only_mine.len(),
                self.label,
                only_theirs.len(),
                other.label,
                changed.len()
            ));
            for id in only_mine.iter().take(SHOW) {
                out.push_str(&format!("  only in {}: _id {id}: {}\n", self.label, mine[*id]));
            }
            for id in only_theirs.iter().take(SHOW) {
                out.push_str(&format!("  only in {}: _id {id}: {}\n", other.label, theirs[*id]));
            }
            for id in changed.iter().take(SHOW) {
                out.push_str(&format!(
                    "  _id {id}\n    {}: {}\n    {}: {}\n",
                    self.label, mine[*id], other.label, theirs[*id]
                ));
            }
        }
        out
    }
}

/// Asserts that `got` has exactly the documents of `want`, printing the first differences.
fn assert_same(got: &Snapshot, want: &Snapshot) {
    assert!(
        got.checksum() == want.checksum(),
        "read models of {} (checksum {:016x}) differ from {} (checksum {:016x}):{}",
        got.label,
        got.checksum(),
        want.label,
        want.checksum(),
        got.diff(want)
    );
}

/// Says (without failing) whether the collections left out of the checksum came out the same:
/// worth knowing when reading a run, not a property the read models promise.
async fn note_uncompared(got: &mongodb::Database, want: &mongodb::Database, label: &str) {
    let got = Snapshot::of(got, label, NOT_COMPARED.iter().copied()).await;
    let want = Snapshot::of(want, "the rebuild", NOT_COMPARED.iter().copied()).await;
    let names: Vec<&str> = NOT_COMPARED.iter().map(|c| c.name()).collect();
    match got.checksum() == want.checksum() {
        true => eprintln!("readmodels: {names:?} (not compared) of {label}: the same as the rebuild's"),
        false => {
            eprintln!("readmodels: {names:?} (not compared) of {label} differ from the rebuild's:{}", got.diff(&want))
        }
    }
}

/// Compared collections the workload leaves empty: `conversations`, which nothing writes (the
/// members' documents answer every query), and `pull_authors`, which only authors with at least
/// `AGORA_FEED_FANOUT_THRESHOLD` (10,000) followers join.
const LEFT_EMPTY: &[Coll] = &[Coll::Conversations, Coll::PullAuthors];

/// The workload reaches every other read model the checksum covers: a comparison of empty
/// collections would prove nothing.
fn assert_covers_every_read_model(s: &Snapshot) {
    for coll in Coll::ALL.into_iter().filter(|c| !NOT_COMPARED.contains(c) && !LEFT_EMPTY.contains(c)) {
        assert!(s.len(coll) > 0, "{}: no documents in {} after the workload", s.label, coll.name());
    }
}

// ---------------------------------------------------------------------------------------------
// Where the log ends and how far a read-model database got

/// The settings of a projector of its own: a database, a consumer group and a Redis prefix
/// (its cache invalidations then touch no other reader's answers).
fn projector_env(app: &TestApp, name: &str) -> Env {
    let mut env = app.env.clone();
    env.set("AGORA_MONGO_DB", format!("{}_{name}", app.prefix));
    env.set("AGORA_PROJECTOR_GROUP", format!("{}-{name}", app.prefix));
    env.set("AGORA_REDIS_PREFIX", format!("{}-{name}", app.prefix));
    env
}

async fn database(app: &TestApp, env: &Env) -> mongodb::Database {
    let client = mongodb::Client::with_uri_str(&app.stack.mongo).await.unwrap();
    client.database(&env.string("AGORA_MONGO_DB", ""))
}

/// Every event-topic partition of the app, with `group`'s committed offset and the log end.
async fn log_state(app: &TestApp, group: &str) -> Vec<PartitionLag> {
    let topics = agora_schemas::aggregate::Topics::new(app.prefix.clone()).event_topics();
    let (brokers, group) = (app.stack.kafka.clone(), group.to_owned());
    tokio::task::spawn_blocking(move || group_lag(&brokers, &group, &topics, Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap()
}

/// The last offset of each non-empty partition, by position id.
fn last_offsets(rows: &[PartitionLag]) -> BTreeMap<String, i64> {
    rows.iter().filter(|r| r.end > 0).map(|r| (position_id(&r.topic, r.partition), r.end - 1)).collect()
}

/// The `positions` documents of a read-model database: the highest offset applied per partition.
async fn positions(db: &mongodb::Database) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let mut cursor = db.collection::<Document>(Coll::Positions.name()).find(doc! {}).await.unwrap();
    while let Some(d) = cursor.try_next().await.unwrap() {
        let offset = d.get_i64("offset").or_else(|_| d.get_i32("offset").map(i64::from)).unwrap();
        out.insert(d.get_str("_id").unwrap().to_owned(), offset);
    }
    out
}

/// Documents in every read model of `db`: a batch cut short shows as documents that its
/// positions do not account for yet.
async fn documents(db: &mongodb::Database) -> u64 {
    let mut n = 0;
    for coll in Coll::ALL {
        n += db.collection::<Document>(coll.name()).count_documents(doc! {}).await.unwrap();
    }
    n
}

/// Events applied, counted from the positions (a partition is applied in order).
fn applied(positions: &BTreeMap<String, i64>) -> i64 {
    positions.values().map(|o| o + 1).sum()
}

/// How many of the events known to be in the log (`known`: the last offset per partition) a
/// database had not applied.
fn behind(known: &BTreeMap<String, i64>, positions: &BTreeMap<String, i64>) -> i64 {
    known.iter().map(|(p, last)| (last - positions.get(p).copied().unwrap_or(-1)).max(0)).sum()
}

/// Waits until `db` has applied every event up to `last`.
async fn caught_up(db: &mongodb::Database, last: &BTreeMap<String, i64>, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let at = positions(db).await;
        let left = behind(last, &at);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {left} events behind after {within:?}: at {at:?}, log {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The positions of a projector that was just killed, once they stopped moving (a command it
/// sent before dying may still land).
async fn settled_positions(db: &mongodb::Database) -> BTreeMap<String, i64> {
    let mut last = positions(db).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = positions(db).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the positions of a killed projector still move: {last:?}");
}

// ---------------------------------------------------------------------------------------------
// Projectors

/// A projector `Application` in this process, on its own settings.
struct InProcessProjector {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl InProcessProjector {
    async fn start(env: &Env) -> Self {
        let config = agora_projector::ProjectorConfig::from_env(env).unwrap();
        let app = agora_projector::Application::build(config).await.unwrap();
        let (stop, mut rx) = watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let task = tokio::spawn(async move { app.run(shutdown).await.map_err(|e| format!("{e:#}")) });
        Self { stop, task }
    }

    /// Stops it as SIGTERM does (the batch in hand finishes, offsets are committed, it leaves
    /// the group) and waits until it is gone.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let stopped = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "a projector did not stop cleanly: {stopped:?}");
    }
}

/// `agora-projector run` as an OS process, logging JSON to a file of the test's; it tells when
/// it was given partitions.
struct ProjectorProcess {
    child: Child,
    /// When it logged an assignment, and of how many partitions.
    assigned: mpsc::UnboundedReceiver<(Instant, i64)>,
}

impl ProjectorProcess {
    fn spawn(bin: &Path, env: &Env, log: &Path, run: usize) -> Self {
        let keys = agora_platform::config::KNOWN_COMMON.iter().chain(agora_projector::config::KNOWN);
        let vars: Vec<(&str, String)> = keys.filter_map(|k| env.get(k).map(|v| (*k, v.to_owned()))).collect();
        let mut child = Command::new(bin)
            .arg("run")
            .env_clear()
            .envs(vars)
            .env("AGORA_LOG", "warn,agora_platform::kafka::consumer=info")
            .env("AGORA_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let file = Arc::new(Mutex::new(file));
        writeln!(file.lock().unwrap(), "=== run {run}, pid {}", child.id()).unwrap();
        let (tx, assigned) = mpsc::unbounded_channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let f = file.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(f.lock().unwrap(), "{line}");
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                if v["message"] == "partitions assigned" {
                    let _ = tx.send((Instant::now(), v["partitions"].as_i64().unwrap_or(0)));
                }
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = writeln!(file.lock().unwrap(), "{line}");
            }
        });
        Self { child, assigned }
    }

    /// Waits until the group gave it partitions; when that was.
    async fn assigned(&mut self, within: Duration, log: &Path) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.assigned.recv()).await {
                Ok(Some((at, n))) if n > 0 => return at,
                Ok(Some(_)) => continue,
                _ => panic!("the projector process got no partitions within {within:?}; its log: {}", log.display()),
            }
        }
    }

    /// SIGKILL, and the process is gone; when the signal was sent.
    fn kill(&mut self) -> Instant {
        use std::os::unix::process::ExitStatusExt;
        let at = Instant::now();
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "the projector ended by SIGKILL: {status:?}");
        at
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        // Leave no process behind, even when an assertion failed.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The consumer group, as the brokers see it

/// The state of `group` and each member's number of assigned partitions.
async fn group_members(app: &TestApp, group: &str) -> (String, BTreeMap<String, usize>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (brokers, group) = (app.stack.kafka.clone(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let observer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("{group}-observer"))
            .set("log_level", "3")
            .create()
            .unwrap();
        let list = observer.fetch_group_list(Some(&group), Duration::from_secs(5)).unwrap();
        let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
            return ("Unknown".to_owned(), BTreeMap::new());
        };
        let members = info
            .members()
            .iter()
            .map(|m| {
                let bytes = m.assignment().unwrap_or_default();
                let n = assigned_partitions(bytes)
                    .unwrap_or_else(|| panic!("an assignment that does not parse: {bytes:?}"));
                (m.id().to_owned(), n)
            })
            .collect();
        (info.state().to_owned(), members)
    })
    .await
    .unwrap()
}

/// The partitions in a member's assignment (Kafka's `ConsumerProtocolAssignment`: a version, an
/// array of topics with their partitions, user data); `None` if it does not parse.
fn assigned_partitions(bytes: &[u8]) -> Option<usize> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    if bytes.is_empty() {
        return Some(0);
    }
    let mut b = bytes;
    take(&mut b, 2)?;
    let topics = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
    let mut total = 0;
    for _ in 0..topics.max(0) {
        let name = i16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
        take(&mut b, usize::try_from(name).ok()?)?;
        let n = usize::try_from(i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?)).ok()?;
        take(&mut b, 4 * n)?;
        total += n;
    }
    Some(total)
}

/// Waits until `group` is stable with members that satisfy `ok`; the members.
async fn members_until(
    app: &TestApp,
    group: &str,
    what: &str,
    ok: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> BTreeMap<String, usize> {
    let within = Duration::from_secs(30);
    let deadline = Instant::now() + within;
    loop {
        let (state, members) = group_members(app, group).await;
        if state == "Stable" && ok(&members) {
            return members;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}; the group is {state} with {members:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A query API over the read models of `env` serves the counters the commands imply: each
/// user's followers, following and posts, each post's likes and comments, and no deleted post.
async fn assert_counters(app: &TestApp, env: &Env, w: &Workload) {
    let query =
        agora_query_api::Application::build(agora_query_api::QueryConfig::from_env(env).unwrap()).await.unwrap();
    let url = format!("http://127.0.0.1:{}", query.port());
    let (stop_query, mut rx) = watch::channel(false);
    let query_task = tokio::spawn(query.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let db = env.string("AGORA_MONGO_DB", "");
    for (i, u) in w.users.iter().enumerate() {
        let (status, body) = app.get(&url, &format!("/v1/users/{}", u.id), &u.token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["followers"], &body["following"], &body["posts"]),
            (&json!(w.followers(i)), &json!(w.following(i)), &json!(w.posts_of(i))),
            "{db}: user {i}'s counters: {body}"
        );
    }
    let reader = &w.users[0].token;
    for (i, p) in w.posts.iter().enumerate() {
        let (status, body) = app.get(&url, &format!("/v1/posts/{}", p.id), reader).await;
        if p.alive {
            assert_eq!(status, 200, "{db}: post {i}: {body}");
            assert_eq!(
                (&body["like_count"], &body["comment_count"]),
                (&json!(w.likes_of(i)), &json!(p.comments)),
                "{db}: post {i}'s counts: {body}"
            );
        } else {
            assert_eq!(status, 404, "{db}: deleted post {i}: {body}");
        }
    }
    let _ = stop_query.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), query_task).await;
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Where in its work the projector process is killed; each time it has events still to apply.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the group gave it partitions: its first fetch or batch is in flight.
    Startup,
    /// A while into the batch of the backlog left while it was down: part of its writes landed.
    MidBatch,
    /// As soon as its first batch is applied and its offsets stored, perhaps not yet committed.
    JustApplied,
    /// Under continuous load, after a commit, on an event just appended.
    UnderLoad,
    /// Caught up and idle, on the first new event.
    Idle,
}

const KILL_POINTS: [KillPoint; 5] =
    [KillPoint::Startup, KillPoint::MidBatch, KillPoint::JustApplied, KillPoint::UnderLoad, KillPoint::Idle];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_five_times_while_behind_ends_with_the_read_models_of_a_rebuild() {
    let bin = tokio::task::spawn_blocking(|| service_binary("agora-projector")).await.unwrap();
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let env = projector_env(&app, "killed");
    let db = database(&app, &env).await;
    let group = env.string("AGORA_PROJECTOR_GROUP", "");
    let log = std::env::temp_dir().join(format!("agora-{}-projector.log", app.prefix));
    let mut w = Workload::new(&app, 8).await;
    // What the previous run left applied: where the next one starts.
    let mut before = BTreeMap::new();
    for (run, point) in KILL_POINTS.into_iter().enumerate() {
        // The backlog: made before the first start, and later while the group still waits out
        // the killed member's session (10 s), so the new process cannot consume it yet.
        if run == 0 {
            w.round(&app).await;
            w.round(&app).await;
        }
        let mut projector = ProjectorProcess::spawn(&bin, &env, &log, run);
        if run > 0 {
            w.round(&app).await;
        }
        let backlog = last_offsets(&log_state(&app, &group).await);
        let assigned = projector.assigned(Duration::from_secs(40), &log).await;
        let (known, killed) = match point {
            KillPoint::Startup => (backlog, projector.kill()),
            KillPoint::MidBatch => {
                let delay = Duration::from_millis(100 + w.rng.below(250) as u64);
                tokio::time::sleep_until((assigned + delay).into()).await;
                (backlog, projector.kill())
            }
            KillPoint::JustApplied => {
                let deadline = Instant::now() + Duration::from_secs(30);
                while applied(&positions(&db).await) <= applied(&before) {
                    assert!(Instant::now() < deadline, "no batch applied within 30 s; log: {}", log.display());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let everyone: Vec<usize> = (0..w.users.len()).collect();
                let known = w.burst(&app, &everyone).await;
                (known, projector.kill())
            }
            KillPoint::UnderLoad => {
                let committed = |rows: &[PartitionLag]| rows.iter().filter_map(|r| r.committed).sum::<i64>();
                let at_assignment = committed(&log_state(&app, &group).await);
                let poster = w.users[0].clone();
                let (app_ref, group_ref, projector_ref) = (&app, group.as_str(), &mut projector);
                let ((), (known, killed, post)) = tokio::join!(w.round(&app), async move {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while committed(&log_state(app_ref, group_ref).await) <= at_assignment {
                        assert!(Instant::now() < deadline, "no offsets committed within 30 s");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let answer = app_ref.post(&poster.token, "the last post before a kill").await;
                    let accepted = assert_accepted(&answer);
                    let killed = projector_ref.kill();
                    let mut known = BTreeMap::new();
                    note_position(&mut known, accepted.position.as_ref());
                    (known, killed, answer.str("post_id"))
                });
                w.appended += 1;
                w.record(Created::Post { author: 0, id: post });
                (known, killed)
            }
            KillPoint::Idle => {
                let last = last_offsets(&log_state(&app, &group).await);
                caught_up(&db, &last, Duration::from_secs(30), "the projector process before going idle").await;
                let known = w.burst(&app, &[1, 2]).await;
                (known, projector.kill())
            }
        };
        let after = settled_positions(&db).await;
        let lag = behind(&known, &after);
        let line = format!(
            "kill {run} {point:?}: {:?} after the assignment, {} events applied at the start, {} at the kill \
             ({} documents written), {lag} known events not applied",
            killed - assigned,
            applied(&before),
            applied(&after),
            documents(&db).await,
        );
        eprintln!("readmodels: {line}");
        assert!(lag > 0, "the projector had no lag when killed: {line}; log: {}", log.display());
        before = after;
    }

    // Restarted once more, behind again, it catches up.
    let mut projector = ProjectorProcess::spawn(&bin, &env, &log, KILL_POINTS.len());
    w.round(&app).await;
    projector.assigned(Duration::from_secs(40), &log).await;
    let last = last_offsets(&log_state(&app, &group).await);
    assert_eq!(last.values().map(|o| o + 1).sum::<i64>(), w.appended as i64, "one event per accepted command");
    caught_up(&db, &last, Duration::from_secs(40), "the restarted projector process").await;
    projector.kill();

    // A from-scratch rebuild of the same log, and the app's own projector, which ran throughout.
    let rebuild_env = projector_env(&app, "rebuild");
    let rebuild_db = database(&app, &rebuild_env).await;
    let rebuild = InProcessProjector::start(&rebuild_env).await;
    caught_up(&rebuild_db, &last, Duration::from_secs(40), "the rebuild").await;
    let live_db = database(&app, &app.env).await;
    caught_up(&live_db, &last, Duration::from_secs(20), "the app's projector").await;
    let want = Snapshot::take(&rebuild_db, "the rebuild").await;
    assert_covers_every_read_model(&want);
    assert_same(&Snapshot::take(&db, "the killed projector").await, &want);
    note_uncompared(&db, &rebuild_db, "the killed projector").await;
    assert_same(&Snapshot::take(&live_db, "the app's projector").await, &want);
    assert_counters(&app, &env, &w).await;
    eprintln!("readmodels: {} events, {:?} after the app started", w.appended, started.elapsed());

    rebuild.stop().await;
    db.drop().await.unwrap();
    rebuild_db.drop().await.unwrap();
    let _ = std::fs::remove_file(&log);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projectors_in_one_group_one_leaving_mid_stream_end_like_a_single_projector() {
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let env = projector_env(&app, "pair");
    let db = database(&app, &env).await;
    let group = env.string("AGORA_PROJECTOR_GROUP", "");
    let mut w = Workload::new(&app, 8).await;
    w.round(&app).await;

    let first = InProcessProjector::start(&env).await;
    crate::helpers::eventually(Duration::from_secs(30), "the first projector applying events", || async {
        (!positions(&db).await.is_empty()).then_some(())
    })
    .await;
    let second = InProcessProjector::start(&env).await;
    let (app_ref, group_ref) = (&app, group.as_str());
    let ((), both) = tokio::join!(
        w.round(&app),
        members_until(app_ref, group_ref, "two members with partitions each", |m| {
            m.len() == 2 && m.values().all(|n| *n > 0)
        })
    );

    // The first leaves while commands keep coming.
    let round_done = std::sync::atomic::AtomicBool::new(false);
    let stop_after = Duration::from_millis(150 + w.rng.below(400) as u64);
    let round = async {
        w.round(&app).await;
        round_done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let leave = async {
        tokio::time::sleep(stop_after).await;
        let mid_stream = !round_done.load(std::sync::atomic::Ordering::SeqCst);
        first.stop().await;
        mid_stream
    };
    let ((), mid_stream) = tokio::join!(round, leave);
    assert!(mid_stream, "the first projector was to leave while the round's commands were still coming");
    let one = members_until(&app, &group, "the remaining member with every partition", |m| {
        m.len() == 1 && m.values().sum::<usize>() == 21
    })
    .await;
    assert!(one.keys().all(|m| both.contains_key(m)), "the member left is one of the two: {both:?} then {one:?}");
    eprintln!("readmodels: partitions per member: {both:?}, then after one left mid-stream {one:?}");
    w.round(&app).await;
    w.round(&app).await;

    let last = last_offsets(&log_state(&app, &group).await);
    assert_eq!(last.values().map(|o| o + 1).sum::<i64>(), w.appended as i64, "one event per accepted command");
    caught_up(&db, &last, Duration::from_secs(40), "the remaining projector").await;
    let rebuild_env = projector_env(&app, "single");
    let rebuild_db = database(&app, &rebuild_env).await;
    let rebuild = InProcessProjector::start(&rebuild_env).await;
    caught_up(&rebuild_db, &last, Duration::from_secs(40), "the single-projector rebuild").await;
    let want = Snapshot::take(&rebuild_db, "a single projector").await;
    assert_covers_every_read_model(&want);
    assert_same(&Snapshot::take(&db, "the pair of projectors").await, &want);
    note_uncompared(&db, &rebuild_db, "the pair of projectors").await;
    let live_db = database(&app, &app.env).await;
    caught_up(&live_db, &last, Duration::from_secs(20), "the app's projector").await;
    assert_same(&Snapshot::take(&live_db, "the app's projector").await, &want);

    // What the query API serves from the pair's read models is what the commands imply.
    assert_counters(&app, &env, &w).await;
    eprintln!("readmodels: {} events, {:?} after the app started", w.appended, started.elapsed());

    second.stop().await;
    rebuild.stop().await;
    db.drop().await.unwrap();
    rebuild_db.drop().await.unwrap();
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Read-your-writes through the cache, and a paused projector

/// `GET <base><path>` with `X-Consistency-Token`: (status, `X-Consistency`, body, time taken).
async fn consistent_get(
    app: &TestApp,
    base: &str,
    path: &str,
    user: &User,
    token: &str,
) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let res = app
        .http
        .get(format!("{base}{path}"))
        .bearer_auth(&user.token)
        .header("X-Consistency-Token", token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let state = res.headers().get("x-consistency").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, state, res.json().await.unwrap(), started.elapsed())
}

#[tokio::test]
async fn a_profile_change_is_never_served_stale_and_a_paused_projector_answers_stale_after_the_wait() {
    let app = TestApp::spawn().await;
    // A projector process of its own (SIGSTOP needs a process) and a query-api reading only
    // what it projects, with the same Redis prefix, so its invalidations are the ones that count.
    let env = projector_env(&app, "paused");
    let mut query_env = env.clone();
    query_env.set("AGORA_CONSISTENCY_WAIT_MS", "1500");
    let query =
        agora_query_api::Application::build(agora_query_api::QueryConfig::from_env(&query_env).unwrap()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", query.port());
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(async move {
        query
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .unwrap()
    });
    let log = std::env::temp_dir().join(format!("{}-paused-projector.log", app.prefix));
    let mut projector = ProjectorProcess::spawn(&service_binary("agora-projector"), &env, &log, 1);
    projector.assigned(Duration::from_secs(60), &log).await;

    let ann = app.user("ann").await;
    let path = format!("/v1/users/{}", ann.id);
    for name in ["One", "Two", "Three"] {
        let change = assert_accepted(&app.patch_json("/v1/me", &ann.token, &json!({"display_name": name})).await);
        // Asked twice: the first answer is cached, and must not outlive the next change.
        for _ in 0..2 {
            let (status, state, body, _) = consistent_get(&app, &base, &path, &ann, &change.consistency_token).await;
            assert_eq!((status, state.as_deref(), body["display_name"].as_str()), (200, None, Some(name)), "{body}");
        }
    }

    let pid = projector.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let change = assert_accepted(&app.patch_json("/v1/me", &ann.token, &json!({"display_name": "Four"})).await);
    let (status, state, body, took) = consistent_get(&app, &base, &path, &ann, &change.consistency_token).await;
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    assert_eq!((status, state.as_deref()), (200, Some("stale")), "{body}");
    assert_eq!(body["display_name"], "Three", "the answer the read model had: {body}");
    assert!(took >= Duration::from_millis(1400), "answered after {took:?}, before the 1.5 s wait");
    // Resumed, the same token reads the change.
    let (status, state, body, _) = consistent_get(&app, &base, &path, &ann, &change.consistency_token).await;
    assert_eq!((status, state.as_deref(), body["display_name"].as_str()), (200, None, Some("Four")), "{body}");

    projector.kill();
    let _ = stop.send(true);
    server.await.unwrap();
    app.shutdown().await;
}
