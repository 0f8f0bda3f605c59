//! A post, its comments, and follower lists.

use super::users::{like_count, likes, profile, user_refs};
use super::{find_page, paging, params};
use crate::cache::read_through;
use crate::cursor;
use crate::startup::AppState;
use crate::views::{self, Page, Post, UserRef};
use agora_platform::auth::AuthUser;
use agora_platform::cache::{CacheKey, Kind};
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_schemas::{PostId, UserId};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/posts/{post_id}", get(post))
        .route("/v1/posts/{post_id}/comments", get(comments))
        .route("/v1/users/{user_id}/followers", get(followers))
        .route("/v1/users/{user_id}/following", get(following))
}

/// A comment: `{comment_id, post_id, author: user, text, created_at}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comment {
    #[schema(format = Uuid)]
    pub comment_id: String,
    #[schema(format = Uuid)]
    pub post_id: String,
    pub author: UserRef,
    pub text: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A live post's document; 404 for a malformed, unknown or deleted post.
async fn live_post(app: &AppState, raw: &str) -> Result<Document, ApiError> {
    let post: PostId = raw.parse().map_err(|_| ApiError::NotFound)?;
    let d = app.store(Coll::Posts, |c| async move { c.find_one(doc! {"_id": post.to_string()}).await }).await?;
    // A comment may be projected before its post (they share a partition, but a rebuild may
    // stop between them): a post is there once it has its text.
    d.filter(|d| d.get_str("text").is_ok() && !d.get_bool("deleted").unwrap_or(false)).ok_or(ApiError::NotFound)
}

/// What is cached of a post: everything but the author's profile (cached on its own, so a
/// profile change does not have to find every post) and the caller's `liked_by_me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedPost {
    pub post_id: String,
    pub author_id: String,
    pub text: String,
    pub created_at: String,
    pub like_count: i64,
    pub comment_count: i64,
}

/// A live post without the caller's part, through the post cache; 404 once deleted.
pub(crate) async fn cached_post(app: &AppState, id: PostId) -> Result<CachedPost, ApiError> {
    read_through(app, CacheKey::new(Kind::Post, id.to_string()), || async {
        let doc = live_post(app, &id.to_string()).await?;
        let like_count = like_count(app, &doc).await?;
        let post = views::post(&doc, UserRef::default(), false, like_count).ok_or(ApiError::NotFound)?;
        let author_id = doc.get_str("author_id").map_err(|_| ApiError::NotFound)?.to_owned();
        Ok(CachedPost {
            post_id: post.post_id,
            author_id,
            text: post.text,
            created_at: post.created_at,
            like_count,
            comment_count: post.comment_count,
        })
    })
    .await
}

#[utoipa::path(
    get,
    path = "/v1/posts/{post_id}",
    tag = "posts",
    params(("post_id" = uuid::Uuid, Path, description = "the post")),
    responses((status = 200, description = "the post; 404 once deleted", body = Post), super::NamedErrors),
    security(("bearer" = []))
)]
pub async fn post(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Path(post_id): Path<String>,
) -> Result<ApiJson<Post>, ApiError> {
    let id: PostId = post_id.parse().map_err(|_| ApiError::NotFound)?;
    let cached = cached_post(&app, id).await?;
    let author_id: UserId = cached.author_id.parse().map_err(|_| ApiError::NotFound)?;
    let (author, liked) = futures::try_join!(profile(&app, author_id), likes(&app, id, me))?;
    Ok(ApiJson(Post {
        post_id: cached.post_id,
        author: UserRef::from(&author),
        text: cached.text,
        created_at: cached.created_at,
        like_count: cached.like_count,
        comment_count: cached.comment_count,
        liked_by_me: liked,
    }))
}

/// Comments, oldest first. Comment ids are UUIDv7: `_id` order is creation order.
#[utoipa::path(
    get,
    path = "/v1/posts/{post_id}/comments",
    tag = "posts",
    params(("post_id" = uuid::Uuid, Path, description = "the post"), super::PageParams),
    responses(
        (status = 200, description = "the post's comments, oldest first", body = Page<Comment>),
        super::NamedListErrors
    ),
    security(("bearer" = []))
)]
pub async fn comments(
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

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/followers",
    tag = "users",
    params(("user_id" = uuid::Uuid, Path, description = "the user"), super::PageParams),
    responses(
        (status = 200, description = "who follows the user, newest edge first", body = Page<UserRef>),
        super::NamedListErrors
    ),
    security(("bearer" = []))
)]
pub async fn followers(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(user_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<UserRef>>, ApiError> {
    edges(&app, &user_id, query, Side::Followers).await
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/following",
    tag = "users",
    params(("user_id" = uuid::Uuid, Path, description = "the user"), super::PageParams),
    responses(
        (status = 200, description = "whom the user follows, newest edge first", body = Page<UserRef>),
        super::NamedListErrors
    ),
    security(("bearer" = []))
)]
pub async fn following(
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
    profile(app, user).await?;
    // The first page of any size is served from one cached list of the newest edges.
    let edges: Vec<(String, String)> = match after {
        None => {
            let kind = match side {
                Side::Followers => Kind::Followers,
                Side::Following => Kind::Following,
            };
            read_through(app, CacheKey::new(kind, user.to_string()), || load_edges(app, user, side, None, MAX_LIMIT))
                .await?
        }
        Some(after) => load_edges(app, user, side, Some(after), limit).await?,
    };
    let more = edges.len() as i64 > limit;
    let edges = &edges[..edges.len().min(limit as usize)];
    let ids: Vec<String> = edges.iter().map(|(id, _)| id.clone()).collect();
    let refs = user_refs(app, &ids).await?;
    let items = ids.iter().filter_map(|id| refs.get(id).cloned()).collect();
    let next_cursor = if more { edges.last().map(|(_, seq)| cursor::encode(seq)) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}

/// The largest page.
const MAX_LIMIT: i64 = 100;

/// Up to `limit + 1` edges `(other user, seq)` after `after`, newest first.
async fn load_edges(
    app: &AppState,
    user: UserId,
    side: Side,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<(String, String)>, ApiError> {
    let (mine, other) = match side {
        Side::Followers => ("followee_id", "follower_id"),
        Side::Following => ("follower_id", "followee_id"),
    };
    let mut filter = doc! {mine: user.to_string(), "active": true};
    if let Some(after) = after {
        filter.insert("seq", doc! {"$lt": after});
    }
    let docs = find_page(app, Coll::Follows, filter, "seq", -1, limit).await?;
    Ok(docs
        .iter()
        .filter_map(|d| Some((d.get_str(other).ok()?.to_owned(), d.get_str("seq").ok()?.to_owned())))
        .collect())
}
