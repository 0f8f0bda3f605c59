//! The queries rate limit: a budget per user shared by every query-api instance (state in
//! Redis), refused with 429, `Retry-After` and problem JSON; other users, unauthenticated
//! requests, the ops endpoints, `/openapi.json` and CORS preflights do not spend it. And the
//! policy when Redis does not answer.
//!
//! Runs query-api in this process against the local stack's MongoDB and Redis
//! (`deploy/local/stack.sh up`), with a prefix of its own; tokens are signed with its secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agora_platform::auth::JwtKeys;
use agora_platform::config::{CommonConfig, Env};
use agora_schemas::UserId;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::watch;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

fn settings(extra: &[(&str, &str)]) -> Env {
    let prefix = agora_testkit::names::test_prefix("ql");
    let mut env = Env::from_pairs([
        ("AGORA_MONGO_URI", env_or("AGORA_TEST_MONGO_URI", "mongodb://127.0.0.1:27017")),
        ("AGORA_REDIS_URL", env_or("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379")),
        ("AGORA_TOPIC_PREFIX", prefix.clone()),
        ("AGORA_REDIS_PREFIX", prefix.clone()),
        ("AGORA_MONGO_DB", format!("{prefix}_read")),
        ("AGORA_JWT_SECRET", format!("secret-{prefix}")),
        ("AGORA_QUERY_ADDR", "127.0.0.1:0".to_owned()),
        ("AGORA_READY_TIMEOUT_MS", "1500".to_owned()),
        ("AGORA_SHUTDOWN_TIMEOUT_MS", "3000".to_owned()),
        ("AGORA_LOG", env_or("AGORA_TEST_LOG", "warn")),
    ]);
    for (k, v) in extra {
        env.set(*k, *v);
    }
    env
}

async fn require(name: &str, url: &str, scheme: &str) {
    let addr = url.trim_start_matches(scheme).trim_end_matches('/');
    let ok = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(ok, Ok(Ok(_))),
        "{name} is not reachable at {addr}: start the stack with `deploy/local/stack.sh up` (deploy/local/test.sh does)"
    );
}

/// Query-api instances on the same settings, and tokens they accept.
struct Instances {
    urls: Vec<String>,
    jwt: JwtKeys,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Instances {
    async fn start(env: &Env, count: usize) -> Self {
        let common = CommonConfig::from_env(env).unwrap();
        let jwt = JwtKeys::new(&common.jwt_secret, Duration::from_secs(3600)).unwrap();
        let (stop, stopped) = watch::channel(false);
        let (mut urls, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let config = agora_query_api::QueryConfig::from_env(env).unwrap();
            let app = agora_query_api::Application::build(config).await.unwrap();
            urls.push(format!("http://127.0.0.1:{}", app.port()));
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                app.run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .unwrap()
            }));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        Self { urls, jwt, http, stop, tasks }
    }

    fn token(&self) -> (UserId, String) {
        let user = UserId::new();
        (user, self.jwt.issue(user).unwrap())
    }

    async fn get(&self, instance: usize, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.urls[instance]));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Answer::of(req.send().await.unwrap()).await
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    async fn of(res: reqwest::Response) -> Self {
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after").map(|v| v.parse().unwrap_or_else(|_| panic!("Retry-After {v:?}")));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        Self { status, content_type, retry_after, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        for field in ["type", "title", "detail"] {
            assert!(self.body[field].is_string(), "problem without {field}: {self:?}");
        }
    }
}

