//! One error type for every API, with the status mapping in one place (RFC 9457 bodies).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Everything an API can answer besides success. Internal details never reach the client:
/// `Internal` and `Unavailable` log their cause and answer a generic body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("body too large")]
    PayloadTooLarge,
    #[error("body is not JSON")]
    UnsupportedMediaType,
    #[error("invalid: {detail}")]
    Invalid { detail: String, errors: Vec<FieldError> },
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("dependency unavailable: {dependency}: {cause}")]
    Unavailable { dependency: &'static str, cause: String, retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// An RFC 9457 problem document: the body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field failures, for 422 answers about fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    /// The problem document of a `status` answer that no handler made (the router's own 404
    /// and 405): the type is named after the status's reason phrase.
    pub fn of_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let reason = status.canonical_reason().unwrap_or("error");
        Self {
            kind: format!("https://agora.dev/problems/{}", reason.to_ascii_lowercase().replace(' ', "-")),
            title: reason.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        }
    }
}

impl ApiError {
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Invalid { detail: format!("{field}: {message}"), errors: vec![FieldError::new(field, message)] }
    }

    pub fn unavailable(dependency: &'static str, cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable { dependency, cause: cause.to_string(), retry_after_secs: 1 }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::Invalid { .. } => "invalid",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::BadRequest(d) | ApiError::Unauthorized(d) | ApiError::Forbidden(d) | ApiError::Conflict(d) => {
                d.clone()
            }
            ApiError::NotFound => "no such resource".into(),
            ApiError::PayloadTooLarge => {
                format!("the body is over {} bytes", super::BODY_LIMIT_BYTES)
            }
            ApiError::UnsupportedMediaType => "the body must be application/json".into(),
            ApiError::Invalid { detail, .. } => detail.clone(),
            ApiError::RateLimited { .. } => "too many requests; retry later".into(),
            ApiError::Unavailable { dependency, cause, .. } => {
                tracing::warn!(dependency, %cause, "answering 503");
                "a dependency is unavailable; nothing was accepted, retry later".into()
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal error".into()
            }
        };
        let errors = match &self {
            ApiError::Invalid { errors, .. } if !errors.is_empty() => Some(errors.clone()),
            _ => None,
        };
        let problem = Problem {
            kind: format!("https://agora.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } | ApiError::Unavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
