//! The home feed and suggested users, end to end: fan-out on write, read-time merge of
//! authors over the fan-out threshold, follows and unfollows, deletions, the cap, and paging
//! while posts arrive.

use crate::helpers::{Stack, TestApp, User, assert_accepted, query_until};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde_json::Value;

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["post_id"].as_str().unwrap().to_owned()).collect()
}

async fn post(app: &TestApp, who: &User, text: &str) -> String {
    assert_accepted(&app.post(&who.token, text).await).body["post_id"].as_str().unwrap().to_owned()
}

async fn follow(app: &TestApp, who: &User, whom: &User) {
    assert_accepted(&app.put(&format!("/v1/follows/{}", whom.id), &who.token).await);
}

/// Every post id of the reader's feed, paging with `limit`.
async fn whole_feed(app: &TestApp, reader: &User, limit: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..200 {
        let url = match &cursor {
            Some(c) => format!("/v1/feed?limit={limit}&cursor={c}"),
            None => format!("/v1/feed?limit={limit}"),
        };
        let (status, page) = app.get(&app.query, &url, &reader.token).await;
        assert_eq!(status, 200, "{url}: {page}");
        all.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("paging the feed does not end");
}

async fn read_db(app: &TestApp) -> mongodb::Database {
    let client = mongodb::Client::with_uri_str(&app.stack.mongo).await.unwrap();
    client.database(&format!("{}_read", app.prefix))
}

async fn entries_of(app: &TestApp, reader: &User) -> Vec<Document> {
    read_db(app)
        .await
        .collection::<Document>("feeds")
        .find(doc! {"user_id": &reader.id})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_feed_holds_my_posts_and_my_followees_newest_first_and_follows_deletions_and_unfollows() {
    let app = TestApp::spawn().await;
    let (me, ann, bob, eve) =
        (app.user("me").await, app.user("ann").await, app.user("bob").await, app.user("eve").await);
    // Ann posts before I follow her: the follow copies her posts in.
    let ann_old = post(&app, &ann, "ann before").await;
    follow(&app, &me, &ann).await;
    follow(&app, &me, &bob).await;
    let mine = post(&app, &me, "mine").await;
    let bob_1 = post(&app, &bob, "bob one").await;
    let ann_new = post(&app, &ann, "ann after").await;
    let _eve = post(&app, &eve, "not followed").await;
    let bob_2 = post(&app, &bob, "bob two").await;
    let expected = vec![bob_2.clone(), ann_new.clone(), bob_1.clone(), mine.clone(), ann_old.clone()];
    let feed = query_until(&app, "/v1/feed", &me.token, "the feed", |s, b| s == 200 && ids(b) == expected).await;
    let first = &feed["items"][0];
    assert_eq!(first["author"]["user_id"], bob.id.as_str(), "{feed}");
    assert_eq!(first["text"], "bob two");
    assert_eq!(first["liked_by_me"], false);
    assert_eq!(whole_feed(&app, &me, 2).await, expected, "paged by two");

    // A deleted post vanishes; so does everything of someone I unfollow.
    assert_accepted(&app.delete(&format!("/v1/posts/{bob_1}"), &bob.token).await);
    assert_accepted(&app.delete(&format!("/v1/follows/{}", ann.id), &me.token).await);
    let expected = vec![bob_2.clone(), mine.clone()];
    query_until(&app, "/v1/feed", &me.token, "deletion and unfollow", |s, b| s == 200 && ids(b) == expected).await;
    let stored: Vec<String> =
        entries_of(&app, &me).await.iter().map(|d| d.get_str("post_id").unwrap().to_owned()).collect();
    assert!(!stored.contains(&bob_1) && !stored.contains(&ann_new), "entries left behind: {stored:?}");

    // The caller's like shows in the feed's items.
    assert_accepted(&app.put(&format!("/v1/posts/{bob_2}/like"), &me.token).await);
    query_until(&app, "/v1/feed?limit=1", &me.token, "liked_by_me in the feed", |s, b| {
        s == 200 && b["items"][0]["liked_by_me"] == true && b["items"][0]["like_count"] == 1
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_author_over_the_threshold_is_merged_at_read_time_not_fanned_out() {
    let app = TestApp::spawn_with(Stack::local(), &[("AGORA_FEED_FANOUT_THRESHOLD", "2")]).await;
    let (star, a, b, small) =
        (app.user("star").await, app.user("a").await, app.user("b").await, app.user("small").await);
    follow(&app, &a, &star).await;
    follow(&app, &b, &star).await;
    follow(&app, &a, &small).await;
    // Wait until the star's two followers are counted, so the next post is not fanned out.
    query_until(&app, &format!("/v1/users/{}", star.id), &a.token, "two followers", |s, p| {
        s == 200 && p["followers"] == 2
    })
    .await;
    let starred = post(&app, &star, "to everyone").await;
    let smaller = post(&app, &small, "to a").await;
    let expected = vec![smaller.clone(), starred.clone()];
    query_until(&app, "/v1/feed", &a.token, "a's merged feed", |s, f| s == 200 && ids(f) == expected).await;
    query_until(&app, "/v1/feed", &b.token, "b's merged feed", |s, f| s == 200 && ids(f) == vec![starred.clone()])
        .await;
    let a_entries: Vec<String> =
        entries_of(&app, &a).await.iter().map(|d| d.get_str("post_id").unwrap().to_owned()).collect();
    assert_eq!(a_entries, vec![smaller.clone()], "the star's post was fanned out");
    // Unfollowing the star takes the star's posts out of the merged part too.
    assert_accepted(&app.delete(&format!("/v1/follows/{}", star.id), &a.token).await);
    query_until(&app, "/v1/feed", &a.token, "unfollowed star", |s, f| s == 200 && ids(f) == vec![smaller.clone()])
        .await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_follow_copies_in_at_most_the_cap() {
    let app = TestApp::spawn_with(Stack::local(), &[("AGORA_FEED_CAP", "12")]).await;
    let (reader, author) = (app.user("reader").await, app.user("author").await);
    let mut older = Vec::new();
    for i in 0..20 {
        older.push(post(&app, &author, &format!("old {i}")).await);
    }
    query_until(&app, &format!("/v1/users/{}", author.id), &author.token, "twenty posts", |s, p| {
        s == 200 && p["posts"] == 20
    })
    .await;
    // A follow copies in at most the cap: the newest twelve.
    follow(&app, &reader, &author).await;
    let newest: Vec<String> = older.iter().rev().take(12).cloned().collect();
    query_until(&app, "/v1/feed?limit=100", &reader.token, "the backfill", |s, f| s == 200 && ids(f) == newest).await;
    assert_eq!(entries_of(&app, &reader).await.len(), 12);
    app.shutdown().await;
}

#[tokio::test]
async fn paging_a_feed_while_posts_arrive_never_repeats_or_skips() {
    let app = TestApp::spawn().await;
    let (reader, author) = (app.user("reader").await, app.user("author").await);
    follow(&app, &reader, &author).await;
    let mut older = Vec::new();
    for i in 0..15 {
        older.push(post(&app, &author, &format!("old {i}")).await);
    }
    let newest: Vec<String> = older.iter().rev().cloned().collect();
    query_until(&app, "/v1/feed?limit=100", &reader.token, "fifteen posts", |s, f| s == 200 && ids(f) == newest).await;
    // Page by three while the author keeps posting: each page continues exactly where the
    // last one stopped, and the new posts only ever appear at the head.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut arrived = Vec::new();
    loop {
        arrived.push(post(&app, &author, &format!("new {}", arrived.len())).await);
        let url = match &cursor {
            Some(c) => format!("/v1/feed?limit=3&cursor={c}"),
            None => "/v1/feed?limit=3".to_owned(),
        };
        let (status, page) = app.get(&app.query, &url, &reader.token).await;
        assert_eq!(status, 200, "{page}");
        // The first page may or may not hold the newest arrivals; later pages never do.
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(arrived.len() < 20, "paging does not end");
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "a page repeated an item: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(sorted, seen, "not newest first: {seen:?}");
    // Every earlier post was served exactly once, after whatever new posts the first page had.
    let first_old = seen.iter().position(|p| newest.contains(p)).expect("no old post served");
    assert_eq!(&seen[first_old..], &newest[..], "old posts skipped or repeated");
    assert!(seen[..first_old].iter().all(|p| arrived.contains(p)), "{seen:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn suggestions_rank_users_by_how_many_of_my_followees_follow_them() {
    let app = TestApp::spawn().await;
    let (me, f1, f2, f3) = (app.user("me").await, app.user("f1").await, app.user("f2").await, app.user("f3").await);
    let (popular, liked, lonely) = (app.user("popular").await, app.user("liked").await, app.user("lonely").await);
    for f in [&f1, &f2, &f3] {
        follow(&app, &me, f).await;
        follow(&app, f, &popular).await;
    }
    follow(&app, &f1, &liked).await;
    follow(&app, &f2, &liked).await;
    follow(&app, &f2, &f3).await; // f3 is already mine: not suggested.
    follow(&app, &f3, &me).await; // nor am I.
    follow(&app, &lonely, &f1).await;
    let expected = [popular.id.clone(), liked.id.clone()];
    let page = query_until(&app, "/v1/users/suggested", &me.token, "suggestions", |s, b| {
        s == 200
            && b["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["user_id"].as_str().unwrap())
                .eq(expected.iter().map(String::as_str))
    })
    .await;
    assert_eq!(page["items"][0]["handle"], popular.handle.as_str(), "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    // Paged by one, the same order.
    let (_, first) = app.get(&app.query, "/v1/users/suggested?limit=1", &me.token).await;
    assert_eq!(first["items"][0]["user_id"], popular.id.as_str(), "{first}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&app.query, &format!("/v1/users/suggested?limit=1&cursor={cursor}"), &me.token).await;
    assert_eq!(second["items"][0]["user_id"], liked.id.as_str(), "{second}");
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    // Following a suggestion takes it off the list.
    follow(&app, &me, &popular).await;
    query_until(&app, "/v1/users/suggested", &me.token, "followed suggestion gone", |s, b| {
        s == 200 && b["items"].as_array().unwrap().iter().all(|u| u["user_id"] != popular.id.as_str())
    })
    .await;
    let (status, bad) = app.get(&app.query, "/v1/users/suggested?cursor=!!", &me.token).await;
    assert_eq!(status, 400, "{bad}");
    app.shutdown().await;
}
