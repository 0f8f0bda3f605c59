//! The envelope: what one event looks like on the wire (JSON, one Kafka message value).

use crate::aggregate::AggregateType;
use crate::events::Event;
use crate::ids::{EventId, UserId};
use crate::upcast::{UpcastError, Upcasters};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event and in answer to what, for tracing a request through the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The signed-in user whose command this was; `None` for system-made events.
    pub actor_id: Option<UserId>,
    /// Shared by everything one client request caused (the HTTP request id).
    pub correlation_id: Uuid,
    /// The event or command that directly caused this one.
    pub causation_id: Option<Uuid>,
}

impl Metadata {
    /// For an event no user caused and no request carried: no actor, a correlation of its own.
    pub fn system() -> Self {
        Self { actor_id: None, correlation_id: Uuid::now_v7(), causation_id: None }
    }
}

/// An event with everything known about it, its payload decoded at the current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: EventId,
    pub aggregate_version: u64,
    pub occurred_at: DateTime<Utc>,
    pub metadata: Metadata,
    pub payload: Event,
}

/// The envelope exactly as stored: the payload still raw JSON at the version it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelope {
    /// UUIDv7.
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u16,
    pub aggregate_type: AggregateType,
    pub aggregate_id: Uuid,
    /// 1 for an aggregate's first event, then +1 per event.
    pub aggregate_version: u64,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
    pub correlation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    #[error("{event_type} v{version} payload: {source}")]
    Payload {
        event_type: String,
        version: u16,
        #[source]
        source: serde_json::Error,
    },
    #[error("{event_type}: envelope says {stated}, payload says {derived}")]
    Inconsistent { event_type: String, stated: String, derived: String },
}

impl Envelope {
    /// A new event, now, with a fresh UUIDv7 id.
    pub fn new(payload: impl Into<Event>, aggregate_version: u64, metadata: Metadata) -> Self {
        Self { event_id: EventId::new(), aggregate_version, occurred_at: Utc::now(), metadata, payload: payload.into() }
    }

    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    pub fn aggregate_type(&self) -> AggregateType {
        self.payload.aggregate_type()
    }

    pub fn aggregate_id(&self) -> Uuid {
        self.payload.aggregate_id()
    }

    pub fn to_raw(&self) -> Result<RawEnvelope, serde_json::Error> {
        Ok(RawEnvelope {
            event_id: self.event_id,
            event_type: self.payload.event_type().to_owned(),
            schema_version: self.payload.schema_version(),
            aggregate_type: self.payload.aggregate_type(),
            aggregate_id: self.payload.aggregate_id(),
            aggregate_version: self.aggregate_version,
            occurred_at: self.occurred_at,
            actor_id: self.metadata.actor_id,
            correlation_id: self.metadata.correlation_id,
            causation_id: self.metadata.causation_id,
            payload: self.payload.to_payload()?,
        })
    }

    /// The JSON bytes of a Kafka message value.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.to_raw()?)
    }

    /// Decodes stored bytes with the current upcasters.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        RawEnvelope::from_json(bytes)?.decode(&Upcasters::current())
    }
}

impl RawEnvelope {
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    /// The payload upcast to `target` and decoded as `T`: how a reader that knows a newer
    /// shape than the stored one reads it.
    pub fn payload_as<T: DeserializeOwned>(&self, upcasters: &Upcasters, target: u16) -> Result<T, DecodeError> {
        let payload = upcasters.upcast(&self.event_type, self.schema_version, self.payload.clone(), target)?;
        serde_json::from_value(payload).map_err(|source| DecodeError::Payload {
            event_type: self.event_type.clone(),
            version: target,
            source,
        })
    }

    /// Decodes into the current [`Event`], checking the envelope agrees with its payload.
    pub fn decode(self, upcasters: &Upcasters) -> Result<Envelope, DecodeError> {
        let current = Event::current_version(&self.event_type)
            .ok_or_else(|| DecodeError::UnknownType(self.event_type.clone()))?;
        let payload = upcasters.upcast(&self.event_type, self.schema_version, self.payload, current)?;
        let event = Event::from_current_payload(&self.event_type, payload)
            .ok_or_else(|| DecodeError::UnknownType(self.event_type.clone()))?
            .map_err(|source| DecodeError::Payload { event_type: self.event_type.clone(), version: current, source })?;
        let derived = (event.aggregate_type(), event.aggregate_id());
        if derived != (self.aggregate_type, self.aggregate_id) {
            return Err(DecodeError::Inconsistent {
                event_type: self.event_type,
                stated: format!("{}/{}", self.aggregate_type, self.aggregate_id),
                derived: format!("{}/{}", derived.0, derived.1),
            });
        }
        Ok(Envelope {
            event_id: self.event_id,
            aggregate_version: self.aggregate_version,
            occurred_at: self.occurred_at,
            metadata: Metadata {
                actor_id: self.actor_id,
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
            },
            payload: event,
        })
    }
}
