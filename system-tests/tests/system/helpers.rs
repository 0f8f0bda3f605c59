//! Boots the four services in this process, on port 0, against the real stack, each test
//! with its own topic prefix, databases, consumer groups and Redis prefix.
//!
//! - [`Stack`]: where the shared stack is; [`OwnStack`]: a stack instance of one test's own
//!   (for tests that stop a dependency or flush Redis).
//! - [`TestApp`]: the four services; more command-api instances on the same settings
//!   ([`TestApp::start_command_api`]) and a restart of the first ([`TestApp::restart_command_api`]).
//! - [`TestApp::log_events`]: the event log of one aggregate type, read from Kafka itself.
//! - [`Call`] / [`Answer`]: short HTTP requests and their answers; [`assert_problem`],
//!   [`assert_accepted`]: the contract's error and 202 shapes.

#![allow(dead_code)]

use agora_platform::config::Env;
use agora_schemas::{AggregateType, Envelope};
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Where the stack is: `AGORA_TEST_KAFKA_BROKERS`, `AGORA_TEST_MONGO_URI`,
/// `AGORA_TEST_REDIS_URL`, defaulting to what `deploy/local/stack.sh up` starts.
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: String,
    pub mongo: String,
    pub redis: String,
}

impl Stack {
    pub fn local() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Self {
            kafka: var("AGORA_TEST_KAFKA_BROKERS", "127.0.0.1:9092"),
            mongo: var("AGORA_TEST_MONGO_URI", "mongodb://127.0.0.1:27017"),
            redis: var("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        }
    }

    /// Fails loudly, naming the command that starts the stack, when a service is not there.
    pub async fn require_up(&self) {
        for (name, addr) in [
            ("kafka", self.kafka.clone()),
            ("ferretdb", self.mongo.trim_start_matches("mongodb://").trim_end_matches('/').to_owned()),
            ("redis", self.redis.trim_start_matches("redis://").trim_end_matches('/').to_owned()),
        ] {
            let ok = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)).await;
            assert!(
                matches!(ok, Ok(Ok(_))),
                "{name} is not reachable at {addr}: start the stack with `deploy/local/stack.sh up` \
                 (the README's test command does this)"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A stack instance of the test's own

/// A stack instance of one test's own (`deploy/local/stack.sh` with a temporary
/// `AGORA_STACK_DIR` and free ports), so stopping its Kafka or flushing its Redis disturbs no
/// other test. Stopped and removed on drop, even when an assertion failed. Its FerretDB runs on
/// the backend the stack script defaults to (or `AGORA_STACK_FERRETDB_BACKEND`); with PostgreSQL
/// the instance has a private cluster on a free port too, which `start ferretdb` brings up.
#[derive(Debug)]
pub struct OwnStack {
    dir: PathBuf,
    /// Kafka, Kafka controller, FerretDB, Redis, PostgreSQL.
    ports: [u16; 5],
}

/// A port free now, below the kernel's ephemeral range: a port the kernel hands out (bind to
/// port 0) may be taken as the local end of some outgoing connection before the service that
/// was to listen on it starts, seconds later.
fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    loop {
        let port = low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn stack_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/stack.sh")
}

impl OwnStack {
    /// Starts Kafka, FerretDB (and its PostgreSQL) and Redis on free ports and waits until each
    /// answers.
    pub fn up(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("agora-{name}-{}", uuid::Uuid::new_v4().simple()));
        let mut ports = [0; 5];
        while ports.iter().enumerate().any(|(i, p)| *p == 0 || ports[..i].contains(p)) {
            ports = [free_port(), free_port(), free_port(), free_port(), free_port()];
        }
        let own = Self { dir, ports };
        // `start` per service rather than `up`: `up` also creates a default set of topics,
        // which nothing here uses (every TestApp creates its own). `start ferretdb` starts its
        // PostgreSQL first when that is the backend.
        for service in ["kafka", "ferretdb", "redis"] {
            own.start(service);
        }
        own
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(stack_script())
            .args(args)
            .env("AGORA_STACK_DIR", &self.dir)
            .env("AGORA_STACK_KAFKA_PORT", self.ports[0].to_string())
            .env("AGORA_STACK_KAFKA_CONTROLLER_PORT", self.ports[1].to_string())
            .env("AGORA_STACK_MONGO_PORT", self.ports[2].to_string())
            .env("AGORA_STACK_REDIS_PORT", self.ports[3].to_string())
            .env("AGORA_STACK_POSTGRES_PORT", self.ports[4].to_string())
            .env("AGORA_TOPIC_PREFIX", "unused");
        c
    }

    /// Runs `stack.sh <args>` for this instance; panics with its output if it fails.
    pub fn run(&self, args: &[&str]) {
        let out = self.command(args).output().expect("running deploy/local/stack.sh");
        assert!(
            out.status.success(),
            "stack.sh {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `stack.sh stop <kafka|postgres|ferretdb|redis>`: returns once the process is gone.
    pub fn stop(&self, service: &str) {
        self.run(&["stop", service]);
    }

    /// `stack.sh start <kafka|postgres|ferretdb|redis>`: returns once it answers.
    /// Starts a service, once more if the first start fails: a FerretDB of a stack started
    /// beside several others once exited during startup, and its log went with the stack's
    /// folder. A second failure panics with both outputs and the service's log.
    pub fn start(&self, service: &str) {
        let first = self.command(&["start", service]).output().expect("running deploy/local/stack.sh");
        if first.status.success() {
            return;
        }
        let log = std::fs::read_to_string(self.dir.join("logs").join(format!("{service}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        eprintln!(
            "stack.sh start {service} failed once, retrying:\n{}\n{}\n{service}.log:\n{}",
            String::from_utf8_lossy(&first.stdout),
            String::from_utf8_lossy(&first.stderr),
            tail.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
        self.run(&["start", service]);
    }

    /// Pauses (`STOP`) or resumes (`CONT`) a service's process: it keeps its data, and its
    /// clients time out instead of being refused.
    pub fn signal(&self, service: &str, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.join("run").join(format!("{service}.pid"))).unwrap();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.trim()).status().unwrap();
        assert!(status.success(), "kill -{signal} {service}");
    }

    pub fn stack(&self) -> Stack {
        Stack {
            kafka: format!("127.0.0.1:{}", self.ports[0]),
            mongo: format!("mongodb://127.0.0.1:{}", self.ports[2]),
            redis: format!("redis://127.0.0.1:{}", self.ports[3]),
        }
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        // Leave no process behind, even when an assertion failed.
        let _ = self.command(&["down"]).env("AGORA_STACK_STOP_SECS", "5").output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `FLUSHALL` on a Redis: every rate-limit bucket, cache entry and user stream is gone.
pub async fn flush_redis(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(size, 0, "FLUSHALL left keys behind");
}

// ---------------------------------------------------------------------------------------------
// The services

fn stopper(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// One command-api instance running in this process.
#[derive(Debug)]
pub struct CommandApiHandle {
    pub url: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CommandApiHandle {
    async fn start(env: &Env) -> Self {
        let config = agora_command_api::CommandConfig::from_env(env).unwrap();
        let app = agora_command_api::Application::build(config).await.unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        let (stop, rx) = watch::channel(false);
        let s = stopper(&rx);
        let task = tokio::spawn(async move { app.run(s).await.unwrap() });
        Self { url, stop, task }
    }

    /// Stops it gracefully (in-flight requests finish) and waits until it is gone.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        assert!(matches!(stopped, Ok(Ok(()))), "command-api at {} did not stop cleanly: {stopped:?}", self.url);
    }
}

#[derive(Debug)]
pub struct TestApp {
    pub prefix: String,
    /// The first command-api instance's URL (the current one, after a restart).
    pub command: String,
    /// Every URL the first command-api instance has had, oldest first.
    pub command_urls: Vec<String>,
    pub query: String,
    pub realtime: String,
    pub projector: String,
    pub realtime_port: u16,
    pub http: reqwest::Client,
    pub stack: Stack,
    /// The settings every service of this app was built from.
    pub env: Env,
    first_command: Option<CommandApiHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
    pub handle: String,
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Stack::local(), &[]).await
    }

    pub async fn spawn_on(stack: Stack) -> Self {
        Self::spawn_with(stack, &[]).await
    }

    /// Boots the four services on `stack`; `extra_env` overrides the test defaults.
    pub async fn spawn_with(stack: Stack, extra_env: &[(&str, &str)]) -> Self {
        stack.require_up().await;
        let prefix = agora_testkit::names::test_prefix("t");
        let mut env = Env::from_pairs([
            ("AGORA_KAFKA_BROKERS", stack.kafka.clone()),
            ("AGORA_MONGO_URI", stack.mongo.clone()),
            ("AGORA_REDIS_URL", stack.redis.clone()),
            ("AGORA_TOPIC_PREFIX", prefix.clone()),
            ("AGORA_REDIS_PREFIX", prefix.clone()),
            ("AGORA_MONGO_DB", format!("{prefix}_read")),
            ("AGORA_WRITE_DB", format!("{prefix}_write")),
            ("AGORA_PROJECTOR_GROUP", format!("{prefix}-projector")),
            ("AGORA_REALTIME_GROUP", format!("{prefix}-realtime")),
            ("AGORA_COMMAND_HEADS_GROUP", format!("{prefix}-command-heads")),
            ("AGORA_TOPIC_PARTITIONS", "3".to_owned()),
            ("AGORA_JWT_SECRET", format!("secret-{prefix}")),
            ("AGORA_COMMAND_ADDR", "127.0.0.1:0".to_owned()),
            ("AGORA_QUERY_ADDR", "127.0.0.1:0".to_owned()),
            ("AGORA_REALTIME_ADDR", "127.0.0.1:0".to_owned()),
            ("AGORA_PROJECTOR_ADDR", "127.0.0.1:0".to_owned()),
            ("AGORA_READY_TIMEOUT_MS", "1500".to_owned()),
            ("AGORA_SHUTDOWN_TIMEOUT_MS", "3000".to_owned()),
            ("AGORA_LOG", std::env::var("AGORA_TEST_LOG").unwrap_or_else(|_| "warn".to_owned())),
        ]);
        for (k, v) in extra_env {
            env.set(*k, *v);
        }
        // Logs go through the test harness, so they show only for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(env.string("AGORA_LOG", "warn")))
            .with_test_writer()
            .try_init();
        let common = agora_platform::config::CommonConfig::from_env(&env).unwrap();
        agora_platform::kafka::ensure_topics(&stack.kafka, &common.topics().all(), common.topic_partitions)
            .await
            .expect("creating the test's topics");

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let command = CommandApiHandle::start(&env).await;
        let query =
            agora_query_api::Application::build(agora_query_api::QueryConfig::from_env(&env).unwrap()).await.unwrap();
        let realtime =
            agora_realtime::Application::build(agora_realtime::RealtimeConfig::from_env(&env).unwrap()).await.unwrap();
        let projector = agora_projector::Application::build(agora_projector::ProjectorConfig::from_env(&env).unwrap())
            .await
            .unwrap();
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let (query_url, realtime_url, projector_url) = (url(query.port()), url(realtime.port()), url(projector.port()));
        let realtime_port = realtime.port();
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { query.run(s).await.unwrap() }));
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { realtime.run(s).await.unwrap() }));
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { projector.run(s).await.unwrap() }));

        Self {
            prefix,
            command: command.url.clone(),
            command_urls: vec![command.url.clone()],
            query: query_url,
            realtime: realtime_url,
            projector: projector_url,
            realtime_port,
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
            stack,
            env,
            first_command: Some(command),
            stop,
            tasks,
        }
    }

