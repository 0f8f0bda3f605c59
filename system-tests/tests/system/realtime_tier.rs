//! The realtime tier as several processes: two `agora-realtime` OS processes (beside the app's
//! own) on one consumer group and one Redis, with users connected to different ones. Whatever
//! process holds a socket, its user gets each event once, each aggregate's in order; spectators of a game see
//! every move; a client that stops reading is closed with 1013 without holding the others
//! back; a client that leaves a heartbeat unanswered is dropped; a process told to stop closes
//! each socket with 1012; and when a process is killed,
//! its clients resume on another with nothing lost.

use crate::helpers::{
    TestApp, User, Ws, assert_accepted, challenge, eventually, next_json, query_until, service_binary,
};
use agora_testkit::ServiceProcess;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// An `agora-realtime` process on the app's settings, with a port of its own.
fn realtime_process(bin: &std::path::Path, app: &TestApp, extra: &[(&str, &str)]) -> ServiceProcess {
    let keys = agora_platform::config::KNOWN_COMMON.iter().chain(agora_realtime::config::KNOWN);
    let mut env: Vec<(String, String)> =
        keys.filter_map(|k| app.env.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
    for (k, v) in [("AGORA_REALTIME_ADDR", "127.0.0.1:0"), ("AGORA_LOG", "info"), ("AGORA_LOG_FORMAT", "json")]
        .iter()
        .chain(extra)
    {
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    ServiceProcess::start(bin.to_str().unwrap(), &env)
}

/// The `agora-realtime` binary, built if need be.
async fn realtime_binary() -> std::path::PathBuf {
    tokio::task::spawn_blocking(|| service_binary("agora-realtime")).await.unwrap()
}

/// Two realtime processes for `app`.
async fn two_processes(app: &TestApp, extra: &[(&str, &str)]) -> (ServiceProcess, ServiceProcess) {
    let bin = realtime_binary().await;
    (realtime_process(&bin, app, extra), realtime_process(&bin, app, extra))
}

/// Waits until the router's consumer group is stable with `members` members: until then a
/// rebalance holds some partitions back while others flow.
async fn router_group_stable(app: &TestApp, members: usize) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let group = app.env.string("AGORA_REALTIME_GROUP", "");
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &app.stack.kafka).create().unwrap();
    let consumer = std::sync::Arc::new(consumer);
    eventually(Duration::from_secs(60), "a stable router group", || {
        let (consumer, group) = (consumer.clone(), group.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let list = consumer.fetch_group_list(Some(&group), Duration::from_secs(5)).ok()?;
                let info = list.groups().first()?;
                (info.state() == "Stable" && info.members().len() == members).then_some(())
            })
            .await
            .ok()?
        }
    })
    .await;
}

/// Every `event` frame that arrives within `quiet` of the previous one (the first within 20 s).
async fn events_until_quiet(ws: &mut Ws, want: usize, quiet: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        let wait = if got.len() < want { Duration::from_secs(20) } else { quiet };
        let Some(frame) = next_json(ws, wait).await else { break };
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["type"] == "event" {
            got.push(frame);
        }
    }
    got
}

/// `(kind, subject)` of a frame: the notification kind, or `message` with its text.
fn what(frame: &Value) -> (String, String) {
    let d = &frame["data"];
    match frame["event_type"].as_str() {
        Some("notification") => (d["kind"].as_str().unwrap().to_owned(), d["actor"]["user_id"].to_string()),
        Some("message") => ("message".to_owned(), d["text"].as_str().unwrap().to_owned()),
        other => (format!("{other:?}"), d.to_string()),
    }
}

