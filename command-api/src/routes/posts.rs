//! Posts, their likes and their comments.

use super::{Accepted, accepted, decide_and_append, load_post, metadata};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    text: String,
}

fn rejection(e: PostRejection) -> ApiError {
    match e {
        PostRejection::NotFound => ApiError::NotFound,
        PostRejection::NotAuthor => ApiError::Forbidden(e.to_string()),
        PostRejection::AlreadyExists => ApiError::Conflict(e.to_string()),
    }
}

pub async fn create(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let text = PostText::parse(body.text).map_err(|e| e.on("text"))?;
    let post_id = PostId::new();
    let key = key(AggregateType::Post, post_id);
    let done = decide_and_append(&app, &key, post_id.0, metadata(me, &request), |head| {
        let command = PostCommand::Create { post_id, author: me, text: text.as_ref().to_owned() };
        post_step(&head.state, command)
    })
    .await?;
    accepted(done.with("post_id", post_id))
}

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

pub async fn comment(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(post_id): Path<String>,
    ApiJson(body): ApiJson<TextBody>,
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
    accepted(done.with("comment_id", comment_id))
}

fn post_step(state: &PostState, command: PostCommand) -> Result<Option<(agora_schemas::Event, PostState)>, ApiError> {
    let event = post::decide(state, command).map_err(rejection)?;
    Ok(event.map(|e| (e.clone(), post::apply(state.clone(), &e))))
}

pub async fn like(
    app: State<AppState>,
    user: AuthUser,
    request: Extension<RequestId>,
    post_id: Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    like_or_unlike(app, user, request, post_id, LikeCommand::Like).await
}

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