    /// Another command-api instance on the same settings (same topics, write store and Redis).
    pub async fn start_command_api(&self) -> CommandApiHandle {
        CommandApiHandle::start(&self.env).await
    }

    /// Stops the first command-api instance gracefully and starts a new one in its place;
    /// [`TestApp::command`] is the new URL and [`TestApp::command_urls`] records it.
    pub async fn restart_command_api(&mut self) {
        self.stop_command_api().await;
        self.start_first_command_api().await;
    }

    /// Stops the first command-api instance gracefully (see [`TestApp::start_first_command_api`]).
    pub async fn stop_command_api(&mut self) {
        if let Some(old) = self.first_command.take() {
            old.stop().await;
        }
    }

    /// Starts the first command-api instance again after [`TestApp::stop_command_api`].
    pub async fn start_first_command_api(&mut self) {
        let new = CommandApiHandle::start(&self.env).await;
        self.command = new.url.clone();
        self.command_urls.push(new.url.clone());
        self.first_command = Some(new);
    }

    /// The write store (credentials, heads, claims) of this app.
    pub async fn write_db(&self) -> mongodb::Database {
        let client = mongodb::Client::with_uri_str(&self.stack.mongo).await.unwrap();
        client.database(&self.env.string("AGORA_WRITE_DB", ""))
    }

