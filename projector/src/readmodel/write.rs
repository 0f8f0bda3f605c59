//! The writes an event causes, as data, and how a batch of them reaches the store.
//!
//! Every read-model document has exactly one writer: it is written only by the events of one
//! aggregate (and so of one partition, applied in order by one consumer), or it is a counter
//! shard owned by one source partition. That is what makes FerretDB's non-atomic updates safe
//! with any number of projector processes, and what makes redelivery harmless:
//! - [`Write::Versioned`]: a document owned by one aggregate stores the aggregate version `v`
//!   it has applied and only moves forward.
//! - [`Write::Shard`]: counters that events of many aggregates touch (a user's followers, a
//!   post's likes) live in one document per (owner, source partition); it stores the offset
//!   `w` it has applied, and a count is the sum of the owner's shards.
//! - [`Write::Once`]: a document written once and never changed (a comment, a message); a
//!   duplicate key means it was written before.
//!
//! A batch is sent as a few commands per collection and kind, the writes of one document in
//! the order they came; documents are independent, so their relative order does not matter,
//! and the guarded updates of different documents go in several concurrent lanes. Versioned
//! writes first insert each document as their first write makes it (or a seed, its `_id` at
//! version 0), ignoring duplicates, then update with the guard and no upsert: a stale write
//! simply matches nothing. Shard writes update first and insert only the shards the update
//! did not find (see `Store::update_shards`).

use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, Database};

/// The read-model collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coll {
    Users,
    Handles,
    /// Per (user, source partition): followers, following, posts.
    UserCounters,
    Follows,
    Posts,
    /// Per (post, source partition): likes.
    PostCounters,
    Likes,
    Comments,
    Notifications,
    /// One per user: the read mark of their notifications.
    Inboxes,
    Conversations,
    /// One per (user, conversation): what the user's conversation list shows.
    ConversationMembers,
    Messages,
    Games,
    /// One per (player, game): a player's list of games.
    UserGames,
    /// One per (user, post) delivered into the user's home feed.
    Feeds,
    /// One per author whose posts are merged into feeds at read time (see `feeds`).
    PullAuthors,
    /// One per source partition: the highest offset applied (read-your-writes).
    Positions,
}

impl Coll {
    pub const ALL: [Coll; 18] = [
        Coll::Users,
        Coll::Handles,
        Coll::UserCounters,
        Coll::Follows,
        Coll::Posts,
        Coll::PostCounters,
        Coll::Likes,
        Coll::Comments,
        Coll::Notifications,
        Coll::Inboxes,
        Coll::Conversations,
        Coll::ConversationMembers,
        Coll::Messages,
        Coll::Games,
        Coll::UserGames,
        Coll::Feeds,
        Coll::PullAuthors,
        Coll::Positions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Coll::Users => "users",
            Coll::Handles => "handles",
            Coll::UserCounters => "user_counters",
            Coll::Follows => "follows",
            Coll::Posts => "posts",
            Coll::PostCounters => "post_counters",
            Coll::Likes => "likes",
            Coll::Comments => "comments",
            Coll::Notifications => "notifications",
            Coll::Inboxes => "inboxes",
            Coll::Conversations => "conversations",
            Coll::ConversationMembers => "conversation_members",
            Coll::Messages => "messages",
            Coll::Games => "games",
            Coll::UserGames => "user_games",
            Coll::Feeds => "feeds",
            Coll::PullAuthors => "pull_authors",
            Coll::Positions => "positions",
        }
    }
}

/// One write an event causes.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Sets `set` (and adds `inc`) on document `id` if `version` is newer than its `v`,
    /// creating it if absent.
    Versioned { coll: Coll, id: String, version: u64, set: Document, inc: Document },
    /// Adds `inc` to the counters of shard `id` once: only if `offset` is past its `w`.
    /// `owner` (field `owner_id`) is what reads sum the shards by.
    Shard { coll: Coll, id: String, owner: String, offset: i64, inc: Document },
    /// Inserts `doc` (which has its `_id`) unless it exists.
    Once { coll: Coll, doc: Document },
}

