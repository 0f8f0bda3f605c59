//! The contract's invariants under concurrency over two command-api instances: one handle per
//! user, a command never recorded twice, follows are a set; and they still hold after the
//! command-api is restarted and Redis loses everything, because their truth is in MongoDB.
//!
//! Runs on a stack instance of its own: `FLUSHALL` there disturbs no other test.

use crate::helpers::{
    Answer, OwnStack, TestApp, assert_accepted, assert_problem, eventually, flush_redis, of_type, unique_handle,
};
use agora_schemas::{AggregateType, Envelope};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// `n` registrations of `handle` at once, alternating between `urls`.
async fn register_race(app: &TestApp, urls: &[String], handle: &str, n: usize) -> Vec<Answer> {
    futures::future::join_all((0..n).map(|i| app.register_handle(&urls[i % urls.len()], handle))).await
}

/// Ten `POST /v1/posts` with one `Idempotency-Key` at once, alternating between `urls`.
async fn post_race(app: &TestApp, urls: &[String], token: &str, body: &serde_json::Value) -> Vec<Answer> {
    futures::future::join_all((0..10).map(|i| {
        app.call(Method::POST, "/v1/posts").on(&urls[i % urls.len()]).token(token).key("retry-storm").json(body).send()
    }))
    .await
}

/// `n` identical `PUT <path>` at once, alternating between `urls`.
async fn follow_race(app: &TestApp, urls: &[String], token: &str, path: &str, n: usize) -> Vec<Answer> {
    futures::future::join_all((0..n).map(|i| app.call(Method::PUT, path).on(&urls[i % urls.len()]).token(token).send()))
        .await
}

/// `n` moves for the same ply at once, alternating between `urls` and among `ucis`.
async fn move_race(app: &TestApp, urls: &[String], token: &str, game: &str, ply: u32, ucis: &[&str]) -> Vec<Answer> {
    let path = format!("/v1/games/{game}/moves");
    futures::future::join_all((0..50).map(|i| {
        let body = json!({"uci": ucis[i % ucis.len()], "ply": ply});
        app.call(Method::POST, &path).on(&urls[i % urls.len()]).token(token).json(&body).send()
    }))
    .await
}

/// Exactly one 202 among the moves; every other answer a 409 problem (stale ply).
fn one_move(answers: &[Answer]) {
    let won = answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(won, 1, "one move per ply: {answers:#?}");
    for a in answers.iter().filter(|a| a.status != 202) {
        assert_problem(a, 409);
    }
}

/// The plies of the game's move events in the log, in order.
fn plies(games: &[Envelope]) -> Vec<u64> {
    of_type(games, "game.move_made").iter().map(|e| e.to_raw().unwrap().payload["ply"].as_u64().unwrap()).collect()
}

/// Exactly one 201; every other answer a 409 problem. Returns the winner's user id.
fn one_winner(answers: &[Answer], handle: &str) -> String {
    let won: Vec<_> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(won.len(), 1, "one registration of {handle} wins: {answers:#?}");
    for a in answers.iter().filter(|a| a.status != 201) {
        assert_problem(a, 409);
    }
    won[0].str("user_id")
}