    /// Stops every service gracefully and waits for them.
    pub async fn shutdown(mut self) {
        if let Some(command) = self.first_command.take() {
            command.stop().await;
        }
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// The JWT secret the services were given.
    pub fn jwt_secret(&self) -> String {
        self.env.string("AGORA_JWT_SECRET", "")
    }

    /// A token for `user` signed with the services' secret, expiring at `exp` (Unix seconds).
    pub fn token_expiring_at(&self, user: &str, exp: i64) -> String {
        sign_token(&self.jwt_secret(), user, exp)
    }

    /// A correctly signed token that expired a minute ago (well past the verifier's leeway).
    pub fn expired_token(&self, user: &str) -> String {
        self.token_expiring_at(user, unix_now() - 60)
    }

    /// Registers a user with a unique handle; returns (user_id, token).
    pub async fn register(&self, name: &str) -> (String, String) {
        let u = self.user(name).await;
        (u.id, u.token)
    }

    /// Registers a user with a unique handle derived from `name`.
    pub async fn user(&self, name: &str) -> User {
        let handle = unique_handle(name);
        let res = self.register_handle(&self.command, &handle).await;
        assert_eq!(res.status, 201, "register {handle}: {res}");
        User {
            id: res.body["user_id"].as_str().unwrap().to_owned(),
            token: res.body["token"].as_str().unwrap().to_owned(),
            handle,
        }
    }

    /// `POST /v1/auth/register` of `handle` on the command-api at `base`, whatever the answer.
    pub async fn register_handle(&self, base: &str, handle: &str) -> Answer {
        let body = serde_json::json!({"handle": handle, "display_name": handle, "password": PASSWORD});
        self.call(Method::POST, "/v1/auth/register").on(base).json(&body).send().await
    }

    pub async fn login(&self, handle: &str, password: &str) -> Answer {
        let body = serde_json::json!({"handle": handle, "password": password});
        self.call(Method::POST, "/v1/auth/login").json(&body).send().await
    }

    pub async fn get(&self, base: &str, path: &str, token: &str) -> (u16, Value) {
        let res = self.http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `GET <base>/ready`: (status, body).
    pub async fn ready(&self, base: &str) -> (u16, Value) {
        match self.http.get(format!("{base}/ready")).send().await {
            Ok(res) => (res.status().as_u16(), res.json().await.unwrap_or_default()),
            Err(_) => (0, Value::Null),
        }
    }

    /// A request to the first command-api instance; see [`Call`].
    pub fn call(&self, method: Method, path: &str) -> Call {
        Call {
            http: self.http.clone(),
            method,
            url: format!("{}{path}", self.command),
            path: path.to_owned(),
            token: None,
            key: None,
            body: None,
        }
    }

    /// `POST <command>/<path>` with a JSON body as `token`.
    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.call(Method::POST, path).token(token).json(body).send().await
    }

    /// `PATCH <command>/<path>` with a JSON body as `token`.
    pub async fn patch_json(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.call(Method::PATCH, path).token(token).json(body).send().await
    }

    /// `PUT <command>/<path>` without a body as `token`.
    pub async fn put(&self, path: &str, token: &str) -> Answer {
        self.call(Method::PUT, path).token(token).send().await
    }

    /// `DELETE <command>/<path>` as `token`.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path).token(token).send().await
    }

