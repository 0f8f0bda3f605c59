//! The read side's benchmark, in one run, each figure beside the raw rate of the store under it:
//!
//! 1. a synthetic event log (registrations, a power-law follow graph, posts, likes, comments)
//!    is written straight to Kafka under a prefix of its own;
//! 2. **catch-up**: a projector with batching (the default) projects all of it into a fresh
//!    database; the time until its group has no lag, and events/s;
//! 3. **one write per event**: a projector with `AGORA_PROJECTOR_MAX_BATCH=1` on the same log
//!    into another database, for a bounded time; events/s;
//! 4. **raw bulk insert**: `insert_many` of 500 documents at a time into the same store;
//! 5. **feed reads**: query-api on the projected database, closed-loop `GET /v1/feed` by the
//!    users who follow the most, with the caches on and with every cache off (TTL 0).
//!
//! Prints one JSON object (the wrapper `loadtests/bench-read.sh` adds `redis-benchmark` GET and
//! the ratios). Every address is loopback; every phase is bounded in count and time.
//!
//! `agora-bench-read [--events N] [--single-seconds N] [--read-seconds N] [--concurrency N]
//!                   [--bulk-docs N]`

use agora_platform::config::Env;
use agora_schemas::aggregate::{Topics, partition_key};
use agora_schemas::events::{CommentAdded, Event, PostCreated, PostLiked, UserFollowed, UserRegistered};
use agora_schemas::{CommentId, Envelope, Metadata, PostId, UserId};
use anyhow::Context;
use hdrhistogram::Histogram;
use mongodb::bson::{Document, doc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    events: usize,
    single_seconds: u64,
    read_seconds: u64,
    concurrency: usize,
    bulk_docs: usize,
    kafka: String,
    mongo: String,
    redis: String,
}

