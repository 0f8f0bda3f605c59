//! The query API's hot queries are served by the read models' indexes: each is explained on
//! the real store (`AGORA_TEST_MONGO_URI`, by default the local FerretDB) and the plan must
//! use the index made for it.
//!
//! On MongoDB the plan names the index (`indexName`). FerretDB v1 translates a query to SQL on
//! PostgreSQL and its explain is PostgreSQL's plan: it says whether the filter, sort and limit
//! were pushed down (`filterPushdown`, `sortPushdown`, `limitPushdown`), and the plan names
//! the PostgreSQL index on one `_jsonb -> 'field'` expression of the collection's indexes
//! (the local stack's GIN companions, see `deploy/local/postgres/ferretdb-gin.sql`). There the
//! test asserts that the filter is pushed down and answered by an index scan on a key of the
//! expected index; and, for the queries FerretDB cannot push down, that it still cannot, so
//! `docs/architecture.md`'s account of their cost stays true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{Bson, Document, doc};

/// A hot query of the query API: the collection, the `find` command's parts, and the index
/// made for it.
struct Hot {
    what: &'static str,
    coll: &'static str,
    filter: Document,
    sort: Option<Document>,
    index: &'static str,
    /// The index keys an index scan may use (FerretDB answers with one of them).
    keys: &'static [&'static str],
    /// Whether FerretDB v1 can push the filter's leading key down (it cannot push `$in`; it
    /// then pushes only the other equalities, and filters the rest in memory).
    pushdown: bool,
}

fn hot_queries() -> Vec<Hot> {
    let user = "0190a5b2-0000-7000-8000-000000000001";
    let h = |what, coll, filter, sort, index, keys, pushdown| Hot { what, coll, filter, sort, index, keys, pushdown };
    vec![
        h("profile", "users", doc! {"_id": user}, None, "_id_", &["_id"][..], true),
        h("profile counters", "user_counters", doc! {"owner_id": user}, None, "by_owner", &["owner_id"][..], true),
        h(
            "followers, newest first",
            "follows",
            doc! {"followee_id": user, "active": true},
            Some(doc! {"seq": -1}),
            "followers_newest",
            &["followee_id", "active"][..],
            true,
        ),
        h(
            "following, newest first",
            "follows",
            doc! {"follower_id": user, "active": true},
            Some(doc! {"seq": -1}),
            "following_newest",
            &["follower_id", "active"][..],
            true,
        ),
        h(
            "posts by author",
            "posts",
            doc! {"author_id": user, "deleted": false},
            Some(doc! {"_id": -1}),
            "author_newest",
            &["author_id", "deleted"][..],
            true,
        ),
        h(
            "comments of a post",
            "comments",
            doc! {"post_id": user},
            Some(doc! {"_id": 1}),
            "post_oldest",
            &["post_id"][..],
            true,
        ),
        h("likes of a post", "post_counters", doc! {"owner_id": user}, None, "by_owner", &["owner_id"][..], true),
        h(
            "home feed",
            "feeds",
            doc! {"user_id": user},
            Some(doc! {"post_id": -1}),
            "reader_newest",
            &["user_id"][..],
            true,
        ),
        h(
            "notifications",
            "notifications",
            doc! {"user_id": user},
            Some(doc! {"seq": -1}),
            "user_newest",
            &["user_id"][..],
            true,
        ),
        h(
            "conversations",
            "conversation_members",
            doc! {"user_id": user},
            Some(doc! {"last_id": -1}),
            "user_latest",
            &["user_id"][..],
            true,
        ),
        h(
            "messages",
            "messages",
            doc! {"conversation_id": user},
            Some(doc! {"_id": -1}),
            "conversation_newest",
            &["conversation_id"][..],
            true,
        ),
        h(
            "games of a user",
            "user_games",
            doc! {"user_id": user},
            Some(doc! {"game_id": -1}),
            "user_latest",
            &["user_id"][..],
            true,
        ),
        h(
            "active games of a user",
            "user_games",
            doc! {"user_id": user, "status": "active"},
            Some(doc! {"game_id": -1}),
            "user_status_latest",
            &["user_id", "status"][..],
            true,
        ),
        // FerretDB v1 does not push `$in` down.
        h(
            "an `$in` over authors (why a feed reads pull authors one by one)",
            "posts",
            doc! {"author_id": {"$in": [user, "x"]}, "deleted": false},
            Some(doc! {"_id": -1}),
            "author_newest",
            &["author_id"][..],
            false,
        ),
        h(
            "the pull authors a reader follows",
            "follows",
            doc! {"follower_id": user, "active": true, "followee_id": {"$in": [user, "x"]}},
            None,
            "following_newest",
            &["follower_id", "active"][..],
            true,
        ),
    ]
}

