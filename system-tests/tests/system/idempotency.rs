//! `Idempotency-Key`: a retry gets the first answer and appends nothing, across instances;
//! another body with the same key is refused; keys are the caller's own.

use crate::helpers::{PASSWORD, TestApp, assert_accepted, assert_invalid, assert_problem, of_type, unique_handle};
use agora_schemas::AggregateType;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_the_same_key_and_body_gets_the_first_answer_and_appends_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let body = json!({"text": "posted once, sent twice"});
    let send = || app.call(Method::POST, "/v1/posts").token(&alice.token).key("post-1").json(&body).send();

    let first = send().await;
    assert_accepted(&first);
    assert!(!first.replayed(), "a first answer is not a replay: {first}");
    let again = send().await;
    assert_eq!(again.status, 202, "{again}");
    assert_eq!(again.text, first.text, "the replay is the first answer, byte for byte");
    assert!(again.replayed(), "idempotent-replayed: true on a replay: {:?}", again.headers);
    assert!(again.header("content-type").unwrap_or_default().starts_with("application/json"), "{again}");
    let posts = app.log_events(AggregateType::Post).await;
    assert_eq!(posts.len(), 1, "one post.created: {posts:?}");
    assert_eq!(posts[0].event_id.to_string(), first.str("event_id"));

    // A body-less command (a follow) and a registration (keyed by the client) likewise.
    let follow = || app.call(Method::PUT, &format!("/v1/follows/{}", bob.id)).token(&alice.token).key("f-1").send();
    let (f1, f2) = (follow().await, follow().await);
    assert!(assert_accepted(&f1).event_id.is_some());
    assert_eq!((f2.text.as_str(), f2.replayed()), (f1.text.as_str(), true), "{f2}");
    let handle = unique_handle("carol");
    let reg_body = json!({"handle": handle, "display_name": "Carol", "password": PASSWORD});
    let register = || app.call(Method::POST, "/v1/auth/register").key("reg-1").json(&reg_body).send();
    let (r1, r2) = (register().await, register().await);
    assert_eq!(r1.status, 201, "{r1}");
    assert_eq!((r2.status, r2.text.as_str(), r2.replayed()), (201, r1.text.as_str(), true), "not a 409: {r2}");
    // Without the key the same registration is a new request, and the handle is taken.
    assert_problem(&app.call(Method::POST, "/v1/auth/register").json(&reg_body).send().await, 409);

    assert_eq!(app.log_count(AggregateType::Follow).await, 1);
    let users = app.log_events(AggregateType::User).await;
    assert_eq!(of_type(&users, "user.registered").len(), 3, "alice, bob and carol once: {users:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_with_another_request_is_422() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let post = |text: &str| {
        app.call(Method::POST, "/v1/posts").token(&alice.token).key("k").json(&json!({ "text": text })).send()
    };
    let first = post("one").await;
    assert_accepted(&first);
    assert_invalid(&post("two").await, "Idempotency-Key");
    // Another route with the key is another request too.
    let post_id = first.str("post_id");
    let comment = app
        .call(Method::POST, &format!("/v1/posts/{post_id}/comments"))
        .token(&alice.token)
        .key("k")
        .json(&json!({"text": "one"}))
        .send()
        .await;
    assert_invalid(&comment, "Idempotency-Key");
    // The first request with it still replays.
    let again = post("one").await;
    assert_eq!((again.text.as_str(), again.replayed()), (first.text.as_str(), true), "{again}");
    // Keys must be 1-255 visible ASCII characters.
    for bad in ["x".repeat(256), "with space".to_owned()] {
        let a =
            app.call(Method::POST, "/v1/posts").token(&alice.token).key(&bad).json(&json!({"text": "k"})).send().await;
        assert_invalid(&a, "Idempotency-Key");
    }
    let posts = app.log_events(AggregateType::Post).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_across_two_instances_append_one_event() {
    let app = TestApp::spawn().await;
    let second = app.start_command_api().await;
    let alice = app.user("alice").await;
    let body = json!({"text": "ten clicks, one post"});
    let urls = [app.command.clone(), second.url.clone()];
    let answers = futures::future::join_all((0..10).map(|i| {
        app.call(Method::POST, "/v1/posts").on(&urls[i % 2]).token(&alice.token).key("double-click").json(&body).send()
    }))
    .await;

    let originals: Vec<_> = answers.iter().filter(|a| !a.replayed()).collect();
    assert_eq!(originals.len(), 1, "exactly one answer is not a replay: {answers:#?}");
    let first = originals[0];
    assert_accepted(first);
    for a in &answers {
        // The first request takes milliseconds, far below the 10 s a retry waits for it.
        assert_eq!(a.status, 202, "{a}");
        assert_eq!(a.text, first.text, "every retry gets the first answer: {a}");
    }
    let posts = app.log_events(AggregateType::Post).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].event_id.to_string(), first.str("event_id"));
    second.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_scoped_to_the_caller() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let body = json!({"text": "same words, same key"});
    let post = |token: &str, body: &serde_json::Value| {
        app.call(Method::POST, "/v1/posts").token(token).key("shared-key").json(body).send()
    };
    let a = post(&alice.token, &body).await;
    let b = post(&bob.token, &body).await;
    assert_accepted(&a);
    assert_accepted(&b);
    assert!(!b.replayed(), "bob's request is his own, not a replay of alice's: {b}");
    assert_ne!(a.str("post_id"), b.str("post_id"));
    // Another body under the same key is fine for a third user too.
    let carol = app.user("carol").await;
    let c = post(&carol.token, &json!({"text": "different"})).await;
    assert!(assert_accepted(&c).event_id.is_some() && !c.replayed(), "{c}");

    let posts = app.log_events(AggregateType::Post).await;
    let mut authors: Vec<String> = posts.iter().map(|e| e.to_raw().unwrap().payload["author_id"].to_string()).collect();
    authors.sort();
    let mut expected: Vec<String> = [&alice.id, &bob.id, &carol.id].iter().map(|id| format!("\"{id}\"")).collect();
    expected.sort();
    assert_eq!(authors, expected, "one post each");
    app.shutdown().await;
}
