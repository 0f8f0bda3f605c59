//! Chess games: challenge, accept, move, resign. The rules are `domain::game`.

use super::{Accepted, accepted, decide_and_append, metadata, user_exists};
use crate::domain::game::{self, GameCommand, GameRejection, GameState, RejectionKind};
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::events::Color;
use agora_schemas::{AggregateType, GameId, UserId};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

/// The challenger's side.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColorChoice {
    White,
    Black,
    Random,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeBody {
    #[schema(format = Uuid)]
    opponent_id: String,
    color: ColorChoice,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// UCI, lowercase promotion letter: `e2e4`, `e7e8q`.
    #[schema(pattern = "^[a-h][1-8][a-h][1-8][qrbn]?$")]
    uci: String,
    /// Plies already played.
    ply: u32,
}

fn rejection(e: GameRejection) -> ApiError {
    let detail = e.to_string();
    match e.status_class() {
        RejectionKind::NotFound => ApiError::NotFound,
        RejectionKind::Forbidden => ApiError::Forbidden(detail),
        RejectionKind::Conflict => ApiError::Conflict(detail),
        RejectionKind::Invalid => match e {
            GameRejection::SelfChallenge => ApiError::invalid_field("opponent_id", detail),
            _ => ApiError::invalid_field("uci", detail),
        },
        RejectionKind::Internal => ApiError::internal(detail),
    }
}

async fn run(
    app: &AppState,
    me: UserId,
    request: &RequestId,
    game_id: GameId,
    command: GameCommand,
) -> Result<Accepted, ApiError> {
    decide_and_append(app, &key(AggregateType::Game, game_id), game_id.0, metadata(me, request), |head| {
        let state: &GameState = &head.state;
        let event = game::decide(state, command.clone()).map_err(rejection)?;
        Ok(Some((event.clone(), game::apply(state.clone(), &event))))
    })
    .await
}

fn game_id(raw: &str) -> Result<GameId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

#[utoipa::path(
    post,
    path = "/v1/games",
    tag = "games",
    request_body = ChallengeBody,
    params(super::IdempotencyKey),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn challenge(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<ChallengeBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let opponent: UserId =
        body.opponent_id.parse().map_err(|_| ApiError::invalid_field("opponent_id", "must be a user id"))?;
    if opponent == me {
        return Err(rejection(GameRejection::SelfChallenge));
    }
    if !user_exists(&app, opponent).await? {
        return Err(ApiError::NotFound);
    }
    let challenger_color = match body.color {
        ColorChoice::White => Color::White,
        ColorChoice::Black => Color::Black,
        // Drawn here, once: the event records the outcome, so a replay never draws again.
        ColorChoice::Random if uuid::Uuid::new_v4().as_bytes()[0] & 1 == 0 => Color::White,
        ColorChoice::Random => Color::Black,
    };
    let id = GameId::new();
    let command = GameCommand::Challenge { game_id: id, challenger: me, opponent, challenger_color };
    let done = run(&app, me, &request, id, command).await?;
    accepted(Accepted { game_id: Some(id.0), ..done })
}

#[utoipa::path(
    post,
    path = "/v1/games/{game_id}/accept",
    tag = "games",
    params(super::IdempotencyKey, ("game_id" = uuid::Uuid, Path, description = "the game")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn accept(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let id = game_id(&id)?;
    accepted(run(&app, me, &request, id, GameCommand::Accept { by: me }).await?)
}

#[utoipa::path(
    post,
    path = "/v1/games/{game_id}/moves",
    tag = "games",
    request_body = MoveBody,
    params(super::IdempotencyKey, ("game_id" = uuid::Uuid, Path, description = "the game")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn play(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MoveBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let id = game_id(&id)?;
    accepted(run(&app, me, &request, id, GameCommand::Move { by: me, uci: body.uci, ply: body.ply }).await?)
}

#[utoipa::path(
    post,
    path = "/v1/games/{game_id}/resign",
    tag = "games",
    params(super::IdempotencyKey, ("game_id" = uuid::Uuid, Path, description = "the game")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn resign(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let id = game_id(&id)?;
    accepted(run(&app, me, &request, id, GameCommand::Resign { by: me }).await?)
}