/// Every `Index Name` / `Index Cond` pair of a PostgreSQL plan, and whether it has a `Seq Scan`.
fn scans(plan: &Bson, found: &mut Vec<(String, String)>, seq_scan: &mut bool) {
    match plan {
        Bson::Document(d) => {
            if d.get_str("Node Type") == Ok("Seq Scan") {
                *seq_scan = true;
            }
            if let (Ok(name), Ok(cond)) = (d.get_str("Index Name"), d.get_str("Index Cond")) {
                found.push((name.to_owned(), cond.to_owned()));
            }
            for (_, v) in d {
                scans(v, found, seq_scan);
            }
        }
        Bson::Array(a) => a.iter().for_each(|v| scans(v, found, seq_scan)),
        _ => {}
    }
}

/// The index names a MongoDB plan uses.
fn index_names(plan: &Bson, found: &mut Vec<String>) {
    match plan {
        Bson::Document(d) => {
            if let Ok(name) = d.get_str("indexName") {
                found.push(name.to_owned());
            }
            for (_, v) in d {
                index_names(v, found);
            }
        }
        Bson::Array(a) => a.iter().for_each(|v| index_names(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn every_hot_query_is_answered_through_its_index() {
    let uri = std::env::var("AGORA_TEST_MONGO_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/".into());
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let name = agora_testkit::names::test_prefix("explain_");
    let db = client.database(&name);
    agora_projector::readmodel::ensure_indexes(&db).await.unwrap();
    let mut failures = Vec::new();
    let mut ferret = false;
    for q in hot_queries() {
        // An empty collection may not exist yet; a document makes its table.
        db.collection::<Document>(q.coll).insert_one(doc! {"seed": true}).await.unwrap();
        let mut find = doc! {"find": q.coll, "filter": q.filter.clone(), "limit": 21};
        if let Some(sort) = &q.sort {
            find.insert("sort", sort.clone());
        }
        let reply = db.run_command(doc! {"explain": find, "verbosity": "queryPlanner"}).await.unwrap();
        ferret = reply.get_document("serverInfo").is_ok_and(|s| s.contains_key("ferretdbVersion"));
        if ferret {
            let pushed = reply.get_bool("filterPushdown").unwrap_or(false);
            let mut found = Vec::new();
            let mut seq_scan = false;
            scans(reply.get("queryPlanner").unwrap_or(&Bson::Null), &mut found, &mut seq_scan);
            let on_key = found.iter().any(|(_, cond)| q.keys.iter().any(|k| cond.contains(&format!("'{k}'"))));
            if q.pushdown && !(pushed && on_key && !seq_scan) {
                failures
                    .push(format!("{}: not served by {} ({found:?}, seq scan {seq_scan}): {reply}", q.what, q.index));
            }
            let on_lead = found.iter().any(|(_, cond)| cond.contains(&format!("'{}'", q.keys[0])));
            if !q.pushdown && on_lead {
                failures.push(format!(
                    "{}: FerretDB now serves `{}` by index: update docs/architecture.md",
                    q.what, q.keys[0]
                ));
            }
        } else {
            let mut found = Vec::new();
            index_names(reply.get("queryPlanner").unwrap_or(&Bson::Null), &mut found);
            if !found.iter().any(|n| n == q.index) {
                failures.push(format!("{}: plan uses {found:?}, not {}: {reply}", q.what, q.index));
            }
        }
    }
    db.drop().await.unwrap();
    assert!(failures.is_empty(), "on {} :\n{}", if ferret { "FerretDB" } else { "MongoDB" }, failures.join("\n"));
}
