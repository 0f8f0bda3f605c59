//! API conformance: Schemathesis fuzzes query-api from its own `GET /openapi.json` and checks
//! that no answer is a 5xx or contradicts the document (status, content type, headers, body).
//!
//! The test boots command-api, the projector and query-api in this process against the local
//! stack (Kafka, FerretDB, Redis; `deploy/local/stack.sh up`) with a prefix of its own, creates
//! data through command-api (three users who follow each other, posts, comments, likes, two
//! conversations, a pending, an active and a finished game), waits until query-api shows all
//! of it (one query carrying every command's consistency token answers fresh), takes a real
//! `next_cursor` of each list, and runs `st` with `tests/schemathesis/hooks.py`, which points a
//! share of the requests at those fixtures so every operation gets 2xx answers too, not only
//! 4xx. From `st`'s NDJSON report it prints, per operation, how many answers were 2xx and 4xx,
//! and asserts that `st` passed and that every `/v1` operation got at least one 2xx.
//!
//! `st` comes from `AGORA_TEST_SCHEMATHESIS` (set by `deploy/local/test.sh`, which installs a
//! pinned Schemathesis in a venv under `${XDG_CACHE_HOME:-$HOME/.cache}/agora`), else that
//! venv, else `PATH`.
//!
//! Budget: `AGORA_TEST_SCHEMATHESIS_MAX_EXAMPLES` (default 40) examples per operation and phase,
//! and `AGORA_TEST_SCHEMATHESIS_MAX_TIME` seconds (default 100) for the whole `st` run.
//! `AGORA_TEST_SCHEMATHESIS_SEED` fixes the seed of `st` and of the hooks (the timing still
//! varies); the seed is printed either way. `AGORA_TEST_SCHEMATHESIS_KEEP=1` keeps the report
//! and the fixtures (always kept when the test fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_platform::config::{CommonConfig, Env};
use agora_testkit::schemathesis::{self, env_or, render, tally};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const PASSWORD: &str = "correct horse battery";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// The three services' settings: the local stack (or `AGORA_TEST_*`), names of this test's own.
fn settings(prefix: &str) -> Env {
    let var = |k: &str, d: &str| env_or(k, d);
    // The fuzzer is one user sending a few thousand queries in two minutes: with the
    // contract's budget most would be 429s that say nothing about the operation under test.
    // The limit stays on (every query still goes through the Redis limiter), with room.
    let generous = "1000000/1m";
    Env::from_pairs([
        ("AGORA_KAFKA_BROKERS", var("AGORA_TEST_KAFKA_BROKERS", "127.0.0.1:9092")),
        ("AGORA_MONGO_URI", var("AGORA_TEST_MONGO_URI", "mongodb://127.0.0.1:27017")),
        ("AGORA_REDIS_URL", var("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379")),
        ("AGORA_TOPIC_PREFIX", prefix.to_owned()),
        ("AGORA_REDIS_PREFIX", prefix.to_owned()),
        ("AGORA_MONGO_DB", format!("{prefix}_read")),
        ("AGORA_WRITE_DB", format!("{prefix}_write")),
        ("AGORA_PROJECTOR_GROUP", format!("{prefix}-projector")),
        ("AGORA_COMMAND_HEADS_GROUP", format!("{prefix}-command-heads")),
        ("AGORA_TOPIC_PARTITIONS", "3".to_owned()),
        ("AGORA_JWT_SECRET", format!("secret-{prefix}")),
        ("AGORA_COMMAND_ADDR", "127.0.0.1:0".to_owned()),
        ("AGORA_QUERY_ADDR", "127.0.0.1:0".to_owned()),
        ("AGORA_PROJECTOR_ADDR", "127.0.0.1:0".to_owned()),
        ("AGORA_READY_TIMEOUT_MS", "1500".to_owned()),
        ("AGORA_SHUTDOWN_TIMEOUT_MS", "3000".to_owned()),
        ("AGORA_RATE_LIMIT_QUERIES", generous.to_owned()),
        ("AGORA_LOG", var("AGORA_TEST_LOG", "warn")),
    ])
}

