//! Chess games: one game, and a player's games, latest first.
//!
//! The documents' layout is `agora_projector::readmodel::games`: a game is one `_id` lookup;
//! a player's list comes from `user_games` (by `user_id`, optionally `status`: equalities,
//! which FerretDB pushes down), ordered by the game id (UUIDv7: creation order, immutable, so
//! it is also the page cursor), then each game is looked up by `_id`.

use super::users::user_refs;
use super::{find_page, params};
use crate::cursor;
use crate::startup::AppState;
use crate::views::{self, Page, UserRef};
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::games as layout;
use agora_schemas::{GameId, UserId};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use mongodb::bson::{Document, doc};
use serde::Serialize;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/games/{game_id}", get(game)).route("/v1/users/{user_id}/games", get(user_games))
}

/// A game: `{game_id, white, black, status, fen, moves, ply, turn, result, end_reason}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Game {
    #[schema(format = Uuid)]
    pub game_id: String,
    pub white: UserRef,
    pub black: UserRef,
    /// `pending`, `active` or `finished`.
    #[schema(schema_with = status_schema)]
    pub status: String,
    /// Standard FEN of the current position.
    pub fen: String,
    /// UCI, from the first move.
    pub moves: Vec<String>,
    pub ply: u32,
    /// `white` or `black`: the side to move.
    #[schema(schema_with = turn_schema)]
    pub turn: String,
    /// `1-0`, `0-1` or `1/2-1/2` once finished.
    #[schema(schema_with = result_schema, required = true)]
    pub result: Option<String>,
    /// `checkmate`, `stalemate`, `insufficient_material`, `threefold_repetition`,
    /// `fifty_move_rule` or `resignation` once finished.
    #[schema(schema_with = end_reason_schema, required = true)]
    pub end_reason: Option<String>,
}

const STATUSES: [&str; 3] = ["pending", "active", "finished"];

/// `?status=` of a player's games.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StatusParam {
    /// Only the games in this state; anything else is 422.
    #[param(schema_with = status_schema, required = false)]
    status: Option<String>,
}

fn status_schema() -> utoipa::openapi::Object {
    views::one_of(&STATUSES, false)
}

fn turn_schema() -> utoipa::openapi::Object {
    views::one_of(&["white", "black"], false)
}

fn result_schema() -> utoipa::openapi::Object {
    views::one_of(&["1-0", "0-1", "1/2-1/2"], true)
}

fn end_reason_schema() -> utoipa::openapi::Object {
    let reasons =
        ["checkmate", "stalemate", "insufficient_material", "threefold_repetition", "fifty_move_rule", "resignation"];
    views::one_of(&reasons, true)
}

/// The players' ids of a game document.
fn players(d: &Document) -> Option<(&str, &str)> {
    Some((d.get_str("white_id").ok()?, d.get_str("black_id").ok()?))
}

/// A game document as the contract shows it, once its challenge is applied and both players'
/// profiles are known.
fn view(d: &Document, refs: &HashMap<String, UserRef>) -> Option<Game> {
    let (white, black) = players(d)?;
    let ply = d.get_i64("ply").or_else(|_| d.get_i32("ply").map(i64::from)).unwrap_or(0);
    Some(Game {
        game_id: d.get_str("_id").ok()?.to_owned(),
        white: refs.get(white)?.clone(),
        black: refs.get(black)?.clone(),
        status: d.get_str("status").ok()?.to_owned(),
        fen: d.get_str("fen").unwrap_or(layout::START_FEN).to_owned(),
        moves: layout::moves(d),
        ply: u32::try_from(ply).unwrap_or(0),
        turn: d.get_str("turn").unwrap_or("white").to_owned(),
        result: d.get_str("result").ok().map(str::to_owned),
        end_reason: d.get_str("end_reason").ok().map(str::to_owned),
    })
}

/// The views of game documents, in their order; games not (yet) showable are left out.
async fn views_of(app: &AppState, docs: &[Document]) -> Result<Vec<Game>, ApiError> {
    let ids: Vec<String> = docs.iter().filter_map(players).flat_map(|(w, b)| [w.to_owned(), b.to_owned()]).collect();
    let refs = user_refs(app, &ids).await?;
    Ok(docs.iter().filter_map(|d| view(d, &refs)).collect())
}

#[utoipa::path(
    get,
    path = "/v1/games/{game_id}",
    tag = "games",
    params(("game_id" = uuid::Uuid, Path, description = "the game")),
    responses((status = 200, description = "the game", body = Game), super::NamedErrors),
    security(("bearer" = []))
)]
pub async fn game(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(game_id): Path<String>,
) -> Result<ApiJson<Game>, ApiError> {
    let game: GameId = game_id.parse().map_err(|_| ApiError::NotFound)?;
    let d = app.store(Coll::Games, |c| async move { c.find_one(doc! {"_id": game.to_string()}).await }).await?;
    let d = d.ok_or(ApiError::NotFound)?;
    views_of(&app, std::slice::from_ref(&d)).await?.pop().map(ApiJson).ok_or(ApiError::NotFound)
}

