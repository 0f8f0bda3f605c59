//! HTTP handlers.

pub mod conversations;
pub mod feed;
pub mod games;
pub mod notifications;
pub mod posts;
pub mod users;

use crate::cursor;
use crate::startup::AppState;
use agora_platform::http::ApiError;
use agora_projector::readmodel::Coll;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use std::collections::HashMap;

/// The query string as a map; a malformed one is a 400 problem.
pub fn params(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| ApiError::BadRequest(e.body_text()))
}

pub fn store_error(e: mongodb::error::Error) -> ApiError {
    ApiError::unavailable("mongodb", e)
}

/// The page size and the key to start after, from `limit` and `cursor`.
pub fn paging(q: &HashMap<String, String>) -> Result<(i64, Option<String>), ApiError> {
    let limit = cursor::limit(q.get("limit").map(String::as_str)).map_err(|m| ApiError::invalid_field("limit", m))?;
    let after = match q.get("cursor") {
        Some(c) => Some(cursor::decode(c).map_err(|_| ApiError::BadRequest("malformed cursor".into()))?),
        None => None,
    };
    Ok((limit, after))
}

pub async fn find_page(
    app: &AppState,
    coll: Coll,
    filter: Document,
    key: &str,
    direction: i32,
    limit: i64,
) -> Result<Vec<Document>, ApiError> {
    app.coll(coll)
        .find(filter)
        .sort(doc! {key: direction})
        .limit(limit + 1)
        .await
        .map_err(store_error)?
        .try_collect()
        .await
        .map_err(store_error)
}
