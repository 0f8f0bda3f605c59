//! Chess through the public API: who may do what, illegal moves with their reasons, and games
//! that end by themselves, with the outcome on the move event that ends them.

use crate::helpers::{Answer, TestApp, User, assert_accepted, assert_invalid, assert_problem, of_type};
use agora_schemas::AggregateType;
use reqwest::Method;
use serde_json::json;

struct Game {
    id: String,
    white: User,
    black: User,
}

/// A game between two new users, accepted, with `white` to move.
async fn active_game(app: &TestApp) -> Game {
    let white = app.user("white").await;
    let black = app.user("black").await;
    let created = app
        .call(Method::POST, "/v1/games")
        .token(&white.token)
        .json(&json!({"opponent_id": black.id, "color": "white"}))
        .send()
        .await;
    assert_accepted(&created);
    let id = created.str("game_id");
    assert_accepted(&app.call(Method::POST, &format!("/v1/games/{id}/accept")).token(&black.token).send().await);
    Game { id, white, black }
}

async fn play(app: &TestApp, game: &Game, by: &User, uci: &str, ply: u32) -> Answer {
    app.call(Method::POST, &format!("/v1/games/{}/moves", game.id))
        .token(&by.token)
        .json(&json!({"uci": uci, "ply": ply}))
        .send()
        .await
}

/// Plays `moves` alternately from the start, each one accepted.
async fn play_all(app: &TestApp, game: &Game, moves: &[&str]) -> Answer {
    let mut last = None;
    for (ply, uci) in moves.iter().enumerate() {
        let by = if ply % 2 == 0 { &game.white } else { &game.black };
        let answer = play(app, game, by, uci, ply as u32).await;
        assert_accepted(&answer);
        last = Some(answer);
    }
    last.unwrap_or_else(|| panic!("no moves"))
}

