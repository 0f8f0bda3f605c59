//! The games queries of the contract, end to end on the real stack: one game from its
//! challenge to checkmate, and a player's games, latest first, by status, in pages.

use crate::helpers::{TestApp, User, assert_accepted, assert_invalid, assert_problem, challenge, query_until};
use reqwest::Method;
use serde_json::{Value, json};

const START: &str = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1";

fn user_shape(u: &User) -> Value {
    json!({"user_id": u.id, "handle": u.handle, "display_name": u.handle})
}

fn game_ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["game_id"].as_str().unwrap().to_owned()).collect()
}

async fn command(app: &TestApp, by: &User, path: &str, body: Option<Value>) {
    let call = app.call(Method::POST, path).token(&by.token);
    let call = match body {
        Some(b) => call.json(&b),
        None => call,
    };
    assert_accepted(&call.send().await);
}

async fn play(app: &TestApp, game: &str, by: &User, uci: &str, ply: u32) {
    command(app, by, &format!("/v1/games/{game}/moves"), Some(json!({"uci": uci, "ply": ply}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_game_reads_back_from_its_challenge_to_checkmate() {
    let app = TestApp::spawn().await;
    let (white, black, watcher) = (app.user("white").await, app.user("black").await, app.user("watcher").await);
    let game = challenge(&app, &black, &white, "black").await;
    let path = format!("/v1/games/{game}");

    let pending = query_until(&app, &path, &watcher.token, "the challenge", |s, _| s == 200).await;
    assert_eq!(
        pending,
        json!({
            "game_id": game, "white": user_shape(&white), "black": user_shape(&black), "status": "pending",
            "fen": START, "moves": [], "ply": 0, "turn": "white", "result": null, "end_reason": null,
        })
    );

    command(&app, &white, &format!("/v1/games/{game}/accept"), None).await;
    query_until(&app, &path, &watcher.token, "the accept", |s, b| s == 200 && b["status"] == "active").await;

    // Fool's mate, one ply short: black to move, nothing decided yet.
    for (ply, (by, uci)) in [(&white, "f2f3"), (&black, "e7e5"), (&white, "g2g4")].into_iter().enumerate() {
        play(&app, &game, by, uci, ply as u32).await;
    }
    let three = query_until(&app, &path, &watcher.token, "three moves", |s, b| s == 200 && b["ply"] == 3).await;
    assert_eq!(three["moves"], json!(["f2f3", "e7e5", "g2g4"]), "{three}");
    assert_eq!(three["fen"], "rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq - 0 2", "{three}");
    assert_eq!((three["turn"].as_str(), three["status"].as_str()), (Some("black"), Some("active")), "{three}");
    assert_eq!((&three["result"], &three["end_reason"]), (&Value::Null, &Value::Null), "{three}");

    play(&app, &game, &black, "d8h4", 3).await;
    let mated = query_until(&app, &path, &white.token, "the mate", |s, b| s == 200 && b["status"] == "finished").await;
    assert_eq!(
        mated,
        json!({
            "game_id": game, "white": user_shape(&white), "black": user_shape(&black), "status": "finished",
            "fen": "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3",
            "moves": ["f2f3", "e7e5", "g2g4", "d8h4"], "ply": 4, "turn": "white",
            "result": "0-1", "end_reason": "checkmate",
        })
    );

    // Unknown games are 404, malformed or not, and the upper-case form of an id is the same game.
    for bad in ["/v1/games/not-a-game", "/v1/games/0190b4a0-0000-7000-8000-000000000000", "/v1/games/%20"] {
        let (status, body) = app.get(&app.query, bad, &watcher.token).await;
        assert_eq!(status, 404, "{bad}: {body}");
    }
    let (status, body) = app.get(&app.query, &format!("/v1/games/{}", game.to_uppercase()), &watcher.token).await;
    assert_eq!((status, &body["game_id"]), (200, &json!(game)), "{body}");
    let anonymous = app.call(Method::GET, &path).on(&app.query).send().await;
    assert_eq!(anonymous.status, 401, "{anonymous}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_players_games_are_latest_first_by_status_and_page_without_repeats_or_skips() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (app.user("a").await, app.user("b").await, app.user("c").await);
    // a has a pending game with b, an active one with c, and a finished one with b (resigned).
    let pending = challenge(&app, &a, &b, "white").await;
    let active = challenge(&app, &c, &a, "random").await;
    command(&app, &a, &format!("/v1/games/{active}/accept"), None).await;
    let finished = challenge(&app, &b, &a, "white").await;
    command(&app, &a, &format!("/v1/games/{finished}/accept"), None).await;
    play(&app, &finished, &b, "e2e4", 0).await;
    command(&app, &a, &format!("/v1/games/{finished}/resign"), None).await;

    let mine = format!("/v1/users/{}/games", a.id);
    let all = query_until(&app, &mine, &b.token, "a's three games, the last one finished", |s, body| {
        s == 200 && body["items"].as_array().is_some_and(|i| i.len() == 3) && body["items"][0]["status"] == "finished"
    })
    .await;
    assert_eq!(game_ids(&all), vec![finished.clone(), active.clone(), pending.clone()], "latest first: {all}");
    assert_eq!(all["next_cursor"], Value::Null);
    let statuses: Vec<&str> = all["items"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["finished", "active", "pending"]);
    let resigned = &all["items"][0];
    assert_eq!((&resigned["white"], &resigned["black"]), (&user_shape(&b), &user_shape(&a)), "{resigned}");
    assert_eq!(
        (&resigned["moves"], &resigned["result"], &resigned["end_reason"], &resigned["turn"]),
        (&json!(["e2e4"]), &json!("1-0"), &json!("resignation"), &json!("black")),
        "{resigned}"
    );

    // By status, for each player; the status a list filters on is the one its items show.
    for (who, status, expected) in [
        (&a, "pending", vec![pending.clone()]),
        (&a, "active", vec![active.clone()]),
        (&a, "finished", vec![finished.clone()]),
        (&b, "active", vec![]),
        (&b, "pending", vec![pending.clone()]),
        (&c, "active", vec![active.clone()]),
    ] {
        let path = format!("/v1/users/{}/games?status={status}", who.id);
        let (code, page) = app.get(&app.query, &path, &a.token).await;
        assert_eq!((code, game_ids(&page)), (200, expected), "{path}: {page}");
        assert!(page["items"].as_array().unwrap().iter().all(|i| i["status"] == status), "{page}");
    }
    let (_, bs) = app.get(&app.query, &format!("/v1/users/{}/games", b.id), &b.token).await;
    assert_eq!(game_ids(&bs), vec![finished.clone(), pending.clone()], "{bs}");

    // Pages of one: each game once, in order, though a newer game arrives after the first page.
    let (_, first) = app.get(&app.query, &format!("{mine}?limit=1"), &a.token).await;
    let mut seen = game_ids(&first);
    let newer = challenge(&app, &c, &a, "black").await;
    query_until(&app, &mine, &a.token, "the fourth game", |s, body| s == 200 && game_ids(body)[0] == newer).await;
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(cur) = cursor {
        let (status, page) = app.get(&app.query, &format!("{mine}?limit=1&cursor={cur}"), &a.token).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        seen.extend(game_ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        assert!(seen.len() <= 3, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, vec![finished, active, pending], "no repeat and no skip");

    // Bad parameters and ids.
    let (app_ref, token) = (&app, a.token.clone());
    let get = |path: String| {
        let token = token.clone();
        async move { app_ref.call(Method::GET, &path).on(&app_ref.query).token(&token).send().await }
    };
    assert_invalid(&get(format!("{mine}?status=won")).await, "status");
    assert_invalid(&get(format!("{mine}?status=")).await, "status");
    assert_invalid(&get(format!("{mine}?limit=0")).await, "limit");
    assert_problem(&get(format!("{mine}?cursor=%25%25%25")).await, 400);
    for bad in ["/v1/users/nobody/games", "/v1/users/0190b4a0-0000-7000-8000-000000000000/games"] {
        assert_problem(&get(bad.to_owned()).await, 404);
    }
    app.shutdown().await;
}
