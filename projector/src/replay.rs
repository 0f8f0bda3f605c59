//! `agora-projector replay`: history for analysts, streamed from the event log.
//!
//! Every selected partition is read from the offset where `--from` starts (looked up by time)
//! to its end as it was when the replay started, so a replay ends even while events keep
//! coming. Records are decoded and upcast to the current schema, selected, redacted and
//! rendered as they are read; a k-way merge puts them in `occurred_at` order across
//! partitions, holding only a short window of each.
//!
//! - [`args`]: the options and their parsing; [`USAGE`].
//! - [`render`]: decoding, redaction, NDJSON and CSV lines ([`read_csv`] reads CSV back).
//! - [`merge`]: the ordered merge of partitions.
//! - [`kafka`]: spans of offsets to read, and a source per partition.
//! - [`run`]: all of it, to any writer; [`main`]: the subcommand.

pub mod args;
pub mod kafka;
pub mod merge;
pub mod render;

pub use args::{Format, Options, Output, Parsed, ProgressMode, Selection, USAGE, UsageError, parse, parse_time};
pub use render::{CSV_HEADER, CsvRow, REDACTED_FIELDS, read_csv};

use crate::config::ProjectorConfig;
use agora_schemas::upcast::Upcasters;
use anyhow::Context;
use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long a partition may deliver nothing before the replay gives up.
pub const STALL: Duration = Duration::from_secs(30);
/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Records between two progress updates.
const TICK_EVERY: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {0} does not exist (is AGORA_TOPIC_PREFIX right?)")]
    MissingTopic(String),
    #[error(
        "{topic}[{partition}] gave nothing for {waited:?} at offset {offset} (reading up to {end}); \
         the last kafka error: {last_error}"
    )]
    Stalled { topic: String, partition: i32, offset: i64, end: i64, waited: Duration, last_error: String },
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
    #[error("{0}")]
    Internal(&'static str),
}

/// What a replay did; its `Display` is the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Partitions with anything to read.
    pub partitions: usize,
    /// Offsets in the spans read: the progress total.
    pub offsets_to_read: u64,
    /// Records read.
    pub read: u64,
    /// Lines handed to the output (if it closed early, the last of them may not have got there).
    pub written: u64,
    /// Records skipped because they are not decodable events.
    pub undecodable: u64,
    /// The first few of them: position and reason.
    pub undecodable_examples: Vec<String>,
    /// Events read that the selection leaves out.
    pub filtered_out: u64,
    /// Events written after a later one: they reached the log more than `--slack` late.
    pub out_of_order: u64,
    /// The output was closed before the end (a pipe to `head`, say).
    pub stopped_early: bool,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replay: {} events written, {} skipped as undecodable, {} filtered out; {} of {} offsets read \
             from {} partitions in {:.1} s",
            self.written,
            self.undecodable,
            self.filtered_out,
            self.read,
            self.offsets_to_read,
            self.partitions,
            self.elapsed.as_secs_f64()
        )?;
        if self.out_of_order > 0 {
            write!(f, "; {} out of order (reached the log more than --slack late)", self.out_of_order)?;
        }
        if self.stopped_early {
            write!(f, "; stopped early: the output was closed")?;
        }
        Ok(())
    }
}

/// Progress on stderr: a bar on a terminal, otherwise a line every [`PLAIN_EVERY`].
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: Option<Cell<Instant>>,
    total: u64,
    started: Instant,
}

impl Progress {
    fn new(mode: ProgressMode, total: u64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (bar, plain) = match mode {
            ProgressMode::Off => (None, false),
            ProgressMode::Auto if terminal => (Some(Self::bar(total)), false),
            ProgressMode::Auto | ProgressMode::Plain => (None, true),
        };
        let started = Instant::now();
        Self { bar, plain: plain.then(|| Cell::new(started)), total, started }
    }

