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
use agora_platform::http::openapi::problem_responses;
use agora_projector::readmodel::Coll;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use mongodb::bson::{Document, doc};
use std::collections::HashMap;

// ---------------------------------------------------------------------------------------------
// For the OpenAPI document (`crate::openapi`). Handlers read the query string as a map, so a
// bad value is a problem answer rather than an extractor's rejection; these types only
// describe the parameters and answers. Every `GET` also takes `X-Consistency-Token` and
// `If-None-Match` and answers `ETag` and `304`: the document adds those to every operation,
// as the middleware serves every route.

/// `limit` and `cursor`, taken by every list.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Items per page, 1-100 (default 20); anything else is 422.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<i64>,
    /// The `next_cursor` of the page before; a cursor this API did not make is 400.
    #[param(nullable = false)]
    cursor: Option<String>,
}

/// The errors of a query on something its path names (an id or a handle): 404 when it names
/// nothing, malformed or not.
#[derive(Debug)]
pub struct NamedErrors;

/// [`NamedErrors`] and 422 for a bad `limit` (or other parameter) of a list.
#[derive(Debug)]
pub struct NamedListErrors;

/// The errors of a list of the caller's own (notifications, conversations, feed): 422 for a
/// bad parameter, no 404.
#[derive(Debug)]
pub struct OwnListErrors;

/// The errors of a query without path or query parameters: the ones every query can answer.
#[derive(Debug)]
pub struct OwnErrors;

type Responses = std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>>;

// 400: a malformed query string or `X-Consistency-Token`; 401: no valid token; 429: the
// queries budget is spent; 503: MongoDB (or, by policy, Redis) does not answer.
impl utoipa::IntoResponses for NamedErrors {
    fn responses() -> Responses {
        problem_responses(&[400, 401, 404, 429, 503])
    }
}

impl utoipa::IntoResponses for NamedListErrors {
    fn responses() -> Responses {
        problem_responses(&[400, 401, 404, 422, 429, 503])
    }
}

impl utoipa::IntoResponses for OwnListErrors {
    fn responses() -> Responses {
        problem_responses(&[400, 401, 422, 429, 503])
    }
}

impl utoipa::IntoResponses for OwnErrors {
    fn responses() -> Responses {
        problem_responses(&[400, 401, 429, 503])
    }
}

/// The query string as a map; a malformed one is a 400 problem.
pub fn params(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| ApiError::BadRequest(e.body_text()))
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
    let sort = doc! {key: direction};
    app.find_all(coll, |c| async move { c.find(filter).sort(sort).limit(limit + 1).await }).await
}
