//! Wiring: indexes, the consumer worker and the ops endpoints.

use crate::config::ProjectorConfig;
use crate::readmodel::ReadModels;
use crate::worker::Worker;
use agora_platform::{health, http, kafka, mongo, redis, telemetry};
use anyhow::Context;
use axum::Router;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    worker: Worker,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(config: ProjectorConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        let db = mongo::connect(common, &common.mongo_db).await.context("configuring mongodb")?;
        let models = ReadModels::new(&db);
        if let Err(e) = models.ensure_indexes().await {
            // Not fatal: the worker's writes wait for MongoDB anyway, and indexes are retried
            // at the next start.
            tracing::warn!(error = %e, "creating read-model indexes failed");
        }
        let worker = Worker::new(&common.kafka_brokers, &config.group_id, common.topics(), models)
            .context("creating the kafka consumer")?;
        let redis_conn = redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let probes = vec![
            kafka::probe(&common.kafka_brokers, common.ready_timeout).context("creating the kafka probe")?,
            mongo::probe(db),
            redis::probe(redis_conn),
        ];
        let router = http::layers(
            health::router(probes, common.ready_timeout, telemetry::metrics_handle()),
            &common.cors_origins,
        );
        let listener = TcpListener::bind(&config.addr).await.with_context(|| format!("binding {}", config.addr))?;
        Ok(Self { listener, router, worker, shutdown_timeout: common.shutdown_timeout })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Runs the worker and the ops endpoints until `shutdown`; the worker then commits.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(self.worker.run(stop_rx.clone()));
        let mut http_stop = stop_rx;
        let http = tokio::spawn(http::serve(
            self.listener,
            self.router,
            async move {
                let _ = http_stop.wait_for(|s| *s).await;
            },
            self.shutdown_timeout,
        ));
        shutdown.await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(self.shutdown_timeout, worker).await;
        http.await.context("ops server task")?.context("ops server")?;
        Ok(())
    }
}