    /// `POST /v1/posts {text}` as `token`.
    pub async fn post(&self, token: &str, text: &str) -> Answer {
        self.post_json("/v1/posts", token, &serde_json::json!({ "text": text })).await
    }

    /// Every event of `aggregate` in the log, from the beginning of its topic to the high
    /// watermarks of its partitions at the time of the call, in (partition, offset) order.
    pub async fn log_events(&self, aggregate: AggregateType) -> Vec<Envelope> {
        self.log_records(aggregate).await.into_iter().map(|r| r.envelope).collect()
    }

    /// As [`TestApp::log_events`], with where each event sits.
    pub async fn log_records(&self, aggregate: AggregateType) -> Vec<LogRecord> {
        let topic = agora_schemas::aggregate::Topics::new(self.prefix.clone()).of(aggregate);
        let brokers = self.stack.kafka.clone();
        tokio::task::spawn_blocking(move || read_topic(&brokers, &topic, Duration::from_secs(30))).await.unwrap()
    }

    /// How many events of `aggregate` the log holds.
    pub async fn log_count(&self, aggregate: AggregateType) -> usize {
        self.log_records(aggregate).await.len()
    }

    /// Connects a WebSocket for `token` and returns it after the `ready` frame.
    pub async fn connect_ws(&self, token: &str) -> (Ws, Value) {
        self.connect_ws_on(self.realtime_port, token).await
    }

