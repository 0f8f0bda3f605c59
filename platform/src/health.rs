//! `/health`, `/ready` and `/metrics`, served by every service without auth.
//!
//! `/ready` makes a live, time-bounded round trip to each dependency on every call; it never
//! answers from a cached flag, so it turns 503 within one timeout of a dependency going away
//! and 200 again as soon as it is back.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One dependency's readiness check.
#[derive(Clone)]
pub struct Probe {
    pub name: &'static str,
    check: Arc<CheckFn>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("name", &self.name).finish()
    }
}

impl Probe {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Self { name, check: Arc::new(move || Box::pin(check())) }
    }
}

#[derive(Debug, Clone)]
struct OpsState {
    probes: Arc<Vec<Probe>>,
    timeout: Duration,
    metrics: PrometheusHandle,
}

/// Runs every probe at once, each bounded by `timeout`; returns the names that failed.
pub async fn failing(probes: &[Probe], timeout: Duration) -> Vec<&'static str> {
    let checks = probes.iter().map(|p| async move {
        let outcome = tokio::time::timeout(timeout, (p.check)()).await;
        match outcome {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => {
                tracing::warn!(dependency = p.name, %reason, "readiness check failed");
                Some(p.name)
            }
            Err(_) => {
                tracing::warn!(
                    dependency = p.name,
                    timeout_ms = timeout.as_millis() as u64,
                    "readiness check timed out"
                );
                Some(p.name)
            }
        }
    });
    futures::future::join_all(checks).await.into_iter().flatten().collect()
}

/// The ops routes; merge them into the service's router.
pub fn router(probes: Vec<Probe>, timeout: Duration, metrics: PrometheusHandle) -> Router {
    let state = OpsState { probes: Arc::new(probes), timeout, metrics };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

/// The `/ready` body: `ready`, or `unavailable` with the dependencies that failed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// Present when unavailable: `kafka`, `mongodb`, `redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<Vec<String>>,
}

/// The ops endpoints' part of every service's OpenAPI document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(health, ready, render_metrics), components(schemas(Readiness)), tags((name = "ops", description = "health, readiness and metrics; no auth")))]
pub struct OpsDoc;

#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "the process is alive", body = Readiness)))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/ready", tag = "ops", responses(
    (status = 200, description = "every dependency answered", body = Readiness),
    (status = 503, description = "a dependency did not answer in time", body = Readiness,
        headers(("Retry-After" = u32, description = "whole seconds"))),
))]
async fn ready(State(state): State<OpsState>) -> Response {
    let failing = failing(&state.probes, state.timeout).await;
    if failing.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(serde_json::json!({"status": "unavailable", "failing": failing})),
        )
            .into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
))]
async fn render_metrics(State(state): State<OpsState>) -> Response {
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