fn registrations_of<'a>(users: &'a [Envelope], handle: &str) -> Vec<&'a Envelope> {
    of_type(users, "user.registered").into_iter().filter(|e| e.to_raw().unwrap().payload["handle"] == handle).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_under_races_and_after_a_restart_and_a_redis_flush() {
    let own = OwnStack::up("races");
    let mut app = TestApp::spawn_on(own.stack()).await;
    let second = app.start_command_api().await;
    for base in [&app.command, &second.url] {
        eventually(Duration::from_secs(30), "command-api ready", || async {
            (app.ready(base).await.0 == 200).then_some(())
        })
        .await;
    }
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let urls = vec![app.command.clone(), second.url.clone()];

    // One handle, twenty registrations at once.
    let handle = unique_handle("race");
    let winner = one_winner(&register_race(&app, &urls, &handle, 20).await, &handle);

    // One Idempotency-Key, ten retries at once.
    let post_body = json!({"text": "one post despite ten retries"});
    let posted = post_race(&app, &urls, &alice.token, &post_body).await;
    let first_post = posted.iter().find(|a| !a.replayed()).unwrap_or_else(|| panic!("no first answer: {posted:#?}"));
    assert_accepted(first_post);
    for a in &posted {
        assert_eq!((a.status, a.text.as_str()), (202, first_post.text.as_str()), "{a}");
    }

    // One follow, thirty times at once: a set.
    let follow = format!("/v1/follows/{}", alice.id);
    let follows = follow_race(&app, &urls, &bob.token, &follow, 30).await;
    let changed: Vec<_> = follows.iter().filter(|a| assert_accepted(a).event_id.is_some()).collect();
    assert_eq!(changed.len(), 1, "one follow changes something, the rest are no-ops: {follows:#?}");
    for a in &follows {
        assert_eq!(assert_accepted(a).version, 1, "every answer sees the one edge: {a}");
    }

    // One game, fifty moves for its first ply at once (several different legal moves).
    let challenged = app
        .call(Method::POST, "/v1/games")
        .token(&alice.token)
        .json(&json!({"opponent_id": bob.id, "color": "white"}))
        .send()
        .await;
    assert_accepted(&challenged);
    let game = challenged.str("game_id");
    let accepted = app.call(Method::POST, &format!("/v1/games/{game}/accept")).token(&bob.token).send().await;
    assert_accepted(&accepted);
    one_move(&move_race(&app, &urls, &alice.token, &game, 0, &["e2e4", "d2d4", "g1f3", "c2c4", "e2e3"]).await);
    assert_eq!(plies(&app.log_events(AggregateType::Game).await), vec![0]);

    let users = app.log_events(AggregateType::User).await;
    let regs = registrations_of(&users, &handle);
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0].aggregate_id().to_string(), winner);
    let posts = app.log_events(AggregateType::Post).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    let edges = app.log_events(AggregateType::Follow).await;
    assert_eq!(of_type(&edges, "follow.created").len(), 1, "{edges:?}");

    // Restart both instances and lose all of Redis.
    second.stop().await;
    let before = app.command.clone();
    app.restart_command_api().await;
    assert_ne!(app.command, before);
    assert_eq!(app.command_urls, vec![before, app.command.clone()]);
    let second = app.start_command_api().await;
    flush_redis(&own.stack().redis).await;
    let urls = vec![app.command.clone(), second.url.clone()];

    // The handle is still taken, by the same user, on both instances.
    let again = register_race(&app, &urls, &handle, 6).await;
    for a in &again {
        assert_problem(a, 409);
    }
    // The key still answers with the first answer, and appends nothing.
    for a in post_race(&app, &urls, &alice.token, &post_body).await {
        assert_eq!((a.status, a.text.as_str(), a.replayed()), (202, first_post.text.as_str(), true), "{a}");
    }
    // The edge is still there.
    for a in follow_race(&app, &urls, &bob.token, &follow, 6).await {
        let found = assert_accepted(&a);
        assert_eq!((found.event_id, found.version), (None, 1), "{a}");
    }
    // The game is where it was: the next ply is 1, and again only one move of fifty wins.
    for a in move_race(&app, &urls, &alice.token, &game, 0, &["d2d4"]).await {
        assert_problem(&a, 409);
    }
    one_move(&move_race(&app, &urls, &bob.token, &game, 1, &["e7e5", "c7c5", "g8f6"]).await);
    assert_eq!(plies(&app.log_events(AggregateType::Game).await), vec![0, 1]);
    // And a new handle race still has one winner.
    let fresh = unique_handle("fresh");
    let fresh_winner = one_winner(&register_race(&app, &urls, &fresh, 20).await, &fresh);

    let users = app.log_events(AggregateType::User).await;
    assert_eq!(registrations_of(&users, &handle).len(), 1, "{users:?}");
    let fresh_regs = registrations_of(&users, &fresh);
    assert_eq!(fresh_regs.len(), 1, "{users:?}");
    assert_eq!(fresh_regs[0].aggregate_id().to_string(), fresh_winner);
    assert_eq!(users.len(), 4, "alice, bob and the two race winners: {users:?}");
    assert_eq!(app.log_count(AggregateType::Post).await, 1);
    assert_eq!(app.log_count(AggregateType::Follow).await, 1);

    second.stop().await;
    app.shutdown().await;
}
