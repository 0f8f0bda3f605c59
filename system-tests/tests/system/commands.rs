//! Every command once, end to end (its 202 and its event in the log), the commands that change
//! nothing, and each error status the command API answers, as a client sees them.

use crate::helpers::{
    Accepted, Answer, LogRecord, PASSWORD, TestApp, assert_accepted, assert_invalid, assert_problem, of_type,
    sign_token, token_positions, unique_handle, unix_now,
};
use agora_schemas::{AggregateType, ConversationId, FollowId, LikeId, UserId};
use reqwest::Method;
use serde_json::{Value, json};

fn user_id(s: &str) -> UserId {
    s.parse().unwrap()
}

/// The payload of an event as its JSON.
fn payload(r: &LogRecord) -> Value {
    r.envelope.to_raw().unwrap().payload
}

/// Finds the event a 202 announced and checks it is what the command should have recorded:
/// its type, aggregate, version and actor, at the position the answer named.
fn assert_logged<'a>(
    records: &'a [LogRecord],
    accepted: &Accepted,
    topic: &str,
    event_type: &str,
    actor: &str,
) -> &'a LogRecord {
    let event_id = accepted.event_id.as_deref().unwrap_or_else(|| panic!("no event_id: {}", accepted.body));
    let found: Vec<&LogRecord> = records.iter().filter(|r| r.envelope.event_id.to_string() == event_id).collect();
    assert_eq!(found.len(), 1, "event {event_id} ({event_type}) should be in {topic} exactly once: {found:?}");
    let r = found[0];
    let e = &r.envelope;
    assert_eq!(e.event_type(), event_type, "{}", accepted.body);
    assert_eq!(e.aggregate_id().to_string(), accepted.aggregate_id, "{}", accepted.body);
    assert_eq!(e.aggregate_version, accepted.version, "{}", accepted.body);
    assert_eq!(e.metadata.actor_id.map(|a| a.to_string()).as_deref(), Some(actor), "{}", accepted.body);
    assert_eq!(accepted.position, Some((topic.to_owned(), r.partition, r.offset)), "{}", accepted.body);
    assert_eq!(
        token_positions(&accepted.consistency_token),
        vec![(topic.to_owned(), r.partition, r.offset)],
        "the consistency token covers the event: {}",
        accepted.body
    );
    r
}

