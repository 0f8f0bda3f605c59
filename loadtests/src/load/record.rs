//! What a generator process measured, per operation: latency in an HDR histogram and the
//! outcome counts, in a form that crosses process boundaries (JSON, the histogram as base64
//! HdrHistogram V2) and merges exactly, so a run split over several processes reports the
//! same percentiles as one process would.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest latency recorded, in microseconds (larger values are clamped to it): a request
/// is given up after 30 s, and a lag watch after 60 s.
pub const MAX_MICROS: u64 = 120_000_000;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The answer the scenario expects (2xx, or a 4xx the scenario provokes on purpose).
    Ok,
    /// An unexpected 4xx: the generator's bug or a contract change.
    ClientError(u16),
    /// 429: the contract's rate limits, which an honest mix stays under.
    RateLimited,
    /// 5xx, a timeout, a refused or reset connection: the system failed.
    Failed,
}

#[derive(Debug, Clone)]
pub struct OpRecord {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub client_errors: BTreeMap<u16, u64>,
    pub rate_limited: u64,
    pub failed: u64,
}

impl Default for OpRecord {
    fn default() -> Self {
        Self { latency: new_histogram(), ok: 0, client_errors: BTreeMap::new(), rate_limited: 0, failed: 0 }
    }
}

/// 3 significant figures from 1 µs to [`MAX_MICROS`].
#[allow(clippy::expect_used)] // constant bounds, valid (every test builds one)
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

impl OpRecord {
    /// Records one attempt; its latency counts whatever the outcome (a failure is slow too).
    pub fn record(&mut self, latency: Duration, outcome: Outcome) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        self.latency.saturating_record(micros);
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::ClientError(code) => *self.client_errors.entry(code).or_default() += 1,
            Outcome::RateLimited => self.rate_limited += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn attempts(&self) -> u64 {
        self.ok + self.client_errors.values().sum::<u64>() + self.rate_limited + self.failed
    }

    /// Everything that was not the expected answer, over all attempts.
    pub fn error_rate(&self) -> f64 {
        let n = self.attempts();
        if n == 0 { 0.0 } else { (n - self.ok) as f64 / n as f64 }
    }

    pub fn merge(&mut self, other: &OpRecord) {
        // Same bounds on both sides (new_histogram), so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        for (code, n) in &other.client_errors {
            *self.client_errors.entry(*code).or_default() += n;
        }
        self.rate_limited += other.rate_limited;
        self.failed += other.failed;
    }

    /// The latency quantile `q` (0-1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The wire form of an [`OpRecord`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpRecordWire {
    pub histogram: String,
    pub ok: u64,
    pub client_errors: BTreeMap<u16, u64>,
    pub rate_limited: u64,
    pub failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram does not decode: {0:?}")]
    Histogram(hdrhistogram::serialization::DeserializeError),
}

impl OpRecord {
    pub fn to_wire(&self) -> OpRecordWire {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail for a histogram of these bounds.
        let _ = V2Serializer::new().serialize(&self.latency, &mut bytes);
        OpRecordWire {
            histogram: STANDARD.encode(bytes),
            ok: self.ok,
            client_errors: self.client_errors.clone(),
            rate_limited: self.rate_limited,
            failed: self.failed,
        }
    }

    pub fn from_wire(wire: &OpRecordWire) -> Result<Self, WireError> {
        let bytes = STANDARD.decode(&wire.histogram)?;
        let decoded: Histogram<u64> =
            Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(WireError::Histogram)?;
        let mut latency = new_histogram();
        let _ = latency.add(&decoded);
        Ok(Self {
            latency,
            ok: wire.ok,
            client_errors: wire.client_errors.clone(),
            rate_limited: wire.rate_limited,
            failed: wire.failed,
        })
    }
}

/// Records by operation name, e.g. `POST /v1/posts` or `lag: post visible in query`.
#[derive(Debug, Clone, Default)]
pub struct Records(pub BTreeMap<String, OpRecord>);

impl Records {
    pub fn op(&mut self, name: &str) -> &mut OpRecord {
        self.0.entry(name.to_owned()).or_default()
    }

    pub fn merge(&mut self, other: &Records) {
        for (name, r) in &other.0 {
            self.op(name).merge(r);
        }
    }

    pub fn to_wire(&self) -> BTreeMap<String, OpRecordWire> {
        self.0.iter().map(|(k, v)| (k.clone(), v.to_wire())).collect()
    }

    pub fn from_wire(wire: &BTreeMap<String, OpRecordWire>) -> Result<Self, WireError> {
        wire.iter().map(|(k, v)| Ok((k.clone(), OpRecord::from_wire(v)?))).collect::<Result<_, _>>().map(Records)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn records_merged_from_several_processes_have_the_percentiles_of_all_their_samples() {
        let mut one = Records::default();
        let mut shards = vec![Records::default(), Records::default(), Records::default()];
        for i in 1..=3_000u64 {
            let (latency, outcome) = (ms(i % 997 + 1), if i % 100 == 0 { Outcome::Failed } else { Outcome::Ok });
            one.op("POST /v1/posts").record(latency, outcome);
            shards[(i % 3) as usize].op("POST /v1/posts").record(latency, outcome);
        }
        let mut merged = Records::default();
        for s in &shards {
            // Through the wire form, as the coordinator gets them.
            let wire = serde_json::to_string(&s.to_wire()).unwrap();
            merged.merge(&Records::from_wire(&serde_json::from_str(&wire).unwrap()).unwrap());
        }
        let (a, b) = (&one.0["POST /v1/posts"], &merged.0["POST /v1/posts"]);
        for q in [0.5, 0.99, 0.999] {
            assert_eq!(a.quantile_ms(q), b.quantile_ms(q), "quantile {q}");
        }
        assert_eq!(b.attempts(), 3_000);
        assert_eq!(b.failed, 30);
        assert!((b.error_rate() - 0.01).abs() < 1e-9);
        // Uniform-ish 1..997 ms: the median is near 499 ms (3 significant figures).
        assert!((b.quantile_ms(0.5) - 499.0).abs() < 3.0, "{}", b.quantile_ms(0.5));
    }

    #[test]
    fn outcomes_are_counted_apart_and_huge_latencies_are_clamped_not_lost() {
        let mut r = OpRecord::default();
        r.record(ms(5), Outcome::Ok);
        r.record(ms(5), Outcome::ClientError(422));
        r.record(ms(5), Outcome::ClientError(422));
        r.record(ms(5), Outcome::RateLimited);
        r.record(Duration::from_secs(10_000), Outcome::Failed);
        assert_eq!((r.ok, r.client_errors[&422], r.rate_limited, r.failed), (1, 2, 1, 1));
        assert_eq!(r.latency.len(), 5);
        assert!(r.quantile_ms(1.0) >= 119_000.0);
        assert_eq!(OpRecord::default().error_rate(), 0.0);
    }

    #[test]
    fn a_damaged_histogram_is_an_error_not_a_panic() {
        let mut wire = OpRecord::default().to_wire();
        wire.histogram = "not base64!".into();
        assert!(OpRecord::from_wire(&wire).is_err());
        wire.histogram = STANDARD.encode(b"not a histogram");
        assert!(OpRecord::from_wire(&wire).is_err());
    }
}
