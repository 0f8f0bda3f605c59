//! The first slice through all four tiers, on the real stack: register two users, B follows A,
//! A posts; the projector writes the post; the query API returns it; B's socket gets `feed.post`.

use crate::helpers::{TestApp, eventually, next_json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_reaches_the_query_api_and_the_followers_socket() {
    let app = TestApp::spawn().await;
    let (a, a_token) = app.register("alice").await;
    let (b, b_token) = app.register("bob").await;

    // B follows A, and the follow is visible on the read side before A posts.
    let res = app.http.put(format!("{}/v1/follows/{a}", app.command)).bearer_auth(&b_token).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let follow: serde_json::Value = res.json().await.unwrap();
    assert!(follow["event_id"].is_string(), "{follow}");
    assert_eq!(follow["version"], 1);
    eventually(Duration::from_secs(30), "A's follower count to reach 1", || async {
        let (status, profile) = app.get(&app.query, &format!("/v1/users/{a}"), &b_token).await;
        (status == 200 && profile["followers"] == 1).then_some(())
    })
    .await;
    // The two counters are two documents, each updated on its own.
    eventually(Duration::from_secs(30), "B's following count to reach 1", || async {
        let (status, profile) = app.get(&app.query, &format!("/v1/users/{b}"), &b_token).await;
        (status == 200 && profile["following"] == 1).then_some(())
    })
    .await;

    // B is connected when A posts.
    let (mut ws, ready) = app.connect_ws(&b_token).await;
    assert!(ready["connection_id"].is_string() && ready["stream_pos"].is_string(), "{ready}");

    let res = app
        .http
        .post(format!("{}/v1/posts", app.command))
        .bearer_auth(&a_token)
        .json(&serde_json::json!({"text": "hello from the slice ✓"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let accepted: serde_json::Value = res.json().await.unwrap();
    let post_id = accepted["post_id"].as_str().expect("post_id").to_owned();
    assert_eq!(accepted["aggregate_id"], post_id.as_str());
    assert!(accepted["position"]["offset"].is_i64(), "{accepted}");
    assert!(accepted["consistency_token"].is_string());

    // The query API serves it from the projector's read model.
    let page = eventually(Duration::from_secs(30), "the post in A's posts", || async {
        let (status, page) = app.get(&app.query, &format!("/v1/users/{a}/posts"), &b_token).await;
        (status == 200 && page["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(page)
    })
    .await;
    let item = &page["items"][0];
    assert_eq!(item["post_id"], post_id.as_str());
    assert_eq!(item["text"], "hello from the slice ✓");
    assert_eq!(item["author"]["user_id"], a.as_str());
    assert_eq!(item["liked_by_me"], false);
    assert!(page["next_cursor"].is_null());

    // B's socket receives exactly one feed.post for it.
    let frame = next_json(&mut ws, Duration::from_secs(30)).await.expect("a feed.post frame");
    assert_eq!(frame["type"], "event", "{frame}");
    assert_eq!(frame["event_type"], "feed.post");
    assert_eq!(frame["event_id"], accepted["event_id"]);
    assert_eq!(frame["data"]["post_id"], post_id.as_str());
    assert_eq!(frame["data"]["author"]["user_id"], a.as_str());
    assert!(frame["stream_pos"].as_str().is_some_and(|p| p > ready["stream_pos"].as_str().unwrap()), "{frame}");
    assert!(next_json(&mut ws, Duration::from_millis(500)).await.is_none(), "a second frame arrived");

    // The author follows nobody, so A's own socket would get nothing; the event log holds the
    // post once: a second page is empty.
    let (_, again) = app.get(&app.query, &format!("/v1/users/{a}/posts?limit=1"), &b_token).await;
    assert_eq!(again["items"].as_array().map(Vec::len), Some(1));
    assert!(again["next_cursor"].is_null());

    app.shutdown().await;
}