impl Write {
    /// A versioned write that only sets fields.
    pub fn set(coll: Coll, id: impl Into<String>, version: u64, set: Document) -> Self {
        Write::Versioned { coll, id: id.into(), version, set, inc: Document::new() }
    }

    pub fn coll(&self) -> Coll {
        match self {
            Write::Versioned { coll, .. } | Write::Shard { coll, .. } | Write::Once { coll, .. } => *coll,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Write::Versioned { .. } => 0,
            Write::Shard { .. } => 1,
            Write::Once { .. } => 2,
        }
    }

    /// The document a versioned or shard write needs to exist before its guarded update:
    /// its `_id` at version 0 (or offset -1). `None` for an insert.
    fn seed(&self) -> Option<Document> {
        match self {
            Write::Versioned { id, .. } => Some(doc! {"_id": id, "v": 0_i64}),
            Write::Shard { id, owner, .. } => Some(doc! {"_id": id, "w": -1_i64, "owner_id": owner}),
            Write::Once { .. } => None,
        }
    }

    /// The `_id` of the document a versioned or shard write changes; `None` for an insert.
    fn doc_id(&self) -> Option<String> {
        match self {
            Write::Versioned { id, .. } | Write::Shard { id, .. } => Some(id.clone()),
            Write::Once { .. } => None,
        }
    }

    /// The whole document this write makes when its document does not exist yet; `None`
    /// when a field is a dotted path (an insert cannot name one).
    fn created(&self) -> Option<Document> {
        let (mut d, fields) = match self {
            Write::Versioned { id, version, set, inc, .. } => {
                (doc! {"_id": id, "v": *version as i64}, set.iter().chain(inc.iter()).collect::<Vec<_>>())
            }
            Write::Shard { id, owner, offset, inc, .. } => {
                (doc! {"_id": id, "w": *offset, "owner_id": owner}, inc.iter().collect::<Vec<_>>())
            }
            Write::Once { .. } => return None,
        };
        // Anything the update would refuse (a conflict, a `$inc` of a non-number) or an insert
        // cannot say goes the update's way, so both paths fail or succeed alike.
        let numeric = |v: &Bson| matches!(v, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_));
        if let Write::Versioned { inc, .. } | Write::Shard { inc, .. } = self
            && !inc.values().all(numeric)
        {
            return None;
        }
        for (k, v) in fields {
            if k.contains('.') || k.starts_with('$') || d.contains_key(k) {
                return None;
            }
            d.insert(k.clone(), v.clone());
        }
        Some(d)
    }

    /// The guarded `update` statement of a versioned or shard write (no upsert: the seed
    /// exists); `None` for an insert. A stale write matches nothing, which is no error.
    fn update_statement(&self) -> Option<Document> {
        match self {
            Write::Versioned { id, version, set, inc, .. } => {
                let v = *version as i64;
                let mut set = set.clone();
                set.insert("v", v);
                let mut update = doc! {"$set": set};
                if !inc.is_empty() {
                    update.insert("$inc", inc.clone());
                }
                Some(doc! {"q": {"_id": id, "v": {"$lt": v}}, "u": update})
            }
            Write::Shard { id, offset, inc, .. } => Some(doc! {
                "q": {"_id": id, "w": {"$lt": offset}},
                "u": {"$inc": inc.clone(), "$set": {"w": offset}},
            }),
            Write::Once { .. } => None,
        }
    }
}

/// The `_id` of a partition's position document.
pub fn position_id(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

/// The id of `owner`'s shard for the partition an event came from.
pub fn shard_id(owner: &str, origin: &super::Origin) -> String {
    format!("{owner}|{}_{}", origin.topic_base, origin.partition)
}

/// The writes of a batch grouped by collection and kind, each group in arrival order, the
/// groups in the order of their first write.
pub fn group(writes: Vec<Write>) -> Vec<(Coll, Vec<Write>)> {
    let mut groups: Vec<((Coll, u8), Vec<Write>)> = Vec::new();
    for w in writes {
        let key = (w.coll(), w.kind());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(w),
            None => groups.push((key, vec![w])),
        }
    }
    groups.into_iter().map(|((coll, _), g)| (coll, g)).collect()
}