fn position(frame: &Value) -> (u64, u64) {
    let pos = frame["stream_pos"].as_str().unwrap();
    let (ms, seq) = pos.split_once('-').unwrap().1.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[tokio::test]
async fn a_user_on_one_process_gets_each_event_another_user_on_another_process_causes_once() {
    let app = TestApp::spawn().await;
    let (p1, p2) = two_processes(&app, &[]).await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let (mut ann_ws, _) = app.connect_ws_on(p1.port, &ann.token).await;
    let (mut bob_ws, _) = app.connect_ws_on(p2.port, &bob.token).await;
    let post = assert_accepted(&app.post(&bob.token, "bob's post").await).body["post_id"].as_str().unwrap().to_owned();
    // Notifications show the actor's profile: the router waits for the projector to have it.
    query_until(&app, &format!("/v1/users/{}", ann.id), &bob.token, "ann's profile", |s, _| s == 200).await;
    router_group_stable(&app, 3).await;

    assert_accepted(&app.put(&format!("/v1/follows/{}", bob.id), &ann.token).await);
    assert_accepted(&app.put(&format!("/v1/posts/{post}/like"), &ann.token).await);
    assert_accepted(&app.post_json(&format!("/v1/posts/{post}/comments"), &ann.token, &json!({"text": "nice"})).await);
    let texts = ["hello bob", "are you there", "bye"];
    for text in texts {
        assert_accepted(&app.post_json("/v1/messages", &ann.token, &json!({"to": bob.id, "text": text})).await);
    }

    let frames = events_until_quiet(&mut bob_ws, 6, Duration::from_millis(1500)).await;
    let ann_id = json!(ann.id).to_string();
    let seen: Vec<(String, String)> = frames.iter().map(what).collect();
    let mut expected: Vec<(String, String)> =
        ["follow", "like", "comment"].iter().map(|k| ((*k).to_owned(), ann_id.clone())).collect();
    expected.extend(texts.iter().map(|t| ("message".to_owned(), (*t).to_owned())));
    let mut sorted = seen.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "bob, on the other process, gets each of ann's acts once: {seen:?}");
    // One aggregate's events keep their order; those of different aggregates follow the
    // order the router handled them (docs/architecture.md, "Order").
    let messages: Vec<&(String, String)> = seen.iter().filter(|(k, _)| k == "message").collect();
    assert_eq!(messages, expected[3..].iter().collect::<Vec<_>>(), "one conversation's messages in order");
    let positions: Vec<(u64, u64)> = frames.iter().map(position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "stream positions grow: {positions:?}");

    // Ann, on the first process, gets the message she sent (both participants do), once.
    let ann_frames = events_until_quiet(&mut ann_ws, 3, Duration::from_millis(1500)).await;
    let messages: Vec<&str> = ann_frames
        .iter()
        .filter(|f| f["event_type"] == "message")
        .map(|f| f["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(messages, texts, "{ann_frames:?}");
    drop((p1, p2));
    app.shutdown().await;
}

async fn next_frame(ws: &mut Ws) -> Value {
    next_json(ws, Duration::from_secs(5)).await.expect("a frame")
}

async fn send(ws: &mut Ws, op: Value) {
    ws.send(Message::Text(op.to_string().into())).await.unwrap();
}

/// Sends `op` and waits for its acknowledgement frame of `kind`.
async fn acknowledged(ws: &mut Ws, op: Value, kind: &str) {
    let channel = op["channel"].clone();
    send(ws, op).await;
    let frame = next_json(ws, Duration::from_secs(10)).await.expect("an acknowledgement");
    assert_eq!((&frame["type"], &frame["channel"]), (&json!(kind), &channel), "{frame}");
}

fn game_updates(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["event_type"] == "game.update").collect()
}

#[tokio::test]
async fn spectators_and_players_on_either_process_see_every_move_of_a_game_once() {
    let app = TestApp::spawn().await;
    let (p1, p2) = two_processes(&app, &[]).await;
    let (ann, bob, cy) = (app.user("ann").await, app.user("bob").await, app.user("cy").await);
    let game = challenge(&app, &ann, &bob, "white").await;
    let (mut ann_ws, _) = app.connect_ws_on(p1.port, &ann.token).await;
    let (mut bob_ws, _) = app.connect_ws_on(p2.port, &bob.token).await;
    let (mut cy_ws, _) = app.connect_ws_on(p1.port, &cy.token).await;
    let (mut cy_other, _) = app.connect_ws_on(p2.port, &cy.token).await;
    let channel = format!("game:{game}");
    acknowledged(&mut cy_ws, json!({"op": "subscribe", "channel": channel}), "subscribed").await;
    acknowledged(&mut cy_other, json!({"op": "subscribe", "channel": channel}), "subscribed").await;
    // A player watching their own game still gets each update once.
    acknowledged(&mut bob_ws, json!({"op": "subscribe", "channel": channel}), "subscribed").await;

    assert_accepted(&app.call(Method::POST, &format!("/v1/games/{game}/accept")).token(&bob.token).send().await);
    // Fool's mate: black mates on the fourth ply.
    let moves = [(&ann, "f2f3"), (&bob, "e7e5"), (&ann, "g2g4"), (&bob, "d8h4")];
    for (ply, (by, uci)) in moves.iter().enumerate() {
        let body = json!({"uci": uci, "ply": ply});
        let answer =
            app.call(Method::POST, &format!("/v1/games/{game}/moves")).token(&by.token).json(&body).send().await;
        assert_accepted(&answer);
    }
    let shown = query_until(&app, &format!("/v1/games/{game}"), &cy.token, "the finished game", |s, b| {
        s == 200 && b["status"] == "finished"
    })
    .await;

    for (who, ws) in [("ann", &mut ann_ws), ("bob", &mut bob_ws), ("cy on p1", &mut cy_ws), ("cy on p2", &mut cy_other)]
    {
        let frames = events_until_quiet(ws, 5, Duration::from_millis(1500)).await;
        let updates = game_updates(&frames);
        let plies: Vec<u64> = updates.iter().map(|f| f["data"]["ply"].as_u64().unwrap()).collect();
        assert_eq!(plies, [0, 1, 2, 3, 4], "{who}: the accept and every move, once, in order: {updates:?}");
        let played: Vec<Value> = updates.iter().map(|f| f["data"]["moves"].clone()).collect();
        assert_eq!(played[2], json!(["f2f3", "e7e5"]), "{who}");
        assert_eq!(updates[0]["data"]["status"], "active", "{who}");
        // The last update is the game as the query API shows it.
        assert_eq!(updates[4]["data"], shown, "{who}: the socket and the query API disagree");
    }
    assert_eq!((shown["result"].as_str(), shown["end_reason"].as_str()), (Some("0-1"), Some("checkmate")));

    acknowledged(&mut cy_ws, json!({"op": "unsubscribe", "channel": channel}), "unsubscribed").await;
    drop((p1, p2));
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1013_while_the_others_on_its_process_keep_up() {
    const MESSAGES: usize = 400;
    let app = TestApp::spawn_with(crate::helpers::Stack::local(), &[("AGORA_RATE_LIMIT_MESSAGES", "off")]).await;
    let (p1, _p2) = two_processes(&app, &[("AGORA_CONNECTION_QUEUE", "64")]).await;
    let (ann, sid) = (app.user("ann").await, app.user("sid").await);
    let (mut ann_ws, _) = app.connect_ws_on(p1.port, &ann.token).await;
    // Sid's socket takes a 4 KiB receive buffer, so the server's writes block soon after it
    // stops reading.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(format!("127.0.0.1:{}", p1.port).parse().unwrap()).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/v1/stream?token={}", p1.port, sid.token);
    let (mut sid_ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let ready = sid_ws.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("\"ready\""), "{ready:?}");

    // Ann writes long messages to sid and reads her own copies as they come; sid reads nothing.
    let text = "x".repeat(3990);
    let sender = {
        let (http, command, token, to) = (app.http.clone(), app.command.clone(), ann.token.clone(), sid.id.clone());
        let text = text.clone();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let body = json!({"to": to, "text": format!("{i:05} {text}")});
                let r =
                    http.post(format!("{command}/v1/messages")).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202, "message {i}");
            }
        })
    };
    let ann_reader = tokio::spawn(async move {
        let mut ann_got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while ann_got.len() < MESSAGES && Instant::now() < deadline {
            let Some(frame) = next_json(&mut ann_ws, Duration::from_secs(20)).await else { break };
            if frame["event_type"] == "message" {
                ann_got.push(frame["data"]["text"].as_str().unwrap()[..5].to_owned());
            }
        }
        ann_got
    });

    // Once the server has given up on sid, sid reads again, while ann's messages still flow:
    // a close frame stuck behind what sid has not read waits only 10 s for sid to read it.
    let metrics = format!("{}/metrics", p1.base_url());
    eventually(Duration::from_secs(20), "the slow client counted", || {
        let (http, metrics) = (app.http.clone(), metrics.clone());
        async move {
            let body = http.get(&metrics).send().await.ok()?.text().await.ok()?;
            body.lines()
                .find(|l| l.starts_with("agora_realtime_slow_clients_closed_total"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .filter(|n| *n >= 1.0)
        }
    })
    .await;

    // Sid reads again: what was already on the wire, then the close, with 1013.
    let mut sid_frames = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(20), sid_ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => sid_frames += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame after {sid_frames} frames: {other:?}"),
        }
    };
    assert_eq!(close.map(|c| c.code), Some(CloseCode::Again), "closed with 1013");
    assert!(sid_frames < MESSAGES, "sid was closed, not buffered without bound ({sid_frames} frames)");

    sender.await.unwrap();
    let ann_got = ann_reader.await.unwrap();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("{i:05}")).collect();
    assert_eq!(ann_got, expected, "ann, on the slow client's process, got every message once, in order");
    app.shutdown().await;
}

