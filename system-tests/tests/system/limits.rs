//! Rate limits: one budget per user (or per handle, or per client) shared by every command-api
//! instance, refused with 429, `Retry-After` and problem JSON.

use crate::helpers::{PASSWORD, Stack, TestApp, assert_accepted, assert_problem, eventually, unique_handle};
use agora_schemas::AggregateType;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_writes_over_the_limit_is_refused_across_instances() {
    let app = TestApp::spawn_with(Stack::local(), &[("AGORA_RATE_LIMIT_WRITES", "5/1m")]).await;
    let second = app.start_command_api().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    let urls = [app.command.clone(), second.url.clone()];
    let answers = futures::future::join_all((0..8).map(|i| {
        let body = json!({ "text": format!("burst {i}") });
        app.call(Method::POST, "/v1/posts").on(&urls[i % 2]).token(&alice.token).json(&body).send()
    }))
    .await;
    let accepted: Vec<_> = answers.iter().filter(|a| a.status == 202).collect();
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!((accepted.len(), limited.len()), (5, 3), "five of eight across both instances: {answers:#?}");
    for a in limited {
        assert_problem(a, 429);
        // Five at once, then one every 12 s: the next one is at most 12 s away.
        let secs = a.retry_after().unwrap();
        assert!((1..=12).contains(&secs), "Retry-After {secs}: {a}");
    }
    for a in accepted {
        assert_accepted(a);
    }

    // Alice's other writes wait too, on either instance; her messages have a budget of their own.
    let follow = format!("/v1/follows/{}", bob.id);
    assert_problem(&app.call(Method::PUT, &follow).on(&second.url).token(&alice.token).send().await, 429);
    assert_problem(&app.patch_json("/v1/me", &alice.token, &json!({"bio": "limited"})).await, 429);
    let dm = app.post_json("/v1/messages", &alice.token, &json!({"to": bob.id, "text": "still here"})).await;
    assert_accepted(&dm);
    // Bob is not limited by alice's burst.
    for i in 0..3 {
        assert_accepted(&app.post(&bob.token, &format!("bob {i}")).await);
    }

    let posts = app.log_events(AggregateType::Post).await;
    let by =
        |id: &str| posts.iter().filter(|e| e.metadata.actor_id.map(|a| a.to_string()).as_deref() == Some(id)).count();
    assert_eq!((by(&alice.id), by(&bob.id)), (5, 3), "{posts:?}");
    assert_eq!(app.log_count(AggregateType::Follow).await, 0);
    second.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_are_limited_per_handle_and_successes_do_not_count() {
    let app = TestApp::spawn_with(Stack::local(), &[("AGORA_RATE_LIMIT_LOGIN_FAILURES", "3/15m")]).await;
    let second = app.start_command_api().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let login = |base: &str, password: &str| {
        let body = json!({"handle": alice.handle, "password": password});
        app.call(Method::POST, "/v1/auth/login").on(base).json(&body).send()
    };

    // Successes around the failures do not count: two failures, a success, a third failure.
    assert_eq!(login(&app.command, PASSWORD).await.status, 200);
    assert_problem(&login(&app.command, "wrong one").await, 401);
    assert_problem(&login(&second.url, "wrong two").await, 401);
    let ok = login(&second.url, PASSWORD).await;
    assert_eq!((ok.status, ok.str("user_id")), (200, alice.id.clone()), "{ok}");
    assert_problem(&login(&app.command, "wrong three").await, 401);

    // The fourth attempt is refused even with the right password, on either instance.
    for base in [&app.command, &second.url] {
        let refused = login(base, PASSWORD).await;
        assert_problem(&refused, 429);
        assert!(refused.body.get("token").is_none(), "{refused}");
    }
    // Another handle is not affected, and alice's token keeps working for commands.
    let bob_login = app.login(&bob.handle, PASSWORD).await;
    assert_eq!(bob_login.status, 200, "{bob_login}");
    assert_accepted(&app.post(&alice.token, "locked out of login, not out of posting").await);
    // A handle nobody has is limited the same way (a limit must not tell which handles exist).
    let ghost = unique_handle("ghost");
    for _ in 0..3 {
        assert_problem(&app.login(&ghost, "guess").await, 401);
    }
    assert_problem(&app.login(&ghost, "guess").await, 429);
    second.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_routes_are_limited_per_client() {
    let app = TestApp::spawn_with(Stack::local(), &[("AGORA_RATE_LIMIT_AUTH", "3/1m")]).await;
    let second = app.start_command_api().await;
    let alice = app.user("alice").await;
    assert_eq!(app.register_handle(&second.url, &unique_handle("bob")).await.status, 201);
    assert_eq!(app.login(&alice.handle, PASSWORD).await.status, 200);
    // Three auth requests from this client so far; the fourth, on either route, waits.
    let handle = unique_handle("carol");
    assert_problem(&app.register_handle(&second.url, &handle).await, 429);
    assert_problem(&app.login(&alice.handle, PASSWORD).await, 429);
    // Signed-in commands spend the writes budget, not this one.
    assert_accepted(&app.post(&alice.token, "posting is fine").await);
    assert_eq!(app.log_count(AggregateType::User).await, 2);
    second.stop().await;
    app.shutdown().await;
}

/// A 429 accepted nothing, so a retry after `Retry-After` with the same `Idempotency-Key` must
/// be decided afresh rather than answered with the stored 429 for the next 24 h.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_request_can_be_retried_with_its_idempotency_key() {
    let app = TestApp::spawn_with(Stack::local(), &[("AGORA_RATE_LIMIT_WRITES", "1/2s")]).await;
    let alice = app.user("alice").await;
    assert_accepted(&app.post(&alice.token, "the first").await);
    let body = json!({"text": "the retried one"});
    let send = || app.call(Method::POST, "/v1/posts").token(&alice.token).key("retry-me").json(&body).send();
    let refused = send().await;
    assert_problem(&refused, 429);
    let retry_after = refused.retry_after().unwrap();
    assert!(retry_after <= 2, "{refused}");

    let refused_at = Instant::now();
    let accepted = eventually(Duration::from_secs(8), "the retry after Retry-After to be accepted", || async {
        let a = send().await;
        assert!(
            !(a.replayed() && refused_at.elapsed() > Duration::from_secs(retry_after + 1)),
            "{:?} after a 429 with Retry-After {retry_after}, the retry still gets the stored 429: {a}",
            refused_at.elapsed()
        );
        (a.status == 202).then_some(a)
    })
    .await;
    assert!(assert_accepted(&accepted).event_id.is_some(), "{accepted}");
    assert_eq!(app.log_count(AggregateType::Post).await, 2);
    app.shutdown().await;
}
