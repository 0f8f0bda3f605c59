//! Consumer-group lag, as operators see it: the `agora_consumer_lag` gauge on `/metrics` and
//! the table `agora-projector lag` prints (`agora_platform::kafka::lag`).

use crate::helpers::{TestApp, assert_accepted, eventually};
use agora_platform::kafka::lag::group_lag;
use std::time::Duration;

fn lag_of(app: &TestApp, group: &str) -> i64 {
    let topics = agora_schemas::aggregate::Topics::new(app.prefix.clone()).event_topics();
    let rows = group_lag(&app.stack.kafka, group, &topics, Duration::from_secs(5)).unwrap();
    assert_eq!(rows.len(), topics.len() * 3, "a row per partition (3 per topic in tests)");
    rows.iter().map(|r| r.lag()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projectors_lag_drains_to_zero_and_an_idle_group_lags_by_everything() {
    let app = TestApp::spawn().await;
    let user = app.user("poster").await;
    for i in 0..6 {
        assert_accepted(&app.post(&user.token, &format!("post {i}")).await);
    }
    let group = app.env.string("AGORA_PROJECTOR_GROUP", "");
    let app_ref = &app;
    let group_ref = group.as_str();
    eventually(Duration::from_secs(20), "the projector's lag to reach 0", || async move {
        let lag = tokio::task::block_in_place(|| lag_of(app_ref, group_ref));
        (lag == 0).then_some(())
    })
    .await;
    // A group that never read anything has the whole log ahead: 1 registration + 6 posts.
    let idle = tokio::task::block_in_place(|| lag_of(&app, &format!("{}-nobody", app.prefix)));
    assert_eq!(idle, 7);

    // The gauge: one series per owned partition, refreshed every 5 s.
    let metrics = eventually(Duration::from_secs(20), "the lag gauge", || async {
        let text = app.http.get(format!("{}/metrics", app.projector)).send().await.ok()?.text().await.ok()?;
        text.contains(&format!("agora_consumer_lag{{group=\"{group}\"")).then_some(text)
    })
    .await;
    let series = metrics.lines().filter(|l| l.starts_with("agora_consumer_lag{") && l.contains(&group)).count();
    assert!(series >= 3, "a series per partition: {metrics}");
    app.shutdown().await;
}
