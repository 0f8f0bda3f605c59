//! What the coordinator hands each generator process: the run's users and what the setup
//! made, the shards, and the load steps. One JSON file per run, read by every worker.

use super::mix::Op;
use super::record::{OpRecord, Records};
use super::split::Shard;
use super::users::{Endpoints, GameSeed, VirtualUser};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// The run's handle prefix (`^[a-z0-9]{1,12}$`): new users made during the run are
    /// `<tag>_s<shard>n<k>`.
    pub tag: String,
    pub seed: u64,
    pub endpoints: Endpoints,
    /// Offered load steps, multiples of the 1x mix, each `step_secs` long.
    pub steps: Vec<f64>,
    pub step_secs: u64,
    /// Every user of the run, by index.
    pub users: Vec<VirtualUser>,
    pub posts: Vec<String>,
    pub games: Vec<GameSeed>,
    pub shards: Vec<Shard>,
}

/// Record names beside the operations' own ([`Op::name`]).
pub const LAG_VISIBLE: &str = "post visible in query";
pub const LAG_PUSHED: &str = "message pushed to socket";
/// A pushed message frame, timed from when its send was due (open loop, like the requests).
pub const PUSH_MESSAGE: &str = "push: message frame";
/// Starting a new game when one ends (white challenges, black accepts).
pub const NEW_GAME: &str = "POST /v1/games";
pub const ACCEPT_GAME: &str = "POST /v1/games/{id}/accept";

/// The tier a record counts in: `push`, `lag` (reported apart), `query` or `command`.
pub fn tier_of(name: &str) -> &'static str {
    if name.starts_with("push: ") {
        "push"
    } else if name == LAG_VISIBLE || name == LAG_PUSHED {
        "lag"
    } else if name.starts_with("GET ") {
        "query"
    } else {
        "command"
    }
}

/// What a worker prints on its stdout, one JSON line each. Externally tagged: an internally
/// tagged enum buffers its content, and then the records' numeric map keys (HTTP statuses,
/// strings in JSON) no longer parse.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLine {
    /// Its users' sockets are open; it waits for `go` on stdin.
    Ready { sockets: u64 },
    /// Its records, one entry per step, and how its sockets fared.
    Done { steps: Vec<std::collections::BTreeMap<String, super::record::OpRecordWire>>, sockets_closed: u64 },
}

/// Checks that every operation of the mix has a record name distinct from the extra ones.
pub fn names_are_distinct() -> bool {
    let mut all: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
    all.extend([LAG_VISIBLE, LAG_PUSHED, PUSH_MESSAGE, NEW_GAME, ACCEPT_GAME]);
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    all.len() == n
}

/// One step's records merged per tier (lags stay apart, by name: see [`tier_of`]).
pub fn merged_by_tier(records: &Records) -> std::collections::BTreeMap<&'static str, OpRecord> {
    let mut tiers: std::collections::BTreeMap<&'static str, OpRecord> = Default::default();
    for (name, r) in &records.0 {
        let tier = tier_of(name);
        if tier != "lag" {
            tiers.entry(tier).or_default().merge(r);
        }
    }
    tiers
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_record_name_lands_in_the_tier_it_exercises() {
        assert!(names_are_distinct());
        assert_eq!(tier_of(Op::Feed.name()), "query");
        assert_eq!(tier_of(Op::Move.name()), "command");
        assert_eq!(tier_of(NEW_GAME), "command");
        assert_eq!(tier_of(PUSH_MESSAGE), "push");
        assert_eq!(tier_of(LAG_VISIBLE), "lag");
        assert_eq!(tier_of(LAG_PUSHED), "lag");
    }

    #[test]
    fn a_worker_s_results_cross_the_pipe_with_their_error_counts() {
        let mut step = Records::default();
        step.op(Op::ReadPost.name())
            .record(std::time::Duration::from_millis(3), super::super::record::Outcome::ClientError(404));
        let line = WorkerLine::Done { steps: vec![step.to_wire()], sockets_closed: 2 };
        let text = serde_json::to_string(&line).unwrap();
        let Ok(WorkerLine::Done { steps, sockets_closed }) = serde_json::from_str::<WorkerLine>(&text) else {
            panic!("{text} does not parse back");
        };
        let back = Records::from_wire(&steps[0]).unwrap();
        assert_eq!(back.0[Op::ReadPost.name()].client_errors.get(&404), Some(&1));
        assert_eq!(sockets_closed, 2);
    }

    #[test]
    fn a_step_s_tiers_merge_their_operations_and_leave_the_lags_out() {
        let mut step = Records::default();
        step.op(Op::Feed.name()).record(std::time::Duration::from_millis(2), super::super::record::Outcome::Ok);
        step.op(Op::ReadPost.name()).record(std::time::Duration::from_millis(4), super::super::record::Outcome::Failed);
        step.op(Op::Post.name()).record(std::time::Duration::from_millis(8), super::super::record::Outcome::Ok);
        step.op(LAG_VISIBLE).record(std::time::Duration::from_millis(30), super::super::record::Outcome::Ok);
        let tiers = merged_by_tier(&step);
        assert_eq!(tiers.keys().copied().collect::<Vec<_>>(), ["command", "query"]);
        assert_eq!((tiers["query"].ok, tiers["query"].failed), (1, 1));
        assert_eq!(tiers["command"].attempts(), 1);
    }
}
