//! How a run's virtual users are split over generator processes and loopback source
//! addresses. A process here may hold at most 20,000 open files (a limit that cannot be
//! raised), and one source address has some 28,000 ephemeral ports towards one service port;
//! so each process holds at most `per_process` users (each a socket and a share of pooled
//! HTTP connections), and each address serves at most `per_source` of them. Registration is
//! limited per client address (auth routes: 300 per address per minute by default), and that
//! is the tighter bound: at 250 users an address, registering them all fits in one window.

use std::net::Ipv4Addr;
use std::ops::Range;

/// One generator process's share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    /// Users `users.start..users.end` of the run (indexes into the follow graph).
    pub users: Range<usize>,
    /// The source addresses its users' connections come from, in turn.
    pub sources: Vec<Ipv4Addr>,
}

impl Shard {
    /// Which of `sources` user `user` (of this shard) connects from: contiguous blocks of
    /// users an address, so each address's users fit its auth budget.
    pub fn source_of(&self, user: usize) -> usize {
        let per_source = self.users.len().div_ceil(self.sources.len().max(1)).max(1);
        (user.saturating_sub(self.users.start) / per_source).min(self.sources.len().saturating_sub(1))
    }
}

/// Limits of a split; [`Limits::default`] fits this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_process: usize,
    pub per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 16,000 sockets leave 4,000 files for HTTP pools, pipes and the runtime; 250 users
        // an address stay under the auth limit (and far under the ports an address has).
        Self { per_process: 16_000, per_source: 250 }
    }
}

/// The first source address: 127.0.0.1 is left to the services and the stack.
const FIRST_SOURCE: u32 = u32::from_be_bytes([127, 0, 1, 1]);
/// 127.0.1.1 up to 127.255.255.254: more addresses than any preset needs.
const SOURCES: u32 = (1 << 24) - 256 - 2;

/// Even shards of `users`, as few processes as the limits allow, each with its own source
/// addresses (never shared between processes, so their port ranges never collide).
pub fn split(users: usize, limits: Limits) -> Vec<Shard> {
    let per_process = limits.per_process.max(1);
    let per_source = limits.per_source.clamp(1, per_process);
    let processes = users.div_ceil(per_process).max(1);
    let mut next_source = 0u32;
    (0..processes)
        .map(|index| {
            // The first `users % processes` shards take one user more.
            let base = users / processes;
            let extra = users % processes;
            let start = index * base + index.min(extra);
            let len = base + usize::from(index < extra);
            let sources = (0..len.div_ceil(per_source).max(1))
                .map(|_| {
                    let ip = Ipv4Addr::from(FIRST_SOURCE + next_source % SOURCES);
                    next_source += 1;
                    ip
                })
                .collect();
            Shard { index, users: start..start + len, sources }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_is_in_exactly_one_shard_and_no_shard_passes_the_limits() {
        for users in [0, 1, 999, 1_000, 10_000, 16_001, 100_000, 123_457] {
            let shards = split(users, Limits::default());
            let mut next = 0;
            for s in &shards {
                assert_eq!(s.users.start, next, "{users}: shards are contiguous");
                next = s.users.end;
                assert!(s.users.len() <= 16_000, "{users}: shard of {}", s.users.len());
                assert!(s.users.len().div_ceil(s.sources.len()) <= 250);
            }
            assert_eq!(next, users);
        }
    }

    #[test]
    fn the_100k_preset_takes_seven_even_processes_on_their_own_addresses() {
        let shards = split(100_000, Limits::default());
        assert_eq!(shards.len(), 7);
        let sizes: Vec<usize> = shards.iter().map(|s| s.users.len()).collect();
        assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{sizes:?}");
        let mut all: Vec<Ipv4Addr> = shards.iter().flat_map(|s| s.sources.clone()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "no address is shared");
        assert!(all.iter().all(|ip| ip.is_loopback() && *ip != Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn each_address_serves_one_contiguous_block_of_at_most_per_source_users() {
        for shard in split(40_001, Limits::default()) {
            let mut per_address = vec![0usize; shard.sources.len()];
            let mut last = 0;
            for u in shard.users.clone() {
                let source = shard.source_of(u);
                assert!(source >= last, "user {u} goes back to address {source}");
                last = source;
                per_address[source] += 1;
            }
            assert!(per_address.iter().all(|&n| (1..=250).contains(&n)), "{per_address:?}");
        }
    }

    #[test]
    fn small_runs_use_one_process_and_odd_limits_do_not_break_the_split() {
        assert_eq!(split(1_000, Limits::default()).len(), 1);
        let zero = split(0, Limits::default());
        assert_eq!((zero.len(), zero[0].users.clone()), (1, 0..0));
        let tiny = split(10, Limits { per_process: 0, per_source: 0 });
        assert_eq!(tiny.len(), 10);
    }
}
