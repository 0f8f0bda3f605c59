//! Removes from the local stack what earlier test runs left: topics, consumer groups,
//! databases and Redis keys whose names `agora_testkit::names::is_test_name` recognises.
//! Tests do not drop what they create (a failed test's data is what one looks at), so on a
//! machine that runs the suite again and again these pile up: thousands of Kafka partitions
//! and PostgreSQL schemas make Kafka and FerretDB slow to start and answer.
//! `deploy/local/test.sh` runs this before the suite.
//!
//! Reads `AGORA_KAFKA_BROKERS` (default `127.0.0.1:9092`), `AGORA_TEST_MONGO_URI`
//! (`mongodb://127.0.0.1:27017`) and `AGORA_TEST_REDIS_URL` (`redis://127.0.0.1:6379`), the
//! stack the tests use.

use agora_testkit::names::is_test_name;
use agora_testkit::schemathesis::env_or;
use anyhow::Context;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

/// Topics and groups per admin request, databases dropped at once, keys per `UNLINK`.
const KAFKA_BATCH: usize = 200;
const DROPS_AT_ONCE: usize = 4;
const KEYS_PER_UNLINK: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = env_or("AGORA_KAFKA_BROKERS", "127.0.0.1:9092");
    let mongo = env_or("AGORA_TEST_MONGO_URI", "mongodb://127.0.0.1:27017");
    let redis = env_or("AGORA_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let started = Instant::now();
    let (topics, groups) = kafka(&brokers).await.with_context(|| format!("kafka at {brokers}"))?;
    let databases = databases(&mongo).await.with_context(|| format!("mongodb at {mongo}"))?;
    let keys = redis_keys(&redis).await.with_context(|| format!("redis at {redis}"))?;
    println!(
        "[clean] removed earlier test runs' data: {topics} topics, {groups} consumer groups, \
         {databases} databases, {keys} redis keys ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn kafka(brokers: &str) -> anyhow::Result<(usize, usize)> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).set("log_level", "3").create()?;
    let timeout = Duration::from_secs(30);
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let (topics, groups) = {
        let client = admin.inner();
        let metadata = client.fetch_metadata(None, timeout).context("listing topics")?;
        let topics: Vec<String> =
            metadata.topics().iter().map(|t| t.name().to_owned()).filter(|n| is_test_name(n)).collect();
        // Just after Kafka starts, while it loads its offsets topic, this can come back empty:
        // those groups are then left for the next run.
        let listed = client.fetch_group_list(None, timeout).context("listing consumer groups")?;
        let groups: Vec<String> =
            listed.groups().iter().map(|g| g.name().to_owned()).filter(|n| is_test_name(n)).collect();
        (topics, groups)
    };
    println!("[clean] kafka: {} test topics, {} test consumer groups", topics.len(), groups.len());
    // A group still in use (a test running now) stays, as does a topic Kafka refuses to drop.
    let removed_groups = remove("group", &groups, |names| admin.delete_groups(names, &opts)).await?;
    let removed_topics = remove("topic", &topics, |names| admin.delete_topics(names, &opts)).await?;
    Ok((removed_topics, removed_groups))
}

/// Deletes `names` through `delete`, [`KAFKA_BATCH`] per request; the count it removed.
async fn remove<'a, F, Fut>(kind: &str, names: &'a [String], delete: F) -> anyhow::Result<usize>
where
    F: Fn(&[&'a str]) -> Fut,
    Fut: std::future::Future<Output = rdkafka::error::KafkaResult<Vec<Result<String, (String, RDKafkaErrorCode)>>>>,
{
    let mut removed = 0;
    for chunk in names.chunks(KAFKA_BATCH) {
        let batch: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for result in delete(&batch).await.with_context(|| format!("deleting {kind}s"))? {
            match result {
                Ok(_) => removed += 1,
                Err((name, code)) => println!("[clean] kafka: {kind} {name} kept: {code}"),
            }
        }
    }
    Ok(removed)
}

async fn databases(uri: &str) -> anyhow::Result<usize> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    let names: Vec<String> = client
        .list_database_names()
        .await
        .context("listing databases")?
        .into_iter()
        .filter(|n| is_test_name(n))
        .collect();
    println!("[clean] mongodb: {} test databases", names.len());
    let total = names.len();
    let mut drops = futures::stream::iter(names)
        .map(|name| {
            let db = client.database(&name);
            async move { db.drop().await.with_context(|| format!("dropping database {name}")) }
        })
        .buffer_unordered(DROPS_AT_ONCE);
    let mut dropped = 0;
    while let Some(result) = drops.next().await {
        result?;
        dropped += 1;
        if dropped % 100 == 0 {
            println!("[clean] mongodb: dropped {dropped} of {total}");
        }
    }
    Ok(dropped)
}

async fn redis_keys(url: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut doomed = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(&mut conn).await.context("SCAN")?;
        doomed.extend(keys.into_iter().filter(|k| is_test_name(k)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for chunk in doomed.chunks(KEYS_PER_UNLINK) {
        let _unlinked: i64 = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.context("UNLINK")?;
    }
    Ok(doomed.len())
}
