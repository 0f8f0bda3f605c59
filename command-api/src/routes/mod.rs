//! HTTP handlers, one module per resource, and the shared decide-and-append loop.

pub mod auth;
pub mod follows;
pub mod games;
pub mod me;
pub mod messages;
pub mod notifications;
pub mod posts;

use crate::startup::AppState;
use crate::store::{AppendError, Head, keeper};
use crate::telemetry as names;
use agora_platform::consistency::{ConsistencyToken, Position};
use agora_platform::http::{ApiError, RequestId};
use agora_schemas::{Envelope, Event, EventId, Metadata, UserId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// The contract's 202 body. Creation commands add the new id.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The appended event; `null` when the command changed nothing and appended nothing.
    #[schema(value_type = Option<Uuid>, required = true)]
    pub event_id: Option<EventId>,
    pub aggregate_id: Uuid,
    /// The aggregate's version after the command (the version found, for a no-op).
    pub version: u64,
    /// Where the event sits in the log; `null` for a no-op.
    #[schema(required = true)]
    pub position: Option<Position>,
    /// Send as `X-Consistency-Token` to read this command's effect from the query API.
    pub consistency_token: String,
    /// `POST /v1/posts` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub post_id: Option<Uuid>,
    /// `POST /v1/posts/{post_id}/comments` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub comment_id: Option<Uuid>,
    /// `POST /v1/messages` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message_id: Option<Uuid>,
    /// `POST /v1/messages` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub conversation_id: Option<Uuid>,
    /// `POST /v1/games` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub game_id: Option<Uuid>,
}

/// The optional `Idempotency-Key` header every command takes (documentation only: the
/// `idempotency` middleware reads it).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Retry safely: the same key and body within 24 h returns the first answer;
    /// 1-255 visible ASCII characters.
    #[param(rename = "Idempotency-Key", nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

/// The 202 answer of every command, for the OpenAPI document.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 202,
    description = "accepted: the event is durable in Kafka (or, with `event_id` null, nothing changed)"
)]
pub struct AcceptedAnswer(#[allow(dead_code)] Accepted);

fn token_of(position: Option<&Position>) -> String {
    position.map(ConsistencyToken::from_position).unwrap_or_default().encode()
}

pub fn metadata(actor: UserId, request: &RequestId) -> Metadata {
    Metadata { actor_id: Some(actor), correlation_id: request.correlation_id, causation_id: None }
}

/// The 202 answer of an accepted command.
pub fn accepted(body: Accepted) -> Result<(axum::http::StatusCode, agora_platform::http::ApiJson<Accepted>), ApiError> {
    Ok((axum::http::StatusCode::ACCEPTED, agora_platform::http::ApiJson(body)))
}

/// A post's write-side state; 404 if it was never written.
pub async fn load_post(
    app: &AppState,
    post: agora_schemas::PostId,
) -> Result<crate::domain::post::PostState, ApiError> {
    let key = crate::store::aggregates::key(agora_schemas::AggregateType::Post, post);
    let head: Head<crate::domain::post::PostState> = load_head(app, &key, post.0).await?;
    Ok(head.state)
}

/// Whether a user is registered (their aggregate has its first event).
pub async fn user_exists(app: &AppState, user: UserId) -> Result<bool, ApiError> {
    let head = app.aggregates.load(&crate::store::aggregates::key(agora_schemas::AggregateType::User, user)).await;
    let head: Head<crate::domain::user::UserState> = head.map_err(append_error)?;
    Ok(head.version > 0)
}

/// The head of `key`. An aggregate the keeper keeps (a post) may be in the log before its
/// head is written; while its id is younger than the head wait and it has no head, this
/// waits for the keeper rather than answer that it does not exist.
pub async fn load_head<S: DeserializeOwned + Default>(
    app: &AppState,
    key: &str,
    aggregate_id: Uuid,
) -> Result<Head<S>, ApiError> {
    let head: Head<S> = app.aggregates.load(key).await.map_err(append_error)?;
    if head.version > 0 || !keeper::keeps_key(key) {
        return Ok(head);
    }
    let Some(deadline) = waits_until(aggregate_id, app.head_wait, SystemTime::now()) else { return Ok(head) };
    let mut pause = Duration::from_millis(5);
    loop {
        let left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        if left.is_zero() {
            metrics::counter!(names::HEAD_WAITS, "outcome" => "absent").increment(1);
            return Ok(head);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
        let again: Head<S> = app.aggregates.load(key).await.map_err(append_error)?;
        if again.version > 0 {
            metrics::counter!(names::HEAD_WAITS, "outcome" => "found").increment(1);
            return Ok(again);
        }
    }
}

/// How far ahead of this clock another instance's may be.
const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// Until when a command waits for the head of the aggregate `id`: the time in its UUIDv7 plus
/// `wait`. `None` when that has passed, when the id is not a UUIDv7, or when it claims a
/// time from the future (minted ids never do): such a post is absent, not late.
pub fn waits_until(id: Uuid, wait: Duration, now: SystemTime) -> Option<SystemTime> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let minted = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    if minted > now + CLOCK_SKEW {
        return None;
    }
    Some(minted + wait).filter(|until| *until > now)
}

/// How many times a command is decided again after losing a race on its aggregate.
const MAX_ATTEMPTS: usize = 8;

/// Where a decision starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the stored head.
    Load,
    /// From an empty head, for an aggregate whose id was minted for this command: saves the
    /// two reads of a load. Should the id exist after all, the claim collides and the
    /// decision is made again on the loaded head.
    New,
    /// As `New`, and without a claim either, for an aggregate the head keeper keeps (a post):
    /// its minted id is unknown to anyone until the 202, so no command can race the first
    /// event, and its head comes from the log. Other aggregates fall back to `New`.
    Unclaimed,
}