const UNREAD: &str = "/v1/notifications/unread-count";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_over_the_limit_are_refused_per_user_across_instances() {
    let env = settings(&[("AGORA_RATE_LIMIT_QUERIES", "5/1m"), ("AGORA_CORS_ORIGINS", "http://app.example")]);
    require("ferretdb", &env.string("AGORA_MONGO_URI", ""), "mongodb://").await;
    require("redis", &env.string("AGORA_REDIS_URL", ""), "redis://").await;
    let apps = Instances::start(&env, 2).await;
    let (alice, alice_token) = apps.token();
    let (_, bob_token) = apps.token();

    // Eight at once across both instances: five pass, three wait.
    let answers = futures::future::join_all((0..8).map(|i| apps.get(i % 2, UNREAD, Some(&alice_token)))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!((ok, limited.len()), (5, 3), "five of eight across both instances: {answers:#?}");
    for a in &limited {
        a.assert_problem(429);
        // Five at once, then one every 12 s: the next one is at most 12 s away.
        let secs = a.retry_after.unwrap_or_else(|| panic!("429 without Retry-After: {a:?}"));
        assert!((1..=12).contains(&secs), "Retry-After {secs}: {a:?}");
    }
    for a in answers.iter().filter(|a| a.status == 200) {
        assert_eq!(a.body["count"], 0, "{a:?}");
    }
    // Every query route spends the same budget: her profile query waits too (not 404).
    apps.get(1, &format!("/v1/users/{alice}"), Some(&alice_token)).await.assert_problem(429);
    apps.get(0, "/v1/notifications", Some(&alice_token)).await.assert_problem(429);

    // Bob is not limited by alice's burst.
    for i in 0..5 {
        let a = apps.get(i % 2, UNREAD, Some(&bob_token)).await;
        assert_eq!((a.status, &a.body["count"]), (200, &Value::from(0)), "{a:?}");
    }
    // Without a valid token nothing is spent and the answer is 401, not 429.
    apps.get(0, UNREAD, None).await.assert_problem(401);
    apps.get(0, UNREAD, Some("not-a-token")).await.assert_problem(401);
    // The ops endpoints and the document are not limited, even with her token.
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        let a = apps.get(0, path, Some(&alice_token)).await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
    // Nor is a CORS preflight.
    let preflight = apps
        .http
        .request(Method::OPTIONS, format!("{}{UNREAD}", apps.urls[0]))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "preflight: {}", preflight.status());
    assert_eq!(
        preflight.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("http://app.example")
    );

    // The refusals are counted, by class.
    let metrics = apps.get(0, "/metrics", None).await.body;
    let metrics = metrics.as_str().unwrap_or_default();
    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("agora_rate_limited_total{") && l.contains("class=\"queries\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused >= 5.0, "agora_rate_limited_total{{class=\"queries\"}} = {refused}:\n{metrics}");
    apps.stop().await;
}

/// A Redis address nothing listens on.
fn closed_redis() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_queries_pass_or_are_refused_with_503_as_configured() {
    let mongo = env_or("AGORA_TEST_MONGO_URI", "mongodb://127.0.0.1:27017");
    require("ferretdb", &mongo, "mongodb://").await;
    let redis = closed_redis();

    // `deny`: 503 with Retry-After; nothing is answered unchecked.
    let deny = settings(&[("AGORA_REDIS_URL", &redis), ("AGORA_RATE_LIMIT_REDIS_DOWN", "deny")]);
    let apps = Instances::start(&deny, 1).await;
    let (_, token) = apps.token();
    let refused = apps.get(0, UNREAD, Some(&token)).await;
    refused.assert_problem(503);
    assert!(refused.retry_after.is_some_and(|s| s >= 1), "{refused:?}");
    apps.stop().await;

    // `allow` (the default): the query is answered (from MongoDB), and the skipped check counted.
    let allow = settings(&[("AGORA_REDIS_URL", &redis)]);
    let apps = Instances::start(&allow, 1).await;
    let (_, token) = apps.token();
    let answered = apps.get(0, UNREAD, Some(&token)).await;
    assert_eq!((answered.status, &answered.body["count"]), (200, &Value::from(0)), "{answered:?}");
    let metrics = apps.get(0, "/metrics", None).await.body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agora_rate_limit_redis_errors_total{") && l.contains("class=\"queries\"")),
        "no redis error counted for class queries:\n{metrics}"
    );
    apps.stop().await;
}