/// The texts of `message` frames until `want` of them (or 40 s), with their positions.
async fn messages(ws: &mut Ws, want: usize) -> Vec<(String, (u64, u64))> {
    let mut got = Vec::new();
    for frame in events_until_quiet(ws, want, Duration::from_millis(1500)).await {
        if frame["event_type"] == "message" {
            got.push((frame["data"]["text"].as_str().unwrap().to_owned(), position(&frame)));
        }
    }
    got
}

/// The texts of [`messages`]' answer.
fn texts(got: &[(String, (u64, u64))]) -> Vec<&str> {
    got.iter().map(|m| m.0.as_str()).collect()
}

async fn message(app: &TestApp, from: &User, to: &User, text: &str) {
    assert_accepted(&app.post_json("/v1/messages", &from.token, &json!({"to": to.id, "text": text})).await);
}

#[tokio::test]
async fn when_a_process_is_killed_its_clients_resume_on_the_other_with_nothing_lost() {
    let app = TestApp::spawn().await;
    let (p1, mut p2) = two_processes(&app, &[]).await;
    let (ann, bob, cy) = (app.user("ann").await, app.user("bob").await, app.user("cy").await);
    let (mut bob_ws, _) = app.connect_ws_on(p2.port, &bob.token).await;
    let (mut cy_ws, _) = app.connect_ws_on(p2.port, &cy.token).await;
    message(&app, &ann, &bob, "before").await;
    message(&app, &ann, &cy, "before").await;
    let (bob_seen, cy_seen) = (messages(&mut bob_ws, 1).await, messages(&mut cy_ws, 1).await);
    assert_eq!(texts(&bob_seen), ["before"]);
    assert_eq!(texts(&cy_seen), ["before"]);
    let bob_pos = bob_seen[0].1;

    let (status, _) = tokio::task::spawn_blocking(move || {
        let killed = p2.signal("KILL", Duration::from_secs(10));
        drop(p2);
        killed
    })
    .await
    .unwrap();
    assert!(!status.success(), "SIGKILLed");
    assert!(next_json(&mut bob_ws, Duration::from_secs(5)).await.is_none(), "bob's socket died with its process");

    let missed: Vec<String> = (0..20).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        message(&app, &ann, &bob, text).await;
    }
    message(&app, &ann, &cy, "missed by cy").await;

    // Both reconnect to the surviving process and resume from where they were.
    let (mut bob_ws, ready) = app.connect_ws_on(p1.port, &bob.token).await;
    let epoch = ready["stream_pos"].as_str().unwrap().split_once('-').unwrap().0.to_owned();
    send(&mut bob_ws, json!({"op": "resume", "after": format!("{epoch}-{}-{}", bob_pos.0, bob_pos.1)})).await;
    let (mut cy_ws, _) = app.connect_ws_on(p1.port, &cy.token).await;
    let cy_pos = cy_seen[0].1;
    send(&mut cy_ws, json!({"op": "resume", "after": format!("{epoch}-{}-{}", cy_pos.0, cy_pos.1)})).await;

    // The dead process's share of the router's partitions moves after Kafka's session timeout,
    // so the replay may be followed by frames routed late: both count, once each, in order.
    let got = messages(&mut bob_ws, missed.len()).await;
    assert_eq!(texts(&got), missed, "exactly the missed messages, in order, none repeated");
    assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "positions grow");
    let cy_got = messages(&mut cy_ws, 1).await;
    assert_eq!(texts(&cy_got), ["missed by cy"]);

    message(&app, &ann, &bob, "live again").await;
    let live = messages(&mut bob_ws, 1).await;
    assert_eq!(texts(&live), ["live again"]);
    drop(p1);
    app.shutdown().await;
}

