//! HTTP handlers.

pub mod conversations;
pub mod games;
pub mod notifications;
pub mod posts;
pub mod users;

use agora_platform::http::ApiError;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use std::collections::HashMap;

/// The query string as a map; a malformed one is a 400 problem.
pub fn params(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| ApiError::BadRequest(e.body_text()))
}

pub fn store_error(e: mongodb::error::Error) -> ApiError {
    ApiError::unavailable("mongodb", e)
}