/// The read models' database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
}

/// How many documents go in one insert (MongoDB's limit is 100,000; FerretDB builds one SQL
/// statement per document either way).
const CHUNK: usize = 500;

/// How many statements go in one update. FerretDB 1.24 keeps a PostgreSQL connection for
/// every statement that matched until the whole command ends (`msg_update.go` defers each
/// statement's iterator close to the end of its loop), and its pool holds 200: a command of
/// ~200 statements wedged FerretDB for every client. Every projector and query-api process
/// shares that pool, so a batch holds at most `UPDATE_CHUNK * UPDATE_LANES` of it.
pub const UPDATE_CHUNK: usize = 4;

/// How many update commands of one batch are in flight at once. FerretDB runs a command's
/// statements one after another, a round trip to PostgreSQL each, so one command at a time
/// left the projector idle on round trips: a 1000-follow batch (about 1,800 counter shards
/// to update) took 29 s on the 2-core machine. Statements of different documents are
/// independent; a document's statements all go in one lane, in order.
pub const UPDATE_LANES: usize = 8;

/// The lane of document `id`: a fixed function of the id (FNV-1a), so a document's writes
/// stay in one lane and keep their order.
pub fn lane_of(id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % UPDATE_LANES as u64) as usize
}

/// Runs every lane to its end and returns the first error. Not `try_join_all`: it would drop
/// the other lanes' commands on the first error, and one dropped after FerretDB received it
/// may still land after the batch's retry has written the document, putting it back.
async fn all_lanes<F>(lanes: impl IntoIterator<Item = F>) -> Result<(), mongodb::error::Error>
where
    F: std::future::Future<Output = Result<(), mongodb::error::Error>>,
{
    futures::future::join_all(lanes).await.into_iter().collect()
}

/// `items` split into [`UPDATE_LANES`] lists by the document each names, each list in the
/// order of `items`; empty lanes are left out.
fn lanes<T>(items: Vec<(String, T)>) -> Vec<Vec<(String, T)>> {
    let mut lanes: Vec<Vec<(String, T)>> = (0..UPDATE_LANES).map(|_| Vec::new()).collect();
    for (id, item) in items {
        lanes[lane_of(&id)].push((id, item));
    }
    lanes.retain(|l| !l.is_empty());
    lanes
}

