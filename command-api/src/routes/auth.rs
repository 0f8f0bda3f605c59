//! Register and login.

use super::metadata;
use crate::domain::user::{self, UserState};
use crate::domain::validation::{DisplayName, Handle, Password};
use crate::routes::Start;
use crate::startup::AppState;
use crate::store::Credential;
use crate::store::aggregates::key;
use crate::store::credentials::CredentialError;
use agora_platform::http::{ApiError, ApiJson, RequestId};
use agora_schemas::events::UserRegistered;
use agora_schemas::{AggregateType, UserId};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[schema(pattern = "^[a-z0-9_]{3,30}$")]
    handle: String,
    /// 1-50 characters; no control characters other than `\n` and `\t`.
    #[schema(min_length = 1, max_length = 50, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    display_name: String,
    /// 8-128 characters; no control characters other than `\n` and `\t`.
    #[schema(min_length = 8, max_length = 128, pattern = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$")]
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
    token: String,
    consistency_token: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    handle: String,
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
    token: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    request_body = RegisterBody,
    params(super::IdempotencyKey),
    responses((status = 201, description = "registered and signed in", body = Registered), agora_platform::http::openapi::CommandErrors)
)]
pub async fn register(
    State(app): State<AppState>,
    Extension(request): Extension<RequestId>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, ApiJson<Registered>), ApiError> {
    let handle = Handle::parse(body.handle).map_err(|e| e.on("handle"))?;
    let display_name = DisplayName::parse(body.display_name).map_err(|e| e.on("display_name"))?;
    let password = Password::parse(body.password).map_err(|e| e.on("password"))?;
    let password_hash = hash_password(password).await?;

    let user_id = UserId::new();
    let cred = Credential { user_id, password_hash };
    match app.credentials.insert(handle.as_str(), &cred).await {
        Ok(()) => {}
        Err(CredentialError::HandleTaken) => return Err(ApiError::Conflict("handle taken".into())),
        Err(CredentialError::Mongo(e)) => return Err(ApiError::unavailable("mongodb", e)),
    }

    let event: agora_schemas::Event =
        UserRegistered { user_id, handle: handle.as_str().to_owned(), display_name: display_name.into_inner() }.into();
    let key = key(AggregateType::User, user_id);
    let appended =
        super::decide_and_append_from(&app, &key, user_id.0, metadata(user_id, &request), Start::New, |head| {
            if head.version > 0 {
                return Err(ApiError::Conflict("user id already used".into()));
            }
            Ok(Some((event.clone(), user::apply(UserState::default(), &event))))
        })
        .await;
    let accepted = match appended {
        Ok(a) => a,
        Err(e) => {
            // Not recorded: give the handle back so a retry can have it.
            if let Err(err) = app.credentials.remove(handle.as_str(), user_id).await {
                tracing::error!(error = %err, "releasing an unrecorded handle failed");
            }
            return Err(e);
        }
    };
    let token = app.jwt.issue(user_id).map_err(ApiError::internal)?;
    let consistency_token = accepted.consistency_token;
    Ok((StatusCode::CREATED, ApiJson(Registered { user_id, token, consistency_token })))
}

/// The rate-limit class of failed logins, per handle.
const FAILED_LOGINS: &str = "login_failures";

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginBody,
    params(super::IdempotencyKey),
    responses((status = 200, description = "signed in", body = LoggedIn), agora_platform::http::openapi::CommandErrors)
)]
pub async fn login(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<ApiJson<LoggedIn>, ApiError> {
    // Failed logins are counted per handle as typed (bounded), whether it exists or not.
    let attempted: String = body.handle.chars().take(64).collect::<String>().to_lowercase();
    let failures = app.limits.login_failures;
    if let Some(limit) = failures {
        app.limiter.check(FAILED_LOGINS, &attempted, limit).await.into_result()?;
    }
    let mismatch = || async {
        if let Some(limit) = failures {
            let _ = app.limiter.hit(FAILED_LOGINS, &attempted, limit).await;
        }
        ApiError::Unauthorized("unknown handle or wrong password".into())
    };
    // Shape errors are a mismatch too: login never tells which handles exist.
    let Ok(handle) = Handle::parse(body.handle) else {
        return Err(mismatch().await);
    };
    let cred = app.credentials.find(handle.as_str()).await.map_err(|e| ApiError::unavailable("mongodb", e))?;
    let Some(cred) = cred else {
        return Err(mismatch().await);
    };
    if !verify_password(body.password, cred.password_hash).await? {
        return Err(mismatch().await);
    }
    let token = app.jwt.issue(cred.user_id).map_err(ApiError::internal)?;
    Ok(ApiJson(LoggedIn { user_id: cred.user_id, token }))
}

async fn hash_password(password: Password) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default().hash_password(password.as_ref().as_bytes()).map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| e.to_string())?;
        Ok::<bool, String>(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}
