//! A post, its comments, and follower lists.

use super::users::{like_count, liked_by, user_doc, user_refs};
use super::{params, store_error};
use crate::cursor;
use crate::startup::AppState;
use crate::views::{self, Page, Post, UserRef};
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_schemas::{PostId, UserId};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde::Serialize;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/posts/{post_id}", get(post))
        .route("/v1/posts/{post_id}/comments", get(comments))
        .route("/v1/users/{user_id}/followers", get(followers))
        .route("/v1/users/{user_id}/following", get(following))
}

/// A comment: `{comment_id, post_id, author: user, text, created_at}`.
#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub comment_id: String,
    pub post_id: String,
    pub author: UserRef,
    pub text: String,
    pub created_at: String,
}

/// A live post's document; 404 for a malformed, unknown or deleted post.
async fn live_post(app: &AppState, raw: &str) -> Result<Document, ApiError> {
    let post: PostId = raw.parse().map_err(|_| ApiError::NotFound)?;
    let d = app.coll(Coll::Posts).find_one(doc! {"_id": post.to_string()}).await.map_err(store_error)?;
    // A comment may be projected before its post (they share a partition, but a rebuild may
    // stop between them): a post is there once it has its text.
    d.filter(|d| d.get_str("text").is_ok() && !d.get_bool("deleted").unwrap_or(false)).ok_or(ApiError::NotFound)
}

async fn post(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Path(post_id): Path<String>,
) -> Result<ApiJson<Post>, ApiError> {
    let d = live_post(&app, &post_id).await?;
    let author_id: UserId = d.get_str("author_id").ok().and_then(|a| a.parse().ok()).ok_or(ApiError::NotFound)?;
    let (author, liked, likes) =
        futures::try_join!(user_doc(&app, author_id), liked_by(&app, &d, me), like_count(&app, &d))?;
    let author = views::user_ref(&author).ok_or(ApiError::NotFound)?;
    views::post(&d, author, liked, likes).map(ApiJson).ok_or(ApiError::NotFound)
}

/// The page size and the key to start after, from `limit` and `cursor`.
fn paging(q: &HashMap<String, String>) -> Result<(i64, Option<String>), ApiError> {
    let limit = cursor::limit(q.get("limit").map(String::as_str)).map_err(|m| ApiError::invalid_field("limit", m))?;
    let after = match q.get("cursor") {
        Some(c) => Some(cursor::decode(c).map_err(|_| ApiError::BadRequest("malformed cursor".into()))?),
        None => None,
    };
    Ok((limit, after))
}

async fn find_page(
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

/// Comments, oldest first. Comment ids are UUIDv7: `_id` order is creation order.
async fn comments(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(post_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Comment>>, ApiError> {
    let (limit, after) = paging(&params(query)?)?;
    let post = live_post(&app, &post_id).await?;
    let post_id = post.get_str("_id").unwrap_or_default().to_owned();
    let mut filter = doc! {"post_id": &post_id};
    if let Some(after) = after {
        filter.insert("_id", doc! {"$gt": after});
    }
    let docs = find_page(&app, Coll::Comments, filter, "_id", 1, limit).await?;
    let more = docs.len() as i64 > limit;
    let docs: Vec<&Document> = docs.iter().take(limit as usize).collect();
    let authors: Vec<String> = docs.iter().filter_map(|d| d.get_str("author_id").ok().map(str::to_owned)).collect();
    let refs = user_refs(&app, &authors).await?;
    let items: Vec<Comment> = docs
        .iter()
        .filter_map(|d| {
            Some(Comment {
                comment_id: d.get_str("_id").ok()?.to_owned(),
                post_id: post_id.clone(),
                author: refs.get(d.get_str("author_id").ok()?)?.clone(),
                text: d.get_str("text").ok()?.to_owned(),
                created_at: views::rfc3339(d, "created_at"),
            })
        })
        .collect();
    let next_cursor = if more { docs.last().and_then(|d| d.get_str("_id").ok()).map(cursor::encode) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}

/// Which side of a follow edge a list shows.
#[derive(Debug, Clone, Copy)]
enum Side {
    Followers,
    Following,
}

async fn followers(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(user_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<UserRef>>, ApiError> {
    edges(&app, &user_id, query, Side::Followers).await
}

async fn following(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(user_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<UserRef>>, ApiError> {
    edges(&app, &user_id, query, Side::Following).await
}

/// `user` items at the other end of the user's active edges, newest edge first (by `seq`,
/// the follow's event id: unique and growing, so pages neither repeat nor skip).
async fn edges(
    app: &AppState,
    raw_user: &str,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    side: Side,
) -> Result<ApiJson<Page<UserRef>>, ApiError> {
    let (limit, after) = paging(&params(query)?)?;
    let user: UserId = raw_user.parse().map_err(|_| ApiError::NotFound)?;
    user_doc(app, user).await?;
    let (mine, other) = match side {
        Side::Followers => ("followee_id", "follower_id"),
        Side::Following => ("follower_id", "followee_id"),
    };
    let mut filter = doc! {mine: user.to_string(), "active": true};
    if let Some(after) = after {
        filter.insert("seq", doc! {"$lt": after});
    }
    let docs = find_page(app, Coll::Follows, filter, "seq", -1, limit).await?;
    let more = docs.len() as i64 > limit;
    let docs: Vec<&Document> = docs.iter().take(limit as usize).collect();
    let ids: Vec<String> = docs.iter().filter_map(|d| d.get_str(other).ok().map(str::to_owned)).collect();
    let refs = user_refs(app, &ids).await?;
    let items = ids.iter().filter_map(|id| refs.get(id).cloned()).collect();
    let next_cursor = if more { docs.last().and_then(|d| d.get_str("seq").ok()).map(cursor::encode) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}
