//! With Kafka down, commands answer 503 with `Retry-After` within the delivery timeout, and
//! nothing of them appears in the log later; once Kafka is back, the same commands go through,
//! including those whose client gave up waiting during the outage.
//!
//! Each test runs on a stack instance of its own, so stopping its Kafka disturbs no other test.

use crate::helpers::{
    OwnStack, TestApp, User, assert_accepted, assert_problem, eventually, of_type, try_until_answer, unique_handle,
};
use agora_schemas::{AggregateType, FollowId};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// The delivery timeout the test sets, and the margin it allows on top.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_secs(1);

/// The system on `own` with the test's delivery timeout, ready, with two registered users.
async fn ready_app_with_two_users(own: &OwnStack) -> (TestApp, User, User) {
    let app = TestApp::spawn_with(own.stack(), &[("AGORA_KAFKA_DELIVERY_TIMEOUT_MS", "3000")]).await;
    eventually(Duration::from_secs(30), "command-api ready", || async {
        (app.ready(&app.command).await.0 == 200).then_some(())
    })
    .await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    (app, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_kafka_down_commands_are_refused_in_time_and_leave_nothing_in_the_log() {
    let own = OwnStack::up("kafka-down");
    let (app, alice, bob) = ready_app_with_two_users(&own).await;
    let follow = format!("/v1/follows/{}", alice.id);

    own.stop("kafka");
    let lost = format!("written while kafka was down {}", uuid::Uuid::new_v4());
    let keyed = json!({"text": "retried with its key after the outage"});
    let handle = unique_handle("dave");
    let refused = tokio::join!(
        app.post(&alice.token, &lost),
        app.put(&follow, &bob.token),
        app.register_handle(&app.command, &handle),
        app.call(Method::POST, "/v1/posts").token(&alice.token).key("outage").json(&keyed).send(),
    );
    // 503 now; how long each took is checked at the end, after what matters more.
    let refused = [refused.0, refused.1, refused.2, refused.3];
    for a in &refused {
        assert_problem(a, 503);
    }

    own.start("kafka");
    eventually(Duration::from_secs(60), "command-api ready again", || async {
        (app.ready(&app.command).await.0 == 200).then_some(())
    })
    .await;

    // Nothing of the refused commands is in the log.
    let posts = app.log_events(AggregateType::Post).await;
    assert!(posts.is_empty(), "no post was accepted: {posts:?}");
    let edges = app.log_events(AggregateType::Follow).await;
    assert!(edges.is_empty(), "no follow was accepted: {edges:?}");
    let users = app.log_events(AggregateType::User).await;
    assert_eq!(of_type(&users, "user.registered").len(), 2, "only alice and bob: {users:?}");

    // The same commands now go through, as if the first tries had never happened.
    let reg = app.register_handle(&app.command, &handle).await;
    assert_eq!(reg.status, 201, "the refused registration gave its handle back: {reg}");
    let followed = assert_accepted(&app.put(&follow, &bob.token).await);
    assert_eq!((followed.event_id.is_some(), followed.version), (true, 1), "{}", followed.body);
    let retried = app.call(Method::POST, "/v1/posts").token(&alice.token).key("outage").json(&keyed).send().await;
    assert!(assert_accepted(&retried).event_id.is_some() && !retried.replayed(), "a 503 is not replayed: {retried}");
    let after = app.post(&alice.token, "after the outage").await;
    assert_accepted(&after);

    let posts = app.log_events(AggregateType::Post).await;
    let texts: Vec<String> =
        posts.iter().map(|e| e.to_raw().unwrap().payload["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(!texts.contains(&lost), "{texts:?}");
    let edges = app.log_events(AggregateType::Follow).await;
    assert_eq!(edges.len(), 1, "{edges:?}");
    let edge = FollowId::of(bob.id.parse().unwrap(), alice.id.parse().unwrap()).0;
    assert_eq!(
        (edges[0].event_type(), edges[0].aggregate_id(), edges[0].aggregate_version),
        ("follow.created", edge, 1)
    );
    let users = app.log_events(AggregateType::User).await;
    assert_eq!(users.len(), 3, "{users:?}");

    // Each refusal came within the delivery timeout, give or take a second.
    let late: Vec<String> =
        refused.iter().filter(|a| a.took > DELIVERY_TIMEOUT + MARGIN).map(|a| a.to_string()).collect();
    assert!(late.is_empty(), "503s later than {DELIVERY_TIMEOUT:?} + {MARGIN:?}:\n{}", late.join("\n"));
    app.shutdown().await;
}

/// A client that gives up on a command while Kafka is down (its HTTP client timed out and
/// closed the connection) must be able to send it again once Kafka is back: nothing of the
/// abandoned request may stay half done, holding its handle, its aggregate or its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_abandoned_by_its_client_during_an_outage_can_be_sent_again_after_it() {
    let own = OwnStack::up("kafka-abandoned");
    let (app, alice, bob) = ready_app_with_two_users(&own).await;
    let follow = format!("/v1/follows/{}", alice.id);
    let keyed = json!({"text": "sent by an impatient client"});
    let handle = unique_handle("erin");
    let registration = json!({"handle": handle, "display_name": "Erin", "password": crate::helpers::PASSWORD});

    own.stop("kafka");
    // Longer than any work before the append, shorter than the delivery timeout.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let gave_up = tokio::join!(
        impatient.put(format!("{}{follow}", app.command)).bearer_auth(&bob.token).send(),
        impatient
            .post(format!("{}/v1/posts", app.command))
            .bearer_auth(&alice.token)
            .header("idempotency-key", "impatient")
            .json(&keyed)
            .send(),
        impatient.post(format!("{}/v1/auth/register", app.command)).json(&registration).send(),
    );
    for outcome in [gave_up.0, gave_up.1, gave_up.2] {
        assert!(outcome.as_ref().is_err_and(reqwest::Error::is_timeout), "the client should give up: {outcome:?}");
    }

    own.start("kafka");
    eventually(Duration::from_secs(60), "command-api ready again", || async {
        (app.ready(&app.command).await.0 == 200).then_some(())
    })
    .await;

    // Each of them goes through again (all three are tried before any is judged).
    let within = Duration::from_secs(20);
    let (followed, posted, registered) = tokio::join!(
        try_until_answer(within, |a| a.status == 202, || app.put(&follow, &bob.token)),
        try_until_answer(
            within,
            |a| a.status == 202,
            || app.call(Method::POST, "/v1/posts").token(&alice.token).key("impatient").json(&keyed).send()
        ),
        try_until_answer(
            within,
            |a| a.status == 201,
            || app.call(Method::POST, "/v1/auth/register").json(&registration).send()
        ),
    );
    let stuck: Vec<String> = [&followed, &posted, &registered]
        .into_iter()
        .filter_map(|r| r.as_ref().err().map(|last| format!("still refused after {within:?}: {last}")))
        .collect();
    assert!(stuck.is_empty(), "abandoned commands left something behind:\n{}", stuck.join("\n"));
    let (followed, posted, registered) = (followed.unwrap(), posted.unwrap(), registered.unwrap());
    assert!(assert_accepted(&followed).event_id.is_some(), "{followed}");
    assert!(assert_accepted(&posted).event_id.is_some() && !posted.replayed(), "{posted}");

    assert_eq!(app.log_count(AggregateType::Follow).await, 1);
    assert_eq!(app.log_count(AggregateType::Post).await, 1);
    let users = app.log_events(AggregateType::User).await;
    let erin: Vec<_> = of_type(&users, "user.registered")
        .into_iter()
        .filter(|e| e.to_raw().unwrap().payload["handle"] == handle.as_str())
        .collect();
    assert_eq!(erin.len(), 1, "{users:?}");
    assert_eq!(erin[0].aggregate_id().to_string(), registered.str("user_id"));
    app.shutdown().await;
}