    /// Connects a WebSocket for `token` to the realtime process on `port`, after `ready`.
    pub async fn connect_ws_on(&self, port: u16, token: &str) -> (Ws, Value) {
        let url = format!("ws://127.0.0.1:{port}/v1/stream?token={token}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let ready = next_json(&mut ws, Duration::from_secs(10)).await.expect("a ready frame");
        assert_eq!(ready["type"], "ready", "{ready}");
        (ws, ready)
    }
}

/// `by` challenges `opponent`, playing `color`; the new game's id.
pub async fn challenge(app: &TestApp, by: &User, opponent: &User, color: &str) -> String {
    let body = serde_json::json!({"opponent_id": opponent.id, "color": color});
    assert_accepted(&app.call(Method::POST, "/v1/games").token(&by.token).json(&body).send().await).body["game_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `<name>_<8 hex>`: a handle no other test uses.
pub fn unique_handle(name: &str) -> String {
    format!("{name}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An HS256 token with `sub` = `user` and the given expiry, as the services issue them.
pub fn sign_token(secret: &str, user: &str, exp: i64) -> String {
    let claims = serde_json::json!({"sub": user, "iat": exp - 3600, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The event log

/// One event and where it sits in its topic.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub envelope: Envelope,
}

/// Reads `topic` from its beginning up to the high watermarks fetched at the start, with a
/// consumer of its own (assigned partitions, no group membership, nothing committed).
fn read_topic(brokers: &str, topic: &str, within: Duration) -> Vec<LogRecord> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let deadline = Instant::now() + within;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", agora_testkit::names::test_prefix("log-reader-"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("log_level", "3")
        .create()
        .expect("creating a log reader");
    // Metadata and watermarks, retried while a broker that just restarted settles.
    let (partitions, marks) = loop {
        let attempt = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok().and_then(|m| {
            let partitions: Vec<i32> = m
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                .unwrap_or_default();
            let marks: Option<HashMap<i32, (i64, i64)>> = partitions
                .iter()
                .map(|p| consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)).ok().map(|w| (*p, w)))
                .collect();
            marks.filter(|_| !partitions.is_empty()).map(|m| (partitions, m))
        });
        if let Some(found) = attempt {
            break found;
        }
        assert!(Instant::now() < deadline, "no metadata or watermarks for {topic} within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut assignment = TopicPartitionList::new();
    // The next offset still to read, per partition that has anything.
    let mut next: HashMap<i32, i64> = HashMap::new();
    for p in &partitions {
        let (low, high) = marks[p];
        if high > low {
            assignment.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
            next.insert(*p, low);
        }
    }
    let mut records = Vec::new();
    if next.is_empty() {
        return records;
    }
    consumer.assign(&assignment).unwrap();
    while next.iter().any(|(p, n)| *n < marks[p].1) {
        assert!(
            Instant::now() < deadline,
            "reading {topic} took over {within:?}: at {next:?}, watermarks {marks:?}, {} read",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => eprintln!("log reader for {topic}: {e}"),
            Some(Ok(m)) => {
                let (p, offset) = (m.partition(), m.offset());
                if offset >= marks[&p].1 {
                    continue;
                }
                next.insert(p, offset + 1);
                let bytes = m.payload().unwrap_or_default();
                let envelope = Envelope::from_json(bytes).unwrap_or_else(|e| {
                    panic!("{topic}[{p}]@{offset} is not a decodable event: {e}: {}", String::from_utf8_lossy(bytes))
                });
                records.push(LogRecord { partition: p, offset, envelope });
            }
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// The events of `log` of `event_type`.
pub fn of_type<'a>(log: &'a [Envelope], event_type: &str) -> Vec<&'a Envelope> {
    log.iter().filter(|e| e.event_type() == event_type).collect()
}

// ---------------------------------------------------------------------------------------------
// Requests and answers

/// A request being put together: `app.call(Method::POST, "/v1/posts").token(t).key(k)
/// .json(&body).on(&other_instance).send().await`.
#[derive(Debug)]
pub struct Call {
    http: reqwest::Client,
    method: Method,
    url: String,
    path: String,
    token: Option<String>,
    key: Option<String>,
    body: Option<(Option<String>, Vec<u8>)>,
}

impl Call {
    /// `Authorization: Bearer <token>`.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// `Idempotency-Key: <key>`.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// A JSON body, `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.raw(Some("application/json"), serde_json::to_vec(body).unwrap())
    }

    /// Any body, with the given `Content-Type` (none when `None`).
    pub fn raw(mut self, content_type: Option<&str>, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type.map(str::to_owned), bytes.into()));
        self
    }

    /// Sends it to the command-api instance at `base` instead of the first one.
    pub fn on(mut self, base: &str) -> Self {
        self.url = format!("{base}{}", self.path);
        self
    }

    pub async fn send(self) -> Answer {
        let mut req = self.http.request(self.method.clone(), &self.url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = &self.key {
            req = req.header("idempotency-key", k);
        }
        if let Some((content_type, bytes)) = self.body {
            if let Some(ct) = content_type {
                req = req.header(reqwest::header::CONTENT_TYPE, ct);
            }
            req = req.body(bytes);
        }
        let started = Instant::now();
        let res = req.send().await.unwrap_or_else(|e| panic!("{} {}: {e}", self.method, self.url));
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            body,
            took: started.elapsed(),
            request: format!("{} {}", self.method, self.path),
        }
    }
}

/// An HTTP answer, its body parsed as JSON when it is JSON (`Null` otherwise).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
    /// From sending the request to having the whole answer.
    pub took: Duration,
    pub request: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether it carries `idempotent-replayed: true`.
    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    /// `Retry-After` in whole seconds, if present and a number.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.trim().parse().ok())
    }

    /// The `field` of each entry of a problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// A string field of the body.
    pub fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_else(|| panic!("no string {field:?} in {self}")).to_owned()
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {} after {:?}: {}", self.request, self.status, self.took, self.text)
    }
}

/// Asserts an RFC 9457 problem with `status`: the content type and the type, title, status,
/// detail fields; returns the body.
pub fn assert_problem(a: &Answer, status: u16) -> &Value {
    assert_eq!(a.status, status, "{a}");
    let ct = a.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/problem+json"), "content-type {ct:?}: {a}");
    let b = &a.body;
    assert!(b["type"].as_str().is_some_and(|t| !t.is_empty()), "type: {a}");
    assert!(b["title"].as_str().is_some_and(|t| !t.is_empty()), "title: {a}");
    assert_eq!(b["status"], status, "status field: {a}");
    assert!(b["detail"].as_str().is_some(), "detail: {a}");
    if let Some(errors) = b.get("errors") {
        let errors = errors.as_array().unwrap_or_else(|| panic!("errors is not an array: {a}"));
        for e in errors {
            assert!(e["field"].is_string() && e["message"].is_string(), "errors entry {e}: {a}");
        }
    }
    if matches!(status, 429 | 503) {
        assert!(a.retry_after().is_some_and(|s| s >= 1), "Retry-After in whole seconds >= 1: {a}");
    }
    b
}

/// Asserts a 422 problem naming `field` in its `errors`.
pub fn assert_invalid(a: &Answer, field: &str) {
    assert_problem(a, 422);
    assert!(a.error_fields().iter().any(|f| f == field), "errors[].field should name {field:?}: {a}");
}

/// The contract's 202 body, checked for shape by [`assert_accepted`].
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub event_id: Option<String>,
    pub aggregate_id: String,
    pub version: u64,
    /// (topic, partition, offset)
    pub position: Option<(String, i32, i64)>,
    pub consistency_token: String,
    pub body: Value,
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 36 && uuid::Uuid::try_parse(s).is_ok())
}

