//! Direct messages and read marks.

use super::{Accepted, accepted, decide_and_append, metadata, user_exists};
use crate::domain::conversation::{self, ConversationRejection, ConversationState};
use crate::domain::validation::MessageText;
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::{AggregateType, ConversationId, MessageId, UserId};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    #[schema(format = Uuid)]
    to: String,
    /// 1-4000 characters; no control characters other than `\n` and `\t`.
    #[schema(min_length = 1, max_length = 4000, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    text: String,
}

fn rejection(e: ConversationRejection) -> ApiError {
    match e {
        ConversationRejection::SelfMessage => ApiError::invalid_field("to", e.to_string()),
        ConversationRejection::NotFound => ApiError::NotFound,
    }
}

#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body = SendBody,
    params(super::IdempotencyKey),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn send(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let to: UserId = body.to.parse().map_err(|_| ApiError::invalid_field("to", "must be a user id"))?;
    let text = MessageText::parse(body.text).map_err(|e| e.on("text"))?;
    if to == me {
        return Err(rejection(ConversationRejection::SelfMessage));
    }
    if !user_exists(&app, to).await? {
        return Err(ApiError::NotFound);
    }
    let conversation_id = ConversationId::between(me, to);
    let message_id = MessageId::new();
    let key = key(AggregateType::Conversation, conversation_id);
    let done = decide_and_append(&app, &key, conversation_id.0, metadata(me, &request), |head| {
        let state: &ConversationState = &head.state;
        let event = conversation::decide_send(message_id, me, to, text.as_ref().to_owned()).map_err(rejection)?;
        Ok(Some((event.clone(), conversation::apply(state.clone(), &event))))
    })
    .await?;
    accepted(Accepted { message_id: Some(message_id.0), conversation_id: Some(conversation_id.0), ..done })
}

#[utoipa::path(
    post,
    path = "/v1/conversations/{conversation_id}/read",
    tag = "messages",
    params(super::IdempotencyKey, ("conversation_id" = uuid::Uuid, Path, description = "the conversation")),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn read(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    Path(conversation_id): Path<String>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let conversation_id: ConversationId = conversation_id.parse().map_err(|_| ApiError::NotFound)?;
    let key = key(AggregateType::Conversation, conversation_id);
    let done = decide_and_append(&app, &key, conversation_id.0, metadata(me, &request), |head| {
        let state: &ConversationState = &head.state;
        let event = conversation::decide_read(state, conversation_id, me).map_err(rejection)?;
        Ok(event.map(|e| (e.clone(), conversation::apply(state.clone(), &e))))
    })
    .await?;
    accepted(done)
}
