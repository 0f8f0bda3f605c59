//! Wiring: indexes, the consumer worker and the ops endpoints.

use crate::config::ProjectorConfig;
use crate::readmodel::{self, Store};
use crate::worker::Worker;
use agora_platform::{health, http, kafka, mongo, redis, telemetry};
use anyhow::Context;
use std::future::Future;

#[derive(Debug)]
pub struct Application {
    server: http::Server,
    worker: Worker,
}

impl Application {
    pub async fn build(config: ProjectorConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        let db = mongo::connect(common, &common.mongo_db).await.context("configuring mongodb")?;
        if let Err(e) = readmodel::ensure_indexes(&db).await {
            // Not fatal: the worker's writes wait for MongoDB anyway, and indexes are retried
            // at the next start.
            tracing::warn!(error = %e, "creating read-model indexes failed");
        }
        let redis_conn = redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let cache = agora_platform::cache::Cache::new(redis_conn.clone(), &common.redis_prefix);
        let worker = Worker::new(&common.kafka_brokers, &config.group_id, common.topics(), Store::new(&db), cache, config.feeds)
            .context("creating the kafka consumer")?;
        let probes = vec![
            kafka::probe(&common.kafka_brokers, common.ready_timeout).context("creating the kafka probe")?,
            mongo::probe(db),
            redis::probe(redis_conn),
        ];
        let router = http::layers(
            health::router(probes, common.ready_timeout, telemetry::metrics_handle()),
            &common.cors_origins,
        );
        let server = http::Server::bind(&config.addr, router, common.shutdown_timeout).await?;
        Ok(Self { server, worker })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Runs the worker and the ops endpoints until `shutdown`; the worker then commits.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        self.server.serve_with_worker(shutdown, stop, self.worker.run(stop_rx)).await.context("ops server")
    }
}