fn topic(app: &TestApp, aggregate: AggregateType) -> String {
    agora_schemas::aggregate::Topics::new(app.prefix.clone()).of(aggregate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_is_accepted_and_recorded_once() {
    let app = TestApp::spawn().await;

    // Register: 201 with the new id, a working token and a consistency token.
    let carol_handle = unique_handle("carol");
    let reg = app.register_handle(&app.command, &carol_handle).await;
    assert_eq!(reg.status, 201, "{reg}");
    let carol = reg.str("user_id");
    assert!(uuid::Uuid::try_parse(&carol).is_ok(), "{reg}");
    assert!(!reg.str("token").is_empty() && !reg.str("consistency_token").is_empty(), "{reg}");
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    // Login: 200 with the same user id and a token that works.
    let login = app.login(&alice.handle, PASSWORD).await;
    assert_eq!(login.status, 200, "{login}");
    assert_eq!(login.str("user_id"), alice.id);
    let alice_token = login.str("token");

    let profile = assert_accepted(&app.patch_json("/v1/me", &alice_token, &json!({"bio": "chess & cats"})).await);
    assert_eq!((profile.aggregate_id.as_str(), profile.version), (alice.id.as_str(), 2));

    let created = app.post(&alice.token, "first post ✓").await;
    let post = assert_accepted(&created);
    let post_id = created.str("post_id");
    assert_eq!((post.aggregate_id.as_str(), post.version), (post_id.as_str(), 1));

    let like_id = LikeId::of(post_id.parse().unwrap(), user_id(&bob.id)).0.to_string();
    let like = assert_accepted(&app.put(&format!("/v1/posts/{post_id}/like"), &bob.token).await);
    assert_eq!((like.aggregate_id.as_str(), like.version), (like_id.as_str(), 1));
    let unlike = assert_accepted(&app.delete(&format!("/v1/posts/{post_id}/like"), &bob.token).await);
    assert_eq!((unlike.aggregate_id.as_str(), unlike.version), (like_id.as_str(), 2));

    let commented = app.post_json(&format!("/v1/posts/{post_id}/comments"), &bob.token, &json!({"text": "nice"})).await;
    let comment = assert_accepted(&commented);
    let comment_id = commented.str("comment_id");
    assert!(uuid::Uuid::try_parse(&comment_id).is_ok(), "{commented}");
    assert_eq!((comment.aggregate_id.as_str(), comment.version), (post_id.as_str(), 2));

    let edge = FollowId::of(user_id(&bob.id), user_id(&alice.id)).0.to_string();
    let follow = assert_accepted(&app.put(&format!("/v1/follows/{}", alice.id), &bob.token).await);
    assert_eq!((follow.aggregate_id.as_str(), follow.version), (edge.as_str(), 1));
    let unfollow = assert_accepted(&app.delete(&format!("/v1/follows/{}", alice.id), &bob.token).await);
    assert_eq!((unfollow.aggregate_id.as_str(), unfollow.version), (edge.as_str(), 2));

    let sent = app.post_json("/v1/messages", &bob.token, &json!({"to": alice.id, "text": "hi alice"})).await;
    let message = assert_accepted(&sent);
    let conversation = ConversationId::between(user_id(&bob.id), user_id(&alice.id)).0.to_string();
    assert_eq!(sent.str("conversation_id"), conversation);
    let message_id = sent.str("message_id");
    assert!(uuid::Uuid::try_parse(&message_id).is_ok(), "{sent}");
    assert_eq!((message.aggregate_id.as_str(), message.version), (conversation.as_str(), 1));

    let read = assert_accepted(
        &app.post_json(&format!("/v1/conversations/{conversation}/read"), &alice.token, &json!({})).await,
    );
    assert_eq!((read.aggregate_id.as_str(), read.version), (conversation.as_str(), 2));

    // Notification read marks: without a body, and up to a given id.
    let all = assert_accepted(&app.call(Method::POST, "/v1/notifications/read").token(&alice.token).send().await);
    assert_eq!((all.aggregate_id.as_str(), all.version), (alice.id.as_str(), 1));
    let up_to = uuid::Uuid::new_v4().to_string();
    let some = assert_accepted(&app.post_json("/v1/notifications/read", &alice.token, &json!({"up_to": up_to})).await);
    assert_eq!((some.aggregate_id.as_str(), some.version), (alice.id.as_str(), 2));

    let deleted = assert_accepted(&app.delete(&format!("/v1/posts/{post_id}"), &alice.token).await);
    assert_eq!((deleted.aggregate_id.as_str(), deleted.version), (post_id.as_str(), 3));

    // The log, topic by topic: exactly these events, each where its answer said.
    let users = app.log_records(AggregateType::User).await;
    assert_eq!(users.len(), 4, "three registrations and one profile update: {users:?}");
    let registered = of_type(&users.iter().map(|r| r.envelope.clone()).collect::<Vec<_>>(), "user.registered")
        .into_iter()
        .map(|e| e.to_raw().unwrap().payload["handle"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    for h in [&carol_handle, &alice.handle, &bob.handle] {
        assert_eq!(registered.iter().filter(|r| *r == h).count(), 1, "one user.registered for {h}: {registered:?}");
    }
    let carol_event = users.iter().find(|r| r.envelope.aggregate_id().to_string() == carol).unwrap();
    assert_eq!(carol_event.envelope.aggregate_version, 1);
    assert_eq!(carol_event.envelope.metadata.actor_id.map(|a| a.to_string()), Some(carol.clone()));
    assert_eq!(
        token_positions(&reg.str("consistency_token")),
        vec![(topic(&app, AggregateType::User), carol_event.partition, carol_event.offset)],
        "the registration's consistency token names its event"
    );
    let raw = String::from_utf8(carol_event.envelope.to_json().unwrap()).unwrap();
    assert!(!raw.contains(PASSWORD) && !raw.contains("argon2"), "a secret in an event: {raw}");
    let r = assert_logged(&users, &profile, &topic(&app, AggregateType::User), "user.profile_updated", &alice.id);
    assert_eq!(payload(r)["bio"], "chess & cats");

    let posts = app.log_records(AggregateType::Post).await;
    assert_eq!(posts.len(), 3, "{posts:?}");
    let t = topic(&app, AggregateType::Post);
    let r = assert_logged(&posts, &post, &t, "post.created", &alice.id);
    assert_eq!(
        (payload(r)["text"].as_str(), payload(r)["author_id"].as_str()),
        (Some("first post ✓"), Some(&*alice.id))
    );
    let r = assert_logged(&posts, &comment, &t, "post.comment_added", &bob.id);
    assert_eq!(payload(r)["comment_id"], comment_id.as_str());
    assert_eq!(payload(r)["text"], "nice");
    assert_logged(&posts, &deleted, &t, "post.deleted", &alice.id);

    let likes = app.log_records(AggregateType::Like).await;
    assert_eq!(likes.len(), 2, "{likes:?}");
    let t = topic(&app, AggregateType::Like);
    let r = assert_logged(&likes, &like, &t, "like.added", &bob.id);
    assert_eq!(payload(r)["post_author_id"], alice.id.as_str());
    assert_logged(&likes, &unlike, &t, "like.removed", &bob.id);

    let follows = app.log_records(AggregateType::Follow).await;
    assert_eq!(follows.len(), 2, "{follows:?}");
    let t = topic(&app, AggregateType::Follow);
    let r = assert_logged(&follows, &follow, &t, "follow.created", &bob.id);
    assert_eq!(
        (payload(r)["follower_id"].as_str(), payload(r)["followee_id"].as_str()),
        (Some(&*bob.id), Some(&*alice.id))
    );
    assert_logged(&follows, &unfollow, &t, "follow.removed", &bob.id);

    let conversations = app.log_records(AggregateType::Conversation).await;
    assert_eq!(conversations.len(), 2, "{conversations:?}");
    let t = topic(&app, AggregateType::Conversation);
    let r = assert_logged(&conversations, &message, &t, "message.sent", &bob.id);
    assert_eq!(payload(r)["message_id"], message_id.as_str());
    assert_eq!((payload(r)["to"].as_str(), payload(r)["text"].as_str()), (Some(&*alice.id), Some("hi alice")));
    let r = assert_logged(&conversations, &read, &t, "conversation.read", &alice.id);
    assert_eq!(payload(r)["up_to"], message_id.as_str());

    let inbox = app.log_records(AggregateType::Inbox).await;
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    let t = topic(&app, AggregateType::Inbox);
    let r = assert_logged(&inbox, &all, &t, "inbox.notifications_read", &alice.id);
    assert!(payload(r).get("up_to").is_none_or(Value::is_null), "{:?}", payload(r));
    let r = assert_logged(&inbox, &some, &t, "inbox.notifications_read", &alice.id);
    assert_eq!(payload(r)["up_to"], up_to.as_str());

    app.shutdown().await;
}

/// A no-op: 202, no event, no position, and the version and token of the state it found.
fn assert_no_op(a: &Answer, aggregate_id: &str, version: u64, found: Option<&Accepted>) {
    let noop = assert_accepted(a);
    assert_eq!(noop.event_id, None, "{a}");
    assert_eq!((noop.aggregate_id.as_str(), noop.version), (aggregate_id, version), "{a}");
    let covered = token_positions(&noop.consistency_token);
    match found {
        Some(last) => {
            let at = last.position.clone().unwrap();
            assert!(
                covered.iter().any(|(t, p, o)| (t, *p) == (&at.0, at.1) && *o >= at.2),
                "the no-op's consistency token should cover {at:?}: {a}"
            );
        }
        None => assert!(covered.is_empty(), "nothing to cover: {a}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_that_change_nothing_answer_null_and_append_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    let created = app.post(&alice.token, "to be liked").await;
    assert_accepted(&created);
    let post_id = created.str("post_id");
    let like_path = format!("/v1/posts/{post_id}/like");

    // Liking twice; unliking what one never liked.
    let liked = assert_accepted(&app.put(&like_path, &bob.token).await);
    let bob_like = LikeId::of(post_id.parse().unwrap(), user_id(&bob.id)).0.to_string();
    assert_no_op(&app.put(&like_path, &bob.token).await, &bob_like, 1, Some(&liked));
    let carol_like = LikeId::of(post_id.parse().unwrap(), user_id(&carol.id)).0.to_string();
    assert_no_op(&app.delete(&like_path, &carol.token).await, &carol_like, 0, None);

    // Following twice; unfollowing someone not followed.
    let followed = assert_accepted(&app.put(&format!("/v1/follows/{}", alice.id), &bob.token).await);
    let edge = FollowId::of(user_id(&bob.id), user_id(&alice.id)).0.to_string();
    assert_no_op(&app.put(&format!("/v1/follows/{}", alice.id), &bob.token).await, &edge, 1, Some(&followed));
    let carol_edge = FollowId::of(user_id(&carol.id), user_id(&alice.id)).0.to_string();
    assert_no_op(&app.delete(&format!("/v1/follows/{}", alice.id), &carol.token).await, &carol_edge, 0, None);

    // Deleting a deleted post, by its author.
    let deleted = assert_accepted(&app.delete(&format!("/v1/posts/{post_id}"), &alice.token).await);
    assert_eq!(deleted.version, 2);
    assert_no_op(&app.delete(&format!("/v1/posts/{post_id}"), &alice.token).await, &post_id, 2, Some(&deleted));

    // A profile "change" to what it already is, and an empty one.
    let registered = app.log_records(AggregateType::User).await;
    let alice_reg = registered.iter().find(|r| r.envelope.aggregate_id().to_string() == alice.id).unwrap();
    let reg = Accepted {
        event_id: Some(alice_reg.envelope.event_id.to_string()),
        aggregate_id: alice.id.clone(),
        version: 1,
        position: Some((topic(&app, AggregateType::User), alice_reg.partition, alice_reg.offset)),
        consistency_token: String::new(),
        body: Value::Null,
    };
    for body in [
        json!({"display_name": alice.handle}),
        json!({}),
        json!({"bio": ""}),
        json!({"display_name": alice.handle, "bio": ""}),
    ] {
        assert_no_op(&app.patch_json("/v1/me", &alice.token, &body).await, &alice.id, 1, Some(&reg));
    }

    // Reading a conversation with nothing new in it.
    let sent = app.post_json("/v1/messages", &bob.token, &json!({"to": alice.id, "text": "hello"})).await;
    assert_accepted(&sent);
    let conversation = sent.str("conversation_id");
    let read_path = format!("/v1/conversations/{conversation}/read");
    let read = assert_accepted(&app.post_json(&read_path, &alice.token, &json!({})).await);
    assert_eq!(read.version, 2);
    assert_no_op(&app.post_json(&read_path, &alice.token, &json!({})).await, &conversation, 2, Some(&read));

    // The log holds only the real changes.
    assert_eq!(app.log_count(AggregateType::Like).await, 1, "likes");
    assert_eq!(app.log_count(AggregateType::Follow).await, 1, "follows");
    assert_eq!(app.log_count(AggregateType::Post).await, 2, "posts: created, deleted");
    assert_eq!(app.log_count(AggregateType::User).await, 3, "users: three registrations");
    assert_eq!(app.log_count(AggregateType::Conversation).await, 2, "conversations: sent, read");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_400_for_malformed_json() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let cases: [(Method, &str, &str); 6] = [
        (Method::POST, "/v1/posts", r#"{"text": "unterminated"#),
        (Method::POST, "/v1/posts", r#"{"text": "a"} trailing"#),
        (Method::POST, "/v1/posts", "{text: 'single quotes'}"),
        (Method::PATCH, "/v1/me", r#"{"bio": "#),
        (Method::POST, "/v1/messages", r#"{"to": "#),
        (Method::POST, "/v1/auth/register", "not json at all"),
    ];
    for (method, path, body) in cases {
        let a = app.call(method, path).token(&alice.token).raw(Some("application/json"), body).send().await;
        assert_problem(&a, 400);
    }
    // Invalid UTF-8 inside a JSON string.
    let a = app
        .call(Method::POST, "/v1/posts")
        .token(&alice.token)
        .raw(Some("application/json"), b"{\"text\": \"\xff\xfe\"}".to_vec())
        .send()
        .await;
    assert_problem(&a, 400);
    assert_eq!(app.log_count(AggregateType::Post).await, 0);
    assert_eq!(app.log_count(AggregateType::User).await, 1, "only alice registered");
    app.shutdown().await;
}

/// Malformed JSON is a 400 wherever the parser first trips: a truncated body is not JSON even
/// when what came before the cut already had a wrong type.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_400_for_truncated_json_whatever_came_before_the_cut() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    for (path, body) in [("/v1/posts", r#"{"text": 5"#), ("/v1/messages", "[1, 2"), ("/v1/posts", r#"{"nope": "#)] {
        let a = app.call(Method::POST, path).token(&alice.token).raw(Some("application/json"), body).send().await;
        assert_problem(&a, 400);
    }
    assert_eq!(app.log_count(AggregateType::Post).await, 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_401_for_missing_invalid_and_expired_tokens() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let expired = app.expired_token(&alice.id);
    let other_secret = sign_token("not-the-secret", &alice.id, unix_now() + 3600);
    let not_a_user = app.token_expiring_at("alice", unix_now() + 3600);
    let bad: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("garbage", Some("Bearer garbage".to_owned())),
        ("three garbage segments", Some("Bearer not.a.jwt".to_owned())),
        ("expired a minute ago", Some(format!("Bearer {expired}"))),
        ("signed with another secret", Some(format!("Bearer {other_secret}"))),
        ("sub is not a user id", Some(format!("Bearer {not_a_user}"))),
        ("another scheme", Some(format!("Basic {}", alice.token))),
        ("empty bearer", Some("Bearer ".to_owned())),
    ];
    let commands: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, "/v1/posts".into(), Some(json!({"text": "hi"}))),
        (Method::PATCH, "/v1/me".into(), Some(json!({"bio": "x"}))),
        (Method::PUT, format!("/v1/follows/{}", bob.id), None),
        (Method::POST, "/v1/messages".into(), Some(json!({"to": bob.id, "text": "hi"}))),
        (Method::POST, "/v1/notifications/read".into(), None),
    ];
    for (what, header) in &bad {
        for (method, path, body) in &commands {
            let mut req = app.http.request(method.clone(), format!("{}{path}", app.command));
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let text = res.text().await.unwrap_or_default();
            let problem: Value = serde_json::from_str(&text).unwrap_or_default();
            assert_eq!(status, 401, "{what}: {method} {path}: {text}");
            assert!(ct.starts_with("application/problem+json"), "{what}: {ct}");
            assert_eq!(problem["status"], 401, "{text}");
            assert!(
                problem["type"].is_string() && problem["title"].is_string() && problem["detail"].is_string(),
                "{text}"
            );
        }
    }
    // The same commands with a good token are accepted, so the 401s came from the tokens.
    assert_accepted(&app.post(&alice.token, "hi").await);
    assert_accepted(&app.put(&format!("/v1/follows/{}", bob.id), &alice.token).await);
    // A wrong password is a 401 too.
    assert_problem(&app.login(&alice.handle, "wrong password").await, 401);
    assert_problem(&app.login(&unique_handle("nobody"), PASSWORD).await, 401);

    assert_eq!(app.log_count(AggregateType::Post).await, 1);
    assert_eq!(app.log_count(AggregateType::Follow).await, 1);
    assert_eq!(app.log_count(AggregateType::Conversation).await, 0);
    assert_eq!(app.log_count(AggregateType::Inbox).await, 0);
    assert_eq!(app.log_count(AggregateType::User).await, 2, "no profile update");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_403_when_deleting_another_users_post() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let created = app.post(&alice.token, "mine").await;
    assert_accepted(&created);
    let post_id = created.str("post_id");

    assert_problem(&app.delete(&format!("/v1/posts/{post_id}"), &bob.token).await, 403);
    // Still there: bob can like it, and nothing was deleted in the log.
    assert_accepted(&app.put(&format!("/v1/posts/{post_id}/like"), &bob.token).await);
    let posts = app.log_events(AggregateType::Post).await;
    assert!(of_type(&posts, "post.deleted").is_empty(), "{posts:?}");

    // Its author may delete it, and then bob still may not (deleted or not, it is not his).
    let deleted = assert_accepted(&app.delete(&format!("/v1/posts/{post_id}"), &alice.token).await);
    assert_eq!(deleted.version, 2);
    assert_problem(&app.delete(&format!("/v1/posts/{post_id}"), &bob.token).await, 403);
    assert_eq!(app.log_count(AggregateType::Post).await, 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_404_for_unknown_targets_and_conversations_of_others() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let sent = app.post_json("/v1/messages", &alice.token, &json!({"to": bob.id, "text": "between us"})).await;
    assert_accepted(&sent);
    let conversation = sent.str("conversation_id");
    let gone = app.post(&alice.token, "soon gone").await;
    let gone_id = gone.str("post_id");
    assert_accepted(&app.delete(&format!("/v1/posts/{gone_id}"), &alice.token).await);

    let text = json!({"text": "hello"});
    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("a conversation carol is not in", Method::POST, format!("/v1/conversations/{conversation}/read"), None),
        ("an unknown conversation", Method::POST, format!("/v1/conversations/{unknown}/read"), None),
        ("a malformed conversation id", Method::POST, "/v1/conversations/not-a-uuid/read".into(), None),
        ("following an unknown user", Method::PUT, format!("/v1/follows/{unknown}"), None),
        ("unfollowing an unknown user", Method::DELETE, format!("/v1/follows/{unknown}"), None),
        ("following a malformed id", Method::PUT, "/v1/follows/nobody".into(), None),
        ("following an unhyphenated id", Method::PUT, format!("/v1/follows/{}", bob.id.replace('-', "")), None),
        (
            "a message to an unknown user",
            Method::POST,
            "/v1/messages".into(),
            Some(json!({"to": unknown, "text": "hi"})),
        ),
        ("liking an unknown post", Method::PUT, format!("/v1/posts/{unknown}/like"), None),
        ("unliking an unknown post", Method::DELETE, format!("/v1/posts/{unknown}/like"), None),
        ("liking a malformed post id", Method::PUT, "/v1/posts/123/like".into(), None),
        ("liking a deleted post", Method::PUT, format!("/v1/posts/{gone_id}/like"), None),
        ("commenting an unknown post", Method::POST, format!("/v1/posts/{unknown}/comments"), Some(text.clone())),
        ("commenting a deleted post", Method::POST, format!("/v1/posts/{gone_id}/comments"), Some(text.clone())),
        ("commenting a malformed post id", Method::POST, "/v1/posts/x/comments".into(), Some(text)),
        ("deleting an unknown post", Method::DELETE, format!("/v1/posts/{unknown}"), None),
        ("deleting a malformed post id", Method::DELETE, "/v1/posts/x".into(), None),
        ("following a post id as a user", Method::PUT, format!("/v1/follows/{gone_id}"), None),
    ];
    for (what, method, path, body) in cases {
        let mut call = app.call(method, &path).token(&carol.token);
        if let Some(b) = &body {
            call = call.json(b);
        }
        let a = call.send().await;
        assert_eq!(a.status, 404, "{what}: {a}");
        assert_problem(&a, 404);
    }
    // The participants may read it.
    assert_accepted(&app.post_json(&format!("/v1/conversations/{conversation}/read"), &bob.token, &json!({})).await);

    assert_eq!(app.log_count(AggregateType::Follow).await, 0);
    assert_eq!(app.log_count(AggregateType::Like).await, 0);
    assert_eq!(app.log_count(AggregateType::Post).await, 2, "created and deleted only");
    assert_eq!(app.log_count(AggregateType::Conversation).await, 2, "the message and bob's read");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_409_for_a_taken_handle() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let again = json!({"handle": alice.handle, "display_name": "Another Alice", "password": "another password"});
    let a = app.call(Method::POST, "/v1/auth/register").json(&again).send().await;
    assert_problem(&a, 409);
    assert!(a.body.get("user_id").is_none() && a.body.get("token").is_none(), "{a}");

    // The handle stays the first user's: their password logs in as them, the second does not.
    let login = app.login(&alice.handle, PASSWORD).await;
    assert_eq!((login.status, login.str("user_id")), (200, alice.id.clone()), "{login}");
    assert_problem(&app.login(&alice.handle, "another password").await, 401);
    let users = app.log_events(AggregateType::User).await;
    assert_eq!(users.len(), 1, "{users:?}");
    app.shutdown().await;
}

/// `{"text":"aaa…"}` of exactly `len` bytes.
fn post_body_of(len: usize) -> Vec<u8> {
    let body = format!(r#"{{"text":"{}"}}"#, "a".repeat(len - 11));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_413_for_a_body_over_64_kib() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let send = |bytes: Vec<u8>, key: Option<&str>| {
        let mut call = app.call(Method::POST, "/v1/posts").token(&alice.token).raw(Some("application/json"), bytes);
        if let Some(k) = key {
            call = call.key(k);
        }
        call.send()
    };
    // 64 KiB exactly is not over the limit: it gets as far as the text rule.
    assert_invalid(&send(post_body_of(64 * 1024), None).await, "text");
    assert_problem(&send(post_body_of(64 * 1024 + 1), None).await, 413);
    assert_problem(&send(post_body_of(64 * 1024 + 1), Some("big-one")).await, 413);
    let big = json!({"handle": unique_handle("big"), "display_name": "x".repeat(70_000), "password": PASSWORD});
    assert_problem(&app.call(Method::POST, "/v1/auth/register").json(&big).send().await, 413);
    let big_bio = json!({"bio": "b".repeat(70_000)});
    assert_problem(&app.patch_json("/v1/me", &alice.token, &big_bio).await, 413);

    assert_eq!(app.log_count(AggregateType::Post).await, 0);
    assert_eq!(app.log_count(AggregateType::User).await, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_415_for_a_body_that_is_not_json() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let body = br#"{"text":"hello"}"#;
    for content_type in [Some("text/plain"), None, Some("application/x-www-form-urlencoded"), Some("application/xml")] {
        let a = app.call(Method::POST, "/v1/posts").token(&alice.token).raw(content_type, body.to_vec()).send().await;
        assert_problem(&a, 415);
    }
    let reg = format!(r#"{{"handle":"{}","display_name":"x","password":"{PASSWORD}"}}"#, unique_handle("plain"));
    let a = app.call(Method::POST, "/v1/auth/register").raw(Some("text/plain"), reg).send().await;
    assert_problem(&a, 415);
    let a = app
        .call(Method::POST, "/v1/notifications/read")
        .token(&alice.token)
        .raw(Some("text/plain"), "all")
        .send()
        .await;
    assert_problem(&a, 415);
    // JSON with a charset parameter is JSON.
    let a = app
        .call(Method::POST, "/v1/posts")
        .token(&alice.token)
        .raw(Some("application/json; charset=utf-8"), body.to_vec())
        .send()
        .await;
    assert_accepted(&a);

    assert_eq!(app.log_count(AggregateType::Post).await, 1);
    assert_eq!(app.log_count(AggregateType::User).await, 1);
    assert_eq!(app.log_count(AggregateType::Inbox).await, 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_422_for_field_rules_counted_in_characters() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let crab = |n: usize| "🦀".repeat(n);
    let mut accepted_posts = 0;

    // Posts: 1-2000 characters, whatever their bytes.
    assert_accepted(&app.post(&alice.token, &crab(2000)).await);
    accepted_posts += 1;
    assert_invalid(&app.post(&alice.token, &crab(2001)).await, "text");
    assert_invalid(&app.post(&alice.token, "").await, "text");
    // Characters are scalar values, not graphemes: "e" + combining acute is two.
    assert_accepted(&app.post(&alice.token, &"e\u{301}".repeat(1000)).await);
    accepted_posts += 1;
    assert_invalid(&app.post(&alice.token, &format!("{}e", "e\u{301}".repeat(1000))).await, "text");
    let created = app.post(&alice.token, "line one\n\tindented").await;
    assert_accepted(&created);
    accepted_posts += 1;
    let post_id = created.str("post_id");

    // Control characters other than \n and \t.
    for bad in ["nul\u{0}", "cr\r", "bell\u{7}", "esc\u{1b}[31m", "del\u{7f}", "c1\u{85}"] {
        assert_invalid(&app.post(&alice.token, bad).await, "text");
        let comment = app.post_json(&format!("/v1/posts/{post_id}/comments"), &bob.token, &json!({"text": bad})).await;
        assert_invalid(&comment, "text");
        let message = app.post_json("/v1/messages", &bob.token, &json!({"to": alice.id, "text": bad})).await;
        assert_invalid(&message, "text");
        assert_invalid(&app.patch_json("/v1/me", &alice.token, &json!({"display_name": bad})).await, "display_name");
    }

    // Comments 1-1000, messages 1-4000.
    let comments = format!("/v1/posts/{post_id}/comments");
    assert_accepted(&app.post_json(&comments, &bob.token, &json!({"text": crab(1000)})).await);
    assert_invalid(&app.post_json(&comments, &bob.token, &json!({"text": crab(1001)})).await, "text");
    assert_invalid(&app.post_json(&comments, &bob.token, &json!({"text": ""})).await, "text");
    let message = |text: String| {
        app.call(Method::POST, "/v1/messages").token(&bob.token).json(&json!({"to": alice.id, "text": text})).send()
    };
    assert_accepted(&message(crab(4000)).await);
    assert_invalid(&message(crab(4001)).await, "text");
    assert_invalid(&message(String::new()).await, "text");

    // Profile: display name 1-50, bio 0-280.
    assert_accepted(&app.patch_json("/v1/me", &alice.token, &json!({"display_name": crab(50)})).await);
    assert_invalid(&app.patch_json("/v1/me", &alice.token, &json!({"display_name": crab(51)})).await, "display_name");
    assert_invalid(&app.patch_json("/v1/me", &alice.token, &json!({"display_name": ""})).await, "display_name");
    assert_accepted(&app.patch_json("/v1/me", &alice.token, &json!({"bio": crab(280)})).await);
    assert_invalid(&app.patch_json("/v1/me", &alice.token, &json!({"bio": crab(281)})).await, "bio");

    // Registration: handle ^[a-z0-9_]{3,30}$, display name 1-50, password 8-128.
    let register = |handle: String, display_name: String, password: String| {
        let body = json!({"handle": handle, "display_name": display_name, "password": password});
        app.call(Method::POST, "/v1/auth/register").json(&body).send()
    };
    let ok = || unique_handle("u");
    for handle in [
        "ab".to_owned(),
        "x".repeat(31),
        "Alice".to_owned(),
        "a-b".to_owned(),
        "a b".to_owned(),
        "éa_b".to_owned(),
        String::new(),
    ] {
        assert_invalid(&register(handle, "Name".into(), PASSWORD.into()).await, "handle");
    }
    assert_eq!(register("x".repeat(30), "Name".into(), PASSWORD.into()).await.status, 201);
    assert_invalid(&register(ok(), crab(51), PASSWORD.into()).await, "display_name");
    assert_invalid(&register(ok(), String::new(), PASSWORD.into()).await, "display_name");
    assert_invalid(&register(ok(), "tab\u{b}".into(), PASSWORD.into()).await, "display_name");
    assert_invalid(&register(ok(), "Name".into(), "7 chars".into()).await, "password");
    assert_invalid(&register(ok(), "Name".into(), "p".repeat(129)).await, "password");
    let long_password = register(ok(), crab(50), crab(128)).await;
    assert_eq!(long_password.status, 201, "{long_password}");

    // Following or messaging yourself.
    assert_invalid(&app.put(&format!("/v1/follows/{}", alice.id), &alice.token).await, "user_id");
    assert_invalid(&app.post_json("/v1/messages", &alice.token, &json!({"to": alice.id, "text": "me"})).await, "to");

    // Unknown fields and wrongly typed ones.
    for (method, path, body) in [
        (Method::POST, "/v1/posts", json!({"text": "x", "extra": 1})),
        (Method::POST, "/v1/posts", json!({"text": 5})),
        (Method::POST, "/v1/posts", json!({})),
        (Method::PATCH, "/v1/me", json!({"avatar": "x.png"})),
        (
            Method::POST,
            "/v1/auth/register",
            json!({"handle": ok(), "display_name": "N", "password": PASSWORD, "email": "a@b"}),
        ),
        (Method::POST, "/v1/messages", json!({"to": bob.id, "text": "hi", "cc": alice.id})),
        (Method::POST, "/v1/notifications/read", json!({"everything": true})),
    ] {
        let a = app.call(method, path).token(&alice.token).json(&body).send().await;
        assert_problem(&a, 422);
    }

    assert_eq!(app.log_count(AggregateType::Post).await, accepted_posts + 1, "posts and the one comment");
    assert_eq!(app.log_count(AggregateType::Follow).await, 0);
    assert_eq!(app.log_count(AggregateType::Conversation).await, 1);
    assert_eq!(
        app.log_count(AggregateType::User).await,
        2 + 2 + 2,
        "two users, two profile updates, two registrations"
    );
    assert_eq!(app.log_count(AggregateType::Inbox).await, 0);
    app.shutdown().await;
}

/// A body must be the JSON object the contract shows; an array holding the same values in field
/// order is not one (serde would otherwise read it as the struct's fields).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_422_for_a_body_that_is_an_array_not_an_object() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    assert_problem(&app.post_json("/v1/posts", &alice.token, &json!(["posted as an array"])).await, 422);
    let handle = unique_handle("arr");
    let a = app.call(Method::POST, "/v1/auth/register").json(&json!([handle, "Array", PASSWORD])).send().await;
    assert_problem(&a, 422);
    assert_eq!(app.log_count(AggregateType::Post).await, 0);
    assert_eq!(app.log_count(AggregateType::User).await, 1);
    app.shutdown().await;
}

/// The contract puts `errors: [{field, message}]` on field failures; a field the body must not
/// have, or one it lacks, is such a failure, and a client needs its name to show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_422_names_unknown_and_missing_fields() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    assert_invalid(&app.post_json("/v1/posts", &alice.token, &json!({"text": "x", "extra": 1})).await, "extra");
    assert_invalid(&app.post_json("/v1/posts", &alice.token, &json!({})).await, "text");
    assert_invalid(&app.patch_json("/v1/me", &alice.token, &json!({"avatar": "x.png"})).await, "avatar");
    assert_eq!(app.log_count(AggregateType::Post).await, 0);
    app.shutdown().await;
}
