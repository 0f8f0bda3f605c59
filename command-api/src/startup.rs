//! Wiring: `Application::build(config)` binds the listener and connects the clients;
//! `run(shutdown)` serves until the shutdown future resolves.

use crate::config::CommandConfig;
use crate::routes;
use crate::store::{AggregateStore, CredentialStore};
use agora_platform::auth::JwtKeys;
use agora_platform::kafka::EventProducer;
use agora_platform::{health, http, kafka, mongo, redis, telemetry};
use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{post, put};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct AppState {
    pub producer: EventProducer,
    pub credentials: CredentialStore,
    pub aggregates: AggregateStore,
    pub jwt: JwtKeys,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.jwt.clone()
    }
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(config: CommandConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        if common.jwt_secret_is_default {
            tracing::warn!("AGORA_JWT_SECRET is unset: using the development secret");
        }
        let producer = EventProducer::new(
            &common.kafka_brokers,
            common.topics(),
            config.delivery_timeout,
        )
        .context("creating the kafka producer")?;
        let write_db = mongo::connect(common, &config.write_db)
            .await
            .context("configuring mongodb")?;
        let redis_conn =
            redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let jwt = JwtKeys::new(&common.jwt_secret, common.token_ttl).context("JWT secret")?;
        let state = AppState {
            producer,
            credentials: CredentialStore::new(&write_db),
            // An append in flight resolves within the delivery timeout; wait a little longer.
            aggregates: AggregateStore::new(
                &write_db,
                config.delivery_timeout + Duration::from_secs(1),
            ),
            jwt,
        };
        let probes = vec![
            kafka::probe(&common.kafka_brokers, common.ready_timeout)
                .context("creating the kafka probe")?,
            mongo::probe(write_db.clone()),
            redis::probe(redis_conn),
        ];
        let api = Router::new()
            .route("/v1/auth/register", post(routes::auth::register))
            .route("/v1/auth/login", post(routes::auth::login))
            .route(
                "/v1/follows/{user_id}",
                put(routes::follows::follow).delete(routes::follows::unfollow),
            )
            .route("/v1/posts", post(routes::posts::create))
            .with_state(state);
        let router = http::layers(
            api.merge(health::router(
                probes,
                common.ready_timeout,
                telemetry::metrics_handle(),
            )),
            &common.cors_origins,
        );
        let listener = TcpListener::bind(&config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        Ok(Self {
            listener,
            router,
            shutdown_timeout: common.shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        http::serve(self.listener, self.router, shutdown, self.shutdown_timeout).await
    }
}
