//! `projector rebuild` while queries run: the log is projected into a fresh database, the
//! query API switches to it without a failed request, answers stay the same, and the live
//! projector carries on in the rebuilt database.

use crate::helpers::{TestApp, User, assert_accepted, query_until};
use agora_projector::rebuild::{self, RebuildOptions};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn paths(users: &[User]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for u in users {
        for p in [
            format!("/v1/users/{}", u.id),
            format!("/v1/users/{}/posts", u.id),
            format!("/v1/users/{}/followers", u.id),
            format!("/v1/users/{}/following", u.id),
            "/v1/feed".to_owned(),
            "/v1/notifications".to_owned(),
            "/v1/conversations".to_owned(),
        ] {
            out.push((p, u.token.clone()));
        }
    }
    out
}

async fn answers(app: &TestApp, paths: &[(String, String)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (path, token) in paths {
        let (status, body) = app.get(&app.query, path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        out.push(body);
    }
    out
}

#[tokio::test]
async fn a_rebuild_switches_the_query_api_over_without_a_failed_query_or_a_changed_answer() {
    let app = TestApp::spawn().await;
    let (ann, bob, cy) = (app.user("ann").await, app.user("bob").await, app.user("cy").await);
    for (who, whom) in [(&ann, &bob), (&bob, &ann), (&cy, &ann)] {
        assert_accepted(&app.put(&format!("/v1/follows/{}", whom.id), &who.token).await);
    }
    let mut posts = Vec::new();
    for (i, who) in [&ann, &bob, &ann, &cy].into_iter().enumerate() {
        posts.push(assert_accepted(&app.post(&who.token, &format!("post {i}")).await).body["post_id"].clone());
    }
    let first = posts[0].as_str().unwrap().to_owned();
    assert_accepted(&app.put(&format!("/v1/posts/{first}/like"), &bob.token).await);
    assert_accepted(&app.post_json(&format!("/v1/posts/{first}/comments"), &cy.token, &json!({"text": "hi"})).await);
    assert_accepted(&app.post_json("/v1/messages", &bob.token, &json!({"to": ann.id, "text": "psst"})).await);
    query_until(&app, "/v1/conversations", &ann.token, "everything projected", |s, b| {
        s == 200 && b["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    query_until(&app, &format!("/v1/posts/{first}"), &ann.token, "the like and the comment", |s, b| {
        s == 200 && b["like_count"] == 1 && b["comment_count"] == 1
    })
    .await;
    let users = [ann.clone(), bob.clone(), cy.clone()];
    let paths = paths(&users);
    let before = answers(&app, &paths).await;

    // Queries run all through the rebuild and the switch.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let mut readers = Vec::new();
    for n in 0..3 {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        let (http, query, paths) = (app.http.clone(), app.query.clone(), paths.clone());
        readers.push(tokio::spawn(async move {
            let mut i = n;
            while !stop.load(Ordering::Relaxed) {
                let (path, token) = &paths[i % paths.len()];
                i += 1;
                match http.get(format!("{query}{path}")).bearer_auth(token).send().await {
                    Ok(r) if r.status().as_u16() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed.lock().unwrap().push(format!("{path}: {}", r.status())),
                    Err(e) => failed.lock().unwrap().push(format!("{path}: {e}")),
                }
            }
        }));
    }
    let config = agora_projector::ProjectorConfig::from_env(&app.env).unwrap();
    let served_before = served.load(Ordering::Relaxed);
    let report = tokio::time::timeout(Duration::from_secs(90), rebuild::run(&config, RebuildOptions { switch: true }))
        .await
        .expect("the rebuild did not finish in 90 s")
        .expect("the rebuild failed");
    assert!(report.switched);
    assert!(report.events >= 12, "{report:?}");
    // Readers poll the pointer every second; keep querying across that.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "failed queries across the rebuild: {failed:?}");
    assert!(served.load(Ordering::Relaxed) > served_before + 10, "too few queries ran during the rebuild");

    // The pointer names the new database, which holds the read models; the old one is kept.
    let client = mongodb::Client::with_uri_str(&app.stack.mongo).await.unwrap();
    let base = format!("{}_read", app.prefix);
    let pointer = client.database(&base).collection::<Document>("meta").find_one(doc! {"_id": "active"}).await.unwrap();
    assert_eq!(pointer.as_ref().and_then(|p| p.get_str("db").ok()), Some(report.rebuilt.db.as_str()), "{pointer:?}");
    assert_ne!(report.rebuilt.db, base);
    let rebuilt_posts = client.database(&report.rebuilt.db).collection::<Document>("posts");
    assert_eq!(rebuilt_posts.count_documents(doc! {}).await.unwrap(), 4);
    assert_eq!(client.database(&base).collection::<Document>("posts").count_documents(doc! {}).await.unwrap(), 4);

    // Same answers from the rebuilt database (the cache epoch was bumped: these are fresh).
    let after = answers(&app, &paths).await;
    for ((path, _), (b, a)) in paths.iter().zip(before.iter().zip(after.iter())) {
        assert_eq!(b, a, "{path} changed across the rebuild");
    }

    // The live projector moved to the rebuilt generation: a new post shows up there.
    let new =
        assert_accepted(&app.post(&cy.token, "after the switch").await).body["post_id"].as_str().unwrap().to_owned();
    query_until(&app, &format!("/v1/posts/{new}"), &ann.token, "a post after the switch", |s, _| s == 200).await;
    let stored = rebuilt_posts.find_one(doc! {"_id": &new}).await.unwrap();
    assert!(stored.is_some(), "the new post is not in the rebuilt database");
    app.shutdown().await;
}
