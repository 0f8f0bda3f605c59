//! PATCH /v1/me: the caller's profile.

use super::{Accepted, accepted, decide_and_append, metadata};
use crate::domain::user::{self, ProfileChange, UserState};
use crate::domain::validation::{Bio, DisplayName};
use crate::startup::AppState;
use crate::store::aggregates::key;
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::AggregateType;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// 1-50 characters; no control characters other than `\n` and `\t`. Absent or `null`: unchanged.
    #[schema(min_length = 1, max_length = 50, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    display_name: Option<String>,
    /// 0-280 characters; no control characters other than `\n` and `\t`. Absent or `null`: unchanged.
    #[schema(max_length = 280, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    bio: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/v1/me",
    tag = "users",
    request_body = ProfileBody,
    params(super::IdempotencyKey),
    responses(super::AcceptedAnswer, agora_platform::http::openapi::CommandErrors),
    security(("bearer" = []))
)]
pub async fn update(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let display_name = body
        .display_name
        .map(|n| DisplayName::parse(n).map_err(|e| e.on("display_name")))
        .transpose()?
        .map(DisplayName::into_inner);
    let bio = body.bio.map(|b| Bio::parse(b).map_err(|e| e.on("bio"))).transpose()?.map(Bio::into_inner);
    let change = ProfileChange { display_name, bio };
    let done = decide_and_append(&app, &key(AggregateType::User, me), me.0, metadata(me, &request), |head| {
        let state: &UserState = &head.state;
        if head.version == 0 {
            // A valid token of a user whose registration was never recorded.
            return Err(ApiError::NotFound);
        }
        Ok(user::decide_profile(state, me, change.clone()).map(|e| (e.clone(), user::apply(state.clone(), &e))))
    })
    .await?;
    accepted(done)
}
