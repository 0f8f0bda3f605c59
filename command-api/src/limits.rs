//! The contract's rate limits on commands, enforced in Redis so they hold across instances.

use crate::startup::AppState;
use agora_platform::auth::{Caller, caller_of};
use agora_platform::ratelimit::{Decision, Limit};
use agora_schemas::UserId;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Which budget a route spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Register and login, per client IP.
    Auth,
    /// Posts, comments, likes, follows, profile, per user.
    Writes,
    /// Direct messages and read marks, per user.
    Messages,
    /// Chess, per user.
    Moves,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Auth => "auth",
            Class::Writes => "writes",
            Class::Messages => "messages",
            Class::Moves => "moves",
        }
    }
}

/// The configured limits; `None` turns one off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed logins per handle (default 10 per 15 min).
    pub login_failures: Option<Limit>,
    pub auth: Option<Limit>,
    pub writes: Option<Limit>,
    pub messages: Option<Limit>,
    pub moves: Option<Limit>,
}

impl Limits {
    fn of(&self, class: Class) -> Option<Limit> {
        match class {
            Class::Auth => self.auth,
            Class::Writes => self.writes,
            Class::Messages => self.messages,
            Class::Moves => self.moves,
        }
    }
}

/// The client address; without a connection address (never in practice), one shared bucket.
pub fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The request's verified user: from [`Caller`] when `identify` ran, else verified here.
pub fn caller(app: &AppState, req: &Request) -> Option<UserId> {
    match req.extensions().get::<Caller>() {
        Some(Caller(user)) => *user,
        None => caller_of(&app.jwt, req.headers()).ok(),
    }
}

async fn enforce(app: &AppState, class: Class, req: Request, next: Next) -> Response {
    let Some(limit) = app.limits.of(class) else { return next.run(req).await };
    let subject = match class {
        Class::Auth => Some(client_ip(&req)),
        _ => caller(app, &req).map(|u| u.to_string()),
    };
    // No valid token: the handler answers 401 without doing any work.
    let Some(subject) = subject else { return next.run(req).await };
    match app.limiter.hit(class.name(), &subject, limit).await {
        Decision::Allowed => next.run(req).await,
        refused => refused.into_result().err().map(IntoResponse::into_response).unwrap_or_default(),
    }
}

pub async fn auth(State(app): State<AppState>, req: Request, next: Next) -> Response {
    enforce(&app, Class::Auth, req, next).await
}

pub async fn writes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    enforce(&app, Class::Writes, req, next).await
}

pub async fn messages(State(app): State<AppState>, req: Request, next: Next) -> Response {
    enforce(&app, Class::Messages, req, next).await
}

pub async fn moves(State(app): State<AppState>, req: Request, next: Next) -> Response {
    enforce(&app, Class::Moves, req, next).await
}
