//! PUT / DELETE /v1/follows/{user_id}: follows are a set.

use super::{decide_and_append, metadata};
use crate::domain::follow::{self, FollowCommand, FollowRejection, FollowState};
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::{AggregateType, FollowId, UserId};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;

#[utoipa::path(
    put,
    path = "/v1/follows/{user_id}",
    tag = "follows",
    params(super::IdempotencyKey, ("user_id" = uuid::Uuid, Path, description = "the user to follow")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn follow(
    app: State<AppState>,
    user: AuthUser,
    request: Extension<RequestId>,
    target: Path<String>,
) -> Result<(StatusCode, ApiJson<super::Accepted>), ApiError> {
    run(app, user, request, target, FollowCommand::Follow).await
}

#[utoipa::path(
    delete,
    path = "/v1/follows/{user_id}",
    tag = "follows",
    params(super::IdempotencyKey, ("user_id" = uuid::Uuid, Path, description = "the user to unfollow")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn unfollow(
    app: State<AppState>,
    user: AuthUser,
    request: Extension<RequestId>,
    target: Path<String>,
) -> Result<(StatusCode, ApiJson<super::Accepted>), ApiError> {
    run(app, user, request, target, FollowCommand::Unfollow).await
}

async fn run(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(target): Path<String>,
    command: FollowCommand,
) -> Result<(StatusCode, ApiJson<super::Accepted>), ApiError> {
    let target: UserId = target.parse().map_err(|_| ApiError::NotFound)?;
    if target == me {
        return Err(ApiError::invalid_field("user_id", FollowRejection::SelfFollow.to_string()));
    }
    if !super::user_exists(&app, target).await? {
        return Err(ApiError::NotFound);
    }
    let edge = FollowId::of(me, target);
    let accepted = decide_and_append(&app, &key(AggregateType::Follow, edge), edge.0, metadata(me, &request), |head| {
        let event = follow::decide(head.state, me, target, command)
            .map_err(|e| ApiError::invalid_field("user_id", e.to_string()))?;
        Ok(event.map(|e| {
            let state: FollowState = follow::apply(head.state, &e);
            (e, state)
        }))
    })
    .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(accepted)))
}
