//! What the coordinator, the client processes and both stacks share.

use agora_schemas::UserId;
use anyhow::Context;
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which push stack a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// Agora's realtime tier: `GET /v1/stream?token=<jwt>`.
    Agora,
    /// Socket.IO 4 (Engine.IO v4 over WebSocket) with the Redis adapter.
    SocketIo,
}

impl Stack {
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Agora => "agora",
            Stack::SocketIo => "socketio",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "agora" => Ok(Stack::Agora),
            "socketio" | "socket.io" => Ok(Stack::SocketIo),
            other => anyhow::bail!("unknown stack {other:?} (agora, socketio)"),
        }
    }
}

/// User `index` of a run: the same id in every process that knows the run's seed.
pub fn user_id(seed: u64, index: u64) -> UserId {
    // Version 8 (custom) bits set so that it is a well-formed UUID.
    let hi = (seed & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_8000;
    let lo = (index & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    UserId(uuid::Uuid::from_u64_pair(hi, lo))
}

/// Nanoseconds since the Unix epoch: one clock for every process on this machine.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The text of a benchmark message: the phase it belongs to and its planned send time.
pub fn marker(phase: u32, planned_ns: u64) -> String {
    format!("{phase}:{planned_ns}")
}

/// The (phase, planned send time) of a frame carrying a message whose text is a [`marker`],
/// found without parsing the whole frame (the same cost on both stacks' frames).
pub fn find_marker(frame: &str) -> Option<(u32, u64)> {
    const KEY: &str = "\"text\":\"";
    let at = frame.find(KEY)? + KEY.len();
    let rest = &frame[at..];
    let end = rest.find('"')?;
    let (phase, ns) = rest[..end].split_once(':')?;
    Some((phase.parse().ok()?, ns.parse().ok()?))
}

/// The largest latency a histogram holds: 10 minutes, in microseconds.
pub const MAX_LATENCY_US: u64 = 600_000_000;

/// Latency histograms in microseconds, 1 µs to [`MAX_LATENCY_US`], 3 significant digits.
#[allow(clippy::expect_used)] // constant, valid bounds: no input reaches this
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds")
}

/// A histogram as base64 of its V2 serialization, to cross a process boundary on one line.
pub fn encode_histogram(h: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(h, &mut bytes).map_err(|e| anyhow::anyhow!("serializing a histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).context("histogram: not base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram: not a V2 serialization: {e:?}"))
}

/// The 127.0.0.x source address `x` (2..=254).
pub fn source_addr(x: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, x)
}

/// Run-length ranges `[start, end)` of the indices in `0..n` for which `f` is true.
pub fn ranges(n: u64, f: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..n {
        match (f(i), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_in_both_stacks_frames() {
        let m = marker(7, 1_700_000_000_123_456_789);
        let agora = format!(
            r#"{{"type":"event","event_id":"e","event_type":"message","stream_pos":"a-1-0","data":{{"from":"x","text":"{m}","to":"y"}}}}"#
        );
        let sio = format!(r#"42["message",{{"from":"x","to":"y","text":"{m}"}}]"#);
        assert_eq!(find_marker(&agora), Some((7, 1_700_000_000_123_456_789)));
        assert_eq!(find_marker(&sio), Some((7, 1_700_000_000_123_456_789)));
        assert_eq!(find_marker(r#"{"type":"ready","connection_id":"c","stream_pos":"a-0-0"}"#), None);
        assert_eq!(find_marker(r#"{"text":"hello"}"#), None);
    }

    #[test]
    fn user_ids_are_stable_distinct_and_parse_back() {
        let a = user_id(42, 1);
        assert_eq!(a, user_id(42, 1));
        assert_ne!(a, user_id(42, 2));
        assert_ne!(a, user_id(43, 1));
        assert_eq!(a.to_string().parse::<UserId>().ok(), Some(a));
    }

    #[test]
    fn histograms_cross_a_line_and_merge() {
        let mut h = histogram();
        for v in [10, 200, 3_000, 40_000] {
            h.saturating_record(v);
        }
        let text = encode_histogram(&h).unwrap_or_default();
        assert!(!text.contains('\n'));
        let back = decode_histogram(&text).unwrap_or_else(|_| histogram());
        assert_eq!(back.len(), 4);
        assert_eq!(back.value_at_quantile(1.0), h.value_at_quantile(1.0));
    }

    #[test]
    fn ranges_are_run_lengths() {
        let up = [true, true, false, true, false, false, true];
        assert_eq!(ranges(7, |i| up[i as usize]), vec![(0, 2), (3, 4), (6, 7)]);
        assert_eq!(ranges(3, |_| false), Vec::<(u64, u64)>::new());
    }
}
