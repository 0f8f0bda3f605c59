//! Presence: `GET /v1/presence` on realtime answers who has a socket open, on any realtime
//! process, and forgets a user once their last socket closes.

use crate::helpers::{TestApp, eventually};
use serde_json::{Value, json};
use std::time::Duration;

async fn presence(app: &TestApp, base: &str, token: &str, ids: &str) -> (u16, Value) {
    app.get(base, &format!("/v1/presence?user_ids={ids}"), token).await
}

#[tokio::test]
async fn presence_tells_who_has_a_socket_open_until_the_last_one_closes() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let ids = format!("{},{}", ann.id, bob.id);
    let (status, body) = presence(&app, &app.realtime, &bob.token, &ids).await;
    assert_eq!((status, body.clone()), (200, json!({ann.id.clone(): false, bob.id.clone(): false})), "{body}");

    // Two sockets of ann's: she stays online until both are closed.
    let (mut first, _) = app.connect_ws(&ann.token).await;
    let (mut second, _) = app.connect_ws(&ann.token).await;
    let (_, body) = presence(&app, &app.realtime, &bob.token, &ids).await;
    assert_eq!(body, json!({ann.id.clone(): true, bob.id.clone(): false}), "{body}");
    first.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = presence(&app, &app.realtime, &bob.token, &ann.id).await;
    assert_eq!(body, json!({ann.id.clone(): true}), "one socket left: {body}");
    second.close(None).await.unwrap();
    eventually(Duration::from_secs(10), "ann offline", || async {
        let (_, body) = presence(&app, &app.realtime, &bob.token, &ann.id).await;
        (body == json!({ann.id.clone(): false})).then_some(())
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn presence_needs_a_token_and_user_ids() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let (status, body) = presence(&app, &app.realtime, "not-a-token", &ann.id).await;
    assert_eq!(status, 401, "{body}");
    for bad in ["", "nope", &format!("{},x", ann.id)] {
        let (status, body) = presence(&app, &app.realtime, &ann.token, bad).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert_eq!(body["errors"][0]["field"], "user_ids", "{body}");
    }
    let many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let (status, _) = presence(&app, &app.realtime, &ann.token, &many.join(",")).await;
    assert_eq!(status, 422);
    let (status, body) = app.get(&app.realtime, "/v1/presence", &ann.token).await;
    assert_eq!(status, 422, "{body}");
    app.shutdown().await;
}

/// Opens `/v1/stream` with an `Origin` header: the HTTP status of the answer (101 = upgraded).
async fn upgrade_from(app: &TestApp, token: &str, origin: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{}/v1/stream?token={token}", app.realtime_port);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_stream_opens_only_from_the_configured_origins() {
    let app =
        TestApp::spawn_with(crate::helpers::Stack::local(), &[("AGORA_CORS_ORIGINS", "https://app.example")]).await;
    let ann = app.user("ann").await;
    assert_eq!(upgrade_from(&app, &ann.token, "https://app.example").await, 101);
    assert_eq!(upgrade_from(&app, &ann.token, "https://evil.example").await, 403);
    let own = format!("http://127.0.0.1:{}", app.realtime_port);
    assert_eq!(upgrade_from(&app, &ann.token, &own).await, 101, "the realtime host itself");
    app.shutdown().await;
}