    fn bar(total: u64) -> indicatif::ProgressBar {
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} events read, {rate}, eta {eta} · {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} events/s", state.per_sec());
        })
        .progress_chars("=> ");
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr())
            .with_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    fn update(&self, read: u64, written: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(read);
            bar.set_message(format!("{written} written"));
        }
        if let Some(last) = &self.plain
            && last.get().elapsed() >= PLAIN_EVERY
        {
            last.set(Instant::now());
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = read as f64 / secs;
            let eta = if rate > 0.0 { (self.total.saturating_sub(read)) as f64 / rate } else { 0.0 };
            let percent = if self.total > 0 { read as f64 * 100.0 / self.total as f64 } else { 100.0 };
            eprintln!(
                "replay: {read}/{} events read ({percent:.1}%), {written} written, {rate:.0}/s, eta {eta:.0} s",
                self.total
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Replays the log as `options` say, writing to `out` (blocking: run it off the async
/// runtime). `options.output` is not looked at; [`main`] opens it.
pub fn run<W: Write>(config: &ProjectorConfig, options: &Options, out: W) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let topics = options.selection.topics(&config.common.topics());
    let timeout = config.common.ready_timeout.max(Duration::from_secs(5));
    let consumer = kafka::reader(&config.common.kafka_brokers)
        .map_err(|source| ReplayError::Kafka { context: "creating a reader", source })?;
    let spans = kafka::spans(&consumer, &topics, &options.selection, options.slack, timeout)?;
    let offsets_to_read: u64 = spans.iter().map(kafka::Span::len).sum();
    let sources = kafka::open(consumer, &spans, STALL)?;
    let partitions = sources.len();

    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    let mut renderer = render::Renderer::new(options.format);
    let header = renderer.header().map_err(|e| ReplayError::Write(e.into()))?;
    let mut stopped_early = false;
    if let Err(e) = out.write_all(&header) {
        stopped_early = closed(e)?;
    }

    let progress = Progress::new(options.progress, offsets_to_read);
    let (read, written) = (Cell::new(0u64), Cell::new(0u64));
    let upcasters = Upcasters::current();
    let process = |position: render::LogPosition<'_>, value: Option<&[u8]>| {
        read.set(read.get() + 1);
        if read.get().is_multiple_of(TICK_EVERY) {
            progress.update(read.get(), written.get());
        }
        render::process(value, position, options, &upcasters, &mut renderer)
    };
    let mut merge = merge::Merge::new(sources, options.slack, process);
    while !stopped_early && let Some((_, line)) = merge.next_line()? {
        if let Err(e) = out.write_all(&line) {
            stopped_early = closed(e)?;
            break;
        }
        written.set(written.get() + 1);
    }
    if !stopped_early && let Err(e) = out.flush() {
        stopped_early = closed(e)?;
    }
    progress.update(read.get(), written.get());
    progress.finish();
    let counts = merge.counts().clone();
    Ok(Summary {
        partitions,
        offsets_to_read,
        read: counts.read,
        written: written.get(),
        undecodable: counts.undecodable,
        undecodable_examples: counts.undecodable_examples,
        filtered_out: counts.filtered_out,
        out_of_order: counts.out_of_order,
        stopped_early,
        elapsed: started.elapsed(),
    })
}

/// A closed pipe ends the replay quietly (`replay | head`); any other write error is one.
fn closed(e: std::io::Error) -> Result<bool, ReplayError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(true) } else { Err(ReplayError::Write(e)) }
}

/// `<path>.partial`: where a file is written until it is complete.
pub fn partial_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// Entry point of the `replay` subcommand; `args` are the words after `replay`. A usage error
/// exits with code 2; the summary goes to stderr, like progress: stdout carries only events.
pub async fn main(config: &ProjectorConfig, args: &[&str]) -> anyhow::Result<()> {
    let options = match parse(args) {
        Ok(Parsed::Help) => {
            // `replay --help | head` closes stdout early; that is no error.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return Ok(());
        }
        Ok(Parsed::Run(options)) => options,
        Err(e) => {
            eprintln!("agora-projector replay: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let config = config.clone();
    let summary = tokio::task::spawn_blocking(move || write_output(&config, &options)).await??;
    for example in &summary.undecodable_examples {
        eprintln!("replay: skipped {example}");
    }
    eprintln!("{summary}");
    Ok(())
}

fn write_output(config: &ProjectorConfig, options: &Options) -> anyhow::Result<Summary> {
    let path = match &options.output {
        Output::Stdout => return Ok(run(config, options, std::io::stdout().lock())?),
        Output::File(path) => path,
    };
    // A device or a pipe (`--output /dev/null`) is written as it is: renaming over it would
    // replace it.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let file = std::fs::File::create(path).with_context(|| format!("opening {}", path.display()))?;
        return Ok(run(config, options, file)?);
    }
    let partial = partial_path(path);
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    match run(config, options, &file).and_then(|s| file.sync_all().map(|()| s).map_err(ReplayError::Write)) {
        Ok(summary) => {
            std::fs::rename(&partial, path)
                .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
            Ok(summary)
        }
        Err(e) => {
            // Half a history looks like a whole one; leave none.
            let _ = std::fs::remove_file(&partial);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            partitions: 21,
            offsets_to_read: 120,
            read: 120,
            written: 100,
            undecodable: 2,
            undecodable_examples: vec![],
            filtered_out: 18,
            out_of_order: 0,
            stopped_early: false,
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn the_summary_line_names_every_count() {
        let line = summary().to_string();
        assert_eq!(
            line,
            "replay: 100 events written, 2 skipped as undecodable, 18 filtered out; 120 of 120 offsets read \
             from 21 partitions in 1.5 s"
        );
        let late = Summary { out_of_order: 3, stopped_early: true, ..summary() }.to_string();
        assert!(late.contains("3 out of order") && late.ends_with("stopped early: the output was closed"), "{late}");
    }

    #[test]
    fn only_a_closed_pipe_is_a_quiet_end() {
        assert!(matches!(closed(std::io::ErrorKind::BrokenPipe.into()), Ok(true)));
        assert!(matches!(closed(std::io::ErrorKind::StorageFull.into()), Err(ReplayError::Write(_))));
    }

    #[test]
    fn a_file_is_written_beside_itself_until_complete() {
        assert_eq!(partial_path(std::path::Path::new("/tmp/h.ndjson")), std::path::Path::new("/tmp/h.ndjson.partial"));
    }
}
