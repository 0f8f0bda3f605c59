//! The notifications queries of the contract, end to end on the real stack: what a user is
//! notified of and by whom, newest first, in pages, and how read marks change `read` and the
//! unread count.

use crate::helpers::{TestApp, User, assert_accepted, assert_invalid, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

/// `GET` on the query API reflecting the commands of `tokens` (`X-Consistency-Token`), asked
/// again while the answer says the projector had not caught up in time.
async fn get_after(app: &TestApp, path: &str, user: &User, tokens: &[&str]) -> Value {
    eventually(WITHIN, path, || async {
        let mut req = app.http.get(format!("{}{path}", app.query)).bearer_auth(&user.token);
        if !tokens.is_empty() {
            req = req.header("x-consistency-token", tokens.join(","));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let stale = res.headers().get("x-consistency").is_some();
        let body: Value = res.json().await.unwrap();
        (!stale).then_some(body)
    })
    .await
}

/// `(kind, actor's user id, subject_id, read)` of each item of a page.
fn summary(page: &Value) -> Vec<(String, String, String, bool)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_owned(),
                n["actor"]["user_id"].as_str().unwrap().to_owned(),
                n["subject_id"].as_str().unwrap().to_owned(),
                n["read"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|n| n["notification_id"].as_str().unwrap().to_owned()).collect()
}

async fn unread_count(app: &TestApp, user: &User, tokens: &[&str]) -> u64 {
    get_after(app, "/v1/notifications/unread-count", user, tokens).await["count"].as_u64().unwrap()
}

/// Sends a command and answers its 202 body.
async fn command(app: &TestApp, by: &User, method: Method, path: &str, body: Option<Value>) -> Value {
    let call = app.call(method, path).token(&by.token);
    let call = match body {
        Some(b) => call.json(&b),
        None => call,
    };
    assert_accepted(&call.send().await).body
}

fn token(answer: &Value) -> String {
    answer["consistency_token"].as_str().unwrap().to_owned()
}

fn id(answer: &Value, field: &str) -> String {
    answer[field].as_str().unwrap().to_owned()
}

/// Every page of the caller's notifications with `limit`, as notification ids.
async fn all_pages(app: &TestApp, user: &User, limit: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/notifications?limit={limit}&cursor={c}"),
            None => format!("/v1/notifications?limit={limit}"),
        };
        let page = get_after(app, &path, user, &[]).await;
        pages.push(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 20, "paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_is_notified_of_what_others_do_newest_first_until_marked_read() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.user("alice").await, app.user("bob").await);
    let post = id(&assert_accepted(&app.post(&a.token, "hello").await).body, "post_id");

    command(&app, &b, Method::PUT, &format!("/v1/follows/{}", a.id), None).await;
    command(&app, &b, Method::PUT, &format!("/v1/posts/{post}/like"), None).await;
    command(&app, &b, Method::POST, &format!("/v1/posts/{post}/comments"), Some(json!({"text": "nice"}))).await;
    let message = command(&app, &b, Method::POST, "/v1/messages", Some(json!({"to": a.id, "text": "hi"}))).await;
    let conversation = id(&message, "conversation_id");
    // Bob plays black, so Alice, challenged, moves first once she accepts.
    let game = command(&app, &b, Method::POST, "/v1/games", Some(json!({"opponent_id": a.id, "color": "black"}))).await;
    let game = id(&game, "game_id");
    command(&app, &a, Method::POST, &format!("/v1/games/{game}/accept"), None).await;
    let moved =
        command(&app, &a, Method::POST, &format!("/v1/games/{game}/moves"), Some(json!({"uci": "e2e4", "ply": 0})))
            .await;
    // Liking your own post notifies nobody; every query below reflects this like.
    let own_like = token(&command(&app, &a, Method::PUT, &format!("/v1/posts/{post}/like"), None).await);

    let expected = vec![
        ("game_challenge".to_owned(), b.id.clone(), game.clone(), false),
        ("message".to_owned(), b.id.clone(), conversation.clone(), false),
        ("comment".to_owned(), b.id.clone(), post.clone(), false),
        ("like".to_owned(), b.id.clone(), post.clone(), false),
        ("follow".to_owned(), b.id.clone(), b.id.clone(), false),
    ];
    let list = eventually(WITHIN, "alice's five notifications", || async {
        let page = get_after(&app, "/v1/notifications", &a, &[&own_like]).await;
        (page["items"].as_array().unwrap().len() >= expected.len()).then_some(page)
    })
    .await;
    assert_eq!(summary(&list), expected, "{list}");
    assert_eq!(list["next_cursor"], Value::Null);
    let first = &list["items"][0];
    assert_eq!(first["actor"], json!({"user_id": b.id, "handle": b.handle, "display_name": b.handle}));
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'), "{first}");
    assert_eq!(unread_count(&app, &a, &[&own_like]).await, 5);

    // Alice's move is Bob's news, not hers.
    let bobs = get_after(&app, "/v1/notifications", &b, &[&token(&moved)]).await;
    assert_eq!(summary(&bobs), vec![("game_move".to_owned(), a.id.clone(), game.clone(), false)], "{bobs}");

    // Pages of two neither repeat nor skip.
    let pages = all_pages(&app, &a, 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1], "{pages:?}");
    assert_eq!(pages.concat(), ids(&list));

    // Read up to the second newest: it and everything older are read.
    let all_ids = ids(&list);
    let read = command(&app, &a, Method::POST, "/v1/notifications/read", Some(json!({"up_to": all_ids[1]}))).await;
    let after = get_after(&app, "/v1/notifications", &a, &[&token(&read)]).await;
    let flags: Vec<bool> = summary(&after).into_iter().map(|s| s.3).collect();
    assert_eq!(flags, vec![false, true, true, true, true], "{after}");
    assert_eq!(unread_count(&app, &a, &[&token(&read)]).await, 1);
    let unread = get_after(&app, "/v1/notifications?unread=true", &a, &[&token(&read)]).await;
    assert_eq!(ids(&unread), vec![all_ids[0].clone()], "{unread}");

    // Without `up_to`, everything is read.
    let read_all = token(&command(&app, &a, Method::POST, "/v1/notifications/read", None).await);
    let after = get_after(&app, "/v1/notifications", &a, &[&read_all]).await;
    assert!(summary(&after).iter().all(|s| s.3), "{after}");
    assert_eq!(unread_count(&app, &a, &[&read_all]).await, 0);
    let unread = get_after(&app, "/v1/notifications?unread=true", &a, &[&read_all]).await;
    assert_eq!(unread["items"], json!([]), "{unread}");

    // What happens afterwards is news again: Bob's reply move.
    let reply = token(
        &command(&app, &b, Method::POST, &format!("/v1/games/{game}/moves"), Some(json!({"uci": "e7e5", "ply": 1})))
            .await,
    );
    let after = get_after(&app, "/v1/notifications", &a, &[&reply]).await;
    assert_eq!(summary(&after)[0], ("game_move".to_owned(), b.id.clone(), game.clone(), false), "{after}");
    assert_eq!(unread_count(&app, &a, &[&reply]).await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn notification_queries_refuse_bad_parameters_and_anonymous_callers() {
    let app = TestApp::spawn().await;
    let u = app.user("someone").await;
    let bad = app.call(Method::GET, "/v1/notifications?unread=maybe").on(&app.query).token(&u.token).send().await;
    assert_invalid(&bad, "unread");
    let bad = app.call(Method::GET, "/v1/notifications?limit=101").on(&app.query).token(&u.token).send().await;
    assert_invalid(&bad, "limit");
    let (status, body) = app.get(&app.query, "/v1/notifications?cursor=%%%", &u.token).await;
    assert_eq!(status, 400, "{body}");
    // A mark naming no notification of the caller's is accepted (notifications exist only on
    // the read side) and reads nothing.
    let fan = app.user("fan").await;
    let followed = token(&command(&app, &fan, Method::PUT, &format!("/v1/follows/{}", u.id), None).await);
    let read = app.post_json("/v1/notifications/read", &u.token, &json!({"up_to": uuid::Uuid::new_v4()})).await;
    assert_eq!(unread_count(&app, &u, &[&followed, &assert_accepted(&read).consistency_token]).await, 1);
    for path in ["/v1/notifications", "/v1/notifications/unread-count"] {
        let anonymous = app.call(Method::GET, path).on(&app.query).send().await;
        assert_eq!(anonymous.status, 401, "{anonymous}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_cached_unread_count_follows_new_notifications_game_moves_and_read_marks() {
    // A TTL far beyond the test: only invalidation can make a count change.
    let app =
        crate::helpers::TestApp::spawn_with(crate::helpers::Stack::local(), &[("AGORA_CACHE_TTL_UNREAD_SECS", "600")])
            .await;
    let (white, black) = (app.user("white").await, app.user("black").await);
    let challenge =
        command(&app, &white, Method::POST, "/v1/games", Some(json!({"opponent_id": black.id, "color": "white"})))
            .await;
    let game = id(&challenge, "game_id");
    assert_eq!(unread_count(&app, &black, &[&token(&challenge)]).await, 1, "the challenge");
    // Cached now; a consistency token alone does not bypass the cache, so each answer below
    // is the cache's unless the projector retired it.
    let accept = command(&app, &black, Method::POST, &format!("/v1/games/{game}/accept"), None).await;
    assert_eq!(unread_count(&app, &black, &[&token(&accept)]).await, 1, "accepting notifies nobody");
    let mv =
        command(&app, &white, Method::POST, &format!("/v1/games/{game}/moves"), Some(json!({"uci": "e2e4", "ply": 0})))
            .await;
    assert_eq!(unread_count(&app, &black, &[&token(&mv)]).await, 2, "white's move is news for black");
    let follow = command(&app, &white, Method::PUT, &format!("/v1/follows/{}", black.id), None).await;
    assert_eq!(unread_count(&app, &black, &[&token(&follow)]).await, 3, "a follow");
    let read = command(&app, &black, Method::POST, "/v1/notifications/read", Some(json!({}))).await;
    assert_eq!(unread_count(&app, &black, &[&token(&read)]).await, 0, "read all");
    let reply =
        command(&app, &black, Method::POST, &format!("/v1/games/{game}/moves"), Some(json!({"uci": "e7e5", "ply": 1})))
            .await;
    let again =
        command(&app, &white, Method::POST, &format!("/v1/games/{game}/moves"), Some(json!({"uci": "g1f3", "ply": 2})))
            .await;
    assert_eq!(
        unread_count(&app, &black, &[&token(&reply), &token(&again)]).await,
        1,
        "the slot moved on: unread again"
    );
    app.shutdown().await;
}
