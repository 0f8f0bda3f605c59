//! Read-model documents as the contract's JSON shapes.

use mongodb::bson::Document;
use serde::{Deserialize, Serialize};

/// `user`: `{user_id, handle, display_name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserRef {
    pub user_id: String,
    pub handle: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: String,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub followers: i64,
    pub following: i64,
    pub posts: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Post {
    pub post_id: String,
    pub author: UserRef,
    pub text: String,
    pub created_at: String,
    pub like_count: i64,
    pub comment_count: i64,
    pub liked_by_me: bool,
}

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
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
