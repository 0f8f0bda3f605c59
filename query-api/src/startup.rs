//! Wiring.

use crate::config::QueryConfig;
use crate::limits::{self, Limits};
use crate::routes;
use agora_platform::auth::JwtKeys;
use agora_platform::http::ApiError;
use agora_platform::ratelimit::RateLimiter;
use agora_platform::{health, http, mongo, redis, telemetry};
use agora_projector::readmodel::Coll;
use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use futures::TryStreamExt;
use mongodb::bson::Document;
use mongodb::{Collection, Cursor};
use std::future::Future;

#[derive(Debug, Clone)]
pub struct AppState {
    /// The read models (written only by the projector; their layout is `agora_projector::readmodel`),
    /// in whichever database is active (a rebuild switches it).
    pub db: agora_projector::generation::ReadDb,
    pub jwt: JwtKeys,
    /// See `QueryConfig::consistency_wait`.
    pub consistency_wait: std::time::Duration,
    pub cache: agora_platform::cache::Cache,
    pub cache_ttls: crate::cache::Ttls,
    /// Shared, as the state is cloned for every request.
    pub limiter: std::sync::Arc<RateLimiter>,
    pub limits: Limits,
    /// Every MongoDB read of a query takes a turn here (`agora_platform::mongo::Gate`).
    pub gate: mongo::Gate,
}

impl AppState {
    pub fn coll(&self, coll: Coll) -> Collection<Document> {
        self.db.get().collection(coll.name())
    }

    /// Runs a MongoDB operation on `coll` in a turn of the gate (`agora_platform::mongo::Gate`:
    /// once started, it runs to the end even if the client goes away); a refused turn or a
    /// failed operation is a 503.
    pub async fn store<T, Op>(&self, coll: Coll, op: impl FnOnce(Collection<Document>) -> Op) -> Result<T, ApiError>
    where
        T: Send + 'static,
        Op: Future<Output = mongodb::error::Result<T>> + Send + 'static,
    {
        Ok(self.gate.run(op(self.coll(coll))).await?)
    }

    /// Every document a find on `coll` yields, read in one turn (the cursor's batches included).
    pub async fn find_all<Op>(
        &self,
        coll: Coll,
        find: impl FnOnce(Collection<Document>) -> Op,
    ) -> Result<Vec<Document>, ApiError>
    where
        Op: Future<Output = mongodb::error::Result<Cursor<Document>>> + Send + 'static,
    {
        let find = find(self.coll(coll));
        Ok(self.gate.run(async move { find.await?.try_collect().await }).await?)
    }
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
            db: agora_projector::generation::ReadDb::follow(db.client().clone(), common.mongo_db.clone()).await,
            jwt: JwtKeys::new(&common.jwt_secret, common.token_ttl).context("JWT secret")?,
            consistency_wait: config.consistency_wait,
            cache: agora_platform::cache::Cache::new(redis_conn.clone(), &common.redis_prefix),
            cache_ttls: config.cache_ttls,
            limiter: std::sync::Arc::new(RateLimiter::new(
                redis_conn.clone(),
                &common.redis_prefix,
                common.rate_limit_redis_down,
            )),
            limits: config.limits,
            gate: mongo::Gate::for_pool(common),
        };
        // Reads never touch Kafka, so Kafka is not a readiness dependency of this service.
        let probes = vec![mongo::probe(db), redis::probe(redis_conn)];
        let api = Router::new()
            .merge(routes::users::router())
            .merge(routes::posts::router())
            .merge(routes::conversations::router())
            .merge(routes::games::router())
            .merge(routes::notifications::router())
            .merge(routes::feed::router())
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::consistency::wait))
            .route_layer(axum::middleware::from_fn(crate::etag::middleware))
            // Before the consistency wait: a refused query waits for nothing.
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), limits::queries))
            // Outermost: the token is verified once, for the limit and the handler.
            .route_layer(axum::middleware::from_fn_with_state(state.jwt.clone(), agora_platform::auth::identify))
            .with_state(state);
        let doc = std::sync::Arc::new(crate::openapi::document());
        let openapi = Router::new().route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        );
        let router = http::layers(
            api.merge(openapi).merge(health::router(probes, common.ready_timeout, telemetry::metrics_handle())),
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
