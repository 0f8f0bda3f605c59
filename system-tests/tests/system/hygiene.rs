//! What every answer carries: request ids, security headers, CORS from config, compression;
//! and the rate limiter's policy when Redis does not answer.

use crate::helpers::{OwnStack, TestApp, assert_accepted, assert_problem, eventually};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_carry_request_ids_security_headers_cors_and_compression() {
    let app =
        TestApp::spawn_with(crate::helpers::Stack::local(), &[("AGORA_CORS_ORIGINS", "https://app.example")]).await;
    let user = app.user("hygiene").await;
    let res = app
        .http
        .post(format!("{}/v1/posts", app.command))
        .bearer_auth(&user.token)
        .header("x-request-id", "client-chosen-42")
        .json(&json!({"text": "headers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let h = res.headers();
    assert_eq!(h["x-request-id"], "client-chosen-42");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    // Without one, the server makes one up (a UUIDv7), on errors too.
    let res = app.http.post(format!("{}/v1/posts", app.command)).json(&json!({"text": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "{id}");

    // CORS preflight needs no auth, and only the configured origin is allowed.
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, format!("{}/v1/posts", app.command))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type,idempotency-key")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    let evil = preflight("https://evil.example").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());

    // Large answers are compressed when the client accepts it.
    let doc =
        app.http.get(format!("{}/openapi.json", app.command)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(doc.status(), 200);
    assert_eq!(doc.headers()["content-encoding"], "gzip");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_down_rate_limits_allow_and_count_by_default_or_deny_when_configured() {
    let own = OwnStack::up("redisdown");
    let allow = TestApp::spawn_on(own.stack()).await;
    let deny = TestApp::spawn_with(own.stack(), &[("AGORA_RATE_LIMIT_REDIS_DOWN", "deny")]).await;
    let (a, d) = (allow.user("allow").await, deny.user("deny").await);
    own.stop("redis");

    let post = |app: &TestApp, token: String| {
        let call = app.call(Method::POST, "/v1/posts").token(&token).json(&json!({"text": "redis is down"}));
        async move { call.send().await }
    };
    assert_accepted(&post(&allow, a.token.clone()).await);
    let refused = post(&deny, d.token.clone()).await;
    assert_problem(&refused, 503);
    assert!(refused.header("retry-after").is_some(), "{refused}");
    let metrics = allow.http.get(format!("{}/metrics", allow.command)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("agora_rate_limit_redis_errors_total{") && !l.ends_with(" 0")),
        "the skipped checks are counted"
    );

    // Queries answer from MongoDB without the cache, and count it. A profile cached before the
    // outage and changed during it is not served stale once Redis is back: the projector could
    // not retire its entry, so it retires the whole cache (the epoch) when Redis answers.
    eventually(Duration::from_secs(20), "the profile, from MongoDB", || async {
        let (status, _) = allow.get(&allow.query, &format!("/v1/users/{}", a.id), &a.token).await;
        (status == 200).then_some(())
    })
    .await;
    let metrics = allow.http.get(format!("{}/metrics", allow.query)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("agora_cache_lookups_total{") && l.contains("outcome=\"error\"")),
        "cache lookups without Redis are counted: {metrics}"
    );
    own.start("redis");
    deny.shutdown().await;
    allow.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_profile_follows_changes_made_while_redis_was_away() {
    let own = OwnStack::up("cacheepoch");
    let app = TestApp::spawn_on(own.stack()).await;
    let u = app.user("renamed").await;
    let path = format!("/v1/users/{}", u.id);
    let profile = eventually(Duration::from_secs(20), "the profile", || async {
        let (status, body) = app.get(&app.query, &path, &u.token).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(profile["display_name"], u.handle.as_str());
    // Cached now (the TTL is 5 minutes); a change is seen at once while Redis is up...
    let (status, again) = app.get(&app.query, &path, &u.token).await;
    assert_eq!((status, &again), (200, &profile));
    assert_accepted(&app.patch_json("/v1/me", &u.token, &json!({"display_name": "First Rename"})).await);
    eventually(Duration::from_secs(20), "the first rename", || async {
        let (_, body) = app.get(&app.query, &path, &u.token).await;
        (body["display_name"] == "First Rename").then_some(())
    })
    .await;
    // ...and a change made while it does not answer (paused: it keeps the cached entry) is
    // seen once it answers again.
    own.signal("redis", "STOP");
    assert_accepted(&app.patch_json("/v1/me", &u.token, &json!({"display_name": "Second Rename"})).await);
    eventually(Duration::from_secs(20), "the projector to apply the rename", || async {
        let (_, body) = app.get(&app.query, &path, &u.token).await;
        (body["display_name"] == "Second Rename").then_some(())
    })
    .await;
    own.signal("redis", "CONT");
    eventually(Duration::from_secs(20), "the rename, with Redis back", || async {
        let (status, body) = app.get(&app.query, &path, &u.token).await;
        (status == 200 && body["display_name"] == "Second Rename").then_some(())
    })
    .await;
    for _ in 0..5 {
        let (_, body) = app.get(&app.query, &path, &u.token).await;
        assert_eq!(body["display_name"], "Second Rename", "a stale entry came back");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.shutdown().await;
}
