//! TODO(issue 4): the conversations queries; being written in this session.

use crate::startup::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
