//! Posts, their likes and their comments.

use super::{Accepted, Start, accepted, decide_and_append, decide_and_append_from, load_post, metadata};
use crate::domain::like::{self, LikeCommand, LikeState};
use crate::domain::post::{self, PostCommand, PostRejection, PostState};
use crate::domain::validation::{CommentText, PostText};
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::{AggregateType, CommentId, LikeId, PostId};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

/// A post's body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    /// 1-2000 characters; no control characters other than `\n` and `\t`.
    #[schema(min_length = 1, max_length = 2000, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    text: String,
}

/// A comment's body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    /// 1-1000 characters; no control characters other than `\n` and `\t`.
    #[schema(min_length = 1, max_length = 1000, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    text: String,
}

fn rejection(e: PostRejection) -> ApiError {
    match e {
        PostRejection::NotFound => ApiError::NotFound,
        PostRejection::NotAuthor => ApiError::Forbidden(e.to_string()),
        PostRejection::AlreadyExists => ApiError::Conflict(e.to_string()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/posts",
    tag = "posts",
    request_body = TextBody,
    params(super::IdempotencyKey),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let text = PostText::parse(body.text).map_err(|e| e.on("text"))?;
    let post_id = PostId::new();
    let key = key(AggregateType::Post, post_id);
    let done = decide_and_append_from(&app, &key, post_id.0, metadata(me, &request), Start::Unclaimed, |head| {
        let command = PostCommand::Create { post_id, author: me, text: text.as_ref().to_owned() };
        post_step(&head.state, command)
    })
    .await?;
    accepted(Accepted { post_id: Some(post_id.0), ..done })
}

#[utoipa::path(
    delete,
    path = "/v1/posts/{post_id}",
    tag = "posts",
    params(super::IdempotencyKey, ("post_id" = uuid::Uuid, Path, description = "the post")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(post_id): Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let post_id: PostId = post_id.parse().map_err(|_| ApiError::NotFound)?;
    let key = key(AggregateType::Post, post_id);
    let done = decide_and_append(&app, &key, post_id.0, metadata(me, &request), |head| {
        post_step(&head.state, PostCommand::Delete { post_id, by: me })
    })
    .await?;
    accepted(done)
}

#[utoipa::path(
    post,
    path = "/v1/posts/{post_id}/comments",
    tag = "posts",
    request_body = CommentBody,
    params(super::IdempotencyKey, ("post_id" = uuid::Uuid, Path, description = "the post")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn comment(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(post_id): Path<String>,
    ApiJson(body): ApiJson<CommentBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let post_id: PostId = post_id.parse().map_err(|_| ApiError::NotFound)?;
    let text = CommentText::parse(body.text).map_err(|e| e.on("text"))?;
    let comment_id = CommentId::new();
    let key = key(AggregateType::Post, post_id);
    let done = decide_and_append(&app, &key, post_id.0, metadata(me, &request), |head| {
        let command = PostCommand::Comment { post_id, comment_id, by: me, text: text.as_ref().to_owned() };
        post_step(&head.state, command)
    })
    .await?;
    accepted(Accepted { comment_id: Some(comment_id.0), ..done })
}

fn post_step(state: &PostState, command: PostCommand) -> Result<Option<(agora_schemas::Event, PostState)>, ApiError> {
    let event = post::decide(state, command).map_err(rejection)?;
    Ok(event.map(|e| (e.clone(), post::apply(state.clone(), &e))))
}

#[utoipa::path(
    put,
    path = "/v1/posts/{post_id}/like",
    tag = "posts",
    params(super::IdempotencyKey, ("post_id" = uuid::Uuid, Path, description = "the post")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn like(
    app: State<AppState>,
    user: AuthUser,
    request: Extension<RequestId>,
    post_id: Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    like_or_unlike(app, user, request, post_id, LikeCommand::Like).await
}

#[utoipa::path(
    delete,
    path = "/v1/posts/{post_id}/like",
    tag = "posts",
    params(super::IdempotencyKey, ("post_id" = uuid::Uuid, Path, description = "the post")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn unlike(
    app: State<AppState>,
    user: AuthUser,
    request: Extension<RequestId>,
    post_id: Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    like_or_unlike(app, user, request, post_id, LikeCommand::Unlike).await
}

async fn like_or_unlike(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(post_id): Path<String>,
    command: LikeCommand,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let post_id: PostId = post_id.parse().map_err(|_| ApiError::NotFound)?;
    // The post's own head decides whether it exists; a like racing its deletion may land
    // just after it, and the read side drops likes of deleted posts.
    let post: PostState = load_post(&app, post_id).await?;
    let like_id = LikeId::of(post_id, me);
    let key = key(AggregateType::Like, like_id);
    let done = decide_and_append(&app, &key, like_id.0, metadata(me, &request), |head| {
        let state: LikeState = head.state;
        let event = like::decide(state, &post, post_id, me, command).map_err(|_| ApiError::NotFound)?;
        Ok(event.map(|e| (e.clone(), like::apply(state, &e))))
    })
    .await?;
    accepted(done)
}
