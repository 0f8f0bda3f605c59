//! The `Idempotency-Key` middleware: a retry with the same key and body within 24 h gets the
//! first answer and appends nothing; a retry while the first is in flight waits for it (up to
//! a bound) or answers 409; the same key with another body is 422. Keys are scoped to the
//! caller: the signed-in user, or the client IP on the unauthenticated auth routes.

use crate::startup::AppState;
use crate::store::idempotency::{Begin, StoredAnswer};
use agora_platform::http::{ApiError, BODY_LIMIT_BYTES};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const HEADER: &str = "idempotency-key";
/// How long a retry waits for the first request with its key.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

fn caller_scope(app: &AppState, req: &Request) -> String {
    match crate::limits::caller(app, req) {
        Some(u) => format!("user:{u}"),
        None => format!("ip:{}", crate::limits::client_ip(req)),
    }
}

fn replay(answer: StoredAnswer) -> Response {
    let mut response =
        (axum::http::StatusCode::from_u16(answer.status).unwrap_or(axum::http::StatusCode::OK), answer.body)
            .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&answer.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

pub async fn middleware(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = req.headers().get(HEADER) else { return next.run(req).await };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_owned(),
        _ => {
            return ApiError::invalid_field("Idempotency-Key", "must be 1-255 visible ASCII characters")
                .into_response();
        }
    };
    let scope = caller_scope(&app, &req);
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT_BYTES).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(parts.uri.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();

    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match app.idempotency.begin(&scope, &key, &hash).await {
            Ok(Begin::Fresh) => break,
            Ok(Begin::Replay(answer)) => return replay(answer),
            Ok(Begin::Mismatch) => {
                return ApiError::invalid_field("Idempotency-Key", "already used with a different request")
                    .into_response();
            }
            Ok(Begin::InFlight) if started.elapsed() < IN_FLIGHT_WAIT => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            Ok(Begin::InFlight) => {
                return ApiError::Conflict("a request with this Idempotency-Key is still in progress".into())
                    .into_response();
            }
            Err(e) => return ApiError::unavailable("mongodb", e).into_response(),
        }
    }

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        let _ = app.idempotency.abandon(&scope, &key).await;
        return ApiError::internal("reading the response body").into_response();
    };
    if parts.status.is_server_error() || parts.status == axum::http::StatusCode::TOO_MANY_REQUESTS {
        // Nothing was accepted: the key is free for a retry.
        if let Err(e) = app.idempotency.abandon(&scope, &key).await {
            tracing::warn!(error = %e, "releasing an idempotency key failed");
        }
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let answer = StoredAnswer { status: parts.status.as_u16(), content_type, body: body.to_vec() };
        if let Err(e) = app.idempotency.complete(&scope, &key, &answer).await {
            tracing::error!(error = %e, "recording an idempotent answer failed");
        }
    }
    Response::from_parts(parts, Body::from(body))
}
