//! Accepted `POST /v1/posts` per second, then p50/p99 latency at half that rate.
//!
//! Phase 1 (capacity): `--concurrency` closed-loop workers post as fast as answers come, for
//! `--seconds`; the figure is 202 answers per second. Phase 2 (latency): an open-loop schedule
//! at half the capacity for `--seconds`: each request has a planned start time and its latency
//! is measured from that time, so a slow server cannot slow the load and hide its latency.
//! Prints one JSON object.
//!
//! `agora-bench-posts [--command URL] [--users N] [--concurrency N] [--seconds N] [--text-bytes N]`

use anyhow::Context;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    command: String,
    users: usize,
    concurrency: usize,
    seconds: u64,
    text_bytes: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a =
        Args { command: "http://127.0.0.1:8081".into(), users: 200, concurrency: 64, seconds: 15, text_bytes: 280 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--command" => a.command = value,
            "--users" => a.users = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--seconds" => a.seconds = value.parse::<u64>()?.clamp(1, 300),
            "--text-bytes" => a.text_bytes = value.parse::<usize>()?.clamp(1, 2000),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    agora_loadtests::require_loopback(&a.command)?;
    Ok(a)
}

async fn register(http: &reqwest::Client, base: &str, i: usize) -> anyhow::Result<String> {
    let handle = format!("bench_{}_{i}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let res = http
        .post(format!("{base}/v1/auth/register"))
        .json(&serde_json::json!({"handle": handle, "display_name": "bench", "password": "bench-password"}))
        .send()
        .await?;
    anyhow::ensure!(res.status() == 201, "register: {}", res.status());
    let body: serde_json::Value = res.json().await?;
    body["token"].as_str().map(str::to_owned).context("no token")
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: &serde_json::Value) -> bool {
    match http.post(url).bearer_auth(token).json(body).send().await {
        Ok(r) => r.status() == 202,
        Err(_) => false,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .timeout(Duration::from_secs(10))
        .build()?;
    eprintln!("registering {} users", a.users);
    // The contract limits auth per client IP (300/min by default): register from one loopback
    // source address per 200 users.
    let registrars = (0..a.users.div_ceil(200))
        .map(|k| {
            let source = std::net::IpAddr::from([127, 0, 0, 10 + (k % 200) as u8]);
            reqwest::Client::builder().local_address(source).timeout(Duration::from_secs(30)).build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut tokens = Vec::with_capacity(a.users);
    for chunk in (0..a.users).collect::<Vec<_>>().chunks(16) {
        let regs = chunk.iter().map(|&i| register(&registrars[i / 200], &a.command, i));
        for t in futures::future::join_all(regs).await {
            tokens.push(t?);
        }
    }
    let tokens = Arc::new(tokens);
    let url = format!("{}/v1/posts", a.command);
    // Random hex, so the producer's lz4 compression gets no unfair help from the payload.
    let text: String = (0..a.text_bytes.div_ceil(32)).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    let body = Arc::new(serde_json::json!({"text": text[..a.text_bytes].to_owned()}));

    eprintln!("phase 1: {} closed-loop workers for {} s", a.concurrency, a.seconds);
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|w| {
            let (http, url, body, tokens) = (http.clone(), url.clone(), body.clone(), tokens.clone());
            let (accepted, failed) = (accepted.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < deadline {
                    let ok = post(&http, &url, &tokens[i % tokens.len()], &body).await;
                    if ok { &accepted } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    i += a.concurrency;
                }
            })
        })
        .collect();
    futures::future::join_all(workers).await;
    let capacity = accepted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    let rate = (capacity / 2.0).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * a.seconds as f64) as u64;
    eprintln!("phase 2: open loop at {rate:.0}/s for {} s ({total} requests)", a.seconds);
    let histogram = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let errors = Arc::new(AtomicU64::new(0));
    let origin = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let planned = origin + interval.mul_f64(n as f64);
        tokio::time::sleep_until(planned).await;
        let (http, url, body, tokens) = (http.clone(), url.clone(), body.clone(), tokens.clone());
        let (histogram, errors) = (histogram.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let ok = post(&http, &url, &tokens[n as usize % tokens.len()], &body).await;
            let micros = planned.elapsed().as_micros() as u64;
            if ok {
                if let Ok(mut h) = histogram.lock() {
                    let _ = h.record(micros.max(1));
                }
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    futures::future::join_all(tasks).await;
    let h = histogram.lock().map_err(|_| anyhow::anyhow!("histogram lock"))?.clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let result = serde_json::json!({
        "capacity_posts_per_s": capacity.round(),
        "phase1_failed": failed.load(Ordering::Relaxed),
        "latency_rate_per_s": rate.round(),
        "latency_ms": {"p50": ms(0.50), "p99": ms(0.99), "p999": ms(0.999), "max": h.max() as f64 / 1000.0},
        "phase2_errors": errors.load(Ordering::Relaxed),
        "phase2_requests": total,
        "text_bytes": a.text_bytes,
        "concurrency": a.concurrency,
        "users": a.users,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
