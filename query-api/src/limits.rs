//! The contract's rate limit on queries (3000 per user per minute by default), a GCRA bucket
//! per user in Redis (`agora_platform::ratelimit`), so it holds across every query-api
//! instance. Only the authenticated query routes spend it: `/health`, `/ready`, `/metrics`,
//! `/openapi.json` and CORS preflights do not.

use crate::startup::AppState;
use agora_platform::auth::{Caller, caller_of};
use agora_platform::ratelimit::{Decision, Limit};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The budget's name: in its Redis key (`<prefix>:rl:queries:<user>`) and in the `class`
/// label of `agora_rate_limited_total` and `agora_rate_limit_redis_errors_total`.
pub const CLASS: &str = "queries";

/// The configured limits; `None` turns one off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Queries per user (`AGORA_RATE_LIMIT_QUERIES`, default 3000 per minute).
    pub queries: Option<Limit>,
}

/// Middleware: counts the request against its user's budget, or answers 429 with
/// `Retry-After` (503 when Redis does not answer and the policy is `deny`). A request without
/// a valid token is let through, to the handler's 401, and spends nothing.
pub async fn queries(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(limit) = app.limits.queries else { return next.run(req).await };
    let user = match req.extensions().get::<Caller>() {
        Some(Caller(user)) => *user,
        None => caller_of(&app.jwt, req.headers()).ok(),
    };
    let Some(user) = user else { return next.run(req).await };
    match app.limiter.hit(CLASS, &user.to_string(), limit).await {
        Decision::Allowed => next.run(req).await,
        refused => refused.into_result().err().map(IntoResponse::into_response).unwrap_or_default(),
    }
}
