//! Read-your-writes: a query carrying `X-Consistency-Token` waits until the projector has
//! applied the positions in it, for at most `AGORA_CONSISTENCY_WAIT_MS`, then answers anyway
//! with `X-Consistency: stale`.
//!
//! The projector records, after each batch's writes, the highest offset it has applied per
//! partition in the read models' own `positions` collection, so the positions always describe
//! the database the query reads (a rebuilt database has its own).

use crate::startup::AppState;
use agora_platform::consistency::{ConsistencyToken, Position};
use agora_platform::http::ApiError;
use agora_projector::readmodel::Coll;
use agora_projector::readmodel::write::position_id;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mongodb::bson::doc;
use std::time::Duration;
use tokio::time::Instant;

pub const TOKEN_HEADER: &str = "x-consistency-token";
pub const STATE_HEADER: &str = "x-consistency";

/// The tokens of the header (comma-separated), merged; `Ok(None)` without the header.
pub fn parse(header: Option<&HeaderValue>) -> Result<Option<ConsistencyToken>, ApiError> {
    let Some(value) = header else { return Ok(None) };
    let text = value.to_str().map_err(|_| malformed())?;
    let mut merged = ConsistencyToken::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        merged.merge(&ConsistencyToken::decode(part).map_err(|_| malformed())?);
    }
    Ok(Some(merged))
}

fn malformed() -> ApiError {
    ApiError::BadRequest("malformed X-Consistency-Token".into())
}

/// Whether every position of `token` is applied.
async fn reached(app: &AppState, token: &ConsistencyToken) -> Result<bool, ApiError> {
    for Position { topic, partition, offset } in token.positions() {
        let filter = doc! {"_id": position_id(&topic, partition)};
        let applied = app.store(Coll::Positions, |c| async move { c.find_one(filter).await }).await?;
        let at = applied.and_then(|d| d.get_i64("offset").ok().or_else(|| d.get_i32("offset").ok().map(i64::from)));
        if at.is_none_or(|at| at < offset) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn wait(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let token = match parse(req.headers().get(TOKEN_HEADER)) {
        Ok(Some(token)) if !token.is_empty() => token,
        Ok(_) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let deadline = Instant::now() + app.consistency_wait;
    let mut pause = Duration::from_millis(5);
    let fresh = loop {
        // Within what is left of the wait: a turn at the MongoDB pool may be slow to come, and
        // a read given up on leaves nothing behind (`agora_platform::mongo::Gate`).
        let left = deadline.saturating_duration_since(Instant::now());
        let checked = tokio::time::timeout(left, reached(&app, &token)).await.unwrap_or(Ok(false));
        match checked {
            Ok(true) => break true,
            // The store is the query's own dependency: the handler reports it if it is down.
            Ok(false) | Err(_) if Instant::now() >= deadline => break false,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "reading applied positions failed"),
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    };
    metrics::counter!(crate::telemetry::CONSISTENCY_WAITS, "outcome" => if fresh { "fresh" } else { "stale" })
        .increment(1);
    let mut res = next.run(req).await;
    if !fresh {
        res.headers_mut().insert(STATE_HEADER, HeaderValue::from_static("stale"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(topic: &str, partition: i32, offset: i64) -> String {
        ConsistencyToken::from_position(&Position { topic: topic.into(), partition, offset }).encode()
    }

    #[test]
    fn several_tokens_merge_to_the_highest_position_per_partition() {
        let header = format!("{}, {},{}", token("t.posts", 0, 5), token("t.posts", 0, 9), token("t.likes", 2, 1));
        let merged =
            parse(Some(&HeaderValue::from_str(&header).unwrap_or(HeaderValue::from_static("")))).ok().flatten();
        let positions: Vec<Position> = merged.map(|t| t.positions().collect()).unwrap_or_default();
        assert_eq!(
            positions,
            vec![
                Position { topic: "t.likes".into(), partition: 2, offset: 1 },
                Position { topic: "t.posts".into(), partition: 0, offset: 9 },
            ]
        );
    }

    #[test]
    fn a_malformed_token_is_a_bad_request_and_no_header_is_none() {
        assert!(parse(Some(&HeaderValue::from_static("not a token"))).is_err());
        assert!(matches!(parse(None), Ok(None)));
    }
}
