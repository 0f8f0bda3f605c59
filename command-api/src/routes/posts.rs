//! POST /v1/posts.

use super::{decide_and_append, metadata};
use crate::domain::validation::PostText;
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::events::PostCreated;
use agora_schemas::{AggregateType, PostId, UserId};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePost {
    text: String,
}

/// What the write side keeps of a post: who may delete it, whether it still exists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PostState {
    pub author_id: Option<UserId>,
    pub deleted: bool,
}

pub async fn create(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<CreatePost>,
) -> Result<(StatusCode, ApiJson<super::Accepted>), ApiError> {
    let text = PostText::parse(body.text).map_err(|e| e.on("text"))?;
    let post_id = PostId::new();
    let accepted = decide_and_append(
        &app,
        &key(AggregateType::Post, post_id),
        post_id.0,
        metadata(me, &request),
        |head: &crate::store::Head<PostState>| {
            if head.version > 0 {
                return Err(ApiError::Conflict("post id already used".into()));
            }
            let event = PostCreated {
                post_id,
                author_id: me,
                text: text.as_ref().to_owned(),
            };
            Ok(Some((
                event.into(),
                PostState {
                    author_id: Some(me),
                    deleted: false,
                },
            )))
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(accepted.with("post_id", post_id)),
    ))
}
