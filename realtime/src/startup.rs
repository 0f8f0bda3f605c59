//! Wiring: the router, the hub, the WebSocket endpoint and the ops endpoints.

use crate::config::RealtimeConfig;
use crate::connection::{self, Session};
use crate::hub::Hub;
use crate::presence::{Presence, parse_user_ids};
use crate::router::{Keys, Router};
use crate::telemetry as names;
use agora_platform::auth::{JwtKeys, bearer};
use agora_platform::http::ApiError;
use agora_platform::kafka::consumer;
use agora_platform::{health, http, kafka, mongo, redis as redis_client, telemetry};
use agora_projector::generation::ReadDb;
use anyhow::Context;
use axum::Router as HttpRouter;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone, Debug)]
struct AppState {
    jwt: JwtKeys,
    hub: Hub,
    config: Arc<RealtimeConfig>,
    epoch: SharedEpoch,
    /// The Redis connection, keys and presence, shared with every socket's session.
    sockets: Arc<connection::Shared>,
}

/// The stream epoch the last socket opened with, so that the process's sessions share one
/// copy rather than one each (it changes only when Redis lost its data).
#[derive(Clone, Debug, Default)]
struct SharedEpoch(Arc<std::sync::Mutex<Option<Arc<str>>>>);

impl SharedEpoch {
    fn share(&self, epoch: String) -> Arc<str> {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(known) if **known == *epoch => known.clone(),
            _ => last.insert(Arc::from(epoch)).clone(),
        }
    }
}

impl axum::extract::FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.jwt.clone()
    }
}

#[derive(Debug)]
pub struct Application {
    server: http::Server,
    /// `None` when `AGORA_REALTIME_ROUTE=false`: this process only holds sockets.
    event_router: Option<Router>,
    stop: watch::Sender<bool>,
}

impl Application {
    pub async fn build(config: RealtimeConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        let db = mongo::connect(common, &common.mongo_db).await.context("configuring mongodb")?;
        let redis = redis_client::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let keys = Keys::new(common.redis_prefix.clone());
        let event_router = if config.route {
            let fetch = consumer::Fetch::up_to(config.router_fetch_wait);
            let consumer =
                consumer::subscribe(&common.kafka_brokers, &config.group_id, &common.topics().event_topics(), fetch)
                    .context("creating the kafka consumer")?;
            let read_db = ReadDb::follow(db.client().clone(), common.mongo_db.clone()).await;
            // The router's pipelines get a connection of their own, so a large fan-out never
            // queues the sockets' commands (resume, presence, the stream head) behind it.
            let router_redis =
                redis_client::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
            Some(Router::new(
                consumer,
                router_redis,
                read_db,
                keys.clone(),
                config.stream_retention,
                config.router_dedupe,
            ))
        } else {
            None
        };
        let (stop, mut stop_rx) = watch::channel(false);
        let hub = Hub::start(common.redis_url.clone());
        // Shutting down: every socket gets its 1012 through the hub.
        let closing = hub.clone();
        tokio::spawn(async move {
            if stop_rx.wait_for(|s| *s).await.is_ok() {
                closing.restart_all();
            }
        });
        // Kafka and MongoDB are the router's: a process that only holds sockets needs Redis.
        let mut probes = Vec::new();
        if config.route {
            probes.push(kafka::probe(&common.kafka_brokers, common.ready_timeout).context("creating the kafka probe")?);
            probes.push(mongo::probe(db));
        }
        probes.push(redis_client::probe(redis.clone()));
        let state = AppState {
            jwt: JwtKeys::new(&common.jwt_secret, common.token_ttl).context("JWT secret")?,
            hub,
            config: Arc::new(config.clone()),
            epoch: SharedEpoch::default(),
            sockets: Arc::new(connection::Shared {
                presence: Presence::new(redis.clone(), &common.redis_prefix, config.heartbeat),
                redis,
                keys,
                heartbeat: config.heartbeat,
                grid_from: tokio::time::Instant::now(),
            }),
        };
        let api =
            HttpRouter::new().route("/v1/stream", get(stream)).route("/v1/presence", get(presence)).with_state(state);
        let router = http::layers(
            api.merge(health::router(probes, common.ready_timeout, telemetry::metrics_handle())),
            &common.cors_origins,
        );
        let server = http::Server::bind_with_send_buffer(
            &config.addr,
            router,
            common.shutdown_timeout,
            config.socket_send_buffer,
        )
        .await?;
        Ok(Self { server, event_router, stop })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `shutdown`; then every socket is closed with 1012 and the router commits.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = self.stop.subscribe();
        let worker = async move {
            // Without a router the process only holds sockets: the group's members route.
            if let Some(router) = self.event_router {
                router.run(stop).await
            }
        };
        self.server.serve_with_worker(shutdown, self.stop, worker).await.context("http server")
    }
}

