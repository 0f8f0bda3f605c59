//! Overload: more queries than MongoDB connections, most of them abandoned by their clients,
//! must leave query-api serving as soon as the burst is over (it once stayed unready for hours:
//! the driver kept every abandoned connection request queued and served them one per tick).

use crate::helpers::{Stack, TestApp, assert_accepted, eventually, query_until};
use std::time::{Duration, Instant};

/// Requests in the burst, all at once; each feed page reads MongoDB about twenty times.
const BURST: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_abandoned_queries_over_the_pool_sheds_with_503_and_query_api_recovers_at_once() {
    let app = TestApp::spawn_with(
        Stack::local(),
        &[
            ("AGORA_MONGO_MAX_POOL", "5"),
            ("AGORA_MONGO_MIN_POOL", "1"),
            ("AGORA_MONGO_WAIT_MS", "300"),
            ("AGORA_RATE_LIMIT_QUERIES", "off"),
            ("AGORA_RATE_LIMIT_WRITES", "off"),
        ],
    )
    .await;
    let alice = app.user("alice").await;
    for i in 0..20 {
        assert_accepted(&app.post(&alice.token, &format!("post {i}")).await);
    }
    query_until(&app, "/v1/feed?limit=20", &alice.token, "alice's twenty posts in her feed", |s, b| {
        s == 200 && b["items"].as_array().is_some_and(|i| i.len() == 20)
    })
    .await;

    // Clients that give up after a second, as a load balancer or an impatient app does.
    let impatient = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let url = format!("{}/v1/feed?limit=20", app.query);
    let answers = futures::future::join_all((0..BURST).map(|_| {
        let (impatient, url, token) = (impatient.clone(), url.clone(), alice.token.clone());
        async move {
            match impatient.get(&url).bearer_auth(&token).send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let retry_after = res.headers().get("retry-after").cloned();
                    // A body cut off by the client's timeout is an abandoned request too.
                    let body = res.bytes().await.ok()?;
                    Some((status, retry_after, serde_json::from_slice::<serde_json::Value>(&body).ok()?))
                }
                Err(_) => None,
            }
        }
    }))
    .await;
    let answered: Vec<_> = answers.iter().flatten().collect();
    let abandoned = BURST - answered.len();
    let shed = answered.iter().filter(|(s, ..)| *s == 503).count();
    let served = answered.iter().filter(|(s, ..)| *s == 200).count();
    assert_eq!(served + shed, answered.len(), "only 200 and 503: {answered:?}");
    for (_, retry_after, body) in answered.iter().filter(|(s, ..)| *s == 503) {
        assert!(retry_after.is_some(), "503 without Retry-After: {body}");
        assert_eq!(body["status"], 503, "{body}");
        assert_eq!(body["type"], "https://agora.dev/problems/unavailable", "{body}");
    }
    // Refused after the wait, before the clients gave up: the service said it was busy.
    assert!(shed > 0, "nothing shed by a pool of five ({served} served, {abandoned} abandoned)");

    // Once the burst is over, the service is ready and answers from MongoDB again at once.
    let over = Instant::now();
    eventually(Duration::from_secs(5), "query-api ready after the burst", || async {
        (app.ready(&app.query).await.0 == 200).then_some(())
    })
    .await;
    // The likes of a page and the inbox are read from MongoDB on every request.
    let (status, unread) = app.get(&app.query, "/v1/notifications", &alice.token).await;
    assert_eq!(status, 200, "the notifications after the burst: {unread}");
    let (status, page) = app.get(&app.query, "/v1/feed?limit=20", &alice.token).await;
    assert_eq!(status, 200, "the feed after the burst: {page}");
    let recovered = over.elapsed();
    eprintln!(
        "burst of {BURST}: {served} served, {shed} shed with 503, {abandoned} abandoned; ready and reading again {recovered:?} after"
    );
    app.shutdown().await;
}
