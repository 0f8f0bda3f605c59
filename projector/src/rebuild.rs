//! `agora-projector rebuild`: the read models rebuilt from the log into a fresh database
//! while the current one keeps serving, then switched to.
//!
//! The rebuild runs the projector's own worker in a consumer group of its own (so it reads
//! the log from the start, and the live projectors are not disturbed) into a new database
//! (see `generation`). Once its group has no lag it switches the active generation: query-api
//! processes swap their database handle on their next poll (in-flight reads finish on the
//! old one, which is still whole, so no request fails), live projectors leave their old
//! group and carry on in the rebuild's group from the offsets it committed, and the cache
//! epoch is bumped so nothing cached from the old database is served. The old database is
//! left for the operator to drop.

use crate::config::ProjectorConfig;
use crate::generation::{self, Generation};
use crate::readmodel::{self, Store};
use crate::worker::Worker;
use agora_platform::kafka::lag::{PartitionLag, group_lag};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const USAGE: &str = "usage: agora-projector rebuild [--no-switch]
  Projects the whole event log into a fresh database while the current one keeps serving,
  then makes it the one served (unless --no-switch). Progress goes to stderr.";

/// Events the rebuild may still have to project when it switches: under steady traffic its
/// committed offsets never quite reach the log's end, and what is left it projects within
/// the next poll (a consistency token waits for it).
const CAUGHT_UP: i64 = 50;

/// What a rebuild does once it has caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildOptions {
    /// Make the rebuilt database the one served.
    pub switch: bool,
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct Report {
    pub previous: Generation,
    pub rebuilt: Generation,
    pub switched: bool,
    /// Events read from the log.
    pub events: i64,
    pub elapsed: Duration,
}

/// Parses the words after `rebuild`; `None` asks for the usage text.
pub fn parse(args: &[&str]) -> Result<Option<RebuildOptions>, String> {
    let mut options = RebuildOptions { switch: true };
    for a in args {
        match *a {
            "--no-switch" => options.switch = false,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(Some(options))
}

/// Entry point of the `rebuild` subcommand; `args` are the words after `rebuild`.
pub async fn main(config: &ProjectorConfig, args: &[&str]) -> anyhow::Result<()> {
    let options = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    agora_platform::telemetry::init_tracing(&config.common.log_filter, config.common.log_format);
    let report = run(config, options).await?;
    let rate = report.events as f64 / report.elapsed.as_secs_f64().max(0.001);
    eprintln!(
        "rebuilt {} events into {} in {:.1} s ({rate:.0} events/s)",
        report.events,
        report.rebuilt.db,
        report.elapsed.as_secs_f64()
    );
    if report.switched {
        eprintln!(
            "now serving {} (group {}); the previous database {} can be dropped once no process reads it",
            report.rebuilt.db, report.rebuilt.group, report.previous.db
        );
    } else {
        eprintln!("not switched (--no-switch): still serving {}", report.previous.db);
    }
    Ok(())
}

/// Rebuilds, showing progress on stderr, and switches if `options` says so.
pub async fn run(config: &ProjectorConfig, options: RebuildOptions) -> anyhow::Result<Report> {
    let common = &config.common;
    let started = Instant::now();
    let base = agora_platform::mongo::connect(common, &common.mongo_db).await.context("configuring mongodb")?;
    let client = base.client().clone();
    let previous = generation::active(&client, &common.mongo_db, &config.group_id)
        .await
        .context("reading the active generation")?;
    let rebuilt = Generation::next(&common.mongo_db, &config.group_id, chrono::Utc::now().timestamp_millis());
    let db = generation::database(&client, &rebuilt);
    readmodel::ensure_indexes(&db).await.context("creating the indexes of the new database")?;
    let redis = agora_platform::redis::connect(&common.redis_url, common.ready_timeout).context("configuring redis")?;
    let cache = agora_platform::cache::Cache::new(redis, &common.redis_prefix);
    let worker = Worker::new(
        &common.kafka_brokers,
        &rebuilt.group,
        common.topics(),
        Store::new(&db),
        cache.clone(),
        config.feeds,
        config.max_batch,
    )
    .context("creating the kafka consumer")?;
    tracing::info!(db = %rebuilt.db, group = %rebuilt.group, "rebuilding");
    let (stop, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(worker.run(stop_rx));

    let bar = progress_bar();
    let mut last_line = Instant::now();
    let events = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if worker.is_finished() {
            anyhow::bail!("the rebuild's worker stopped unexpectedly");
        }
        let rows = lag_of(config, &rebuilt.group).await?;
        let (total, left) = totals(&rows);
        bar.set_length(total as u64);
        bar.set_position((total - left) as u64);
        if bar.is_hidden() && last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!("rebuild: {} of {total} events ({left} to go)", total - left);
        }
        if left <= CAUGHT_UP {
            break total;
        }
    };
    bar.finish_and_clear();
    if options.switch {
        generation::switch(&client, &common.mongo_db, &rebuilt).await.context("switching the active generation")?;
        // Answers cached from the previous database must not outlive the switch.
        if let Err(e) = cache.bump_epoch().await {
            tracing::warn!(error = %e, "bumping the cache epoch failed; cached answers expire by their TTLs");
        }
    }
    // Give live projectors a moment to join the new group before this member leaves it.
    tokio::time::sleep(if options.switch { generation::POLL_EVERY * 2 } else { Duration::ZERO }).await;
    let _ = stop.send(true);
    let _ = worker.await;
    Ok(Report { previous, rebuilt, switched: options.switch, events, elapsed: started.elapsed() })
}

async fn lag_of(config: &ProjectorConfig, group: &str) -> anyhow::Result<Vec<PartitionLag>> {
    let brokers = config.common.kafka_brokers.clone();
    let topics = config.common.topics().event_topics();
    let group = group.to_owned();
    let timeout = config.common.ready_timeout.max(Duration::from_secs(5));
    tokio::task::spawn_blocking(move || group_lag(&brokers, &group, &topics, timeout))
        .await?
        .context("reading the rebuild group's offsets")
}

/// (events in the log, events still to project).
pub fn totals(rows: &[PartitionLag]) -> (i64, i64) {
    rows.iter().fold((0, 0), |(total, left), r| (total + (r.end - r.start).max(0), left + r.lag()))
}

fn progress_bar() -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(0), target);
    if let Ok(style) = ProgressStyle::with_template(
        "rebuild {wide_bar} {human_pos}/{human_len} events  {per_sec}  ETA {eta}  ({elapsed})",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: i64, committed: Option<i64>, end: i64) -> PartitionLag {
        PartitionLag { topic: "t".into(), partition: 0, committed, start, end }
    }

    #[test]
    fn progress_counts_every_retained_event_and_what_the_group_has_not_committed() {
        let rows = [row(0, None, 10), row(5, Some(8), 20), row(0, Some(3), 3)];
        assert_eq!(totals(&rows), (10 + 15 + 3, 10 + 12));
    }

    #[test]
    fn options_switch_by_default_and_reject_unknown_words() {
        assert_eq!(parse(&[]), Ok(Some(RebuildOptions { switch: true })));
        assert_eq!(parse(&["--no-switch"]), Ok(Some(RebuildOptions { switch: false })));
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--drop"]).is_err());
    }
}