struct Api {
    command: String,
    query: String,
    http: reqwest::Client,
    /// The consistency token of every command sent so far.
    tokens: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    token: String,
    handle: String,
}

impl Api {
    /// A command; panics unless it is accepted. Records its consistency token.
    async fn command(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.command));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "fixture {method} {path} -> {status}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(t) = answer["consistency_token"].as_str() {
            self.tokens.lock().unwrap().push(t.to_owned());
        }
        answer
    }

    async fn post(&self, path: &str, user: &User, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(&user.token), Some(body)).await
    }

    async fn put(&self, path: &str, user: &User) -> Value {
        self.command(reqwest::Method::PUT, path, Some(&user.token), None).await
    }

    async fn register(&self, name: &str) -> User {
        let handle = format!("{name}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let body = json!({"handle": handle, "display_name": name, "password": PASSWORD});
        let res = self.command(reqwest::Method::POST, "/v1/auth/register", None, Some(body)).await;
        User { id: id(&res, "user_id"), token: id(&res, "token"), handle }
    }

    /// A query as `user`: (status, headers, body).
    async fn query(
        &self,
        path: &str,
        user: &User,
        consistency: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.get(format!("{}{path}", self.query)).bearer_auth(&user.token);
        if let Some(t) = consistency {
            req = req.header("x-consistency-token", t);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }
}

fn id(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}")).to_owned()
}