impl Store {
    pub fn new(db: &Database) -> Self {
        Self { db: db.clone() }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn collection(&self, coll: Coll) -> Collection<Document> {
        self.db.collection(coll.name())
    }

    /// Applies a batch of writes: one round trip per collection and kind (per 500 writes).
    pub async fn apply(&self, writes: Vec<Write>) -> Result<(), mongodb::error::Error> {
        for (coll, group) in group(writes) {
            for chunk in group.chunks(CHUNK) {
                match chunk.first() {
                    Some(Write::Once { .. }) => self.insert_once(coll, chunk).await?,
                    Some(Write::Shard { .. }) => self.update_shards(coll, chunk).await?,
                    Some(_) => self.update_in_order(coll, chunk).await?,
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Records that everything up to `offset` of each `(topic, partition)` is applied, after
    /// its writes: the positions the query API compares consistency tokens with. One writer
    /// per partition, so `$max` keeps a position from moving back on a redelivery.
    pub async fn advance_positions(&self, positions: &[(String, i32, i64)]) -> Result<(), mongodb::error::Error> {
        if positions.is_empty() {
            return Ok(());
        }
        let updates: Vec<Bson> = positions
            .iter()
            .map(|(topic, partition, offset)| {
                Bson::Document(doc! {
                    "q": {"_id": position_id(topic, *partition)},
                    "u": {"$max": {"offset": offset}},
                    "upsert": true,
                })
            })
            .collect();
        let reply = self.db.run_command(doc! {"update": Coll::Positions.name(), "updates": updates}).await?;
        check_write_errors(&reply, Coll::Positions).map(|_| ())
    }

    async fn insert_once(&self, coll: Coll, chunk: &[Write]) -> Result<(), mongodb::error::Error> {
        let docs: Vec<Bson> = chunk
            .iter()
            .filter_map(|w| match w {
                Write::Once { doc, .. } => Some(Bson::Document(doc.clone())),
                _ => None,
            })
            .collect();
        let reply = self.db.run_command(doc! {"insert": coll.name(), "documents": docs, "ordered": false}).await?;
        check_write_errors(&reply, coll).map(|_| ())
    }

    /// Two commands: an unordered insert of every document's seed (a duplicate means it
    /// exists, which is the common case), then the guarded updates in order. Nothing here
    /// relies on a failing upsert: FerretDB v1 reports every update error at index 0 and stops
    /// even an unordered update at the first one, so errors are kept for real failures.
    async fn update_in_order(&self, coll: Coll, chunk: &[Write]) -> Result<(), mongodb::error::Error> {
        // The first write of each document goes in as an insert of the document it makes
        // (most writes create their document: a follow, a like, a post); a duplicate key means
        // the document exists, and that write goes on to the guarded update like the rest.
        // Inserts cost FerretDB a fraction of a guarded update, and one command holds 500.
        let mut seen = std::collections::HashSet::new();
        let mut firsts: Vec<(usize, Document)> = Vec::new();
        for (i, w) in chunk.iter().enumerate() {
            let Some(id) = w.doc_id() else { continue };
            if seen.insert(id) {
                firsts.push((i, w.created().or_else(|| w.seed()).unwrap_or_default()));
            }
        }
        let docs: Vec<Bson> = firsts.iter().map(|(_, d)| Bson::Document(d.clone())).collect();
        let reply = self.db.run_command(doc! {"insert": coll.name(), "documents": docs, "ordered": false}).await?;
        let duplicates = duplicate_indices(&reply, coll)?;
        // Writes done by their insert: the first of a document whose whole write was inserted.
        let done: std::collections::HashSet<usize> = firsts
            .iter()
            .enumerate()
            .filter(|(k, (i, _))| !duplicates.contains(k) && chunk[*i].created().is_some())
            .map(|(_, (i, _))| *i)
            .collect();
        let remaining: Vec<&Write> =
            chunk.iter().enumerate().filter(|(i, _)| !done.contains(i)).map(|(_, w)| w).collect();
        let updates: Vec<(String, Document)> =
            remaining.iter().filter_map(|w| Some((w.doc_id()?, w.update_statement()?))).collect();
        let work = lanes(updates).into_iter().map(|lane| async move {
            let statements: Vec<Bson> = lane.into_iter().map(|(_, s)| Bson::Document(s)).collect();
            self.send_updates(coll, &statements).await
        });
        all_lanes(work).await
    }

    /// A shard's writes of one chunk as one statement: its counts summed, guarded by the first
    /// offset. Shards go in [`UPDATE_LANES`] concurrent lanes, [`UPDATE_CHUNK`] to a command.
    ///
    /// Updated first, created only when the update finds nothing: a shard exists for all but
    /// an owner's first count from a partition, and a duplicate insert costs FerretDB and
    /// PostgreSQL a failed statement each. When a command matches fewer shards than it
    /// names, its shards are inserted whole; those already there (the reply's `n` does not
    /// say which matched) get their writes one by one, which match nothing where applied, so
    /// a shard that a crash left part-way through these offsets is completed.
    async fn update_shards(&self, coll: Coll, writes: &[Write]) -> Result<(), mongodb::error::Error> {
        let mut by_shard: Vec<(String, Vec<&Write>)> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for w in writes {
            if let Write::Shard { id, .. } = w {
                let i = *index.entry(id.as_str()).or_insert_with(|| {
                    by_shard.push((id.clone(), Vec::new()));
                    by_shard.len() - 1
                });
                by_shard[i].1.push(w);
            }
        }
        let work = lanes(by_shard).into_iter().map(|lane| async move {
            for shards in lane.chunks(UPDATE_CHUNK) {
                let statements: Vec<Bson> =
                    shards.iter().filter_map(|(id, ws)| combined_shard_statement(id, ws)).map(Bson::Document).collect();
                let reply =
                    self.db.run_command(doc! {"update": coll.name(), "updates": &statements, "ordered": true}).await?;
                check_write_errors(&reply, coll)?;
                let matched = reply.get_i32("n").map(i64::from).or_else(|_| reply.get_i64("n")).unwrap_or(-1);
                if matched == shards.len() as i64 {
                    continue;
                }
                // Each shard whole if it can be said as an insert, else its seed.
                let inserts: Vec<(bool, Document)> = shards
                    .iter()
                    .map(|(_, ws)| match combined_shard_created(ws) {
                        Some(d) => (true, d),
                        None => (false, ws.first().and_then(|w| w.seed()).unwrap_or_default()),
                    })
                    .collect();
                let docs: Vec<Bson> = inserts.iter().map(|(_, d)| Bson::Document(d.clone())).collect();
                let reply =
                    self.db.run_command(doc! {"insert": coll.name(), "documents": docs, "ordered": false}).await?;
                let existed = duplicate_indices(&reply, coll)?;
                let one_by_one: Vec<Bson> = shards
                    .iter()
                    .zip(&inserts)
                    .enumerate()
                    .filter(|(k, (_, (whole, _)))| existed.contains(k) || !whole)
                    .flat_map(|(_, ((_, ws), _))| ws.iter().copied())
                    .filter_map(Write::update_statement)
                    .map(Bson::Document)
                    .collect();
                self.send_updates(coll, &one_by_one).await?;
            }
            Ok::<(), mongodb::error::Error>(())
        });
        all_lanes(work).await
    }

    async fn send_updates(&self, coll: Coll, updates: &[Bson]) -> Result<(), mongodb::error::Error> {
        for part in updates.chunks(UPDATE_CHUNK) {
            let reply = self.db.run_command(doc! {"update": coll.name(), "updates": part, "ordered": true}).await?;
            if check_write_errors(&reply, coll)?.is_some() {
                return Err(mongodb::error::Error::custom(format!(
                    "{}: a guarded update hit a duplicate key",
                    coll.name()
                )));
            }
        }
        Ok(())
    }
}

/// A shard's `writes` (in offset order) summed: the first and last offsets and the counts.
fn summed(writes: &[&Write]) -> Option<(i64, i64, Document)> {
    let mut first = None;
    let mut last = 0;
    let mut inc = Document::new();
    for w in writes {
        let Write::Shard { offset, inc: add, .. } = w else { return None };
        first.get_or_insert(*offset);
        last = *offset;
        for (k, v) in add {
            let sum = match (inc.get(k), v) {
                (None, v) => v.clone(),
                (Some(Bson::Int32(a)), Bson::Int32(b)) => Bson::Int32(a + b),
                (Some(a), b) => Bson::Int64(as_i64(a)? + as_i64(b)?),
            };
            inc.insert(k.clone(), sum);
        }
    }
    Some((first?, last, inc))
}

/// One guarded statement for a shard's `writes` (in offset order): counts summed, `w` set
/// to the last offset.
fn combined_shard_statement(id: &str, writes: &[&Write]) -> Option<Document> {
    let (first, last, inc) = summed(writes)?;
    Some(doc! {"q": {"_id": id, "w": {"$lt": first}}, "u": {"$inc": inc, "$set": {"w": last}}})
}

/// The document a shard's `writes` (in offset order) make when it does not exist yet: counts
/// summed, `w` the last offset; `None` where an insert cannot say it (see `Write::created`).
fn combined_shard_created(writes: &[&Write]) -> Option<Document> {
    let Some(Write::Shard { coll, id, owner, .. }) = writes.first() else { return None };
    let (_, last, inc) = summed(writes)?;
    Write::Shard { coll: *coll, id: id.clone(), owner: owner.clone(), offset: last, inc }.created()
}

fn as_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

/// The `index` of every duplicate-key error of a reply (`None` where it names none); any
/// other write error is an error.
fn duplicate_errors(reply: &Document, coll: Coll) -> Result<Vec<Option<i64>>, mongodb::error::Error> {
    let Ok(errors) = reply.get_array("writeErrors") else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(errors.len());
    for e in errors.iter().filter_map(Bson::as_document) {
        let code = e.get_i32("code").map(i64::from).or_else(|_| e.get_i64("code")).unwrap_or(-1);
        if code != 11000 {
            let message = e.get_str("errmsg").unwrap_or("write error");
            return Err(mongodb::error::Error::custom(format!("{}: code {code}: {message}", coll.name())));
        }
        out.push(e.get_i32("index").map(i64::from).or_else(|_| e.get_i64("index")).ok());
    }
    Ok(out)
}

/// The indices of the documents an unordered insert found already there.
fn duplicate_indices(reply: &Document, coll: Coll) -> Result<std::collections::HashSet<usize>, mongodb::error::Error> {
    duplicate_errors(reply, coll)?
        .into_iter()
        .map(|index| match index {
            Some(i) if i >= 0 => Ok(i as usize),
            _ => Err(mongodb::error::Error::custom(format!("{}: a write error without its index", coll.name()))),
        })
        .collect()
}

/// The index of the first duplicate-key error, if any (FerretDB reports update errors at 0).
fn check_write_errors(reply: &Document, coll: Coll) -> Result<Option<usize>, mongodb::error::Error> {
    Ok(duplicate_errors(reply, coll)?.into_iter().flatten().next().map(|i| i.max(0) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versioned(coll: Coll, id: &str, version: u64) -> Write {
        Write::set(coll, id, version, doc! {"x": version as i64})
    }

    #[test]
    fn a_batch_is_grouped_by_collection_and_kind_keeping_each_groups_order() {
        let writes = vec![
            versioned(Coll::Posts, "p1", 1),
            Write::Once { coll: Coll::Comments, doc: doc! {"_id": "c1"} },
            versioned(Coll::Posts, "p1", 2),
            Write::Shard { coll: Coll::Posts, id: "s".into(), owner: "p1".into(), offset: 7, inc: doc! {"n": 1} },
            versioned(Coll::Posts, "p2", 1),
        ];
        let groups = group(writes);
        let shape: Vec<(Coll, usize)> = groups.iter().map(|(c, g)| (*c, g.len())).collect();
        assert_eq!(shape, vec![(Coll::Posts, 3), (Coll::Comments, 1), (Coll::Posts, 1)]);
        let versions: Vec<u64> = groups[0]
            .1
            .iter()
            .filter_map(|w| match w {
                Write::Versioned { version, .. } => Some(*version),
                _ => None,
            })
            .collect();
        assert_eq!(versions, vec![1, 2, 1]);
    }

    #[test]
    fn a_versioned_write_only_moves_a_document_forward() {
        let w = versioned(Coll::Posts, "p1", 3);
        assert_eq!(w.seed(), Some(doc! {"_id": "p1", "v": 0_i64}), "a seed below every version");
        let s = w.update_statement().unwrap_or_default();
        assert_eq!(s.get_document("q").ok(), Some(&doc! {"_id": "p1", "v": {"$lt": 3_i64}}));
        assert_eq!(s.get_document("u").ok(), Some(&doc! {"$set": {"x": 3_i64, "v": 3_i64}}));
        assert!(s.get("upsert").is_none(), "no upsert: a stale write matches nothing");
    }

    #[test]
    fn a_shard_counts_each_offset_once_and_names_its_owner() {
        let origin = super::super::Origin { topic_base: "likes", partition: 4, offset: 9 };
        let id = shard_id("p1", &origin);
        assert_eq!(id, "p1|likes_4");
        let w = Write::Shard { coll: Coll::PostCounters, id, owner: "p1".into(), offset: 9, inc: doc! {"likes": 1} };
        assert_eq!(w.seed(), Some(doc! {"_id": "p1|likes_4", "w": -1_i64, "owner_id": "p1"}));
        let s = w.update_statement().unwrap_or_default();
        assert_eq!(s.get_document("q").ok(), Some(&doc! {"_id": "p1|likes_4", "w": {"$lt": 9_i64}}));
        assert_eq!(s.get_document("u").ok(), Some(&doc! {"$inc": {"likes": 1}, "$set": {"w": 9_i64}}));
    }
}
