//! The posts queries of the contract, end to end on the real stack: a post's detail, its
//! comments, and follower lists, with their paging.

use crate::helpers::{TestApp, User, assert_accepted, query_until};
use reqwest::Method;
use serde_json::{Value, json};

fn ids(page: &Value, field: &str) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i[field].as_str().unwrap().to_owned()).collect()
}

/// The item ids of every page of `path` with `limit`.
async fn all_pages(app: &TestApp, path: &str, token: &str, limit: u32, field: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, page) = app.get(&app.query, &url, token).await;
        assert_eq!(status, 200, "{url}: {page}");
        pages.push(ids(&page, field));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 50, "paging does not end");
    }
}

#[tokio::test]
async fn a_post_shows_its_likes_comments_and_who_liked_it_until_it_is_deleted() {
    let app = TestApp::spawn().await;
    let (author, reader) = (app.user("author").await, app.user("reader").await);
    let post = assert_accepted(&app.post(&author.token, "hello").await).body["post_id"].as_str().unwrap().to_owned();
    assert_accepted(&app.put(&format!("/v1/posts/{post}/like"), &reader.token).await);
    let mut comment_ids = Vec::new();
    for (who, text) in [(&reader, "first"), (&author, "thanks"), (&reader, "again")] {
        let c = app.post_json(&format!("/v1/posts/{post}/comments"), &who.token, &json!({"text": text})).await;
        comment_ids.push(assert_accepted(&c).body["comment_id"].as_str().unwrap().to_owned());
    }
    let path = format!("/v1/posts/{post}");
    let seen = query_until(&app, &path, &reader.token, "likes and comments counted", |s, b| {
        s == 200 && b["like_count"] == 1 && b["comment_count"] == 3
    })
    .await;
    assert_eq!(seen["liked_by_me"], true, "{seen}");
    assert_eq!(seen["text"], "hello");
    assert_eq!(seen["author"], json!({"user_id": author.id, "handle": author.handle, "display_name": author.handle}));
    let (_, as_author) = app.get(&app.query, &path, &author.token).await;
    assert_eq!(as_author["liked_by_me"], false, "{as_author}");

    // Comments, oldest first, in pages of two that neither repeat nor skip.
    let pages = all_pages(&app, &format!("{path}/comments"), &reader.token, 2, "comment_id").await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages.concat(), comment_ids);
    let (_, first) = app.get(&app.query, &format!("{path}/comments?limit=1"), &reader.token).await;
    assert_eq!(first["items"][0]["author"]["user_id"], reader.id.as_str(), "{first}");
    assert_eq!(first["items"][0]["text"], "first");

    // Unlike: the count and the flag follow.
    assert_accepted(&app.delete(&format!("/v1/posts/{post}/like"), &reader.token).await);
    query_until(&app, &path, &reader.token, "the unlike", |s, b| s == 200 && b["like_count"] == 0).await;
    let (_, after) = app.get(&app.query, &path, &reader.token).await;
    assert_eq!(after["liked_by_me"], false, "{after}");

    assert_accepted(&app.delete(&path, &author.token).await);
    query_until(&app, &path, &reader.token, "the deletion", |s, _| s == 404).await;
    let (status, _) = app.get(&app.query, &format!("{path}/comments"), &reader.token).await;
    assert_eq!(status, 404, "a deleted post's comments are gone with it");
    app.shutdown().await;
}

#[tokio::test]
async fn post_queries_refuse_bad_ids_limits_and_cursors_clearly() {
    let app = TestApp::spawn().await;
    let u = app.user("someone").await;
    for path in ["/v1/posts/not-a-uuid", "/v1/posts/0190b4a0-0000-7000-8000-000000000000", "/v1/posts/x/comments"] {
        let (status, body) = app.get(&app.query, path, &u.token).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let followers = format!("/v1/users/{}/followers", u.id);
    let (status, body) = app.get(&app.query, &format!("{followers}?limit=0"), &u.token).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app.get(&app.query, &format!("{followers}?cursor=%%%"), &u.token).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.get(&app.query, "/v1/users/nobody/following", &u.token).await;
    assert_eq!(status, 404);
    let anonymous = app.call(Method::GET, &followers).on(&app.query).send().await;
    assert_eq!(anonymous.status, 401, "queries need a token: {anonymous}");
    app.shutdown().await;
}

async fn follow(app: &TestApp, who: &User, whom: &User) {
    assert_accepted(&app.put(&format!("/v1/follows/{}", whom.id), &who.token).await);
}

#[tokio::test]
async fn follower_lists_are_newest_edge_first_and_page_without_repeats_while_edges_arrive() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    let mut fans = Vec::new();
    for i in 0..5 {
        let fan = app.user(&format!("fan{i}")).await;
        follow(&app, &fan, &star).await;
        fans.push(fan);
    }
    let path = format!("/v1/users/{}/followers", star.id);
    query_until(&app, &path, &star.token, "five followers", |s, b| {
        s == 200 && b["items"].as_array().unwrap().len() == 5
    })
    .await;
    let newest_first: Vec<String> = fans.iter().rev().map(|f| f.id.clone()).collect();

    // Page 1, then a new follower and an unfollow of someone already seen, then the rest.
    let (_, page1) = app.get(&app.query, &format!("{path}?limit=2"), &star.token).await;
    assert_eq!(ids(&page1, "user_id"), newest_first[..2].to_vec(), "{page1}");
    let late = app.user("late").await;
    follow(&app, &late, &star).await;
    query_until(&app, &path, &star.token, "the sixth follower", |s, b| {
        s == 200 && b["items"].as_array().unwrap().len() == 6
    })
    .await;
    let mut rest = Vec::new();
    let mut cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let (status, page) = app.get(&app.query, &format!("{path}?limit=2&cursor={cursor}"), &star.token).await;
        assert_eq!(status, 200, "{page}");
        rest.extend(ids(&page, "user_id"));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(rest, newest_first[2..].to_vec(), "no repeat and no skip after the first page");

    // An unfollow removes the edge; following lists show the other side.
    assert_accepted(&app.delete(&format!("/v1/follows/{}", star.id), &fans[2].token).await);
    let expected: Vec<String> =
        [late.id.clone()].into_iter().chain(newest_first.iter().filter(|id| **id != fans[2].id).cloned()).collect();
    query_until(&app, &path, &star.token, "the unfollow", |s, b| s == 200 && ids(b, "user_id") == expected).await;
    let (_, following) = app.get(&app.query, &format!("/v1/users/{}/following", fans[0].id), &star.token).await;
    assert_eq!(following["items"], json!([{"user_id": star.id, "handle": star.handle, "display_name": star.handle}]));
    let (_, profile) = app.get(&app.query, &format!("/v1/users/{}", star.id), &star.token).await;
    assert_eq!(profile["followers"], 5, "{profile}");
    app.shutdown().await;
}

