//! A user's conversations and their messages (read models: `agora_projector::readmodel::conversations`).

use super::params;
use super::users::user_refs;
use crate::cursor;
use crate::startup::AppState;
use crate::views::{Page, UserRef, rfc3339};
use agora_platform::auth::AuthUser;
use agora_platform::http::{ApiError, ApiJson};
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::conversations::member_id;
use agora_schemas::ConversationId;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use mongodb::bson::{Document, doc};
use serde::Serialize;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", get(conversations))
        .route("/v1/conversations/{conversation_id}/messages", get(messages))
}

/// A message: `{message_id, conversation_id, from, to, text, created_at}`, `from` and `to`
/// being user ids.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    #[schema(format = Uuid)]
    pub message_id: String,
    #[schema(format = Uuid)]
    pub conversation_id: String,
    /// The sender's user id.
    #[schema(format = Uuid)]
    pub from: String,
    /// The recipient's user id.
    #[schema(format = Uuid)]
    pub to: String,
    pub text: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// One of the caller's conversations: `{conversation_id, peer: user, last_message, unread}`.
/// `last_message` has the shape of a [`Message`] (what `/messages` lists), so a client shows
/// both with one type; `unread` counts the peer's messages after the caller's read mark.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    #[schema(format = Uuid)]
    pub conversation_id: String,
    pub peer: UserRef,
    pub last_message: Message,
    #[schema(minimum = 0)]
    pub unread: i64,
}

fn message(d: &Document, id_field: &str, conversation_id: &str) -> Option<Message> {
    Some(Message {
        message_id: d.get_str(id_field).ok()?.to_owned(),
        conversation_id: conversation_id.to_owned(),
        from: d.get_str("from").ok()?.to_owned(),
        to: d.get_str("to").ok()?.to_owned(),
        text: d.get_str("text").ok()?.to_owned(),
        created_at: rfc3339(d, "created_at"),
    })
}

fn page_cursor(q: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    q.get("cursor").map(|c| cursor::decode(c).map_err(|_| ApiError::BadRequest("malformed cursor".into()))).transpose()
}

fn page_limit(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    cursor::limit(q.get("limit").map(String::as_str)).map_err(|m| ApiError::invalid_field("limit", m))
}

async fn find(
    app: &AppState,
    coll: Coll,
    filter: Document,
    sort: Document,
    limit: i64,
) -> Result<Vec<Document>, ApiError> {
    app.find_all(coll, |c| async move { c.find(filter).sort(sort).limit(limit).await }).await
}

/// The caller's conversations, latest message first. The order and the cursor are the last
/// message's id (a UUIDv7, unique): a page starts strictly after the last conversation seen,
/// so none repeats; one that gets a new message meanwhile moves to the head of the list
/// (ahead of the cursor), where the next look at the first page shows it.
#[utoipa::path(
    get,
    path = "/v1/conversations",
    tag = "conversations",
    params(super::PageParams),
    responses(
        (status = 200, description = "the caller's conversations, latest message first", body = Page<Conversation>),
        super::OwnListErrors
    ),
    security(("bearer" = []))
)]
pub async fn conversations(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Conversation>>, ApiError> {
    let q = params(query)?;
    let limit = page_limit(&q)?;
    let mut filter = doc! {"user_id": me.to_string()};
    if let Some(after) = page_cursor(&q)? {
        filter.insert("last_id", doc! {"$lt": after});
    }
    let docs = find(&app, Coll::ConversationMembers, filter, doc! {"last_id": -1}, limit + 1).await?;
    let more = docs.len() as i64 > limit;
    let page: Vec<&Document> = docs.iter().take(limit as usize).collect();
    let peers: Vec<String> = page.iter().filter_map(|d| d.get_str("peer_id").ok().map(str::to_owned)).collect();
    let refs = user_refs(&app, &peers).await?;
    let items = page
        .iter()
        .filter_map(|d| {
            let conversation_id = d.get_str("conversation_id").ok()?;
            Some(Conversation {
                conversation_id: conversation_id.to_owned(),
                // A peer whose registration is not projected yet is left out until it is.
                peer: refs.get(d.get_str("peer_id").ok()?)?.clone(),
                last_message: message(d.get_document("last_message").ok()?, "message_id", conversation_id)?,
                unread: d.get_i64("unread").or_else(|_| d.get_i32("unread").map(i64::from)).unwrap_or(0).max(0),
            })
        })
        .collect();
    // From the last document of the page, shown or not, so a left-out one is not read again.
    let next_cursor = if more { page.last().and_then(|d| d.get_str("last_id").ok()).map(cursor::encode) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}

/// A conversation's messages, newest first, for its two participants only (anyone else, and
/// any id that names no conversation of the caller's, gets 404). Message ids are UUIDv7, so
/// `_id` order is sending order and the cursor is the last id seen: messages sent meanwhile
/// are newer than any cursor and never enter a later page.
#[utoipa::path(
    get,
    path = "/v1/conversations/{conversation_id}/messages",
    tag = "conversations",
    params(("conversation_id" = uuid::Uuid, Path, description = "a conversation of the caller's"), super::PageParams),
    responses(
        (status = 200, description = "the conversation's messages, newest first", body = Page<Message>),
        super::NamedListErrors
    ),
    security(("bearer" = []))
)]
pub async fn messages(
    State(app): State<AppState>,
    AuthUser(me): AuthUser,
    Path(conversation_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<ApiJson<Page<Message>>, ApiError> {
    let q = params(query)?;
    let limit = page_limit(&q)?;
    let conversation: ConversationId = conversation_id.parse().map_err(|_| ApiError::NotFound)?;
    let conversation = conversation.to_string();
    let member_filter = doc! {"_id": member_id(&me.to_string(), &conversation)};
    let member = app.store(Coll::ConversationMembers, |c| async move { c.find_one(member_filter).await }).await?;
    // A member document is one once a message wrote it (a store may seed an empty one first).
    if member.is_none_or(|d| d.get_str("user_id").is_err()) {
        return Err(ApiError::NotFound);
    }
    let mut filter = doc! {"conversation_id": &conversation};
    if let Some(after) = page_cursor(&q)? {
        filter.insert("_id", doc! {"$lt": after});
    }
    let docs = find(&app, Coll::Messages, filter, doc! {"_id": -1}, limit + 1).await?;
    let more = docs.len() as i64 > limit;
    let page: Vec<&Document> = docs.iter().take(limit as usize).collect();
    let items = page.iter().filter_map(|d| message(d, "_id", &conversation)).collect();
    let next_cursor = if more { page.last().and_then(|d| d.get_str("_id").ok()).map(cursor::encode) } else { None };
    Ok(ApiJson(Page { items, next_cursor }))
}