#[tokio::test]
async fn frames_published_while_a_process_lost_its_pubsub_connection_still_reach_its_sockets() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let (mut bob_ws, _) = app.connect_ws(&bob.token).await;
    message(&app, &ann, &bob, "before").await;
    assert_eq!(texts(&messages(&mut bob_ws, 1).await), ["before"]);

    // Every pub/sub connection on this Redis is dropped (other tests' hubs reconnect too);
    // messages routed before this hub is back are published to nobody.
    let redis = redis::Client::open(app.stack.redis.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap();
    assert!(killed >= 1, "no pub/sub connection to drop");
    let sent: Vec<String> = (0..10).map(|i| format!("during {i}")).collect();
    for text in &sent {
        message(&app, &ann, &bob, text).await;
    }
    let got = messages(&mut bob_ws, sent.len()).await;
    assert_eq!(texts(&got), sent, "each once, in order, none lost");
    app.shutdown().await;
}

#[tokio::test]
async fn a_socket_watches_at_most_20_games_and_bad_ops_get_error_frames_without_closing_it() {
    let app = TestApp::spawn().await;
    let cy = app.user("cy").await;
    let (mut ws, _) = app.connect_ws(&cy.token).await;
    let games: Vec<String> = (0..21).map(|_| format!("game:{}", uuid::Uuid::now_v7())).collect();
    for channel in &games[..20] {
        acknowledged(&mut ws, json!({"op": "subscribe", "channel": channel}), "subscribed").await;
    }
    send(&mut ws, json!({"op": "subscribe", "channel": games[20]})).await;
    let frame = next_frame(&mut ws).await;
    assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("too_many_channels")), "{frame}");
    acknowledged(&mut ws, json!({"op": "unsubscribe", "channel": games[0]}), "unsubscribed").await;
    acknowledged(&mut ws, json!({"op": "subscribe", "channel": games[20]}), "subscribed").await;
    send(&mut ws, json!({"op": "subscribe", "channel": "lobby"})).await;
    assert_eq!(next_frame(&mut ws).await["code"], "bad_channel");
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_frame(&mut ws).await["code"], "bad_frame");
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(next_json(&mut ws, Duration::from_secs(5)).await.expect("a pong")["type"], "pong", "still open");
    app.shutdown().await;
}