/// Creates the data through command-api, A being the caller `st` acts as, and waits until
/// query-api shows it.
async fn fixtures(api: &Api) -> Value {
    let (a, b, c) = (api.register("alice").await, api.register("bob").await, api.register("carol").await);
    let post = |user: User, text: &'static str| async move {
        id(&api.post("/v1/posts", &user, json!({ "text": text })).await, "post_id")
    };
    let a_posts = [post(a.clone(), "a post by A").await, post(a.clone(), "another post by A").await];
    let b_post = post(b.clone(), "a post by B").await;
    let c_post = post(c.clone(), "a post by C").await;
    for text in ["first comment", "second comment"] {
        api.post(&format!("/v1/posts/{}/comments", a_posts[0]), &b, json!({ "text": text })).await;
    }
    api.put(&format!("/v1/posts/{b_post}/like"), &a).await;
    api.put(&format!("/v1/posts/{}/like", a_posts[0]), &b).await;
    // B and C follow A; A follows C, C follows B (so B is suggested to A).
    for (who, whom) in [(&b, &a), (&c, &a), (&a, &c), (&c, &b)] {
        api.put(&format!("/v1/follows/{}", whom.id), who).await;
    }
    let ab = id(&api.post("/v1/messages", &a, json!({"to": b.id, "text": "hello"})).await, "conversation_id");
    api.post("/v1/messages", &b, json!({"to": a.id, "text": "hi back"})).await;
    let ac = id(&api.post("/v1/messages", &a, json!({"to": c.id, "text": "hi C"})).await, "conversation_id");
    // Pending: B challenged A. Active: A (white) against C, one move in. Finished: B resigned.
    let pending = id(&api.post("/v1/games", &b, json!({"opponent_id": a.id, "color": "black"})).await, "game_id");
    let active = id(&api.post("/v1/games", &a, json!({"opponent_id": c.id, "color": "white"})).await, "game_id");
    api.post(&format!("/v1/games/{active}/accept"), &c, Value::Null).await;
    api.post(&format!("/v1/games/{active}/moves"), &a, json!({"uci": "e2e4", "ply": 0})).await;
    let finished = id(&api.post("/v1/games", &a, json!({"opponent_id": b.id, "color": "white"})).await, "game_id");
    api.post(&format!("/v1/games/{finished}/accept"), &b, Value::Null).await;
    api.post(&format!("/v1/games/{finished}/resign"), &b, Value::Null).await;

    // Every command is applied once one query carrying all their tokens answers fresh.
    let token = api.tokens.lock().unwrap().join(",");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, headers, body) = api.query(&format!("/v1/users/{}", a.id), &a, Some(&token)).await;
        if status == 200 && !headers.contains_key("x-consistency") {
            break;
        }
        assert!(Instant::now() < deadline, "the projector did not apply the fixtures within 60 s: {status} {body}");
    }

    // A real `next_cursor` of each list (pages of one item), for the hooks' cursors.
    let lists = [
        ("/v1/users/{user_id}/posts", format!("/v1/users/{}/posts", a.id)),
        ("/v1/users/{user_id}/followers", format!("/v1/users/{}/followers", a.id)),
        ("/v1/users/{user_id}/following", format!("/v1/users/{}/following", c.id)),
        ("/v1/users/{user_id}/games", format!("/v1/users/{}/games", a.id)),
        ("/v1/posts/{post_id}/comments", format!("/v1/posts/{}/comments", a_posts[0])),
        ("/v1/conversations", "/v1/conversations".to_owned()),
        ("/v1/conversations/{conversation_id}/messages", format!("/v1/conversations/{ab}/messages")),
        ("/v1/notifications", "/v1/notifications".to_owned()),
        ("/v1/feed", "/v1/feed".to_owned()),
        ("/v1/users/suggested", "/v1/users/suggested".to_owned()),
    ];
    let mut cursors = serde_json::Map::new();
    for (template, path) in lists {
        let (status, _, body) = api.query(&format!("{path}?limit=1"), &a, None).await;
        if let Some(cursor) = body["next_cursor"].as_str().filter(|_| status == 200) {
            cursors.insert(format!("GET {template}"), cursor.into());
        }
    }
    json!({
        "users": [a.id, b.id, c.id],
        "handles": [a.handle, b.handle, c.handle],
        "posts": [a_posts[0], a_posts[1], b_post, c_post],
        "conversations": [ab, ac],
        "games": [pending, active, finished],
        "cursors": cursors,
        "consistency_token": token,
        "caller": {"id": a.id, "token": a.token},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_answer_that_contradicts_the_openapi_document() {
    let st = schemathesis::binary();
    let started = Instant::now();
    let prefix = agora_testkit::names::test_prefix("sq");
    let env = settings(&prefix);
    schemathesis::require_stack(
        &env.string("AGORA_KAFKA_BROKERS", ""),
        &env.string("AGORA_MONGO_URI", ""),
        &env.string("AGORA_REDIS_URL", ""),
    )
    .await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(env.string("AGORA_LOG", "warn")))
        .with_test_writer()
        .try_init();
    let common = CommonConfig::from_env(&env).unwrap();
    agora_platform::kafka::ensure_topics(&common.kafka_brokers, &common.topics().all(), common.topic_partitions)
        .await
        .expect("creating the test's topics");
    let (stop, stopped) = watch::channel(false);
    let stopper = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let command =
        agora_command_api::Application::build(agora_command_api::CommandConfig::from_env(&env).unwrap()).await.unwrap();
    let projector =
        agora_projector::Application::build(agora_projector::ProjectorConfig::from_env(&env).unwrap()).await.unwrap();
    let query =
        agora_query_api::Application::build(agora_query_api::QueryConfig::from_env(&env).unwrap()).await.unwrap();
    let (command_url, base) =
        (format!("http://127.0.0.1:{}", command.port()), format!("http://127.0.0.1:{}", query.port()));
    let servers = [
        tokio::spawn({
            let s = stopper();
            async move { command.run(s).await.map_err(anyhow::Error::from) }
        }),
        tokio::spawn({
            let s = stopper();
            async move { projector.run(s).await }
        }),
        tokio::spawn({
            let s = stopper();
            async move { query.run(s).await.map_err(anyhow::Error::from) }
        }),
    ];

    let api = Api {
        command: command_url,
        query: base.clone(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
        tokens: std::sync::Mutex::new(Vec::new()),
    };
    let fixtures = fixtures(&api).await;
    // Served without a token.
    let res = api.http.get(format!("{base}/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET /openapi.json without a token");
    let doc: Value = res.json().await.unwrap();
    let paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let operations: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect();

    let dir = tempfile::Builder::new().prefix("agora-schemathesis-query-").tempdir().unwrap();
    let fixtures_path = dir.path().join("fixtures.json");
    std::fs::write(&fixtures_path, serde_json::to_vec_pretty(&fixtures).unwrap()).unwrap();
    let report = dir.path().join("report.ndjson");
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/hooks.py");
    let mut seed = env_or("AGORA_TEST_SCHEMATHESIS_SEED", &(uuid::Uuid::new_v4().as_u128() as u32).to_string());
    let max_examples = env_or("AGORA_TEST_SCHEMATHESIS_MAX_EXAMPLES", "40");
    let max_time = env_or("AGORA_TEST_SCHEMATHESIS_MAX_TIME", "100");
    let token = fixtures["caller"]["token"].as_str().unwrap();
    let build = |seed: &str, workers: &str| {
        let mut command = tokio::process::Command::new(&st);
        command
            .current_dir(dir.path())
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", CHECKS])
            .args(["--max-examples", &max_examples, "--max-time", &max_time])
            .args(["--seed", seed, "--workers", workers, "--generation-database", "none", "--request-timeout", "20"])
            .args(["--report", "ndjson", "--report-ndjson-path"])
            .arg(&report)
            .args(["--no-color"])
            .env("SCHEMATHESIS_HOOKS", &hooks)
            .env("AGORA_ST_FIXTURES", &fixtures_path)
            .env("AGORA_ST_SEED", seed)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    };
    let mut command = build(&seed, "2");
    eprintln!("schemathesis: {} (seed {seed}, {max_examples} examples, {max_time} s at most)", st.display());
    let st_started = Instant::now();
    let mut out = command.output().await.unwrap_or_else(|e| panic!("running {}: {e}", st.display()));
    // Schemathesis itself crashed, with no finding about the API (CPython 3.11's "AST
    // constructor recursion depth mismatch" inside hypothesis, with two workers): run it once
    // more on one worker and another seed. A failure of the API is never retried.
    let first = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && first.contains("Runtime Error") && !first.contains("FAILURES") {
        eprintln!("schemathesis crashed without a finding; running it once more, on one worker:\n{first}");
        seed = (uuid::Uuid::new_v4().as_u128() as u32).to_string();
        command = build(&seed, "1");
        out = command.output().await.unwrap_or_else(|e| panic!("running {}: {e}", st.display()));
    }
    let st_took = st_started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let _ = stop.send(true);
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    }

    // `st`'s own output shows with `--nocapture` or when the test fails; the table always:
    // written to the process's stderr, past the test harness's capture.
    println!("{stdout}\n{stderr}");
    assert!(report.is_file(), "schemathesis ({}) wrote no report: see its output above", out.status);
    let table = tally(&report, &paths, &operations);
    let summary = render(&table);
    let _ = writeln!(
        std::io::stderr(),
        "\nschemathesis answers per operation (seed {seed}; st took {:.1} s, the test {:.1} s):\n{summary}",
        st_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let without_2xx: Vec<&String> = operations
        .iter()
        .filter(|op| op.split_once(' ').is_some_and(|(_, p)| p.starts_with("/v1/")))
        .filter(|op| table.get(*op).is_none_or(|t| t.ok == 0))
        .collect();
    let passed = out.status.success() && without_2xx.is_empty();
    let kept = (!passed || std::env::var_os("AGORA_TEST_SCHEMATHESIS_KEEP").is_some()).then(|| dir.keep());
    let kept = kept.map(|d| d.display().to_string()).unwrap_or_default();
    if !kept.is_empty() {
        let _ = writeln!(std::io::stderr(), "schemathesis report and fixtures kept in {kept}");
    }
    assert!(
        out.status.success(),
        "schemathesis failed ({}): see its output above; rerun with AGORA_TEST_SCHEMATHESIS_SEED={seed}; \
         report and fixtures in {kept}",
        out.status
    );
    assert!(
        without_2xx.is_empty(),
        "operations that never got a 2xx answer: {without_2xx:?} (seed {seed}; report in {kept})\n{summary}"
    );
}
