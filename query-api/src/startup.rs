//! Wiring.

use crate::config::QueryConfig;
use crate::routes;
use agora_platform::auth::JwtKeys;
use agora_platform::{health, http, mongo, redis, telemetry};
use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use mongodb::Collection;
use mongodb::bson::Document;
use std::future::Future;

/// The read-model collections the query API reads (written only by the projector).
#[derive(Debug, Clone)]
pub struct Collections {
    pub users: Collection<Document>,
    pub handles: Collection<Document>,
    pub posts: Collection<Document>,
    pub likes: Collection<Document>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub models: Collections,
    pub jwt: JwtKeys,
}

impl FromRef<AppState> for JwtKeys {
    fn from_ref(s: &AppState) -> Self {
        s.jwt.clone()
    }
}

#[derive(Debug)]
pub struct Application {
    server: http::Server,
}

impl Application {
    pub async fn build(config: QueryConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        let db = mongo::connect(common, &common.mongo_db).await.context("configuring mongodb")?;
        let redis_conn = redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let state = AppState {
            models: Collections {
                users: db.collection("users"),
                handles: db.collection("handles"),
                posts: db.collection("posts"),
                likes: db.collection("likes"),
            },
            jwt: JwtKeys::new(&common.jwt_secret, common.token_ttl).context("JWT secret")?,
        };
        // Reads never touch Kafka, so Kafka is not a readiness dependency of this service.
        let probes = vec![mongo::probe(db), redis::probe(redis_conn)];
        let api = Router::new()
            .route("/v1/users/{user_id}", get(routes::users::get))
            .route("/v1/users/by-handle/{handle}", get(routes::users::by_handle))
            .route("/v1/users/{user_id}/posts", get(routes::users::posts))
            .with_state(state);
        let router = http::layers(
            api.merge(health::router(probes, common.ready_timeout, telemetry::metrics_handle())),
            &common.cors_origins,
        );
        let server = http::Server::bind(&config.addr, router, common.shutdown_timeout).await?;
        Ok(Self { server })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        self.server.serve(shutdown).await
    }
}