/// Asserts a 202 with the contract's body: `event_id` and `position` both set or both null,
/// a hyphenated `aggregate_id`, a numeric `version`, a non-empty `consistency_token`.
pub fn assert_accepted(a: &Answer) -> Accepted {
    assert_eq!(a.status, 202, "{a}");
    let ct = a.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}: {a}");
    let b = &a.body;
    for field in ["event_id", "aggregate_id", "version", "position", "consistency_token"] {
        assert!(b.get(field).is_some(), "202 without {field}: {a}");
    }
    assert!(is_uuid(&b["aggregate_id"]), "aggregate_id: {a}");
    let version = b["version"].as_u64().unwrap_or_else(|| panic!("version: {a}"));
    let consistency_token = b["consistency_token"].as_str().unwrap_or_else(|| panic!("consistency_token: {a}"));
    assert!(!consistency_token.is_empty(), "empty consistency_token: {a}");
    let event_id = if b["event_id"].is_null() {
        assert!(b["position"].is_null(), "a no-op has no position: {a}");
        None
    } else {
        assert!(is_uuid(&b["event_id"]), "event_id: {a}");
        Some(b["event_id"].as_str().unwrap().to_owned())
    };
    let position = if b["position"].is_null() {
        assert!(event_id.is_none(), "an event without a position: {a}");
        None
    } else {
        let p = &b["position"];
        let topic = p["topic"].as_str().unwrap_or_else(|| panic!("position.topic: {a}")).to_owned();
        let partition = p["partition"].as_i64().unwrap_or_else(|| panic!("position.partition: {a}")) as i32;
        let offset = p["offset"].as_i64().unwrap_or_else(|| panic!("position.offset: {a}"));
        Some((topic, partition, offset))
    };
    Accepted {
        event_id,
        aggregate_id: b["aggregate_id"].as_str().unwrap().to_owned(),
        version,
        position,
        consistency_token: consistency_token.to_owned(),
        body: b.clone(),
    }
}

