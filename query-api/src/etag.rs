//! `ETag` and `If-None-Match` on every successful `GET`: the tag is a hash of the answer, so a
//! client revalidating an unchanged answer gets `304 Not Modified` without its body.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Answers are small JSON documents; anything larger goes out untagged.
const MAX_TAGGED_BYTES: usize = 1 << 20;

/// A weak tag of `body` (weak, as the response may go out compressed): the first 16 bytes of
/// its SHA-256, in hex.
pub fn tag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Whether `If-None-Match` names `tag` (or is `*`); weak tags compare by their value.
pub fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
    })
}

pub async fn middleware(req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let conditional = req.headers().clone();
    let res = next.run(req).await;
    if res.status() != StatusCode::OK {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_TAGGED_BYTES).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = tag_of(&bytes);
    let Ok(value) = HeaderValue::from_str(&tag) else { return Response::from_parts(parts, Body::from(bytes)) };
    parts.headers.insert(header::ETAG, value);
    if matches(&conditional, &tag) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_TYPE);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::IF_NONE_MATCH, v);
        }
        h
    }

    #[test]
    fn a_tag_follows_the_body() {
        assert_eq!(tag_of(b"{}"), tag_of(b"{}"));
        assert_ne!(tag_of(b"{\"a\":1}"), tag_of(b"{\"a\":2}"));
        assert!(tag_of(b"{}").starts_with("W/\"") && tag_of(b"{}").len() == 36);
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_the_wildcard() {
        let tag = tag_of(b"x");
        assert!(matches(&with(&tag), &tag));
        let strong = tag.trim_start_matches("W/").to_owned();
        assert!(matches(&with(&format!("\"other\", {strong}")), &tag), "weak comparison");
        assert!(matches(&with("*"), &tag));
        assert!(!matches(&with("\"other\""), &tag));
        assert!(!matches(&HeaderMap::new(), &tag));
    }
}
