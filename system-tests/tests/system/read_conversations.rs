//! The conversations queries of the contract, end to end on the real stack: each participant's
//! conversation list with its peer, last message and unread count, the messages newest first
//! with their paging, and who may read them.

use crate::helpers::{TestApp, User, assert_accepted, assert_problem, query_until};
use reqwest::Method;
use serde_json::{Value, json};

/// Sends `text` from `from` to `to`; returns (message_id, conversation_id).
async fn send(app: &TestApp, from: &User, to: &User, text: &str) -> (String, String) {
    let a = assert_accepted(&app.post_json("/v1/messages", &from.token, &json!({"to": to.id, "text": text})).await);
    (a.body["message_id"].as_str().unwrap().to_owned(), a.body["conversation_id"].as_str().unwrap().to_owned())
}

fn user(u: &User) -> Value {
    json!({"user_id": u.id, "handle": u.handle, "display_name": u.handle})
}

/// The item of `page` for `conversation`.
fn entry<'a>(page: &'a Value, conversation: &str) -> Option<&'a Value> {
    page["items"].as_array()?.iter().find(|c| c["conversation_id"] == conversation)
}

/// Whether `user`'s list shows `conversation` with `last` as its last message and `unread`.
fn shows(page: &Value, conversation: &str, last: &str, unread: i64) -> bool {
    entry(page, conversation).is_some_and(|c| c["last_message"]["message_id"] == last && c["unread"] == unread)
}