/// The code of a socket's close frame, past any frames before it (None: none within 20 s).
async fn until_close(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|c| c.code),
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

#[tokio::test]
async fn a_process_told_to_stop_closes_each_socket_with_1012_and_exits_cleanly() {
    let app = TestApp::spawn().await;
    let bin = realtime_binary().await;
    let mut process = realtime_process(&bin, &app, &[]);
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let (mut ann_ws, _) = app.connect_ws_on(process.port, &ann.token).await;
    let (mut bob_ws, _) = app.connect_ws_on(process.port, &bob.token).await;
    // Bob is live (his first op), Ann still within her resume window: both are told.
    send(&mut bob_ws, json!({"op": "ping"})).await;
    let stopped = tokio::task::spawn_blocking(move || process.signal("TERM", Duration::from_secs(30)));
    assert_eq!(until_close(&mut ann_ws).await, Some(CloseCode::Restart), "ann's socket closed with 1012");
    assert_eq!(until_close(&mut bob_ws).await, Some(CloseCode::Restart), "bob's socket closed with 1012");
    let (status, took) = stopped.await.unwrap();
    assert!(status.success(), "exited {status:?} after {took:?}");
    app.shutdown().await;
}

/// A client that answers nothing (its network dropped, its laptop asleep) is gone: dropped one
/// heartbeat after a ping it left unanswered, and offline, while one that answers stays.
#[tokio::test]
async fn a_client_that_leaves_a_heartbeat_unanswered_is_dropped_and_offline_while_one_that_answers_stays() {
    let app = TestApp::spawn().await;
    let bin = realtime_binary().await;
    let process = realtime_process(&bin, &app, &[("AGORA_HEARTBEAT_SECS", "1")]);
    let (ann, sid) = (app.user("ann").await, app.user("sid").await);
    let (mut ann_ws, _) = app.connect_ws_on(process.port, &ann.token).await;
    let (mut sid_ws, _) = app.connect_ws_on(process.port, &sid.token).await;
    // Ann keeps reading (tungstenite answers each ping as it reads it); sid reads nothing, so
    // sends no pong, for 4 s: past a ping and the heartbeat after it.
    let until = Instant::now() + Duration::from_secs(4);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Ok(frame) = tokio::time::timeout(left, ann_ws.next()).await {
            assert!(matches!(frame, Some(Ok(Message::Ping(_)))), "ann got only pings: {frame:?}");
        }
    }
    let mut sid_pings = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), sid_ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => sid_pings += 1,
            Ok(other) => break other,
            Err(_) => panic!("sid's connection still open after {sid_pings} pings"),
        }
    };
    assert!(!matches!(end, Some(Ok(_))), "sid's connection ended, with no frame after its pings: {end:?}");
    assert!(sid_pings >= 1, "sid was pinged before being dropped");
    assert_eq!(counter_total(&app, &process, "agora_realtime_peers_gone_total").await, 1.0, "only sid dropped");
    let ids = format!("{},{}", ann.id, sid.id);
    let (_, body) = app.get(&app.realtime, &format!("/v1/presence?user_ids={ids}"), &ann.token).await;
    assert_eq!(body, json!({ann.id.clone(): true, sid.id.clone(): false}), "{body}");
    send(&mut ann_ws, json!({"op": "ping"})).await;
    assert_eq!(next_json(&mut ann_ws, Duration::from_secs(5)).await.expect("a pong")["type"], "pong", "ann still open");
    drop(process);
    app.shutdown().await;
}

