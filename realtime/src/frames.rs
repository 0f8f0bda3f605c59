//! The contract's WebSocket frames.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A frame the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Ready { connection_id: &'a str, stream_pos: &'a str },
    Event { event_id: &'a str, event_type: &'a str, stream_pos: &'a str, data: &'a RawValue },
    Subscribed { channel: &'a str },
    Unsubscribed { channel: &'a str },
    Reset { reason: &'a str },
    Pong,
    Error { code: &'a str, message: &'a str },
}

impl ServerFrame<'_> {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the router stores per recipient and publishes: everything of an `event` frame but its
/// `stream_pos`, which is the Redis stream id assigned on append.
#[derive(Debug, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    /// When the event occurred, unix milliseconds: for the push-latency histogram.
    pub occurred_ms: i64,
    pub data: Box<RawValue>,
    /// For a game channel's copy: the users whose own streams carry this frame too; their
    /// sockets skip the copy, so each event reaches a socket once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_streams_of: Vec<String>,
}

/// A frame a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Subscribe { channel: String },
    Unsubscribe { channel: String },
    Resume { after: String },
    Ping,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_have_the_contract_fields() {
        let data = RawValue::from_string(r#"{"post_id":"p"}"#.into()).unwrap_or_else(|e| panic!("{e}"));
        let f = ServerFrame::Event { event_id: "e", event_type: "feed.post", stream_pos: "1-2", data: &data };
        assert_eq!(
            f.to_text(),
            r#"{"type":"event","event_id":"e","event_type":"feed.post","stream_pos":"1-2","data":{"post_id":"p"}}"#
        );
        assert_eq!(ServerFrame::Pong.to_text(), r#"{"type":"pong"}"#);
    }

    #[test]
    fn client_frames_parse_and_garbage_does_not() {
        assert!(matches!(serde_json::from_str(r#"{"op":"ping"}"#), Ok(ClientFrame::Ping)));
        assert!(matches!(
            serde_json::from_str(r#"{"op":"subscribe","channel":"game:x"}"#),
            Ok(ClientFrame::Subscribe { .. })
        ));
        for bad in [r#"{"op":"dance"}"#, "[]", "{", r#"{"op":"subscribe"}"#] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }
}
