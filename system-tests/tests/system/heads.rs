//! A post's first event goes to Kafka without a claim, and its head comes from the log (the
//! head keeper): the commands that follow a post work at once, on any instance, and a head
//! that is lost is written again from the log.

use crate::helpers::{TestApp, assert_accepted, eventually, of_type};
use agora_schemas::AggregateType;
use mongodb::bson::{Document, doc};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_new_post_takes_comments_likes_and_its_deletion_at_once_on_another_instance() {
    let app = TestApp::spawn().await;
    let other = app.start_command_api().await;
    let (author, reader) = (app.user("author").await, app.user("reader").await);
    let mut posts = Vec::new();
    for i in 0..8 {
        let created = assert_accepted(&app.post(&author.token, &format!("post {i}")).await);
        let post = created.body["post_id"].as_str().unwrap().to_owned();
        // No pause: the head keeper may not have written the head yet; the command waits for it.
        let comment = app
            .call(Method::POST, &format!("/v1/posts/{post}/comments"))
            .on(&other.url)
            .token(&reader.token)
            .json(&json!({"text": "first!"}))
            .send()
            .await;
        assert_eq!(assert_accepted(&comment).version, 2, "the comment follows the post: {comment}");
        let like = app.call(Method::PUT, &format!("/v1/posts/{post}/like")).on(&other.url).token(&reader.token).send();
        assert_accepted(&like.await);
        let delete = app.call(Method::DELETE, &format!("/v1/posts/{post}")).on(&other.url).token(&author.token).send();
        assert_eq!(assert_accepted(&delete.await).version, 3, "the deletion follows the comment");
        posts.push(post);
    }
    let log = app.log_events(AggregateType::Post).await;
    for (kind, version) in [("post.created", 1), ("post.comment_added", 2), ("post.deleted", 3)] {
        let events = of_type(&log, kind);
        assert_eq!(events.len(), posts.len(), "one {kind} per post");
        assert!(events.iter().all(|e| e.aggregate_version == version), "{kind} at version {version}");
    }
    other.stop().await;
    app.shutdown().await;
}

async fn head_of(db: &mongodb::Database, post: &str) -> Option<Document> {
    db.collection::<Document>("aggregates").find_one(doc! {"_id": format!("post:{post}")}).await.unwrap()
}

#[tokio::test]
async fn a_lost_post_head_is_written_again_from_the_log() {
    let mut app = TestApp::spawn().await;
    let author = app.user("author").await;
    let created = assert_accepted(&app.post(&author.token, "kept by the log").await);
    let post = created.body["post_id"].as_str().unwrap().to_owned();
    let db = app.write_db().await;
    let head = eventually(Duration::from_secs(10), "the keeper writes the head", || head_of(&db, &post)).await;
    assert_eq!(head.get_i64("v").ok(), Some(1), "{head}");
    let claim = db.collection::<Document>("aggregate_claims").find_one(doc! {"_id": format!("post:{post}#1")}).await;
    assert!(claim.unwrap().is_none(), "a post is created without a claim");

    // Lose the head and the keeper's offsets: only the log still knows the post.
    app.stop_command_api().await;
    db.collection::<Document>("aggregates").delete_one(doc! {"_id": format!("post:{post}")}).await.unwrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &app.stack.kafka).create().unwrap();
    let group = app.env.string("AGORA_COMMAND_HEADS_GROUP", "");
    let deleted = admin.delete_groups(&[group.as_str()], &AdminOptions::new()).await.unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    assert!(head_of(&db, &post).await.is_none());

    app.start_first_command_api().await;
    let head = eventually(Duration::from_secs(20), "the head written again", || head_of(&db, &post)).await;
    assert_eq!(head.get_document("state").unwrap().get_str("author_id").ok(), Some(author.id.as_str()), "{head}");
    let delete = app.delete(&format!("/v1/posts/{post}"), &author.token).await;
    assert_eq!(assert_accepted(&delete).version, 2, "{delete}");
    app.shutdown().await;
}
