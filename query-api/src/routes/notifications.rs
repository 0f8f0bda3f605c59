//! The caller's notifications and their unread count.
//!
//! Notifications are ordered, paged and marked read by `seq`, the id of the event that made
//! them (UUIDv7): newest first, a cursor is the last `seq` seen, and one is read when its `seq`
//! is at or below the caller's read mark (`agora_projector::readmodel::notifications` says how
//! the mark is kept). Game slots that have no move yet carry no `seq`; every filter here bounds
//! `seq` from below, which leaves them out.

use super::users::user_refs;
use super::{find_page, params};
use crate::cache::read_through;
use crate::cursor;
use crate::startup::AppState;
use crate::views::{self, Page, UserRef};
use agora_platform::auth::AuthUser;
use agora_platform::cache::{CacheKey, Kind};
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::notifications::{partial_marks, read_mark};
use agora_schemas::UserId;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use mongodb::bson::doc;
use serde::Serialize;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/notifications", get(list)).route("/v1/notifications/unread-count", get(unread_count))
}

/// `{notification_id, kind, actor: user, subject_id, created_at, read}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Notification {
    #[schema(format = Uuid)]
    pub notification_id: String,
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    pub actor: UserRef,
    /// What it is about: the follower (follow), the post (like, comment), the conversation
    /// (message) or the game (game_challenge, game_move, game_end).
    #[schema(format = Uuid)]
    pub subject_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub read: bool,
}

fn kind_schema() -> utoipa::openapi::Object {
    let kinds = ["follow", "like", "comment", "message", "game_challenge", "game_move", "game_end"];
    views::one_of(&kinds, false)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnreadCount {
    pub count: u64,
}

/// `?unread=` of the notification list.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UnreadParam {
    /// `true`: only the unread ones; `false` (the default): all. Anything else is 422.
    #[param(nullable = false)]
    unread: Option<bool>,
}

/// The `seq` at or below which `me`'s notifications are read: their inbox, and the `seq` of
/// the notification it was marked up to (theirs only: a mark naming someone else's marks nothing).
async fn mark_of(app: &AppState, me: UserId) -> Result<Option<String>, ApiError> {
    let me = me.to_string();
    let filter = doc! {"_id": &me};
    let inbox = app.store(Coll::Inboxes, |c| async move { c.find_one(filter).await }).await?;
    let me = &me;
    let resolved =
        futures::future::try_join_all(partial_marks(inbox.as_ref()).into_iter().map(|(made, up_to)| async move {
            let filter = doc! {"_id": up_to, "user_id": me};
            let seq = app
                .store(Coll::Notifications, |c| async move { c.find_one(filter).await })
                .await?
                .and_then(|d| d.get_str("seq").ok().map(str::to_owned));
            Ok::<_, ApiError>((made, seq))
        }))
        .await?;
    Ok(read_mark(inbox.as_ref(), &resolved))
}

/// `?unread=`: absent or `false` lists all, `true` only the unread.
fn unread_only(raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::invalid_field("unread", "must be true or false")),
    }
}

/// The caller's notifications, newest first.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "notifications",
    params(super::PageParams, UnreadParam),
    responses(
        (status = 200, description = "the caller's notifications, newest first", body = Page<Notification>),
        super::OwnListErrors
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Notification>>, ApiError> {
    let q = params(query)?;
    let limit = cursor::limit(q.get("limit").map(String::as_str)).map_err(|m| ApiError::invalid_field("limit", m))?;
    let unread = unread_only(q.get("unread").map(String::as_str))?;
    let before = q
        .get("cursor")
        .map(|c| cursor::decode(c).map_err(|_| ApiError::BadRequest("malformed cursor".into())))
        .transpose()?;
    let mark = mark_of(&app, me).await?;
    // "" is below every string: the lower bound that only drops documents without a `seq`.
    let above = if unread { mark.clone().unwrap_or_default() } else { String::new() };
    let mut seq = doc! {"$gt": above};
    if let Some(before) = before {
        seq.insert("$lt", before);
    }
    let docs =
        find_page(&app, Coll::Notifications, doc! {"user_id": me.to_string(), "seq": seq}, "seq", -1, limit).await?;
    let more = docs.len() as i64 > limit;
    let page = &docs[..docs.len().min(limit as usize)];
    let actors: Vec<String> = page.iter().filter_map(|d| d.get_str("actor_id").ok().map(str::to_owned)).collect();
    let refs = user_refs(&app, &actors).await?;
    let items = page
        .iter()
        .map(|d| {
            let seq = d.get_str("seq").unwrap_or_default();
            let actor_id = d.get_str("actor_id").unwrap_or_default();
            // An actor whose registration is not projected yet keeps the item in the list (so
            // paging skips nothing), with the shape of a user and only the id known.
            let actor = refs.get(actor_id).cloned().unwrap_or_else(|| UserRef {
                user_id: actor_id.to_owned(),
                handle: String::new(),
                display_name: String::new(),
            });
            Notification {
                notification_id: d.get_str("_id").unwrap_or_default().to_owned(),
                kind: d.get_str("kind").unwrap_or_default().to_owned(),
                actor,
                subject_id: d.get_str("subject_id").unwrap_or_default().to_owned(),
                created_at: views::rfc3339(d, "created_at"),
                read: mark.as_deref().is_some_and(|m| seq <= m),
            }
        })
        .collect();
    let next_cursor = if more { page.last().and_then(|d| d.get_str("seq").ok()).map(cursor::encode) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/v1/notifications/unread-count",
    tag = "notifications",
    responses((status = 200, description = "how many of the caller's notifications are unread", body = UnreadCount), super::OwnErrors),
    security(("bearer" = []))
)]
pub async fn unread_count(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<ApiJson<UnreadCount>, ApiError> {
    // Cached: every notification written, every game slot moved and every read mark retires it.
    let count = read_through(&app, CacheKey::new(Kind::Unread, me.to_string()), || async {
        let mark = mark_of(&app, me).await?.unwrap_or_default();
        app.store(Coll::Notifications, |c| async move {
            c.count_documents(doc! {"user_id": me.to_string(), "seq": {"$gt": mark}}).await
        })
        .await
    })
    .await?;
    Ok(ApiJson(UnreadCount { count }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_is_a_boolean_or_absent() {
        assert_eq!(unread_only(None).ok(), Some(false));
        assert_eq!(unread_only(Some("false")).ok(), Some(false));
        assert_eq!(unread_only(Some("true")).ok(), Some(true));
        for bad in ["1", "TRUE", "", "yes"] {
            assert!(unread_only(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
