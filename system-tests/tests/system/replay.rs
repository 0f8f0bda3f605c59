//! `agora-projector replay`, as analysts use it: the history in the log, in time order, once
//! each, filtered as asked, with direct-message text redacted unless asked for; called
//! in-process through `agora_projector::replay::run` on the app's own topics.

use crate::helpers::{TestApp, User, assert_accepted, eventually};
use agora_projector::ProjectorConfig;
use agora_projector::replay::{self, Parsed, Summary};
use agora_schemas::aggregate::Topics;
use agora_schemas::{AggregateType, Envelope};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const SECRET: &str = "the eagle lands at noon";

/// One event of the log with where it is.
#[derive(Debug, Clone)]
struct Logged {
    topic: String,
    partition: i32,
    offset: i64,
    envelope: Envelope,
}

impl Logged {
    fn id(&self) -> String {
        self.envelope.event_id.to_string()
    }
}

/// A small history: three users (one with a profile change), three posts, a comment, a
/// follow, a like and a direct message.
struct History {
    ann: User,
    bob: User,
    first_post: String,
    /// The whole log, in (occurred_at, topic, partition, offset) order.
    log: Vec<Logged>,
}

async fn history(app: &TestApp) -> History {
    let (ann, bob, cat) = (app.user("ann").await, app.user("bob").await, app.user("cat").await);
    assert_accepted(&app.patch_json("/v1/me", &ann.token, &json!({"bio": "analyst's favourite"})).await);
    let first_post = assert_accepted(&app.post(&ann.token, "ann's first").await).aggregate_id;
    assert_accepted(&app.post(&bob.token, "bob's first").await);
    assert_accepted(&app.post(&ann.token, "ann's second").await);
    let comment = json!({"text": "nice"});
    assert_accepted(&app.post_json(&format!("/v1/posts/{first_post}/comments"), &bob.token, &comment).await);
    assert_accepted(&app.put(&format!("/v1/follows/{}", ann.id), &bob.token).await);
    assert_accepted(&app.put(&format!("/v1/posts/{first_post}/like"), &cat.token).await);
    assert_accepted(&app.post_json("/v1/messages", &ann.token, &json!({"to": bob.id, "text": SECRET})).await);
    const EVENTS: usize = 3 + 1 + 3 + 1 + 1 + 1 + 1;

    let topics = Topics::new(app.prefix.clone());
    let log = eventually(Duration::from_secs(20), "every event in the log", || async {
        let mut log = Vec::new();
        for aggregate in AggregateType::ALL {
            for r in app.log_records(aggregate).await {
                log.push(Logged {
                    topic: topics.of(aggregate),
                    partition: r.partition,
                    offset: r.offset,
                    envelope: r.envelope,
                });
            }
        }
        (log.len() == EVENTS).then_some(log)
    })
    .await;
    let mut log = log;
    log.sort_by(|a, b| {
        (a.envelope.occurred_at, &a.topic, a.partition, a.offset).cmp(&(
            b.envelope.occurred_at,
            &b.topic,
            b.partition,
            b.offset,
        ))
    });
    History { ann, bob, first_post, log }
}

/// Runs a replay of the app's topics with `args` (and `--quiet`): its summary and output.
fn replay_raw(app: &TestApp, args: &[&str]) -> (Summary, Vec<u8>) {
    let config = ProjectorConfig::from_env(&app.env).unwrap();
    let mut args = args.to_vec();
    args.push("--quiet");
    let Ok(Parsed::Run(options)) = replay::parse(&args) else { panic!("{args:?} are not replay options") };
    let mut out = Vec::new();
    let summary = tokio::task::block_in_place(|| replay::run(&config, &options, &mut out))
        .unwrap_or_else(|e| panic!("replay {args:?}: {e}"));
    (summary, out)
}

/// As [`replay_raw`], of a log where every record is an event and none arrived late.
fn replay_bytes(app: &TestApp, args: &[&str]) -> (Summary, Vec<u8>) {
    let (summary, out) = replay_raw(app, args);
    assert_eq!(summary.undecodable, 0, "{summary}: {:?}", summary.undecodable_examples);
    assert_eq!(summary.out_of_order, 0, "{summary}");
    (summary, out)
}

/// As [`replay_bytes`], NDJSON parsed: one JSON object per line.
fn replay_lines(app: &TestApp, args: &[&str]) -> (Summary, Vec<Value>) {
    let (summary, out) = replay_bytes(app, args);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}"))).collect();
    assert_eq!(summary.written, lines.len() as u64, "{summary}");
    (summary, lines)
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines.iter().map(|l| l["event_id"].as_str().unwrap().to_owned()).collect()
}

fn log_ids<'a>(log: impl IntoIterator<Item = &'a Logged>) -> Vec<String> {
    log.into_iter().map(Logged::id).collect()
}

