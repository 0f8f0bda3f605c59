//! The home feed and suggested users. (Being written.)

use crate::startup::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
