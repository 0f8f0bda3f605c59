//! POST /v1/notifications/read: read marks on the caller's notification inbox.
//!
//! Notifications exist only on the read side, so the write side cannot tell whether a mark
//! changes anything: every accepted command appends one event.

use super::{Accepted, accepted, decide_and_append, metadata};
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::events::NotificationsRead;
use agora_schemas::{AggregateType, NotificationId};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// Read up to this notification; absent: all.
    #[schema(format = Uuid)]
    up_to: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InboxState {}

#[utoipa::path(
    post,
    path = "/v1/notifications/read",
    tag = "notifications",
    request_body = Option<ReadBody>,
    params(super::IdempotencyKey),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn read(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    body: Option<ApiJson<ReadBody>>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let ApiJson(body) = body.unwrap_or_default();
    let up_to = body
        .up_to
        .map(|s| s.parse::<NotificationId>().map_err(|_| ApiError::invalid_field("up_to", "must be a notification id")))
        .transpose()?;
    let done = decide_and_append(&app, &key(AggregateType::Inbox, me), me.0, metadata(me, &request), |_head| {
        Ok(Some((NotificationsRead { user_id: me, up_to }.into(), InboxState {})))
    })
    .await?;
    accepted(done)
}
