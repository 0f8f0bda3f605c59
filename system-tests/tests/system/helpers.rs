//! Boots the four services in this process, on port 0, against the real stack, each test
//! with its own topic prefix, databases, consumer groups and Redis prefix.

#![allow(dead_code)]

use agora_platform::config::Env;
use std::future::Future;
use std::time::{Duration, Instant};
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

#[derive(Debug)]
pub struct TestApp {
    pub prefix: String,
    pub command: String,
    pub query: String,
    pub realtime: String,
    pub projector: String,
    pub realtime_port: u16,
    pub http: reqwest::Client,
    pub stack: Stack,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn stopper(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_on(Stack::local()).await
    }

    pub async fn spawn_on(stack: Stack) -> Self {
        stack.require_up().await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let env = Env::from_pairs([
            ("AGORA_KAFKA_BROKERS", stack.kafka.clone()),
            ("AGORA_MONGO_URI", stack.mongo.clone()),
            ("AGORA_REDIS_URL", stack.redis.clone()),
            ("AGORA_TOPIC_PREFIX", prefix.clone()),
            ("AGORA_REDIS_PREFIX", prefix.clone()),
            ("AGORA_MONGO_DB", format!("{prefix}_read")),
            ("AGORA_WRITE_DB", format!("{prefix}_write")),
            ("AGORA_PROJECTOR_GROUP", format!("{prefix}-projector")),
            ("AGORA_REALTIME_GROUP", format!("{prefix}-realtime")),
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
        let command = agora_command_api::Application::build(agora_command_api::CommandConfig::from_env(&env).unwrap())
            .await
            .unwrap();
        let query =
            agora_query_api::Application::build(agora_query_api::QueryConfig::from_env(&env).unwrap()).await.unwrap();
        let realtime =
            agora_realtime::Application::build(agora_realtime::RealtimeConfig::from_env(&env).unwrap()).await.unwrap();
        let projector = agora_projector::Application::build(agora_projector::ProjectorConfig::from_env(&env).unwrap())
            .await
            .unwrap();
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let (command_url, query_url, realtime_url, projector_url) =
            (url(command.port()), url(query.port()), url(realtime.port()), url(projector.port()));
        let realtime_port = realtime.port();
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { command.run(s).await.unwrap() }));
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { query.run(s).await.unwrap() }));
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { realtime.run(s).await.unwrap() }));
        let s = stopper(&stop_rx);
        tasks.push(tokio::spawn(async move { projector.run(s).await.unwrap() }));

        Self {
            prefix,
            command: command_url,
            query: query_url,
            realtime: realtime_url,
            projector: projector_url,
            realtime_port,
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
            stack,
            stop,
            tasks,
        }
    }

    /// Stops every service gracefully and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// Registers a user with a unique handle; returns (user_id, token).
    pub async fn register(&self, name: &str) -> (String, String) {
        let handle = format!("{name}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let res = self
            .http
            .post(format!("{}/v1/auth/register", self.command))
            .json(&serde_json::json!({"handle": handle, "display_name": name, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "register {handle}: {}", res.text().await.unwrap_or_default());
        let body: serde_json::Value = res.json().await.unwrap();
        (body["user_id"].as_str().unwrap().to_owned(), body["token"].as_str().unwrap().to_owned())
    }

    pub async fn get(&self, base: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
        let res = self.http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Connects a WebSocket for `token` and returns it after the `ready` frame.
    pub async fn connect_ws(&self, token: &str) -> (Ws, serde_json::Value) {
        let url = format!("ws://127.0.0.1:{}/v1/stream?token={token}", self.realtime_port);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let ready = next_json(&mut ws, Duration::from_secs(10)).await.expect("a ready frame");
        assert_eq!(ready["type"], "ready", "{ready}");
        (ws, ready)
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text frame within `within`, skipping pings.
pub async fn next_json(ws: &mut Ws, within: Duration) -> Option<serde_json::Value> {
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