/// Loads the aggregate, lets `decide` choose an event (or nothing), and appends it with
/// optimistic concurrency, deciding again on fresh state when another command won the race.
pub async fn decide_and_append<S, F>(
    app: &AppState,
    key: &str,
    aggregate_id: Uuid,
    meta: Metadata,
    decide: F,
) -> Result<Accepted, ApiError>
where
    S: Serialize + DeserializeOwned + Default,
    F: FnMut(&Head<S>) -> Result<Option<(Event, S)>, ApiError>,
{
    decide_and_append_from(app, key, aggregate_id, meta, Start::Load, decide).await
}

/// [`decide_and_append`], starting from `start`.
pub async fn decide_and_append_from<S, F>(
    app: &AppState,
    key: &str,
    aggregate_id: Uuid,
    meta: Metadata,
    start: Start,
    mut decide: F,
) -> Result<Accepted, ApiError>
where
    S: Serialize + DeserializeOwned + Default,
    F: FnMut(&Head<S>) -> Result<Option<(Event, S)>, ApiError>,
{
    // Commands on one aggregate take turns within this process, so they race only with
    // other instances. A new aggregate has nobody to take turns with.
    let _turn = if start == Start::Load { Some(app.locks.lock(key).await) } else { None };
    for attempt in 0..MAX_ATTEMPTS {
        let head: Head<S> = if attempt == 0 && start != Start::Load {
            Head { version: 0, state: S::default(), position: None }
        } else {
            load_head(app, key, aggregate_id).await?
        };
        let Some((event, new_state)) = decide(&head)? else {
            metrics::counter!(names::NO_OPS).increment(1);
            return Ok(Accepted {
                event_id: None,
                aggregate_id,
                version: head.version,
                position: None,
                consistency_token: token_of(head.position.as_ref()),
                ..Default::default()
            });
        };
        let envelope = Envelope::new(event, head.version + 1, meta.clone());
        let unclaimed = start == Start::Unclaimed && attempt == 0 && keeper::keeps(envelope.aggregate_type());
        let appended = if unclaimed {
            app.producer.publish(&envelope).await.map_err(AppendError::from)
        } else {
            app.aggregates.append(key, &head, &new_state, &envelope, &app.producer).await
        };
        match appended {
            Ok(position) => {
                metrics::counter!(names::EVENTS_APPENDED, "type" => envelope.event_type()).increment(1);
                tracing::info!(event_id = %envelope.event_id, event_type = envelope.event_type(), %key, "event appended");
                return Ok(Accepted {
                    event_id: Some(envelope.event_id),
                    aggregate_id,
                    version: envelope.aggregate_version,
                    consistency_token: token_of(Some(&position)),
                    position: Some(position),
                    ..Default::default()
                });
            }
            Err(AppendError::Conflict) => {
                metrics::counter!(names::CONFLICTS, "reason" => "version").increment(1);
                continue;
            }
            Err(e) => return Err(append_error(e)),
        }
    }
    Err(ApiError::Conflict("the target changed too often; retry".into()))
}

pub fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::Conflict => ApiError::Conflict("the target changed; retry".into()),
        AppendError::Busy => ApiError::unavailable("write-store", "an earlier command on this target is unresolved"),
        AppendError::Publish(e) => ApiError::unavailable("kafka", e),
        AppendError::Store(e) => ApiError::unavailable("mongodb", e),
        AppendError::Encode(e) => ApiError::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v7_at(at: SystemTime) -> Uuid {
        let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos()))
    }

    #[test]
    fn a_young_minted_id_waits_until_its_time_plus_the_wait() {
        let now = SystemTime::now();
        let wait = Duration::from_secs(5);
        let until = waits_until(v7_at(now - Duration::from_secs(2)), wait, now);
        let left = until.and_then(|u| u.duration_since(now).ok()).map(|d| d.as_millis());
        assert!(left.is_some_and(|ms| (2990..=3000).contains(&ms)), "{left:?}");
    }

    #[test]
    fn old_future_and_non_v7_ids_do_not_wait() {
        let now = SystemTime::now();
        let wait = Duration::from_secs(5);
        assert_eq!(waits_until(v7_at(now - Duration::from_secs(6)), wait, now), None);
        assert_eq!(waits_until(v7_at(now + Duration::from_secs(60)), wait, now), None);
        assert_eq!(waits_until(Uuid::new_v4(), wait, now), None);
        // A little ahead is another instance's clock, not a forged id.
        assert!(waits_until(v7_at(now + Duration::from_millis(500)), wait, now).is_some());
    }
}
