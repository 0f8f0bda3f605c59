//! Users and their posts.

use super::{find_page, params};
use crate::cache::read_through;
use crate::cursor;
use crate::startup::AppState;
use crate::views::{self, Page, Post, Profile, UserRef};
use agora_platform::auth::AuthUser;
use agora_platform::cache::{CacheKey, Kind};
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_schemas::{LikeId, PostId, UserId};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use mongodb::bson::{Document, doc};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/{user_id}", get(get_user))
        .route("/v1/users/by-handle/{handle}", get(by_handle))
        .route("/v1/users/{user_id}/posts", get(posts))
}

/// A registered user's profile with its counts (cached).
pub async fn profile(app: &AppState, user: UserId) -> Result<Profile, ApiError> {
    read_through(app, CacheKey::new(Kind::Profile, user.to_string()), || async {
        views::profile(&user_doc(app, user).await?).ok_or(ApiError::NotFound)
    })
    .await
}

/// A registered user's document, with the counts summed from its shards.
pub async fn user_doc(app: &AppState, user: UserId) -> Result<Document, ApiError> {
    let id = user.to_string();
    let filter = doc! {"_id": &id};
    let d = app.store(Coll::Users, |c| async move { c.find_one(filter).await }).await?;
    let mut d = d.filter(views::is_registered).ok_or(ApiError::NotFound)?;
    let shards: Vec<Document> = {
        let filter = doc! {"owner_id": &id};
        app.find_all(Coll::UserCounters, |c| async move { c.find(filter).await }).await?
    };
    for key in ["followers", "following", "posts"] {
        d.insert(key, views::sum(&shards, key));
    }
    Ok(d)
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}",
    tag = "users",
    params(("user_id" = uuid::Uuid, Path, description = "the user")),
    responses((status = 200, description = "the user's profile", body = Profile), super::NamedErrors),
    security(("bearer" = []))
)]
pub async fn get_user(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(user_id): Path<String>,
) -> Result<ApiJson<Profile>, ApiError> {
    let user: UserId = user_id.parse().map_err(|_| ApiError::NotFound)?;
    profile(&app, user).await.map(ApiJson)
}

#[utoipa::path(
    get,
    path = "/v1/users/by-handle/{handle}",
    tag = "users",
    params(("handle" = String, Path, description = "the user's handle")),
    responses((status = 200, description = "the user's profile", body = Profile), super::NamedErrors),
    security(("bearer" = []))
)]
pub async fn by_handle(
    State(app): State<AppState>,
    _me: AuthUser,
    Path(handle): Path<String>,
) -> Result<ApiJson<Profile>, ApiError> {
    let h = app.store(Coll::Handles, |c| async move { c.find_one(doc! {"_id": &handle}).await }).await?;
    let user: UserId =
        h.and_then(|d| d.get_str("user_id").ok().and_then(|s| s.parse().ok())).ok_or(ApiError::NotFound)?;
    profile(&app, user).await.map(ApiJson)
}

/// Posts by a user, newest first. Post ids are UUIDv7, so `_id` order is creation order and
/// a cursor is the last id seen.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/posts",
    tag = "users",
    params(("user_id" = uuid::Uuid, Path, description = "the author"), super::PageParams),
    responses((status = 200, description = "the user's posts, newest first", body = Page<Post>), super::NamedListErrors),
    security(("bearer" = []))
)]
pub async fn posts(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Path(user_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Post>>, ApiError> {
    let q = params(query)?;
    let limit = cursor::limit(q.get("limit").map(String::as_str)).map_err(|m| ApiError::invalid_field("limit", m))?;
    let user: UserId = user_id.parse().map_err(|_| ApiError::NotFound)?;
    let author = UserRef::from(&profile(&app, user).await?);
    let mut filter = doc! {"author_id": user.to_string(), "deleted": false};
    if let Some(c) = q.get("cursor") {
        let after = cursor::decode(c).map_err(|_| ApiError::BadRequest("malformed cursor".into()))?;
        filter.insert("_id", doc! {"$lt": after});
    }
    let docs = find_page(&app, Coll::Posts, filter, "_id", -1, limit).await?;
    let more = docs.len() as i64 > limit;
    let mut items = Vec::with_capacity(docs.len());
    for d in docs.iter().take(limit as usize) {
        let (liked, likes) = futures::try_join!(liked_by(&app, d, me), like_count(&app, d))?;
        if let Some(p) = views::post(d, author.clone(), liked, likes) {
            items.push(p);
        }
    }
    let next_cursor = if more { items.last().map(|p| cursor::encode(&p.post_id)) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}

/// The `user` shapes of `ids` (unknown or unregistered ids are left out), from the profile
/// cache or one lookup by `_id` each, run concurrently (FerretDB pushes `_id` equality down,
/// not `$in`).
pub async fn user_refs(app: &AppState, ids: &[String]) -> Result<HashMap<String, views::UserRef>, ApiError> {
    let mut unique: Vec<UserId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    unique.sort();
    unique.dedup();
    let found = futures::future::join_all(unique.into_iter().map(|id| profile(app, id))).await;
    let mut refs = HashMap::new();
    for p in found {
        match p {
            Ok(p) => {
                refs.insert(p.user_id.clone(), UserRef::from(&p));
            }
            Err(ApiError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(refs)
}

/// A post's likes, summed from its shards.
pub async fn like_count(app: &AppState, post: &Document) -> Result<i64, ApiError> {
    let id = post.get_str("_id").unwrap_or_default();
    let shards: Vec<Document> = {
        let filter = doc! {"owner_id": id};
        app.find_all(Coll::PostCounters, |c| async move { c.find(filter).await }).await?
    };
    Ok(views::sum(&shards, "likes"))
}

pub async fn liked_by(app: &AppState, post: &Document, me: UserId) -> Result<bool, ApiError> {
    match post.get_str("_id").ok().and_then(|s| s.parse::<PostId>().ok()) {
        Some(post_id) => likes(app, post_id, me).await,
        None => Ok(false),
    }
}

/// Whether `me` likes `post` now (the like aggregate's id is derived from both).
pub async fn likes(app: &AppState, post_id: PostId, me: UserId) -> Result<bool, ApiError> {
    let like = LikeId::of(post_id, me).to_string();
    let found = app.store(Coll::Likes, |c| async move { c.find_one(doc! {"_id": like, "active": true}).await }).await?;
    Ok(found.is_some())
}