/// A registered user's games, latest first, optionally only those with `status`.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/games",
    tag = "games",
    params(("user_id" = uuid::Uuid, Path, description = "a player"), super::PageParams, StatusParam),
    responses((status = 200, description = "the user's games, latest first", body = Page<Game>), super::NamedListErrors),
    security(("bearer" = []))
)]
pub async fn user_games(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(user_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Game>>, ApiError> {
    let q = params(query)?;
    let limit = cursor::limit(q.get("limit").map(String::as_str)).map_err(|m| ApiError::invalid_field("limit", m))?;
    let status = match q.get("status").map(String::as_str) {
        None => None,
        Some(s) if STATUSES.contains(&s) => Some(s),
        Some(_) => return Err(ApiError::invalid_field("status", "status must be pending, active or finished")),
    };
    let after = match q.get("cursor") {
        Some(c) => Some(cursor::decode(c).map_err(|_| ApiError::BadRequest("malformed cursor".into()))?),
        None => None,
    };
    let user: UserId = user_id.parse().map_err(|_| ApiError::NotFound)?;
    let mut filter = doc! {"user_id": user.to_string()};
    if let Some(s) = status {
        filter.insert("status", s);
    }
    if let Some(after) = after {
        filter.insert("game_id", doc! {"$lt": after});
    }
    let entries = find_page(&app, Coll::UserGames, filter, "game_id", -1, limit);
    let registered = async {
        let d = app.store(Coll::Users, |c| async move { c.find_one(doc! {"_id": user.to_string()}).await }).await?;
        Ok::<_, ApiError>(d.is_some_and(|d| views::is_registered(&d)))
    };
    let (entries, registered) = futures::try_join!(entries, registered)?;
    if !registered {
        return Err(ApiError::NotFound);
    }
    let more = entries.len() as i64 > limit;
    let page: Vec<&str> = entries.iter().take(limit as usize).filter_map(|d| d.get_str("game_id").ok()).collect();
    // One `_id` lookup per game, concurrently: FerretDB pushes `_id` equality down, not `$in`.
    let found = futures::future::try_join_all(page.iter().map(|id| {
        let filter = doc! {"_id": *id};
        app.store(Coll::Games, |c| async move { c.find_one(filter).await })
    }))
    .await?;
    let docs: Vec<Document> = found.into_iter().flatten().collect();
    let items = views_of(&app, &docs).await?;
    let next_cursor = if more { page.last().map(|id| cursor::encode(id)) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRef {
        UserRef { user_id: id.into(), handle: format!("h{id}"), display_name: format!("H{id}") }
    }

    #[test]
    fn a_game_shows_its_players_moves_and_outcome() {
        let refs: HashMap<String, UserRef> = [("w".into(), user("w")), ("b".into(), user("b"))].into();
        let d = doc! {
            "_id": "g", "white_id": "w", "black_id": "b", "status": "finished", "fen": "x b - - 0 1",
            "ply": 2_i64, "turn": "black", "moves": {"0": "e2e4", "1": "e7e5"},
            "result": "0-1", "end_reason": "checkmate",
        };
        let g = view(&d, &refs).unwrap_or_else(|| panic!("no view"));
        assert_eq!((g.white.user_id.as_str(), g.black.user_id.as_str()), ("w", "b"));
        assert_eq!((g.moves, g.ply, g.turn.as_str()), (vec!["e2e4".to_owned(), "e7e5".to_owned()], 2, "black"));
        assert_eq!((g.result.as_deref(), g.end_reason.as_deref()), (Some("0-1"), Some("checkmate")));
    }

    #[test]
    fn an_unfinished_game_has_a_null_result_and_a_game_without_its_challenge_is_not_shown() {
        let refs: HashMap<String, UserRef> = [("w".into(), user("w")), ("b".into(), user("b"))].into();
        let pending = doc! {"_id": "g", "white_id": "w", "black_id": "b", "status": "pending", "result": null};
        let json = serde_json::to_value(view(&pending, &refs)).unwrap_or_default();
        assert_eq!(json["result"], serde_json::Value::Null);
        assert_eq!(json["end_reason"], serde_json::Value::Null);
        assert_eq!(json["fen"], layout::START_FEN);
        assert!(view(&doc! {"_id": "g", "status": "active", "ply": 1_i64}, &refs).is_none());
    }
}
