//! Read-model documents as the contract's JSON shapes.

use mongodb::bson::Document;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `user`: `{user_id, handle, display_name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = User)]
pub struct UserRef {
    #[schema(format = Uuid)]
    pub user_id: String,
    /// Empty only in a notification whose actor's registration is not projected yet.
    pub handle: String,
    pub display_name: String,
}

/// A user's profile with its counts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    #[schema(format = Uuid)]
    pub user_id: String,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    #[schema(minimum = 0)]
    pub followers: i64,
    #[schema(minimum = 0)]
    pub following: i64,
    #[schema(minimum = 0)]
    pub posts: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A post, with the caller's `liked_by_me`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Post {
    #[schema(format = Uuid)]
    pub post_id: String,
    pub author: UserRef,
    pub text: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(minimum = 0)]
    pub like_count: i64,
    #[schema(minimum = 0)]
    pub comment_count: i64,
    pub liked_by_me: bool,
}

/// A page of a list: its items and the cursor of the next page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The schema of a string that is one of `values` (and, if `nullable`, possibly `null`): for
/// fields the read models hold as plain strings.
pub fn one_of(values: &[&str], nullable: bool) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let mut listed: Vec<serde_json::Value> = values.iter().map(|v| serde_json::Value::from(*v)).collect();
    let kind = if nullable {
        listed.push(serde_json::Value::Null);
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(kind).enum_values(Some(listed)).build()
}

fn count(d: &Document, key: &str) -> i64 {
    d.get_i64(key).or_else(|_| d.get_i32(key).map(i64::from)).unwrap_or(0).max(0)
}

/// The sum of `key` over counter shards; never below zero.
pub fn sum(shards: &[Document], key: &str) -> i64 {
    shards.iter().map(|d| d.get_i64(key).or_else(|_| d.get_i32(key).map(i64::from)).unwrap_or(0)).sum::<i64>().max(0)
}

pub fn rfc3339(d: &Document, key: &str) -> String {
    d.get_datetime(key)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis()))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A user document is a user once its registration is applied (counters may arrive first).
pub fn is_registered(d: &Document) -> bool {
    d.get_str("handle").is_ok()
}

pub fn user_ref(d: &Document) -> Option<UserRef> {
    Some(UserRef {
        user_id: d.get_str("_id").ok()?.to_owned(),
        handle: d.get_str("handle").ok()?.to_owned(),
        display_name: d.get_str("display_name").unwrap_or_default().to_owned(),
    })
}

impl From<&Profile> for UserRef {
    fn from(p: &Profile) -> Self {
        UserRef { user_id: p.user_id.clone(), handle: p.handle.clone(), display_name: p.display_name.clone() }
    }
}

pub fn profile(d: &Document) -> Option<Profile> {
    let user = user_ref(d)?;
    Some(Profile {
        user_id: user.user_id,
        handle: user.handle,
        display_name: user.display_name,
        bio: d.get_str("bio").unwrap_or_default().to_owned(),
        followers: count(d, "followers"),
        following: count(d, "following"),
        posts: count(d, "posts"),
        created_at: rfc3339(d, "created_at"),
    })
}

pub fn post(d: &Document, author: UserRef, liked_by_me: bool, like_count: i64) -> Option<Post> {
    Some(Post {
        post_id: d.get_str("_id").ok()?.to_owned(),
        author,
        text: d.get_str("text").ok()?.to_owned(),
        created_at: rfc3339(d, "created_at"),
        like_count,
        comment_count: count(d, "comment_count"),
        liked_by_me,
    })
}