/// The read buffer of each socket, bytes. tungstenite zero-fills the whole buffer on each
/// read, so all of it is resident; it grows to fit a larger frame when one comes. 32 B would
/// take 210 B off each socket's heap (heaptrack, 5,000 sockets), but the slow-client test then
/// failed in 3 of 4 runs among the other tests (the client saw a reset before the close
/// frame), against none in many runs at 256 B: kept until that is understood.
const CLIENT_READ_BUFFER: usize = 256;
/// The largest client frame accepted, bytes; a larger one ends the connection.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = q
        .get("token")
        .map(String::as_str)
        .or_else(|| headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer));
    let Some(user) = token.and_then(|t| app.jwt.verify(t).ok()) else {
        metrics::counter!(names::UPGRADES_REFUSED, "reason" => "unauthorized").increment(1);
        return ApiError::Unauthorized("missing or invalid token".into()).into_response();
    };
    let origin = headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &app.config.common.cors_origins) {
        metrics::counter!(names::UPGRADES_REFUSED, "reason" => "origin").increment(1);
        return ApiError::Forbidden(format!("origin {} may not open a stream", origin.unwrap_or_default()))
            .into_response();
    }
    let upgrade = match upgrade {
        // Client frames are small ops: a small read buffer keeps each socket's memory low
        // (tungstenite allocates 128 KiB by default), and a cap refuses oversized frames.
        Ok(u) => u
            .read_buffer_size(CLIENT_READ_BUFFER)
            .max_message_size(MAX_CLIENT_MESSAGE)
            .max_frame_size(MAX_CLIENT_MESSAGE),
        Err(e) => return ApiError::BadRequest(e.body_text()).into_response(),
    };
    let user: Arc<str> = user.to_string().into();
    let member = match app.hub.join(
        &app.sockets.keys.user_channel(&user),
        app.config.connection_queue,
        app.config.max_connections_per_user,
    ) {
        Ok(m) => m,
        Err(_) => {
            metrics::counter!(names::UPGRADES_REFUSED, "reason" => "too_many").increment(1);
            return ApiError::RateLimited { retry_after_secs: 5 }.into_response();
        }
    };
    let (epoch, last) = match stream_head(&app, &user).await {
        Ok(v) => v,
        Err(e) => return ApiError::unavailable("redis", e).into_response(),
    };
    let session = Session {
        connection_id: uuid::Uuid::now_v7(),
        epoch: app.epoch.share(epoch),
        head: connection::stream_id(&last).unwrap_or((0, 0)),
        user,
        shared: app.sockets.clone(),
    };
    // The closure and the socket's future are kept for the socket's whole life: they hold
    // one pointer each (see `connection::Connection`).
    let accepted = Box::new((member, session));
    upgrade.on_upgrade(move |socket| {
        let (member, session) = *accepted;
        connection::serve(Box::new(connection::Connection { socket, member, session }))
    })
}

/// Whether a browser page from `origin` may open a socket: no `Origin` (not a browser), the
/// realtime host itself, or an origin in `AGORA_CORS_ORIGINS` (`*`: any). A page of another
/// site could otherwise use a visitor's token from a query string it got hold of.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    let same_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/')) == host;
    same_host || allowed.iter().any(|a| a == "*" || a.trim_end_matches('/') == origin.trim_end_matches('/'))
}

/// `GET /v1/presence?user_ids=a,b`: `{"<id>": true|false}` for each id.
async fn presence(
    State(app): State<AppState>,
    _me: agora_platform::auth::AuthUser,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<std::collections::BTreeMap<String, bool>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let ids =
        parse_user_ids(q.get("user_ids").map(String::as_str)).map_err(|m| ApiError::invalid_field("user_ids", m))?;
    app.sockets.presence.of(&ids).await.map(axum::Json).map_err(|e| ApiError::unavailable("redis", e))
}

/// The stream epoch (created on first use) and the id of the user's latest frame.
async fn stream_head(app: &AppState, user: &str) -> Result<(String, String), redis::RedisError> {
    let mut conn = app.sockets.redis.clone();
    let fresh = uuid::Uuid::now_v7().simple().to_string();
    let (epoch, last): (String, redis::streams::StreamRangeReply) = redis::pipe()
        .cmd("SET")
        .arg(app.sockets.keys.epoch())
        .arg(&fresh[..12])
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(app.sockets.keys.epoch())
        .cmd("XREVRANGE")
        .arg(app.sockets.keys.user_stream(user))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await?;
    let last = last.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".to_owned());
    Ok((epoch, last))
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn a_browser_page_may_open_a_stream_only_from_the_same_host_or_an_allowed_origin() {
        let allowed = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(None, Some("127.0.0.1:8083"), &allowed), "not a browser");
        assert!(origin_allowed(Some("http://127.0.0.1:8083"), Some("127.0.0.1:8083"), &allowed), "same host");
        assert!(origin_allowed(Some("https://app.example"), Some("rt.example"), &allowed));
        assert!(origin_allowed(Some("https://app.example/"), Some("rt.example"), &allowed));
        assert!(!origin_allowed(Some("https://evil.example"), Some("rt.example"), &allowed));
        assert!(!origin_allowed(Some("https://evil.example"), Some("rt.example"), &[]));
        assert!(origin_allowed(Some("https://any.example"), Some("rt.example"), &["*".to_owned()]));
    }
}