/// Events whose read models are not there yet leave their partition for later, and the rest
/// of the log goes on: a router reading an empty read-model database (the projector behind,
/// at its most) pushes messages at once while a game's events wait, and pushes those, once
/// each and in order, when the read models catch up (here: its database is switched to the
/// app's). Before, such a batch held every partition back for a minute, then gave up.
#[tokio::test]
async fn events_waiting_for_the_read_models_hold_back_no_other_partition_and_go_out_when_they_catch_up() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let game = challenge(&app, &ann, &bob, "white").await;
    assert_accepted(&app.call(Method::POST, &format!("/v1/games/{game}/accept")).token(&bob.token).send().await);
    query_until(&app, &format!("/v1/games/{game}"), &bob.token, "the accepted game", |s, b| {
        s == 200 && b["status"] == "active"
    })
    .await;

    // A router of its own (group, Redis keys), on a read-model database with nothing in it.
    let read_db = app.env.string("AGORA_MONGO_DB", "");
    let (lone_db, lone_prefix) = (format!("{read_db}_lone"), format!("{}lone", app.prefix));
    let lone_group = format!("{}-lone", app.env.string("AGORA_REALTIME_GROUP", ""));
    let bin = realtime_binary().await;
    let lone = realtime_process(
        &bin,
        &app,
        &[("AGORA_MONGO_DB", &lone_db), ("AGORA_REDIS_PREFIX", &lone_prefix), ("AGORA_REALTIME_GROUP", &lone_group)],
    );
    let (mut bob_ws, _) = app.connect_ws_on(lone.port, &bob.token).await;
    message(&app, &ann, &bob, "first").await;
    let got = messages(&mut bob_ws, 1).await;
    assert_eq!(texts(&got), ["first"]);
    // Fetched after the game's events were found waiting: the old router held it behind them.
    let sent = Instant::now();
    message(&app, &ann, &bob, "second").await;
    let got = messages(&mut bob_ws, 1).await;
    assert_eq!(texts(&got), ["second"]);
    assert!(sent.elapsed() < Duration::from_secs(15), "the second message took {:?}", sent.elapsed());
    assert_eq!(counter_total(&app, &lone, "agora_realtime_events_unpushed_total").await, 0.0, "nothing given up");

    // The read models catch up: the game's events, left for later, now go out.
    let client = mongodb::Client::with_uri_str(&app.stack.mongo).await.unwrap();
    let caught_up = agora_projector::generation::Generation::initial(&read_db, "unused");
    agora_projector::generation::switch(&client, &lone_db, &caught_up).await.unwrap();
    let frames = events_until_quiet(&mut bob_ws, 2, Duration::from_secs(3)).await;
    let kinds: Vec<(String, String)> = frames.iter().map(what).collect();
    assert_eq!(kinds.len(), 2, "the challenge and the accept, once each: {kinds:?}");
    assert_eq!(
        (frames[0]["event_type"].as_str(), frames[0]["data"]["kind"].as_str()),
        (Some("notification"), Some("game_challenge")),
        "{kinds:?}"
    );
    assert_eq!(
        (frames[1]["event_type"].as_str(), frames[1]["data"]["status"].as_str()),
        (Some("game.update"), Some("active")),
        "{kinds:?}"
    );
    assert_eq!(frames[1]["data"]["game_id"], json!(game));
    assert_eq!(counter_total(&app, &lone, "agora_realtime_events_unpushed_total").await, 0.0, "nothing given up");
    drop(lone);
    client.database(&lone_db).drop().await.unwrap();
    app.shutdown().await;
}