/// The positions a consistency token covers, as (topic, partition, offset).
pub fn token_positions(token: &str) -> Vec<(String, i32, i64)> {
    agora_platform::consistency::ConsistencyToken::decode(token)
        .unwrap_or_else(|e| panic!("consistency token {token:?}: {e}"))
        .positions()
        .map(|p| (p.topic, p.partition, p.offset))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Waiting

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text frame within `within`, skipping pings.
pub async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Sends a request (made anew by `request`) until its answer satisfies `accept`, or panics after
/// `within` with `what` and the last answer.
pub async fn until_answer<F, Fut>(within: Duration, what: &str, accept: impl Fn(&Answer) -> bool, request: F) -> Answer
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer>,
{
    try_until_answer(within, accept, request)
        .await
        .unwrap_or_else(|last| panic!("timed out after {within:?} waiting for {what}; the last answer: {last}"))
}

/// As [`until_answer`], but gives the last answer back as `Err` instead of panicking.
pub async fn try_until_answer<F, Fut>(
    within: Duration,
    accept: impl Fn(&Answer) -> bool,
    mut request: F,
) -> Result<Answer, Answer>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(20);
    loop {
        let answer = request().await;
        if accept(&answer) {
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            return Err(answer);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// `GET` on the query API until its answer satisfies `ok` (within 30 s): the read side is
/// eventually consistent.
pub async fn query_until(
    app: &TestApp,
    path: &str,
    token: &str,
    what: &str,
    ok: impl Fn(u16, &Value) -> bool,
) -> Value {
    eventually(Duration::from_secs(30), what, || async {
        let (status, body) = app.get(&app.query, path, token).await;
        ok(status, &body).then_some(body)
    })
    .await
}

/// The binary of the workspace package `package` (named like it), built from the current
/// sources (up to date, this is quick).
pub fn service_binary(package: &str) -> PathBuf {
    workspace_binary(package, package)
}

/// Binary `bin` of the workspace package `package`, built from the current sources.
/// It lives next to this test binary's `deps` folder: the same target folder and profile.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "-p", package, "--bin", bin, "--profile", &profile, "--target-dir"])
        .arg(&target_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "building {package} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = profile_dir.join(bin);
    assert!(path.is_file(), "no {}", path.display());
    path
}
