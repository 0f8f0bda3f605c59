//! Open-loop arrivals: when each operation is due, fixed before the run starts.
//!
//! A closed loop (send, wait, send) slows down with the server and so hides its latency;
//! here each operation kind arrives as a Poisson process at its own rate, and a request is
//! timed from when it was due, not from when a late generator got round to it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// One due operation: `kind` indexes the rates it was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub at: Duration,
    pub kind: usize,
}

/// The merged arrivals of several Poisson processes, in time order, up to a duration and a
/// count.
#[derive(Debug)]
pub struct Schedule {
    rng: ChaCha8Rng,
    rates: Vec<f64>,
    /// Next arrival of each kind, in nanoseconds, soonest first.
    next: BinaryHeap<Reverse<(u64, usize)>>,
    until_ns: u64,
    left: u64,
}

impl Schedule {
    /// `rates[k]`: arrivals of kind `k` per second (0 or less: none).
    pub fn new(rates: &[f64], duration: Duration, max_count: u64, seed: u64) -> Self {
        let mut s = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            rates: rates.to_vec(),
            next: BinaryHeap::new(),
            until_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            left: max_count,
        };
        for kind in 0..rates.len() {
            if let Some(gap) = s.gap(kind) {
                s.next.push(Reverse((gap, kind)));
            }
        }
        s
    }

    /// An exponential gap for `kind`, in nanoseconds.
    fn gap(&mut self, kind: usize) -> Option<u64> {
        let rate = self.rates[kind];
        if !(rate > 0.0 && rate.is_finite()) {
            return None;
        }
        // `1 - u` is in (0, 1]: its log is finite.
        let u: f64 = self.rng.random();
        Some((-(1.0 - u).ln() / rate * 1e9) as u64)
    }
}

impl Iterator for Schedule {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        if self.left == 0 {
            return None;
        }
        let Reverse((at, kind)) = self.next.pop()?;
        if at >= self.until_ns {
            self.next.clear();
            return None;
        }
        if let Some(gap) = self.gap(kind) {
            self.next.push(Reverse((at.saturating_add(gap.max(1)), kind)));
        }
        self.left -= 1;
        Some(Arrival { at: Duration::from_nanos(at), kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_come_in_time_order_within_the_duration_at_each_kind_s_rate() {
        let rates = [200.0, 50.0, 0.0, 10.0];
        let all: Vec<Arrival> = Schedule::new(&rates, Duration::from_secs(100), u64::MAX, 1).collect();
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(all.iter().all(|a| a.at < Duration::from_secs(100)));
        for (kind, rate) in rates.iter().enumerate() {
            let n = all.iter().filter(|a| a.kind == kind).count() as f64;
            let expected = rate * 100.0;
            // Poisson: the count's standard deviation is its square root; allow 5 of them.
            assert!((n - expected).abs() <= 5.0 * expected.sqrt().max(1.0), "kind {kind}: {n} vs {expected}");
        }
    }

    #[test]
    fn the_count_bound_stops_the_schedule_early() {
        assert_eq!(Schedule::new(&[1000.0], Duration::from_secs(3600), 500, 1).count(), 500);
        assert_eq!(Schedule::new(&[1000.0], Duration::ZERO, 500, 1).count(), 0);
        assert_eq!(Schedule::new(&[], Duration::from_secs(1), 500, 1).count(), 0);
        assert_eq!(Schedule::new(&[f64::NAN, -1.0], Duration::from_secs(1), 500, 1).count(), 0);
    }

    #[test]
    fn gaps_are_exponential_not_evenly_spaced() {
        let at: Vec<f64> =
            Schedule::new(&[100.0], Duration::from_secs(200), u64::MAX, 9).map(|a| a.at.as_secs_f64()).collect();
        let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        // An exponential's standard deviation equals its mean (a fixed interval's is 0).
        assert!((0.009..0.011).contains(&mean), "mean gap {mean}");
        assert!((sd / mean - 1.0).abs() < 0.1, "sd/mean {}", sd / mean);
    }

    #[test]
    fn shards_of_a_rate_add_up_to_it_and_differ_by_seed() {
        let whole = Schedule::new(&[400.0], Duration::from_secs(50), u64::MAX, 1).count() as f64;
        let shards: usize =
            (0..4).map(|w| Schedule::new(&[100.0], Duration::from_secs(50), u64::MAX, 10 + w).count()).sum();
        assert!((shards as f64 - whole).abs() < 5.0 * whole.sqrt() * 2.0, "{shards} vs {whole}");
        let a: Vec<_> = Schedule::new(&[100.0], Duration::from_secs(1), u64::MAX, 1).collect();
        let b: Vec<_> = Schedule::new(&[100.0], Duration::from_secs(1), u64::MAX, 2).collect();
        assert_ne!(a, b);
    }
}