fn ids(page: &Value, field: &str) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn each_participant_sees_the_peer_the_last_message_and_what_they_have_not_read() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (app.user("ann").await, app.user("bob").await, app.user("cat").await);
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        sent.push(send(&app, &a, &b, text).await);
    }
    let conversation = sent[0].1.clone();
    assert!(sent.iter().all(|(_, conv)| *conv == conversation), "one conversation per pair: {sent:?}");
    let third = sent[2].0.clone();

    // B has three unread; A, who wrote them, none.
    let list = query_until(&app, "/v1/conversations", &b.token, "B's three unread", |s, p| {
        s == 200 && shows(p, &conversation, &third, 3)
    })
    .await;
    let seen = entry(&list, &conversation).unwrap();
    assert_eq!(seen["peer"], user(&a), "{seen}");
    assert_eq!(
        seen["last_message"],
        json!({
            "message_id": third, "conversation_id": conversation, "from": a.id, "to": b.id, "text": "three",
            "created_at": seen["last_message"]["created_at"],
        }),
        "{seen}"
    );
    assert!(seen["last_message"]["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{seen}");
    let list = query_until(&app, "/v1/conversations", &a.token, "A's conversation", |s, p| {
        s == 200 && shows(p, &conversation, &third, 0)
    })
    .await;
    assert_eq!(entry(&list, &conversation).unwrap()["peer"], user(&b), "{list}");

    // B reads them, then replies: A has one unread, the reply; B none.
    assert_accepted(
        &app.call(Method::POST, &format!("/v1/conversations/{conversation}/read")).token(&b.token).send().await,
    );
    query_until(&app, "/v1/conversations", &b.token, "B's read mark", |s, p| {
        s == 200 && shows(p, &conversation, &third, 0)
    })
    .await;
    let (reply, _) = send(&app, &b, &a, "hi ann").await;
    let list = query_until(&app, "/v1/conversations", &a.token, "the reply unread by A", |s, p| {
        s == 200 && shows(p, &conversation, &reply, 1)
    })
    .await;
    let last = &entry(&list, &conversation).unwrap()["last_message"];
    assert_eq!((&last["from"], &last["to"], &last["text"]), (&json!(b.id), &json!(a.id), &json!("hi ann")), "{last}");
    query_until(&app, "/v1/conversations", &b.token, "B's own reply read", |s, p| {
        s == 200 && shows(p, &conversation, &reply, 0)
    })
    .await;

    // Latest conversation first: a message to C puts that one ahead, until B writes again.
    let (to_c, with_c) = send(&app, &a, &c, "hello cat").await;
    let order = |p: &Value| ids(p, "conversation_id");
    query_until(&app, "/v1/conversations", &a.token, "C's conversation first", |s, p| {
        s == 200 && order(p) == [with_c.clone(), conversation.clone()] && shows(p, &with_c, &to_c, 0)
    })
    .await;
    let (again, _) = send(&app, &b, &a, "me again").await;
    let list = query_until(&app, "/v1/conversations", &a.token, "B's conversation first again", |s, p| {
        s == 200 && order(p) == [conversation.clone(), with_c.clone()]
    })
    .await;
    assert!(shows(&list, &conversation, &again, 2), "two of B's messages after A's mark: {list}");
    let (status, first) = app.get(&app.query, "/v1/conversations?limit=1", &a.token).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(order(&first), vec![conversation.clone()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.get(&app.query, &format!("/v1/conversations?limit=1&cursor={cursor}"), &a.token).await;
    assert_eq!((order(&second), &second["next_cursor"]), (vec![with_c.clone()], &Value::Null), "{second}");

    // The conversation list is the caller's own.
    let (_, of_c) = app.get(&app.query, "/v1/conversations", &c.token).await;
    assert_eq!(order(&of_c), vec![with_c.clone()], "{of_c}");
    assert_eq!(entry(&of_c, &with_c).unwrap()["peer"], user(&a), "{of_c}");
    app.shutdown().await;
}

#[tokio::test]
async fn messages_are_newest_first_for_participants_and_page_without_repeats_while_messages_arrive() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (app.user("ann").await, app.user("bob").await, app.user("cat").await);
    let mut sent = Vec::new();
    for (from, to, text) in [(&a, &b, "one"), (&a, &b, "two"), (&a, &b, "three"), (&b, &a, "four")] {
        sent.push(send(&app, from, to, text).await);
    }
    let conversation = sent[0].1.clone();
    let newest_first: Vec<String> = sent.iter().rev().map(|(m, _)| m.clone()).collect();
    let path = format!("/v1/conversations/{conversation}/messages");
    let all = query_until(&app, &path, &b.token, "the four messages", |s, p| {
        s == 200 && ids(p, "message_id") == newest_first
    })
    .await;
    assert_eq!(
        all["items"][0],
        json!({
            "message_id": newest_first[0], "conversation_id": conversation, "from": b.id, "to": a.id,
            "text": "four", "created_at": all["items"][0]["created_at"],
        })
    );
    assert_eq!(all["items"][3]["text"], "one");
    assert_eq!(all["next_cursor"], Value::Null, "{all}");

    // Pages of two; a message sent between them is not in the second page, and nothing repeats
    // or goes missing.
    let (status, first) = app.get(&app.query, &format!("{path}?limit=2"), &a.token).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first, "message_id"), newest_first[..2]);
    let cursor = first["next_cursor"].as_str().expect("a second page").to_owned();
    let (late, _) = send(&app, &a, &b, "late").await;
    query_until(&app, &format!("{path}?limit=2"), &a.token, "the late message first", |s, p| {
        s == 200 && ids(p, "message_id").first() == Some(&late)
    })
    .await;
    let (_, second) = app.get(&app.query, &format!("{path}?limit=2&cursor={cursor}"), &a.token).await;
    assert_eq!(ids(&second, "message_id"), newest_first[2..], "{second}");
    assert_eq!(second["next_cursor"], Value::Null, "{second}");

    // Only the two participants may read them; a malformed or unknown id names nothing.
    let (status, body) = app.get(&app.query, &path, &c.token).await;
    assert_eq!(status, 404, "a third user reads A and B's messages: {body}");
    let unknown = format!("/v1/conversations/{}/messages", uuid::Uuid::now_v7());
    for p in [unknown.as_str(), "/v1/conversations/not-a-uuid/messages"] {
        let answer = app.call(Method::GET, p).on(&app.query).token(&a.token).send().await;
        assert_problem(&answer, 404);
    }
    let (status, _) = app.get(&app.query, &format!("{path}?limit=101"), &a.token).await;
    assert_eq!(status, 422);
    let (status, _) = app.get(&app.query, &format!("{path}?cursor=%%%"), &a.token).await;
    assert_eq!(status, 400);
    let (status, _) = app.get(&app.query, "/v1/conversations?limit=0", &a.token).await;
    assert_eq!(status, 422);
    let anonymous = app.call(Method::GET, &path).on(&app.query).send().await;
    assert_eq!(anonymous.status, 401, "{anonymous}");
    app.shutdown().await;
}
