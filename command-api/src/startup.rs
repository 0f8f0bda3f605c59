//! Wiring: `Application::build(config)` binds the listener and connects the clients;
//! `run(shutdown)` serves until the shutdown future resolves.

use crate::config::CommandConfig;
use crate::limits::{self, Limits};
use crate::routes;
use crate::store::idempotency::IdempotencyStore;
use crate::store::keeper::HeadKeeper;
use crate::store::locks::AggregateLocks;
use crate::store::{AggregateStore, CredentialStore};
use agora_platform::auth::JwtKeys;
use agora_platform::kafka::EventProducer;
use agora_platform::ratelimit::RateLimiter;
use agora_platform::{health, http, kafka, mongo, redis, telemetry};
use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use axum::routing::{patch, post, put};
use std::future::Future;
use std::time::Duration;

/// What every handler shares; cloned per request and per middleware, so one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(std::sync::Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

#[derive(Debug)]
pub struct Services {
    pub producer: EventProducer,
    pub credentials: CredentialStore,
    pub aggregates: AggregateStore,
    pub locks: AggregateLocks,
    pub idempotency: IdempotencyStore,
    pub limiter: RateLimiter,
    pub limits: Limits,
    pub jwt: JwtKeys,
    /// See `CommandConfig::head_wait`.
    pub head_wait: Duration,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.jwt.clone()
    }
}

#[derive(Debug)]
pub struct Application {
    server: http::Server,
    keeper: HeadKeeper,
}

impl Application {
    pub async fn build(config: CommandConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        if common.jwt_secret_is_default {
            tracing::warn!("AGORA_JWT_SECRET is unset: using the development secret");
        }
        let producer = EventProducer::new(&common.kafka_brokers, common.topics(), config.delivery_timeout)
            .context("creating the kafka producer")?;
        let write_db = mongo::connect(common, &config.write_db).await.context("configuring mongodb")?;
        let redis_conn = redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let jwt = JwtKeys::new(&common.jwt_secret, common.token_ttl).context("JWT secret")?;
        let state = AppState(std::sync::Arc::new(Services {
            producer,
            credentials: CredentialStore::new(&write_db),
            // An append in flight resolves within the delivery timeout; wait a little longer.
            aggregates: AggregateStore::new(&write_db, config.delivery_timeout + Duration::from_secs(1)),
            locks: AggregateLocks::default(),
            idempotency: IdempotencyStore::new(&write_db),
            limiter: RateLimiter::new(redis_conn.clone(), &common.redis_prefix, common.rate_limit_redis_down),
            limits: config.limits,
            jwt,
            head_wait: config.head_wait,
        }));
        let keeper = HeadKeeper::new(&common.kafka_brokers, &config.heads_group, &common.topics(), &write_db)
            .context("creating the head keeper's consumer")?;
        let probes = vec![
            kafka::probe(&common.kafka_brokers, common.ready_timeout).context("creating the kafka probe")?,
            mongo::probe(write_db.clone()),
            redis::probe(redis_conn),
        ];
        let auth = Router::new()
            .route("/v1/auth/register", post(routes::auth::register))
            .route("/v1/auth/login", post(routes::auth::login))
            .route_layer(from_fn_with_state(state.clone(), limits::auth));
        let writes = Router::new()
            .route("/v1/me", patch(routes::me::update))
            .route("/v1/posts", post(routes::posts::create))
            .route("/v1/posts/{post_id}", axum::routing::delete(routes::posts::delete))
            .route("/v1/posts/{post_id}/like", put(routes::posts::like).delete(routes::posts::unlike))
            .route("/v1/posts/{post_id}/comments", post(routes::posts::comment))
            .route("/v1/follows/{user_id}", put(routes::follows::follow).delete(routes::follows::unfollow))
            .route("/v1/notifications/read", post(routes::notifications::read))
            .route_layer(from_fn_with_state(state.clone(), limits::writes));
        let messages = Router::new()
            .route("/v1/messages", post(routes::messages::send))
            .route("/v1/conversations/{conversation_id}/read", post(routes::messages::read))
            .route_layer(from_fn_with_state(state.clone(), limits::messages));
        let games = Router::new()
            .route("/v1/games", post(routes::games::challenge))
            .route("/v1/games/{game_id}/accept", post(routes::games::accept))
            .route("/v1/games/{game_id}/moves", post(routes::games::play))
            .route("/v1/games/{game_id}/resign", post(routes::games::resign))
            .route_layer(from_fn_with_state(state.clone(), limits::moves));
        let doc = std::sync::Arc::new(crate::openapi::document());
        let openapi = Router::new().route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        );
        let api = auth
            .merge(writes)
            .merge(messages)
            .merge(games)
            .route_layer(from_fn_with_state(state.clone(), crate::idempotency::middleware))
            .route_layer(axum::middleware::from_fn(http::run_to_completion))
            // Outermost: the token is verified once, for every layer and handler after it.
            .route_layer(from_fn_with_state(state.jwt.clone(), agora_platform::auth::identify))
            .with_state(state)
            .merge(openapi);
        let router = http::layers(
            api.merge(health::router(probes, common.ready_timeout, telemetry::metrics_handle())),
            &common.cors_origins,
        );
        let server = http::Server::bind(&config.addr, router, common.shutdown_timeout).await?;
        Ok(Self { server, keeper })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        self.server.serve_with_worker(shutdown, stop, self.keeper.run(stopped)).await
    }
}