/// A counter's total over its label sets on a process's `/metrics` (0 when absent).
async fn counter_total(app: &TestApp, process: &ServiceProcess, name: &str) -> f64 {
    let body = app.http.get(format!("{}/metrics", process.base_url())).send().await.unwrap().text().await.unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_process_that_only_holds_sockets_gets_its_users_frames_from_the_groups_routers() {
    let app = TestApp::spawn().await;
    let bin = realtime_binary().await;
    let sockets_only = realtime_process(&bin, &app, &[("AGORA_REALTIME_ROUTE", "false")]);
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let (mut bob_ws, _) = app.connect_ws_on(sockets_only.port, &bob.token).await;
    let sent = ["one", "two", "three"];
    for text in sent {
        message(&app, &ann, &bob, text).await;
    }
    let got = messages(&mut bob_ws, sent.len()).await;
    assert_eq!(texts(&got), sent, "each message once, in order");
    // The app's own realtime process routed them; this one pushed them and routed nothing.
    assert!(counter_total(&app, &sockets_only, "agora_realtime_frames_pushed_total").await >= 3.0);
    assert_eq!(counter_total(&app, &sockets_only, "agora_realtime_frames_routed_total").await, 0.0);
    drop(sockets_only);
    app.shutdown().await;
}

/// A second router group reads the log from its start and routes every event again: what a
/// redelivery after a crash or a rebalance is, at its largest. Nothing reaches a socket or a
/// stream twice, because each recipient's watermark per partition says it was delivered.
#[tokio::test]
async fn a_router_group_rereading_the_whole_log_pushes_nothing_twice() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let (mut bob_ws, _) = app.connect_ws(&bob.token).await;
    let texts_of = |frames: &[Value]| -> Vec<String> {
        frames.iter().filter(|f| f["event_type"] == "message").map(|f| f["data"]["text"].to_string()).collect()
    };
    let sent = ["one", "two", "three"];
    for text in sent {
        assert_accepted(&app.post_json("/v1/messages", &ann.token, &json!({"to": bob.id, "text": text})).await);
    }
    let first = events_until_quiet(&mut bob_ws, 3, Duration::from_millis(1500)).await;
    assert_eq!(texts_of(&first), sent.map(|t| json!(t).to_string()), "{first:?}");

    let group = format!("{}-again", app.env.string("AGORA_REALTIME_GROUP", ""));
    let again = realtime_process(&realtime_binary().await, &app, &[("AGORA_REALTIME_GROUP", &group)]);
    let topics = agora_schemas::aggregate::Topics::new(app.prefix.clone()).event_topics();
    eventually(Duration::from_secs(60), "the second group to have read the whole log", || {
        let (brokers, group, topics) = (app.stack.kafka.clone(), group.clone(), topics.clone());
        async move {
            let rows = tokio::task::spawn_blocking(move || {
                agora_platform::kafka::lag::group_lag(&brokers, &group, &topics, Duration::from_secs(5))
            })
            .await
            .ok()?
            .ok()?;
            rows.iter().all(|r| r.lag() == 0).then_some(())
        }
    })
    .await;
    assert_eq!(counter_total(&app, &again, "agora_realtime_frames_routed_total").await, 0.0, "nothing routed twice");

    // Both groups route what comes next; the one that is second skips it.
    assert_accepted(&app.post_json("/v1/messages", &ann.token, &json!({"to": bob.id, "text": "four"})).await);
    let rest = events_until_quiet(&mut bob_ws, 1, Duration::from_millis(2000)).await;
    assert_eq!(texts_of(&rest), [json!("four").to_string()], "bob got each message once: {rest:?}");

    // A resume from the start of bob's stream finds each message once too.
    let epoch = first[0]["stream_pos"].as_str().unwrap().split_once('-').unwrap().0.to_owned();
    let (mut again_ws, _) = app.connect_ws(&bob.token).await;
    send(&mut again_ws, json!({"op": "resume", "after": format!("{epoch}-0-0")})).await;
    let replayed = events_until_quiet(&mut again_ws, 4, Duration::from_millis(1500)).await;
    let want: Vec<String> = ["one", "two", "three", "four"].iter().map(|t| json!(t).to_string()).collect();
    assert_eq!(texts_of(&replayed), want, "{replayed:?}");
    drop(again);
    app.shutdown().await;
}