async fn last_move_payload(app: &TestApp, game: &Game) -> serde_json::Value {
    let events = app.log_events(AggregateType::Game).await;
    let moves: Vec<_> = of_type(&events, "game.move_made")
        .into_iter()
        .filter(|e| e.aggregate_id().to_string() == game.id)
        .map(|e| e.to_raw().unwrap().payload)
        .collect();
    moves.last().cloned().unwrap_or_else(|| panic!("no move events for {}", game.id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn who_may_challenge_accept_move_and_resign() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (app.user("a").await, app.user("b").await, app.user("c").await);
    let challenge = |by: &User, body: serde_json::Value| {
        let token = by.token.clone();
        let app = &app;
        async move { app.call(Method::POST, "/v1/games").token(&token).json(&body).send().await }
    };
    assert_invalid(&challenge(&a, json!({"opponent_id": a.id, "color": "white"})).await, "opponent_id");
    assert_problem(&challenge(&a, json!({"opponent_id": uuid::Uuid::now_v7(), "color": "white"})).await, 404);
    assert_problem(&challenge(&a, json!({"opponent_id": b.id, "color": "purple"})).await, 422);
    let created = challenge(&a, json!({"opponent_id": b.id, "color": "black"})).await;
    assert_accepted(&created);
    let game = created.str("game_id");
    let accept = |by: &User| {
        let path = format!("/v1/games/{game}/accept");
        let token = by.token.clone();
        let app = &app;
        async move { app.call(Method::POST, &path).token(&token).send().await }
    };
    // Only the challenged player accepts, once; nobody moves before that.
    assert_problem(&accept(&a).await, 403);
    assert_problem(&accept(&c).await, 403);
    let g = Game { id: game.clone(), white: b, black: a };
    assert_problem(&play(&app, &g, &g.white, "e2e4", 0).await, 409);
    assert_accepted(&accept(&g.white).await);
    assert_problem(&accept(&g.white).await, 409);
    // Out of turn, stale ply, not a player.
    assert_problem(&play(&app, &g, &g.black, "e7e5", 0).await, 409);
    assert_problem(&play(&app, &g, &g.white, "e2e4", 1).await, 409);
    assert_problem(&play(&app, &g, &c, "e2e4", 0).await, 403);
    assert_accepted(&play(&app, &g, &g.white, "e2e4", 0).await);
    assert_problem(&play(&app, &g, &g.white, "d2d4", 0).await, 409);
    // Resign: not a player 403; the resigning player's opponent wins.
    let resign = |by: &User| {
        let path = format!("/v1/games/{game}/resign");
        let token = by.token.clone();
        let app = &app;
        async move { app.call(Method::POST, &path).token(&token).send().await }
    };
    assert_problem(&resign(&c).await, 403);
    assert_accepted(&resign(&g.black).await);
    assert_problem(&resign(&g.white).await, 409);
    assert_problem(&play(&app, &g, &g.black, "e7e5", 1).await, 409);
    let events = app.log_events(AggregateType::Game).await;
    let resigned = of_type(&events, "game.resigned");
    assert_eq!(resigned.len(), 1);
    let outcome = &resigned[0].to_raw().unwrap().payload["outcome"];
    assert_eq!((outcome["result"].as_str(), outcome["reason"].as_str()), (Some("1-0"), Some("resignation")));
    // Unknown games: 404, malformed or not.
    let unknown = Game { id: uuid::Uuid::now_v7().to_string(), white: g.white, black: g.black };
    assert_problem(&play(&app, &unknown, &unknown.white, "e2e4", 0).await, 404);
    let malformed = Game { id: "not-a-game".into(), ..unknown };
    assert_problem(&play(&app, &malformed, &malformed.white, "e2e4", 0).await, 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn illegal_moves_are_422_with_their_reason() {
    let app = TestApp::spawn().await;
    let reason = |a: &Answer| {
        assert_invalid(a, "uci");
        a.body["detail"].as_str().unwrap_or_default().to_owned()
    };
    // The opponent's piece, an empty square, a bad notation.
    let g = active_game(&app).await;
    assert!(reason(&play(&app, &g, &g.white, "e7e5", 0).await).contains("not yours"));
    assert!(reason(&play(&app, &g, &g.white, "e3e4", 0).await).contains("no piece"));
    assert_problem(&play(&app, &g, &g.white, "E2E4", 0).await, 422);

    // Into check: 1. e4 e5 2. Ke2 Bc5, and the king may not step onto e3, which the bishop holds.
    let g = active_game(&app).await;
    play_all(&app, &g, &["e2e4", "e7e5", "e1e2", "f8c5"]).await;
    assert!(reason(&play(&app, &g, &g.white, "e2e3", 4).await).contains("check"), "king into check");

    // Castling out of check and through check.
    let g = active_game(&app).await;
    play_all(&app, &g, &["e2e4", "e7e5", "g1f3", "d7d6", "f1c4", "c8g4", "d2d3", "d8h4", "c1e3", "h4f2"]).await;
    let out = reason(&play(&app, &g, &g.white, "e1g1", 10).await);
    assert!(out.contains("check"), "castling out of check: {out}");
    let g2 = active_game(&app).await;
    play_all(&app, &g2, &["e2e4", "d7d5", "g1f3", "d5e4", "f1c4", "c8h3", "a2a3", "h3g2"]).await;
    let through = reason(&play(&app, &g2, &g2.white, "e1g1", 8).await);
    assert!(through.contains("through") || through.contains("attacked"), "castling through check: {through}");

    // En passant that is not available (the pawn did not just make a double step).
    let g = active_game(&app).await;
    play_all(&app, &g, &["e2e4", "a7a6", "e4e5", "d7d5", "a2a3", "a6a5"]).await;
    let ep = reason(&play(&app, &g, &g.white, "e5d6", 6).await);
    assert!(ep.contains("en passant"), "{ep}");

    // A promotion without its piece.
    let g = active_game(&app).await;
    play_all(&app, &g, &["h2h4", "g7g5", "h4g5", "h7h6", "g5h6", "g8f6", "h6h7", "f6g8"]).await;
    let promo = reason(&play(&app, &g, &g.white, "h7g8", 8).await);
    assert!(promo.contains("promotion"), "{promo}");
    assert_accepted(&play(&app, &g, &g.white, "h7g8q", 8).await);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn games_end_by_mate_and_by_stalemate_with_the_outcome_on_the_last_move() {
    let app = TestApp::spawn().await;
    // Fool's mate: black mates on ply 3.
    let g = active_game(&app).await;
    play_all(&app, &g, &["f2f3", "e7e5", "g2g4", "d8h4"]).await;
    let last = last_move_payload(&app, &g).await;
    assert_eq!(last["outcome"], json!({"result": "0-1", "reason": "checkmate"}), "{last}");
    assert_problem(&play(&app, &g, &g.white, "e2e4", 4).await, 409);

    // The shortest known stalemate (Loyd): white to move has none on ply 19.
    let g = active_game(&app).await;
    let loyd = [
        "e2e3", "a7a5", "d1h5", "a8a6", "h5a5", "h7h5", "h2h4", "a6h6", "a5c7", "f7f6", "c7d7", "e8f7", "d7b7", "d8d3",
        "b7b8", "d3h7", "b8c8", "f7g6", "c8e6",
    ];
    play_all(&app, &g, &loyd).await;
    let last = last_move_payload(&app, &g).await;
    assert_eq!(last["outcome"], json!({"result": "1/2-1/2", "reason": "stalemate"}), "{last}");
    assert_problem(&play(&app, &g, &g.black, "g6h7", 19).await, 409);
    app.shutdown().await;
}
