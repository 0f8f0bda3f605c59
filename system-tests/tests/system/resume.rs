//! `resume`: a user who was away gets exactly the events they missed, in order, then live
//! ones; a position from another history gets `reset`.

use crate::helpers::{TestApp, Ws, assert_accepted, next_json, query_until};
use futures::SinkExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The next `feed.post` frame's post text and stream position.
async fn next_post(ws: &mut Ws) -> Option<(String, String)> {
    loop {
        let frame = next_json(ws, Duration::from_secs(15)).await?;
        if frame["type"] == "event" && frame["event_type"] == "feed.post" {
            return Some((frame["data"]["text"].as_str()?.to_owned(), frame["stream_pos"].as_str()?.to_owned()));
        }
        assert_ne!(frame["type"], "error", "{frame}");
    }
}

async fn send(ws: &mut Ws, op: Value) {
    ws.send(Message::Text(op.to_string().into())).await.unwrap();
}

#[tokio::test]
async fn a_resumed_stream_delivers_exactly_the_missed_events_in_order_then_live_ones() {
    let app = TestApp::spawn().await;
    let (author, reader) = (app.user("author").await, app.user("reader").await);
    assert_accepted(&app.put(&format!("/v1/follows/{}", author.id), &reader.token).await);
    query_until(&app, &format!("/v1/users/{}", author.id), &author.token, "the follow", |s, b| {
        s == 200 && b["followers"] == 1
    })
    .await;
    let (mut ws, _) = app.connect_ws(&reader.token).await;
    assert_accepted(&app.post(&author.token, "seen live").await);
    let (text, seen) = next_post(&mut ws).await.expect("the live post");
    assert_eq!(text, "seen live");
    ws.close(None).await.unwrap();

    let missed: Vec<String> = (0..20).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        assert_accepted(&app.post(&author.token, text).await);
    }
    let (mut ws, ready) = app.connect_ws(&reader.token).await;
    send(&mut ws, json!({"op": "resume", "after": seen})).await;
    let mut got = Vec::new();
    let mut positions = vec![seen.clone()];
    while got.len() < missed.len() {
        let (text, pos) = next_post(&mut ws).await.unwrap_or_else(|| panic!("only {got:?} after resume ({ready})"));
        got.push(text);
        positions.push(pos);
    }
    assert_eq!(got, missed, "exactly the missed posts, in order");
    // Live ones follow, once each.
    assert_accepted(&app.post(&author.token, "live again").await);
    let (text, pos) = next_post(&mut ws).await.expect("a live post after the replay");
    assert_eq!(text, "live again");
    positions.push(pos);
    let mut sorted = positions.clone();
    sorted.sort_by_key(|p| {
        let id = p.split_once('-').unwrap().1;
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    });
    assert_eq!(sorted, positions, "stream positions grow");
    assert!(next_json(&mut ws, Duration::from_millis(700)).await.is_none_or(|f| f["type"] != "event"), "a repeat");

    // A position from another history (another epoch) is answered with `reset`.
    send(&mut ws, json!({"op": "resume", "after": "000000000000-1-0"})).await;
    let frame = next_json(&mut ws, Duration::from_secs(5)).await.expect("a reset");
    assert_eq!(frame["type"], "reset", "{frame}");
    send(&mut ws, json!({"op": "resume", "after": "garbage"})).await;
    let frame = next_json(&mut ws, Duration::from_secs(5)).await.expect("an error");
    assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("bad_position")), "{frame}");
    app.shutdown().await;
}

/// The next `event` frame of `event_type`.
async fn next_event(ws: &mut Ws, event_type: &str) -> Value {
    loop {
        let frame = next_json(ws, Duration::from_secs(15)).await.unwrap_or_else(|| panic!("no {event_type} frame"));
        if frame["type"] == "event" && frame["event_type"] == event_type {
            return frame;
        }
    }
}

#[tokio::test]
async fn follows_likes_and_messages_reach_the_sockets_of_the_users_they_concern() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let (mut ann_ws, _) = app.connect_ws(&ann.token).await;
    let (mut bob_ws, _) = app.connect_ws(&bob.token).await;

    assert_accepted(&app.put(&format!("/v1/follows/{}", bob.id), &ann.token).await);
    let frame = next_event(&mut bob_ws, "notification").await;
    let n = &frame["data"];
    assert_eq!(
        (n["kind"].as_str(), n["actor"]["user_id"].as_str()),
        (Some("follow"), Some(ann.id.as_str())),
        "{frame}"
    );
    assert_eq!((n["subject_id"].as_str(), n["read"].as_bool()), (Some(ann.id.as_str()), Some(false)), "{frame}");
    assert_eq!(n["actor"]["handle"], ann.handle.as_str());
    let follow_notification = n.clone();

    let post = assert_accepted(&app.post(&ann.token, "likeable").await).body["post_id"].as_str().unwrap().to_owned();
    assert_accepted(&app.put(&format!("/v1/posts/{post}/like"), &bob.token).await);
    let frame = next_event(&mut ann_ws, "notification").await;
    assert_eq!(
        (frame["data"]["kind"].as_str(), frame["data"]["subject_id"].as_str()),
        (Some("like"), Some(post.as_str()))
    );

    let sent =
        assert_accepted(&app.post_json("/v1/messages", &bob.token, &json!({"to": ann.id, "text": "hi ann"})).await);
    for ws in [&mut ann_ws, &mut bob_ws] {
        let frame = next_event(ws, "message").await;
        let m = &frame["data"];
        assert_eq!(m["message_id"], sent.body["message_id"], "{frame}");
        assert_eq!(
            (m["from"].as_str(), m["to"].as_str(), m["text"].as_str()),
            (Some(bob.id.as_str()), Some(ann.id.as_str()), Some("hi ann"))
        );
    }
    // The notification the socket showed is the one the query API lists, field for field.
    let listed = query_until(&app, "/v1/notifications", &bob.token, "bob's notification", |s, b| {
        s == 200 && b["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    assert_eq!(listed["items"][0], follow_notification, "the socket and the query API disagree");
    app.shutdown().await;
}
