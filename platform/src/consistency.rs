//! Consistency tokens: the Kafka positions a command's events reached, handed to clients so a
//! later query can wait until the projector has applied them (read-your-writes).
//!
//! A token is opaque to clients: base64url of `v1;topic:partition:offset;...`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where one event sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The positions a reader must have passed, at most one per topic-partition (the highest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyToken {
    positions: BTreeMap<(String, i32), i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed consistency token")]
pub struct TokenError;

impl ConsistencyToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_position(p: &Position) -> Self {
        let mut t = Self::new();
        t.add(p);
        t
    }

    pub fn add(&mut self, p: &Position) {
        let e = self.positions.entry((p.topic.clone(), p.partition)).or_insert(p.offset);
        *e = (*e).max(p.offset);
    }

    pub fn merge(&mut self, other: &ConsistencyToken) {
        for ((topic, partition), offset) in &other.positions {
            self.add(&Position { topic: topic.clone(), partition: *partition, offset: *offset });
        }
    }

    pub fn positions(&self) -> impl Iterator<Item = Position> + '_ {
        self.positions.iter().map(|((topic, partition), offset)| Position {
            topic: topic.clone(),
            partition: *partition,
            offset: *offset,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub fn encode(&self) -> String {
        let mut text = String::from("v1");
        for ((topic, partition), offset) in &self.positions {
            text.push_str(&format!(";{topic}:{partition}:{offset}"));
        }
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(token: &str) -> Result<Self, TokenError> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| TokenError)?;
        let text = String::from_utf8(bytes).map_err(|_| TokenError)?;
        let mut parts = text.split(';');
        if parts.next() != Some("v1") {
            return Err(TokenError);
        }
        let mut t = Self::new();
        for part in parts {
            // Topic names may not hold ':' in Kafka, so the last two fields are unambiguous.
            let mut fields = part.rsplitn(3, ':');
            let offset = fields.next().and_then(|s| s.parse::<i64>().ok()).ok_or(TokenError)?;
            let partition = fields.next().and_then(|s| s.parse::<i32>().ok()).ok_or(TokenError)?;
            let topic = fields.next().filter(|s| !s.is_empty()).ok_or(TokenError)?;
            if partition < 0 || offset < 0 {
                return Err(TokenError);
            }
            t.add(&Position { topic: topic.to_owned(), partition, offset });
        }
        Ok(t)
    }

    /// Parses the `X-Consistency-Token` header: one or more tokens, comma-separated.
    pub fn decode_header(value: &str) -> Result<Self, TokenError> {
        let mut t = Self::new();
        for one in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            t.merge(&Self::decode(one)?);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(topic: &str, partition: i32, offset: i64) -> Position {
        Position { topic: topic.into(), partition, offset }
    }

    #[test]
    fn keeps_the_highest_offset_per_partition() {
        let mut t = ConsistencyToken::from_position(&pos("a.posts", 3, 10));
        t.add(&pos("a.posts", 3, 7));
        t.add(&pos("a.posts", 4, 1));
        let got: Vec<_> = t.positions().collect();
        assert_eq!(got, vec![pos("a.posts", 3, 10), pos("a.posts", 4, 1)]);
    }

    #[test]
    fn header_merges_several_tokens() {
        let a = ConsistencyToken::from_position(&pos("x.users", 0, 5)).encode();
        let b = ConsistencyToken::from_position(&pos("x.follows", 2, 9)).encode();
        let t = ConsistencyToken::decode_header(&format!("{a}, {b}")).unwrap_or_default();
        assert_eq!(t.positions().count(), 2);
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "!!!", &URL_SAFE_NO_PAD.encode("v2;a:1:2"), &URL_SAFE_NO_PAD.encode("v1;a:x:2")] {
            assert!(ConsistencyToken::decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(entries in proptest::collection::vec(("[a-z][a-z0-9._-]{0,20}", 0i32..1000, 0i64..i64::MAX), 0..8)) {
            let mut t = ConsistencyToken::new();
            for (topic, p, o) in &entries {
                t.add(&pos(topic, *p, *o));
            }
            prop_assert_eq!(ConsistencyToken::decode(&t.encode()), Ok(t));
        }
    }
}
