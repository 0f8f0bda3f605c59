//! Wiring: indexes, the consumer worker and the ops endpoints.

use crate::config::ProjectorConfig;
use crate::generation;
use crate::readmodel::{self, Store};
use crate::worker::Worker;
use agora_platform::{health, http, kafka, mongo, redis, telemetry};
use anyhow::Context;
use std::future::Future;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Application {
    server: http::Server,
    generations: Generations,
}

/// The worker of whichever generation of the read models is active (see `generation`).
#[derive(Debug)]
struct Generations {
    config: ProjectorConfig,
    client: mongodb::Client,
    cache: agora_platform::cache::Cache,
}

impl Application {
    pub async fn build(config: ProjectorConfig) -> anyhow::Result<Self> {
        let common = &config.common;
        let db = mongo::connect(common, &common.mongo_db).await.context("configuring mongodb")?;
        let redis_conn = redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
        let cache = agora_platform::cache::Cache::new(redis_conn.clone(), &common.redis_prefix);
        // Fail fast on a consumer that cannot be configured at all.
        crate::worker::Worker::new(
            &common.kafka_brokers,
            &config.group_id,
            common.topics(),
            Store::new(&db),
            cache.clone(),
            config.feeds,
            config.max_batch,
        )
        .context("creating the kafka consumer")?;
        let generations = Generations { config: config.clone(), client: db.client().clone(), cache };
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
        Ok(Self { server, generations })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Runs the worker and the ops endpoints until `shutdown`; the worker then commits.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        self.server.serve_with_worker(shutdown, stop, self.generations.run(stop_rx)).await.context("ops server")
    }
}

impl Generations {
    /// Runs the active generation's worker; when a rebuild switches generations, finishes
    /// the batch, commits, leaves the old group and joins the new one.
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let common = &self.config.common;
        let (base_db, base_group) = (common.mongo_db.as_str(), self.config.group_id.as_str());
        loop {
            let active = loop {
                match generation::active(&self.client, base_db, base_group).await {
                    Ok(g) => break g,
                    Err(e) => tracing::warn!(error = %e, "reading the active generation failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(generation::POLL_EVERY) => {}
                    _ = stopping(&mut shutdown) => return,
                }
            };
            let db = generation::database(&self.client, &active);
            if let Err(e) = readmodel::ensure_indexes(&db).await {
                // Not fatal: the worker's writes wait for MongoDB anyway; retried at the next start.
                tracing::warn!(error = %e, "creating read-model indexes failed");
            }
            let worker = match Worker::new(
                &common.kafka_brokers,
                &active.group,
                common.topics(),
                Store::new(&db),
                self.cache.clone(),
                self.config.feeds,
                self.config.max_batch,
            ) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "creating the kafka consumer failed; retrying");
                    tokio::time::sleep(generation::POLL_EVERY).await;
                    continue;
                }
            };
            tracing::info!(db = %active.db, group = %active.group, "projecting");
            let (stop, stop_rx) = watch::channel(false);
            let run = worker.run(stop_rx);
            let switch = switched_from(&self.client, base_db, base_group, &active);
            tokio::pin!(run, switch);
            tokio::select! {
                _ = &mut run => {}
                _ = stopping(&mut shutdown) => {
                    let _ = stop.send(true);
                    (&mut run).await;
                    return;
                }
                next = &mut switch => {
                    tracing::info!(from = %active.db, to = %next.db, "switching to the rebuilt read models");
                    let _ = stop.send(true);
                    (&mut run).await;
                }
            }
        }
    }
}

/// How long one look at the active generation may take.
const LOOK_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves with the active generation once it is no longer `active`. A future of its own
/// beside the worker's, never awaited in place of it: while the check once ran inside the
/// loop that polled the worker, a read here that did not answer (seen in a 10k-user load
/// setup) left the worker unpolled for five minutes, past Kafka's poll interval, deaf to
/// SIGTERM and silent.
async fn switched_from(
    client: &mongodb::Client,
    base_db: &str,
    base_group: &str,
    active: &generation::Generation,
) -> generation::Generation {
    loop {
        tokio::time::sleep(generation::POLL_EVERY).await;
        match tokio::time::timeout(LOOK_LIMIT, generation::active(client, base_db, base_group)).await {
            Ok(Ok(next)) if next != *active => return next,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "reading the active generation failed; retrying"),
            Err(_) => {
                tracing::warn!(limit_s = LOOK_LIMIT.as_secs(), "reading the active generation took too long; retrying")
            }
        }
    }
}

/// Resolves once `rx` says stop (or its sender is gone), holding no guard across awaits.
async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
