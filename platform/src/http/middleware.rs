//! The middleware every API wears, and `serve` with graceful shutdown.

use crate::telemetry::names;
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;
use uuid::Uuid;

/// The contract's request body limit: 64 KiB; larger bodies get 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the client's `X-Request-Id` if sane, otherwise a fresh UUIDv7. Echoed in
/// the response, carried by the request's tracing span, and the correlation id of its events.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub text: String,
    pub correlation_id: Uuid,
}

impl RequestId {
    fn from_header(value: Option<&HeaderValue>) -> Self {
        let given = value
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()));
        match given {
            Some(text) => {
                let correlation_id =
                    Uuid::try_parse(text).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_URL, text.as_bytes()));
                Self { text: text.to_owned(), correlation_id }
            }
            None => {
                let id = Uuid::now_v7();
                Self { text: id.to_string(), correlation_id: id }
            }
        }
    }
}

async fn track(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId::from_header(req.headers().get(&X_REQUEST_ID));
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http.request",
        request_id = %request_id.text,
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
    );
    req.extensions_mut().insert(request_id.clone());
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    if let Ok(v) = HeaderValue::from_str(&request_id.text) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!(names::HTTP_RESPONSES, "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!(names::HTTP_SECONDS, "route" => route).record(elapsed);
    if status >= 500 {
        span.in_scope(|| tracing::warn!(status, elapsed_ms = elapsed * 1000.0, "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request served"));
    }
    response
}

/// The router's own refusals, a 404 for a path no route serves and a 405 (with `Allow`) for a
/// method the path does not serve, come without a body; the contract wants every 4xx and 5xx
/// body as problem JSON, so a bodiless error answer gets one.
async fn problem_bodies(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let bodiless =
        response.body().size_hint().exact() == Some(0) && !response.headers().contains_key(header::CONTENT_TYPE);
    if !is_error || !bodiless {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::METHOD_NOT_ALLOWED => "this path does not serve that method: see the Allow header",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let body = serde_json::to_vec(&super::Problem::of_status(status, detail)).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Runs the rest of the request in a task of its own, so a client that hangs up cannot cancel
/// it half-way: a command that started always settles its reservation, its idempotency record
/// and its handle, whether or not anyone is still waiting for the answer.
pub async fn run_to_completion(req: Request, next: Next) -> Response {
    match tokio::spawn(next.run(req).in_current_span()).await {
        Ok(response) => response,
        Err(e) => axum::response::IntoResponse::into_response(super::ApiError::internal(e)),
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let allow_origin = if origins.iter().any(|o| o == "*") { AllowOrigin::any() } else { AllowOrigin::list(allowed) };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-consistency-token"),
            X_REQUEST_ID.clone(),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            HeaderName::from_static("x-consistency"),
            X_REQUEST_ID.clone(),
        ])
        .max_age(Duration::from_secs(600))
}

/// Wraps an API router in the shared middleware. Apply it last, around every route.
pub fn layers(router: Router, cors_origins: &[String]) -> Router {
    router
        .layer(middleware::from_fn(problem_bodies))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(cors(cors_origins))
        .layer(middleware::from_fn(track))
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for up to `grace` before returning.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    let mut stop_rx = stop_rx;
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result,
        _ = async {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace period over; dropping open connections");
            Ok(())
        }
    }
}
