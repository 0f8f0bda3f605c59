//! What every answer carries: request ids, security headers, CORS from config, compression;
//! and the rate limiter's policy when Redis does not answer.

use crate::helpers::{OwnStack, TestApp, assert_accepted, assert_problem};
use reqwest::Method;
use serde_json::json;

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
    own.start("redis");
    deny.shutdown().await;
    allow.shutdown().await;
}
