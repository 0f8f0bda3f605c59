//! The load generator's setup (loadtests/src/load/users.rs) against the real system: virtual
//! users registered from their shards' own source addresses, and the power-law follow graph
//! applied edge for edge, as the query API then shows it.

use crate::helpers::{TestApp, eventually};
use agora_loadtests::load::graph::{FollowGraph, Shape};
use agora_loadtests::load::split::{Limits, split};
use agora_loadtests::load::users::{Endpoints, VirtualUser, follow, register};
use std::time::Duration;

#[tokio::test]
async fn the_generator_s_users_and_follow_graph_are_what_the_query_api_then_shows() {
    let app = TestApp::spawn().await;
    let ep = Endpoints { command: app.command.clone(), query: app.query.clone(), realtime: app.realtime.clone() };
    let n = 40;
    // Two shards of two source addresses each, as the presets split a larger run.
    let shards = split(n, Limits { per_process: 20, per_source: 10 });
    assert_eq!(shards.len(), 2);
    let tag = format!("l{}", &app.prefix[1..9]);
    let mut users: Vec<VirtualUser> = Vec::new();
    for shard in &shards {
        users.extend(register(&ep, shard, &tag, 8, |_| {}).await.unwrap());
    }
    assert_eq!(users.iter().map(|u| u.index).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    let graph = FollowGraph::power_law(n, Shape { zipf_s: 1.0, mean_follows: 6.0 }, 11);
    let mut made = 0;
    for shard in &shards {
        made += follow(&ep, shard, &users, &graph, 8, |_| {}).await.unwrap();
    }
    assert_eq!(made, graph.edges());
    let followers = graph.followers();
    for (i, u) in users.iter().enumerate() {
        let want = (u64::from(followers[i]), graph.follows[i].len() as u64);
        eventually(Duration::from_secs(30), &format!("user {i}'s counts"), || {
            let app = &app;
            async move {
                let (status, body) = app.get(&app.query, &format!("/v1/users/{}", u.id), &u.token).await;
                let got = (body["followers"].as_u64()?, body["following"].as_u64()?);
                (status == 200 && got == want).then_some(())
            }
        })
        .await;
    }
    // A popular user (rank 0) has more followers than the median one.
    let mut sorted = followers.clone();
    sorted.sort_unstable();
    assert!(followers[0] > sorted[n / 2], "{followers:?}");
    app.shutdown().await;
}