fn args() -> anyhow::Result<Args> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let mut a = Args {
        events: 200_000,
        single_seconds: 60,
        read_seconds: 15,
        concurrency: 32,
        bulk_docs: 200_000,
        kafka: env("AGORA_KAFKA_BROKERS", "127.0.0.1:9092"),
        mongo: env("AGORA_MONGO_URI", "mongodb://127.0.0.1:27017/"),
        redis: env("AGORA_REDIS_URL", "redis://127.0.0.1:6379"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => a.events = value.parse::<usize>()?.clamp(1_000, 2_000_000),
            "--single-seconds" => a.single_seconds = value.parse::<u64>()?.clamp(5, 600),
            "--read-seconds" => a.read_seconds = value.parse::<u64>()?.clamp(2, 120),
            "--concurrency" => a.concurrency = value.parse::<usize>()?.clamp(1, 256),
            "--bulk-docs" => a.bulk_docs = value.parse::<usize>()?.clamp(1_000, 2_000_000),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    for url in [&a.kafka, &a.mongo, &a.redis] {
        agora_loadtests::require_loopback(url)?;
    }
    Ok(a)
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// An index in `0..n`, skewed towards 0 by `power` (a power law's heavy head).
    fn skewed(&mut self, n: usize, power: i32) -> usize {
        ((self.unit().powi(power) * n as f64) as usize).min(n - 1)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The synthetic log: every user registers first, then follows, posts, likes and comments mix.
fn synthetic_log(events: usize) -> (Vec<Envelope>, Vec<UserId>) {
    let users: Vec<UserId> = (0..(events / 25).max(200)).map(|_| UserId::new()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut log = Vec::with_capacity(events);
    for (i, u) in users.iter().enumerate() {
        let e = UserRegistered { user_id: *u, handle: format!("bench_{i}"), display_name: format!("Bench {i}") };
        log.push(Envelope::new(Event::from(e), 1, Metadata::system()));
    }
    let mut follows = HashSet::new();
    let mut likes = HashSet::new();
    let mut posts: Vec<(PostId, UserId, u64)> = Vec::new();
    while log.len() < events {
        let roll = rng.below(100);
        if roll < 30 || posts.is_empty() && roll >= 65 {
            let (a, b) = (users[rng.below(users.len())], users[rng.skewed(users.len(), 3)]);
            if a != b && follows.insert((a, b)) {
                log.push(Envelope::new(
                    Event::from(UserFollowed { follower_id: a, followee_id: b }),
                    1,
                    Metadata::system(),
                ));
            }
        } else if roll < 65 {
            let author = users[rng.skewed(users.len(), 2)];
            let post = PostId::new();
            let text = format!("post {} of a synthetic log, about as long as a short post usually is", posts.len());
            log.push(Envelope::new(
                Event::from(PostCreated { post_id: post, author_id: author, text }),
                1,
                Metadata::system(),
            ));
            posts.push((post, author, 1));
        } else if roll < 90 {
            let (post, author, _) = posts[rng.skewed(posts.len(), 2)];
            let user = users[rng.below(users.len())];
            if likes.insert((post, user)) {
                log.push(Envelope::new(
                    Event::from(PostLiked { post_id: post, user_id: user, post_author_id: author }),
                    1,
                    Metadata::system(),
                ));
            }
        } else {
            let i = rng.skewed(posts.len(), 2);
            let (post, author, version) = posts[i];
            posts[i].2 = version + 1;
            let by = users[rng.below(users.len())];
            let e = CommentAdded {
                comment_id: CommentId::new(),
                post_id: post,
                author_id: by,
                post_author_id: author,
                text: "a comment".into(),
            };
            log.push(Envelope::new(Event::from(e), version + 1, Metadata::system()));
        }
    }
    (log, users)
}

async fn produce(brokers: &str, topics: &Topics, log: &[Envelope]) -> anyhow::Result<f64> {
    let producer: FutureProducer = agora_platform::kafka::producer_config(brokers, Duration::from_secs(60))
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()?;
    let started = Instant::now();
    let sends = log.iter().map(|e| {
        let producer = &producer;
        async move {
            let topic = topics.of(e.aggregate_type());
            let key = partition_key(e.aggregate_id());
            let payload = e.to_json()?;
            producer
                .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(60))
                .await
                .map_err(|(err, _)| anyhow::anyhow!("producing: {err}"))?;
            Ok::<_, anyhow::Error>(())
        }
    });
    use futures::StreamExt;
    let mut stream = futures::stream::iter(sends).buffer_unordered(10_000);
    while let Some(r) = stream.next().await {
        r?;
    }
    Ok(log.len() as f64 / started.elapsed().as_secs_f64())
}

fn env_for(a: &Args, prefix: &str, db: &str, group: &str, extra: &[(String, String)]) -> Env {
    let mut env = Env::from_pairs([
        ("AGORA_KAFKA_BROKERS", a.kafka.clone()),
        ("AGORA_MONGO_URI", a.mongo.clone()),
        ("AGORA_REDIS_URL", a.redis.clone()),
        ("AGORA_TOPIC_PREFIX", prefix.to_owned()),
        ("AGORA_REDIS_PREFIX", prefix.to_owned()),
        ("AGORA_MONGO_DB", db.to_owned()),
        ("AGORA_PROJECTOR_GROUP", group.to_owned()),
        ("AGORA_PROJECTOR_ADDR", "127.0.0.1:0".to_owned()),
        ("AGORA_QUERY_ADDR", "127.0.0.1:0".to_owned()),
        ("AGORA_JWT_SECRET", format!("bench-secret-{prefix}")),
        ("AGORA_RATE_LIMIT_QUERIES", "off".to_owned()),
        ("AGORA_LOG", "warn".to_owned()),
    ]);
    for (k, v) in extra {
        env.set(k.clone(), v.clone());
    }
    env
}

/// Events the group has applied and committed so far, and what is left.
async fn progress(a: &Args, topics: &Topics, group: &str) -> anyhow::Result<(i64, i64)> {
    let (brokers, topics, group) = (a.kafka.clone(), topics.event_topics(), group.to_owned());
    let rows = tokio::task::spawn_blocking(move || {
        agora_platform::kafka::lag::group_lag(&brokers, &group, &topics, Duration::from_secs(10))
    })
    .await??;
    let left: i64 = rows.iter().map(|r| r.lag()).sum();
    let total: i64 = rows.iter().map(|r| r.end - r.start).sum();
    Ok((total - left, left))
}

struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_projector(env: &Env) -> anyhow::Result<Running> {
    let app = agora_projector::Application::build(agora_projector::ProjectorConfig::from_env(env)?).await?;
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = app.run(stopped).await {
            eprintln!("projector: {e:#}");
        }
    });
    Ok(Running { stop, task })
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

async fn bulk_insert(mongo: &str, docs: usize) -> anyhow::Result<f64> {
    let client = mongodb::Client::with_uri_str(mongo).await?;
    let db = client.database(&format!("bench_bulk_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let coll = db.collection::<Document>("docs");
    let started = Instant::now();
    let written = agora_loadtests::load::baselines::insert_feed_entries(&coll, docs).await?;
    let rate = written as f64 / started.elapsed().as_secs_f64();
    db.drop().await?;
    Ok(rate)
}

/// Closed-loop `GET /v1/feed` for `seconds` by `concurrency` workers over `tokens`.
async fn feed_reads(
    base: &str,
    tokens: &[String],
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (http, ok, failed, tokens, url) =
            (http.clone(), ok.clone(), failed.clone(), tokens.to_vec(), format!("{base}/v1/feed"));
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                let good = match http.get(&url).bearer_auth(&tokens[i % tokens.len()]).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                i += 1;
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(h) = hist.as_mut() {
                        let _ = h.record(t.elapsed().as_micros() as u64);
                    }
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            hist
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for w in workers {
        if let Some(h) = w.await? {
            all.add(h)?;
        }
    }
    let ok = ok.load(Ordering::Relaxed);
    Ok(serde_json::json!({
        "reads_per_sec": ok as f64 / seconds as f64,
        "ok": ok,
        "failed": failed.load(Ordering::Relaxed),
        "p50_ms": all.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": all.value_at_quantile(0.99) as f64 / 1000.0,
    }))
}

/// Readers with a full feed: users who follow the most (they are the followers of the
/// log's power-law head).
async fn readers(mongo: &str, db: &str, users: &[UserId], n: usize) -> anyhow::Result<Vec<UserId>> {
    let client = mongodb::Client::with_uri_str(mongo).await?;
    let counters = client.database(db).collection::<Document>("user_counters");
    let mut scored = Vec::new();
    for u in users.iter().take(2_000) {
        let shards: Vec<Document> = {
            use futures::TryStreamExt;
            counters.find(doc! {"owner_id": u.to_string()}).await?.try_collect().await?
        };
        let following: i64 = shards
            .iter()
            .map(|d| d.get_i64("following").or_else(|_| d.get_i32("following").map(i64::from)).unwrap_or(0))
            .sum();
        scored.push((following, *u));
    }
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(scored.into_iter().take(n).map(|(_, u)| u).collect())
}

async fn query_api(env: &Env) -> anyhow::Result<(String, Running)> {
    let app = agora_query_api::Application::build(agora_query_api::QueryConfig::from_env(env)?).await?;
    let url = format!("http://127.0.0.1:{}", app.port());
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = app.run(stopped).await {
            eprintln!("query-api: {e}");
        }
    });
    Ok((url, Running { stop, task }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let stamp = chrono_free_stamp();
    let prefix = format!("benchread{stamp}");
    let topics = Topics::new(prefix.clone());
    eprintln!("[bench-read] generating {} events", a.events);
    let (log, users) = synthetic_log(a.events);
    agora_platform::kafka::ensure_topics(&a.kafka, &topics.all(), 12).await.context("creating topics")?;
    let produced_per_sec = produce(&a.kafka, &topics, &log).await?;
    eprintln!("[bench-read] produced {} events at {produced_per_sec:.0}/s", log.len());

    // Catch-up with batching.
    let batched_db = format!("{prefix}_batched");
    let batched_env = env_for(&a, &prefix, &batched_db, &format!("{prefix}-batched"), &[]);
    let started = Instant::now();
    let projector = start_projector(&batched_env).await?;
    let mut last = Instant::now();
    // (seconds since the start, events applied): to time the batched projector over exactly
    // the head of the log the one-write-per-event run gets through.
    let mut samples: Vec<(f64, i64)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (done, left) = progress(&a, &topics, &format!("{prefix}-batched")).await?;
        samples.push((started.elapsed().as_secs_f64(), done));
        if last.elapsed() >= Duration::from_secs(10) {
            last = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprintln!("[bench-read] batched: {done} applied, {left} left, {rate:.0}/s");
        }
        if left == 0 && done > 0 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "catch-up did not finish within an hour");
    }
    let catch_up = started.elapsed();
    projector.stop().await;
    let batched_per_sec = log.len() as f64 / catch_up.as_secs_f64();
    eprintln!("[bench-read] batched catch-up: {:.1} s, {batched_per_sec:.0} events/s", catch_up.as_secs_f64());

    // One write per event, for a bounded time on the same log.
    let single_env = env_for(
        &a,
        &prefix,
        &format!("{prefix}_single"),
        &format!("{prefix}-single"),
        &[("AGORA_PROJECTOR_MAX_BATCH".into(), "1".into())],
    );
    let projector = start_projector(&single_env).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.single_seconds)).await;
    let (single_done, _) = progress(&a, &topics, &format!("{prefix}-single")).await?;
    let single_elapsed = started.elapsed();
    projector.stop().await;
    let single_per_sec = single_done as f64 / single_elapsed.as_secs_f64();
    // The same events, batched: the log's head is cheaper than its tail (registrations first,
    // fan-out growing with the follow graph), so the whole catch-up is no fair comparison.
    let batched_head_secs = samples.iter().find(|(_, done)| *done >= single_done).map(|(t, _)| *t);
    let batched_head_per_sec = batched_head_secs.map(|t| single_done as f64 / t).unwrap_or(batched_per_sec);
    eprintln!(
        "[bench-read] one write per event: {single_done} in {:.0} s, {single_per_sec:.0}/s",
        single_elapsed.as_secs_f64()
    );

    let bulk_per_sec = bulk_insert(&a.mongo, a.bulk_docs).await?;
    eprintln!("[bench-read] raw bulk insert: {bulk_per_sec:.0} docs/s");

    // Feed reads on the batched database.
    let readers = readers(&a.mongo, &batched_db, &users, 200).await?;
    let keys = agora_platform::auth::JwtKeys::new(
        &secrecy::SecretString::from(format!("bench-secret-{prefix}")),
        Duration::from_secs(3600),
    )?;
    let tokens: Vec<String> = readers.iter().filter_map(|u| keys.issue(*u).ok()).collect();
    anyhow::ensure!(!tokens.is_empty(), "no readers");
    let (url, api) = query_api(&batched_env).await?;
    // Warm the caches once per reader, then measure.
    feed_reads(&url, &tokens, a.concurrency.min(tokens.len()), 2).await?;
    let cached = feed_reads(&url, &tokens, a.concurrency, a.read_seconds).await?;
    api.stop().await;
    let off: Vec<(String, String)> = ["PROFILE", "FOLLOWERS", "FEED", "UNREAD", "POST"]
        .iter()
        .map(|k| (format!("AGORA_CACHE_TTL_{k}_SECS"), "0".to_owned()))
        .collect();
    let uncached_env = env_for(&a, &prefix, &batched_db, &format!("{prefix}-batched"), &off);
    let (url, api) = query_api(&uncached_env).await?;
    let uncached = feed_reads(&url, &tokens, a.concurrency, a.read_seconds).await?;
    api.stop().await;

    let result = serde_json::json!({
        "events": log.len(),
        "users": users.len(),
        "kafka_produce_events_per_sec": produced_per_sec,
        "projector": {
            "batched_events_per_sec": batched_per_sec,
            "catch_up_seconds": catch_up.as_secs_f64(),
            "one_write_per_event_events_per_sec": single_per_sec,
            "one_write_per_event_sample_events": single_done,
            "batched_same_events_per_sec": batched_head_per_sec,
            "batching_ratio": batched_head_per_sec / single_per_sec.max(0.001),
        },
        "store": { "bulk_insert_docs_per_sec": bulk_per_sec, "batched_to_bulk_ratio": batched_per_sec / bulk_per_sec },
        "feed_reads": { "readers": tokens.len(), "concurrency": a.concurrency, "cached": cached, "uncached": uncached },
        "topic_prefix": prefix,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    let client = mongodb::Client::with_uri_str(&a.mongo).await?;
    for db in [batched_db, format!("{prefix}_single")] {
        client.database(&db).drop().await?;
    }
    Ok(())
}

/// Seconds since the epoch, for unique names.
fn chrono_free_stamp() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