/// `GET <query>path` with `X-Consistency-Token: tokens`: (status, `X-Consistency`, body).
async fn get_consistent(app: &TestApp, path: &str, token: &str, tokens: &str) -> (u16, Option<String>, Value) {
    let res = app
        .http
        .get(format!("{}{path}", app.query))
        .bearer_auth(token)
        .header("X-Consistency-Token", tokens)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let state = res.headers().get("x-consistency").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, state, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_query_with_the_commands_consistency_tokens_reads_their_effects_at_once() {
    let app = TestApp::spawn().await;
    let (author, fan) = (app.user("author").await, app.user("fan").await);
    for round in 0..5 {
        // No waiting between the commands and the query: the tokens make the query wait.
        let post = assert_accepted(&app.post(&author.token, &format!("round {round}")).await);
        let like = assert_accepted(
            &app.put(&format!("/v1/posts/{}/like", post.body["post_id"].as_str().unwrap()), &fan.token).await,
        );
        let tokens = format!("{},{}", post.consistency_token, like.consistency_token);
        let path = format!("/v1/posts/{}", post.body["post_id"].as_str().unwrap());
        let (status, state, body) = get_consistent(&app, &path, &fan.token, &tokens).await;
        assert_eq!((status, state), (200, None), "{body}");
        assert_eq!((body["like_count"].as_i64(), body["liked_by_me"].as_bool()), (Some(1), Some(true)), "{body}");
    }
    let follow = assert_accepted(&app.put(&format!("/v1/follows/{}", author.id), &fan.token).await);
    let profile = format!("/v1/users/{}", author.id);
    let (status, _, body) = get_consistent(&app, &profile, &fan.token, &follow.consistency_token).await;
    assert_eq!((status, body["followers"].as_i64(), body["posts"].as_i64()), (200, Some(1), Some(5)), "{body}");

    let (status, _, body) = get_consistent(&app, &profile, &fan.token, "not-a-token").await;
    assert_eq!(status, 400, "{body}");
    // A position the projector will not reach: the answer comes anyway, marked stale.
    let topic = format!("{}.posts", app.prefix);
    let ahead = agora_platform::consistency::ConsistencyToken::from_position(&agora_platform::consistency::Position {
        topic,
        partition: 0,
        offset: 1_000_000_000,
    });
    let (status, state, body) = get_consistent(&app, &profile, &fan.token, &ahead.encode()).await;
    assert_eq!((status, state.as_deref()), (200, Some("stale")), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_detail_answer_carries_an_etag_and_an_unchanged_one_revalidates_with_304() {
    let app = TestApp::spawn().await;
    let u = app.user("tagged").await;
    let path = format!("/v1/users/{}", u.id);
    query_until(&app, &path, &u.token, "the profile", |s, _| s == 200).await;
    let get = |tag: Option<String>| {
        let mut req = app.http.get(format!("{}{path}", app.query)).bearer_auth(&u.token);
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        async move { req.send().await.unwrap() }
    };
    let first = get(None).await;
    assert_eq!(first.status(), 200);
    let tag = first.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("an ETag");
    let again = get(Some(tag.clone())).await;
    assert_eq!(again.status(), 304, "unchanged: not modified");
    assert!(again.text().await.unwrap().is_empty());

    assert_accepted(&app.patch_json("/v1/me", &u.token, &json!({"bio": "new bio"})).await);
    query_until(&app, &path, &u.token, "the new bio", |s, b| s == 200 && b["bio"] == "new bio").await;
    let changed = get(Some(tag.clone())).await;
    assert_eq!(changed.status(), 200, "changed: the new answer");
    assert_ne!(changed.headers().get("etag").and_then(|v| v.to_str().ok()), Some(tag.as_str()));
    app.shutdown().await;
}