/// Asserts lines come in (occurred_at, topic, partition, offset) order, each key once.
fn assert_in_time_order(lines: &[Value]) {
    let keys: Vec<_> = lines
        .iter()
        .map(|l| {
            let at = replay::parse_time(l["occurred_at"].as_str().unwrap()).unwrap();
            let p = &l["position"];
            (
                at,
                p["topic"].as_str().unwrap().to_owned(),
                p["partition"].as_i64().unwrap(),
                p["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    for pair in keys.windows(2) {
        assert!(pair[0] < pair[1], "out of order: {:?} then {:?}", pair[0], pair[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_writes_every_event_once_in_time_order_with_message_text_redacted() {
    let app = TestApp::spawn().await;
    let h = history(&app).await;

    let (summary, lines) = replay_lines(&app, &[]);
    assert_eq!(ids(&lines), log_ids(&h.log), "every event once, in time order");
    assert_in_time_order(&lines);
    assert_eq!(
        (summary.read, summary.offsets_to_read, summary.filtered_out),
        (h.log.len() as u64, h.log.len() as u64, 0)
    );
    assert_eq!(summary.partitions, h.log.iter().map(|l| (&l.topic, l.partition)).collect::<HashSet<_>>().len());

    let mut messages = 0;
    for (line, logged) in lines.iter().zip(&h.log) {
        assert_eq!(
            line["position"],
            json!({"topic": logged.topic, "partition": logged.partition, "offset": logged.offset}),
            "{line}"
        );
        // The rest of the line is the stored envelope, text of direct messages aside.
        let mut event = line.clone();
        event.as_object_mut().unwrap().remove("position");
        let mut stored = serde_json::to_value(logged.envelope.to_raw().unwrap()).unwrap();
        if logged.envelope.event_type() == "message.sent" {
            messages += 1;
            assert_eq!(stored["payload"]["text"], SECRET, "the log itself holds the text");
            assert_eq!(event["payload"]["text"], Value::Null, "redacted by default: {line}");
            stored["payload"]["text"] = Value::Null;
        }
        assert_eq!(event, stored);
    }
    assert_eq!(messages, 1);

    // Asked for explicitly, the text is there, and nothing else changes.
    let (_, with_text) = replay_lines(&app, &["--include-message-text"]);
    assert_eq!(ids(&with_text), ids(&lines));
    for (a, b) in with_text.iter().zip(&lines) {
        if a["event_type"] == "message.sent" {
            assert_eq!(a["payload"]["text"], SECRET);
            let mut a = a.clone();
            a["payload"]["text"] = Value::Null;
            assert_eq!(&a, b);
        } else {
            assert_eq!(a, b);
        }
    }

    // CSV: a header, then the same events in the same order; the payload column is the JSON.
    let (csv_summary, csv) = replay_bytes(&app, &["--format", "csv"]);
    assert!(!String::from_utf8_lossy(&csv).contains(SECRET), "CSV redacts too");
    assert!(String::from_utf8_lossy(&csv).starts_with(&replay::CSV_HEADER.join(",")));
    let rows = replay::read_csv(csv.as_slice()).unwrap();
    assert_eq!(csv_summary.written, rows.len() as u64);
    assert_eq!(rows.len(), lines.len());
    for (row, line) in rows.iter().zip(&lines) {
        assert_eq!(row.event_id.to_string(), line["event_id"].as_str().unwrap());
        assert_eq!(row.event_type, line["event_type"].as_str().unwrap());
        assert_eq!(serde_json::to_value(row.occurred_at).unwrap(), line["occurred_at"]);
        assert_eq!(row.aggregate_id.to_string(), line["aggregate_id"].as_str().unwrap());
        assert_eq!(row.aggregate_type, line["aggregate_type"].as_str().unwrap());
        assert_eq!(
            (row.schema_version as u64, row.aggregate_version),
            (1, line["aggregate_version"].as_u64().unwrap())
        );
        assert_eq!(json!({"topic": row.topic, "partition": row.partition, "offset": row.offset}), line["position"]);
        assert_eq!(serde_json::from_str::<Value>(&row.payload).unwrap(), line["payload"]);
    }

    // A replay joins no consumer group and commits nothing: no group of its own exists.
    let groups = tokio::task::block_in_place(|| {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let admin: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &app.stack.kafka).create().unwrap();
        let list = admin.fetch_group_list(None, Duration::from_secs(10)).unwrap();
        list.groups().iter().map(|g| g.name().to_owned()).collect::<Vec<_>>()
    });
    assert!(groups.iter().all(|g| !g.starts_with("agora-replay")), "{groups:?}");
    assert!(groups.iter().any(|g| *g == app.env.string("AGORA_PROJECTOR_GROUP", "")), "the listing works: {groups:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_select_exactly_the_events_asked_for() {
    let app = TestApp::spawn().await;
    let h = history(&app).await;
    let of = |keep: &dyn Fn(&Logged) -> bool| log_ids(h.log.iter().filter(|l| keep(l)));

    // By type: only the topics that can hold them are read.
    let (summary, lines) = replay_lines(&app, &["--type", "post.created"]);
    assert_eq!(ids(&lines), of(&|l| l.envelope.event_type() == "post.created"));
    assert_eq!(lines.len(), 3);
    let posts_topic = Topics::new(app.prefix.clone()).of(AggregateType::Post);
    assert_eq!(summary.read, h.log.iter().filter(|l| l.topic == posts_topic).count() as u64, "{summary}");
    assert_eq!(summary.filtered_out, 1, "the comment: {summary}");
    let (_, lines) = replay_lines(&app, &["--type", "follow.created,like.added", "--type", "message.sent"]);
    assert_eq!(
        ids(&lines),
        of(&|l| ["follow.created", "like.added", "message.sent"].contains(&l.envelope.event_type()))
    );
    assert_eq!(lines.len(), 3);

    // By aggregate: a post's events are its creation and its comments, not its likes.
    let (_, lines) = replay_lines(&app, &["--aggregate", &h.first_post]);
    assert_eq!(ids(&lines), of(&|l| l.envelope.aggregate_id().to_string() == h.first_post));
    assert_eq!(
        lines.iter().map(|l| l["event_type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["post.created", "post.comment_added"]
    );
    let (_, lines) =
        replay_lines(&app, &["--aggregate", &format!("{},{}", h.ann.id, h.bob.id), "--aggregate-type", "users"]);
    assert_eq!(
        ids(&lines),
        of(&|l| l.envelope.aggregate_type() == AggregateType::User
            && [&h.ann.id, &h.bob.id].contains(&&l.envelope.aggregate_id().to_string()))
    );
    assert_eq!(lines.len(), 3, "two registrations and ann's profile change");
    let (_, lines) = replay_lines(&app, &["--aggregate-type", "likes,follows"]);
    assert_eq!(
        ids(&lines),
        of(&|l| matches!(l.envelope.aggregate_type(), AggregateType::Like | AggregateType::Follow))
    );
    assert_eq!(lines.len(), 2);

    // By time: from is inclusive, to exclusive.
    let time = |i: usize| h.log[i].envelope.occurred_at;
    let (from, to) = (time(3), time(8));
    let (_, lines) = replay_lines(&app, &["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()]);
    assert_eq!(ids(&lines), of(&|l| l.envelope.occurred_at >= from && l.envelope.occurred_at < to));
    assert_eq!(lines.len(), 5);
    assert_in_time_order(&lines);
    let (_, lines) = replay_lines(&app, &["--to", &to.to_rfc3339(), "--type", "post.created,user.registered"]);
    assert_eq!(
        ids(&lines),
        of(&|l| l.envelope.occurred_at < to && ["post.created", "user.registered"].contains(&l.envelope.event_type()))
    );

    // --from seeks by time instead of reading from the start: with no slack, partitions
    // whose events all came before it are not read at all.
    let late = time(h.log.len() - 2);
    let (summary, lines) = replay_lines(&app, &["--from", &late.to_rfc3339(), "--slack", "0"]);
    assert_eq!(ids(&lines), of(&|l| l.envelope.occurred_at >= late));
    assert_eq!(lines.len(), 2);
    assert!(summary.offsets_to_read < h.log.len() as u64, "{summary}");
    assert_eq!(summary.read, summary.offsets_to_read, "{summary}");
    let (summary, lines) = replay_lines(&app, &["--from", "2999-01-01"]);
    assert_eq!((lines.len(), summary.offsets_to_read, summary.partitions), (0, 0, 0), "{summary}");
    let (summary, lines) = replay_lines(&app, &["--to", "2001-01-01"]);
    assert_eq!((lines.len(), summary.offsets_to_read), (0, 0), "{summary}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_are_not_events_are_skipped_and_counted() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let app = TestApp::spawn().await;
    let h = history(&app).await;
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &app.stack.kafka).create().unwrap();
    let posts = Topics::new(app.prefix.clone()).of(AggregateType::Post);
    let mut unknown = serde_json::to_value(h.log[0].envelope.to_raw().unwrap()).unwrap();
    unknown["event_type"] = json!("post.exploded");
    for value in [b"not an event".to_vec(), serde_json::to_vec(&unknown).unwrap()] {
        let record = FutureRecord::to(&posts).key("junk").payload(&value);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }

    let (summary, out) = replay_raw(&app, &[]);
    let lines: Vec<Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(ids(&lines), log_ids(&h.log), "every event still comes out, in order");
    assert_eq!((summary.undecodable, summary.read), (2, h.log.len() as u64 + 2), "{summary}");
    assert_eq!(summary.undecodable_examples.len(), 2);
    assert!(summary.undecodable_examples.iter().all(|e| e.starts_with(&format!("{posts}["))), "{summary:?}");
    assert!(summary.undecodable_examples.iter().any(|e| e.contains("post.exploded")), "{summary:?}");
    assert!(summary.to_string().contains("2 skipped as undecodable"), "{summary}");
    app.shutdown().await;
}
