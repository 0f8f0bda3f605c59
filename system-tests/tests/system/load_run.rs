//! A short run of the load generator (loadtests/src/load/{run,worker}.rs) against the real
//! system: every user holds a socket, the mix's operations are answered as the contract says,
//! every post is found in the query API and every message is pushed to its recipient; and a
//! run split over two generator processes (`agora-load worker`) merges into one report.

use crate::helpers::{TestApp, workspace_binary};
use agora_loadtests::load::mix::{Op, Preset, rates};
use agora_loadtests::load::plan::{LAG_PUSHED, LAG_VISIBLE, PUSH_MESSAGE, tier_of};
use agora_loadtests::load::record::Records;
use agora_loadtests::load::run::{Measured, drive, setup, steps, write_plan};
use agora_loadtests::load::split::Limits;
use agora_loadtests::load::users::Endpoints;
use agora_loadtests::load::worker;

/// 30 users at 20x the mix for 4 s: some 400 operations, 20 messages and 20 moves.
const PRESET: Preset = Preset { name: "test", users: 30, steps: &[20.0], step_secs: 4 };

/// What every run must show: the operations answered as expected, each exercised, each
/// accepted post seen in the query API and each accepted message pushed; the operations tried.
fn assert_every_operation_answered(records: &Records) -> u64 {
    let ops = &records.0;
    let attempts: u64 =
        ops.iter().filter(|(name, _)| matches!(tier_of(name), "command" | "query")).map(|(_, r)| r.attempts()).sum();
    assert!(attempts >= 200, "{attempts} operations in 4 s at ~100/s");
    for (name, r) in ops {
        assert_eq!(r.ok, r.attempts(), "{name}: every attempt answered as expected: {r:?}");
    }
    for op in [Op::Post, Op::Feed, Op::ReadPost, Op::Like, Op::Message, Op::Move] {
        assert!(ops.get(op.name()).is_some_and(|r| r.ok > 0), "{} was exercised", op.name());
    }
    // Each accepted post was watched until visible, each accepted message until pushed.
    assert_eq!(ops[LAG_VISIBLE].ok, ops[Op::Post.name()].ok);
    assert_eq!(ops[LAG_PUSHED].ok, ops[Op::Message.name()].ok);
    assert_eq!(ops[PUSH_MESSAGE].ok, ops[Op::Message.name()].ok);
    assert!(ops[LAG_VISIBLE].quantile_ms(0.5) > 0.0);
    attempts
}

#[tokio::test]
async fn a_short_run_answers_every_operation_and_measures_both_lags_with_nothing_lost() {
    let app = TestApp::spawn().await;
    let ep = Endpoints { command: app.command.clone(), query: app.query.clone(), realtime: app.realtime.clone() };
    let seed = u64::from_str_radix(&app.prefix[1..9], 16).unwrap();
    let made = setup(&ep, &PRESET, (vec![20.0], 4), Limits::default(), seed, &|_: &str| {}).await.unwrap();
    assert_eq!(made.plan.users.len(), 30);
    assert_eq!((made.plan.posts.len(), made.plan.games.len()), (6, 3));
    let mut sockets = 0;
    let outcomes = worker::run(made.plan.clone(), 0, |n| sockets = n, async { Ok(()) }, |_| {}).await.unwrap();
    assert_eq!(sockets, 30, "every user holds a socket");
    assert_eq!(outcomes.sockets_closed, 0, "no socket was closed by the server");
    let step_records = Records::from_wire(&outcomes.steps[0]).unwrap();
    assert_every_operation_answered(&step_records);

    let measured = Measured { steps: vec![step_records], sockets, sockets_closed: 0 };
    let report = steps(&made.plan, &measured);
    assert_eq!(report.len(), 1);
    let tiers: Vec<&str> = report[0].tiers.keys().map(String::as_str).collect();
    assert_eq!(tiers, ["command", "push", "query"]);
    assert_eq!(report[0].lags.len(), 2);
    assert!(report[0].tiers.values().all(|f| f.error_rate == 0.0));
    app.shutdown().await;
}

#[tokio::test]
async fn a_run_split_over_two_generator_processes_merges_their_records_with_nothing_lost() {
    let app = TestApp::spawn().await;
    let ep = Endpoints { command: app.command.clone(), query: app.query.clone(), realtime: app.realtime.clone() };
    let seed = u64::from_str_radix(&app.prefix[1..9], 16).unwrap() ^ 1;
    // 15 users a process: two workers, each from its own two source addresses.
    let limits = Limits { per_process: 15, per_source: 8 };
    let made = setup(&ep, &PRESET, (vec![20.0], 4), limits, seed, &|_: &str| {}).await.unwrap();
    assert_eq!(made.plan.shards.len(), 2);
    assert!(made.plan.shards.iter().all(|s| s.users.len() == 15 && s.sources.len() == 2));
    let dir = tempfile::tempdir().unwrap();
    let plan_file = write_plan(dir.path(), &made.plan).unwrap();

    let exe = workspace_binary("agora-loadtests", "agora-load");
    let said = std::sync::Mutex::new(Vec::new());
    let measured =
        drive(&exe, &plan_file, &made.plan, &|line: &str| said.lock().unwrap().push(line.to_owned())).await.unwrap();
    assert_eq!(measured.sockets, 30, "both workers' sockets are counted: {:?}", said.lock().unwrap());
    assert_eq!(measured.sockets_closed, 0);
    assert_eq!(measured.steps.len(), 1);
    let attempts = assert_every_operation_answered(&measured.steps[0]);
    // The merged records hold both workers' operations: one worker alone offers half of them.
    let offered: f64 = rates(30, 20.0).iter().sum::<f64>() * 4.0;
    assert!(attempts as f64 >= 0.7 * offered, "{attempts} operations of {offered:.0} offered by both workers");
    let report = steps(&made.plan, &measured);
    assert!(report[0].tiers.values().all(|f| f.error_rate == 0.0));
    app.shutdown().await;
}
