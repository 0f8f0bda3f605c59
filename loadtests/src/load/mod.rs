//! The load generator of virtual users (issue 6): a power-law follow graph, the old system's
//! scenarios at open-loop rates, several processes whose histograms are merged.

pub mod baselines;
pub mod graph;
pub mod mix;
pub mod plan;
pub mod record;
pub mod report;
pub mod run;
pub mod schedule;
pub mod split;
pub mod users;
pub mod worker;
