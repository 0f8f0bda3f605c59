//! The words after `agora-projector replay`, parsed into [`Options`] or a [`UsageError`].

use agora_schemas::aggregate::Topics;
use agora_schemas::{AggregateType, Event, RawEnvelope};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

pub const USAGE: &str = "\
usage: agora-projector replay [options]

Streams the event log, oldest occurred_at first, as NDJSON (one event per line: the envelope
upcast to the current schema version, plus its log position) or CSV. Reads every partition up
to its end at the start, without joining or committing any consumer group.

  --from <time>               only events that occurred at or after <time>
  --to <time>                 only events that occurred before <time>
                              <time>: RFC 3339 (2026-01-01T12:00:00Z), or a date (2026-01-01)
                              meaning midnight UTC
  --type <type>[,<type>...]   only these event types, e.g. post.created (repeatable)
  --aggregate <uuid>[,...]    only events of these aggregates (repeatable); a user's id is also
                              the id of the user's inbox
  --aggregate-type <a>[,...]  only these aggregates' topics: users, follows, posts, likes,
                              conversations, games, inbox (user, follow, ... also accepted)
  --format ndjson|csv         default ndjson
  --output <path>|-           default - (stdout); a file is written as <path>.partial and
                              renamed to <path> once complete
  --include-message-text      keep the text of message.sent events; by default it is null
  --slack <seconds>           the longest an event may take from occurring to reaching the log,
                              clock skew included (default 10): bounds how far around --from and
                              --to the log is read and how long events wait to be put in order
  --quiet                     no progress on stderr (the summary line is still printed)
  -h, --help                  this text";

/// The default of `--slack`.
pub const DEFAULT_SLACK: Duration = Duration::from_secs(10);

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Ndjson,
    /// A header row, then one row per event.
    Csv,
}

/// Where to write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Stdout,
    File(PathBuf),
}

/// Progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A progress bar when stderr is a terminal, otherwise a plain line every few seconds.
    #[default]
    Auto,
    /// A plain line every few seconds.
    Plain,
    /// None.
    Off,
}

/// Which events to write: every condition given must hold; an empty set means any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub event_types: BTreeSet<&'static str>,
    pub aggregates: BTreeSet<Uuid>,
    /// In [`AggregateType::ALL`] order, without repeats.
    pub aggregate_types: Vec<AggregateType>,
}

impl Selection {
    /// Whether an event is selected.
    pub fn accepts(&self, event: &RawEnvelope) -> bool {
        self.from.is_none_or(|from| event.occurred_at >= from)
            && self.to.is_none_or(|to| event.occurred_at < to)
            && (self.event_types.is_empty() || self.event_types.contains(event.event_type.as_str()))
            && (self.aggregates.is_empty() || self.aggregates.contains(&event.aggregate_id))
            && (self.aggregate_types.is_empty() || self.aggregate_types.contains(&event.aggregate_type))
    }

    /// The aggregate types whose topics can hold a selected event.
    pub fn aggregate_types_to_read(&self) -> Vec<AggregateType> {
        AggregateType::ALL
            .into_iter()
            .filter(|a| self.aggregate_types.is_empty() || self.aggregate_types.contains(a))
            .filter(|a| {
                self.event_types.is_empty() || self.event_types.iter().any(|t| aggregate_of_type(t) == Some(*a))
            })
            .collect()
    }

    /// The topics to read, in [`AggregateType::ALL`] order.
    pub fn topics(&self, topics: &Topics) -> Vec<String> {
        self.aggregate_types_to_read().into_iter().map(|a| topics.of(a)).collect()
    }
}

/// Everything `replay` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub selection: Selection,
    pub format: Format,
    /// Where [`super::main`] writes; [`super::run`] writes to the writer it is given.
    pub output: Output,
    /// Keep direct-message text instead of nulling it.
    pub include_message_text: bool,
    pub slack: Duration,
    pub progress: ProgressMode,
}

impl Default for Options {
    /// Every event, NDJSON, to stdout, message text redacted.
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            format: Format::default(),
            output: Output::default(),
            include_message_text: false,
            slack: DEFAULT_SLACK,
            progress: ProgressMode::default(),
        }
    }
}

/// What the arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Options),
}

/// Arguments that do not make a replay; shown with [`USAGE`] and exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{0} takes no value")]
    UnexpectedValue(&'static str),
    #[error("{0} given twice")]
    Repeated(&'static str),
    #[error("{flag} {value:?} is not a time: use RFC 3339 (2026-01-01T12:00:00Z) or a date (2026-01-01)")]
    BadTime { flag: &'static str, value: String },
    #[error("--from {from} is not before --to {to}: the range is empty")]
    EmptyRange { from: String, to: String },
    #[error("unknown event type {given:?}; the event types are: {valid}")]
    UnknownEventType { given: String, valid: String },
    #[error("unknown aggregate type {given:?}; the aggregate types are: {valid}")]
    UnknownAggregateType { given: String, valid: String },
    #[error("event type {event_type} belongs to {aggregate_type}, which --aggregate-type leaves out")]
    TypeOutsideAggregates { event_type: String, aggregate_type: String },
    #[error("--aggregate {0:?} is not a UUID")]
    BadUuid(String),
    #[error("--format {0:?}: use ndjson or csv")]
    BadFormat(String),
    #[error("--slack {0:?}: use a whole number of seconds, 0 to 86400")]
    BadSlack(String),
    #[error("--output needs a path, or - for stdout")]
    EmptyOutput,
}

/// Parses the words after `replay`: `--flag value` or `--flag=value`.
pub fn parse(args: &[&str]) -> Result<Parsed, UsageError> {
    let mut options = Options::default();
    let (mut from, mut to, mut format, mut output, mut slack) = (None, None, None, None, None);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (*word, None),
        };
        // Each flag by its canonical name, so errors can name it.
        let flag: &'static str = match flag {
            "-h" | "--help" => "--help",
            "--from" => "--from",
            "--to" => "--to",
            "--type" => "--type",
            "--aggregate" => "--aggregate",
            "--aggregate-type" => "--aggregate-type",
            "--format" => "--format",
            "--output" => "--output",
            "--include-message-text" => "--include-message-text",
            "--slack" => "--slack",
            "--quiet" => "--quiet",
            _ => return Err(UsageError::UnknownOption((*word).to_owned())),
        };
        if matches!(flag, "--help" | "--include-message-text" | "--quiet") {
            if inline.is_some() {
                return Err(UsageError::UnexpectedValue(flag));
            }
            match flag {
                "--help" => return Ok(Parsed::Help),
                "--include-message-text" => options.include_message_text = true,
                _ => options.progress = ProgressMode::Off,
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            // A following flag is not a value: `--from --to x` is a missing value.
            None => words.next().copied().filter(|v| !v.starts_with("--")).ok_or(UsageError::MissingValue(flag))?,
        };
        match flag {
            "--from" => set_once(&mut from, flag, parse_time_flag(flag, value)?)?,
            "--to" => set_once(&mut to, flag, parse_time_flag(flag, value)?)?,
            "--type" => {
                for t in list(value) {
                    options.selection.event_types.insert(event_type(t)?);
                }
            }
            "--aggregate" => {
                for id in list(value) {
                    let id = Uuid::try_parse(id).map_err(|_| UsageError::BadUuid(id.to_owned()))?;
                    options.selection.aggregates.insert(id);
                }
            }
            "--aggregate-type" => {
                for a in list(value) {
                    let a = aggregate_type(a)?;
                    if !options.selection.aggregate_types.contains(&a) {
                        options.selection.aggregate_types.push(a);
                    }
                }
            }
            "--format" => set_once(&mut format, flag, parse_format(value)?)?,
            "--output" => set_once(&mut output, flag, parse_output(value)?)?,
            _ => set_once(&mut slack, flag, parse_slack(value)?)?,
        }
    }
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(UsageError::EmptyRange { from: f.to_rfc3339(), to: t.to_rfc3339() });
    }
    let selection = &mut options.selection;
    selection.aggregate_types.sort_by_key(|a| AggregateType::ALL.iter().position(|b| b == a));
    if !selection.aggregate_types.is_empty() {
        for t in &selection.event_types {
            if let Some(a) = aggregate_of_type(t).filter(|a| !selection.aggregate_types.contains(a)) {
                return Err(UsageError::TypeOutsideAggregates {
                    event_type: (*t).to_owned(),
                    aggregate_type: a.topic_base().to_owned(),
                });
            }
        }
    }
    selection.from = from;
    selection.to = to;
    options.format = format.unwrap_or_default();
    options.output = output.unwrap_or_default();
    options.slack = slack.unwrap_or(DEFAULT_SLACK);
    Ok(Parsed::Run(options))
}

fn set_once<T>(slot: &mut Option<T>, flag: &'static str, value: T) -> Result<(), UsageError> {
    if slot.replace(value).is_some() { Err(UsageError::Repeated(flag)) } else { Ok(()) }
}

/// The items of a comma-separated value, blanks dropped.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// An RFC 3339 time, or a date meaning midnight UTC.
pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
    })
}

fn parse_time_flag(flag: &'static str, value: &str) -> Result<DateTime<Utc>, UsageError> {
    parse_time(value).ok_or_else(|| UsageError::BadTime { flag, value: value.to_owned() })
}

fn event_type(given: &str) -> Result<&'static str, UsageError> {
    Event::TYPES.iter().map(|(t, _, _)| *t).find(|t| *t == given).ok_or_else(|| UsageError::UnknownEventType {
        given: given.to_owned(),
        valid: Event::TYPES.iter().map(|(t, _, _)| *t).collect::<Vec<_>>().join(", "),
    })
}

fn aggregate_of_type(event_type: &str) -> Option<AggregateType> {
    Event::TYPES.iter().find(|(t, _, _)| *t == event_type).map(|(_, _, a)| *a)
}

fn aggregate_type(given: &str) -> Result<AggregateType, UsageError> {
    AggregateType::ALL.into_iter().find(|a| a.topic_base() == given || a.as_str() == given).ok_or_else(|| {
        UsageError::UnknownAggregateType {
            given: given.to_owned(),
            valid: AggregateType::ALL.iter().map(|a| a.topic_base()).collect::<Vec<_>>().join(", "),
        }
    })
}

fn parse_format(value: &str) -> Result<Format, UsageError> {
    match value {
        "ndjson" | "jsonl" => Ok(Format::Ndjson),
        "csv" => Ok(Format::Csv),
        _ => Err(UsageError::BadFormat(value.to_owned())),
    }
}

fn parse_output(value: &str) -> Result<Output, UsageError> {
    match value {
        "" => Err(UsageError::EmptyOutput),
        "-" => Ok(Output::Stdout),
        path => Ok(Output::File(PathBuf::from(path))),
    }
}

fn parse_slack(value: &str) -> Result<Duration, UsageError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| *s <= 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| UsageError::BadSlack(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{args:?} -> {other:?}"),
        }
    }

    fn err(args: &[&str]) -> UsageError {
        match parse(args) {
            Err(e) => e,
            other => panic!("{args:?} should be a usage error, got {other:?}"),
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, 0).single().unwrap_or_default()
    }

    #[test]
    fn no_arguments_replay_everything_as_redacted_ndjson_to_stdout() {
        let o = run(&[]);
        assert_eq!(o, Options::default());
        assert_eq!(o.format, Format::Ndjson);
        assert_eq!(o.output, Output::Stdout);
        assert!(!o.include_message_text);
        assert_eq!(o.selection.topics(&Topics::new("p")), Topics::new("p").event_topics());
    }

    #[test]
    fn every_option_in_both_spellings() {
        let o = run(&[
            "--from",
            "2026-01-01T12:00:00Z",
            "--to=2026-01-01T13:30:00+01:00",
            "--type",
            "post.created,post.deleted",
            "--type=like.added",
            "--aggregate",
            "0190e5a0-0000-7000-8000-000000000001",
            "--aggregate-type=likes,post",
            "--format",
            "csv",
            "--output",
            "/tmp/x.csv",
            "--include-message-text",
            "--slack=3",
            "--quiet",
        ]);
        assert_eq!(o.selection.from, Some(at(12, 0)));
        assert_eq!(o.selection.to, Some(at(12, 30)), "offsets are converted to UTC");
        assert_eq!(o.selection.event_types, BTreeSet::from(["post.created", "post.deleted", "like.added"]));
        assert_eq!(o.selection.aggregates.len(), 1);
        assert_eq!(o.selection.aggregate_types, vec![AggregateType::Post, AggregateType::Like], "ALL order");
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.output, Output::File("/tmp/x.csv".into()));
        assert!(o.include_message_text);
        assert_eq!(o.slack, Duration::from_secs(3));
        assert_eq!(o.progress, ProgressMode::Off);
        assert_eq!(run(&["--output", "-"]).output, Output::Stdout);
        assert_eq!(parse(&["--quiet", "-h"]), Ok(Parsed::Help));
    }

    #[test]
    fn a_date_is_midnight_utc() {
        assert_eq!(parse_time("2026-01-01"), Some(at(0, 0)));
        assert_eq!(parse_time("2026-01-01T12:00:00.5Z").map(|t| t.timestamp_subsec_millis()), Some(500));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-13-01"), None);
    }

    #[test]
    fn an_unknown_event_type_lists_the_valid_ones() {
        let e = err(&["--type", "post.created,post.creatd"]);
        let text = e.to_string();
        assert!(text.contains("\"post.creatd\""), "{text}");
        for (t, _, _) in Event::TYPES {
            assert!(text.contains(t), "{t} missing from {text}");
        }
        let e = err(&["--aggregate-type", "comments"]).to_string();
        assert!(e.contains("\"comments\"") && e.contains("users, follows, posts"), "{e}");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert_eq!(err(&["--from"]), UsageError::MissingValue("--from"));
        assert_eq!(err(&["--from", "--to", "2026-01-01"]), UsageError::MissingValue("--from"));
        assert!(matches!(err(&["--from", "noon"]), UsageError::BadTime { flag: "--from", .. }));
        assert!(matches!(err(&["--from", "2026-01-02", "--to", "2026-01-01"]), UsageError::EmptyRange { .. }));
        assert!(matches!(err(&["--from", "2026-01-01", "--to", "2026-01-01"]), UsageError::EmptyRange { .. }));
        assert_eq!(err(&["--from", "2026-01-01", "--from", "2026-01-02"]), UsageError::Repeated("--from"));
        assert_eq!(err(&["--aggregate", "42"]), UsageError::BadUuid("42".into()));
        assert_eq!(err(&["--format", "xml"]), UsageError::BadFormat("xml".into()));
        assert_eq!(err(&["--slack", "-1"]), UsageError::BadSlack("-1".into()));
        assert_eq!(err(&["--slack", "1.5"]), UsageError::BadSlack("1.5".into()));
        assert_eq!(err(&["--output="]), UsageError::EmptyOutput);
        assert_eq!(err(&["--quiet=yes"]), UsageError::UnexpectedValue("--quiet"));
        assert_eq!(err(&["--verbose"]), UsageError::UnknownOption("--verbose".into()));
        assert_eq!(err(&["posts"]), UsageError::UnknownOption("posts".into()));
        assert!(matches!(
            err(&["--type", "post.created", "--aggregate-type", "users"]),
            UsageError::TypeOutsideAggregates { .. }
        ));
    }

    #[test]
    fn types_and_aggregate_types_narrow_the_topics_read() {
        let topics = Topics::new("p");
        assert_eq!(run(&["--type", "post.created,like.added"]).selection.topics(&topics), ["p.posts", "p.likes"]);
        assert_eq!(run(&["--aggregate-type", "inbox,users"]).selection.topics(&topics), ["p.users", "p.inbox"]);
        assert_eq!(
            run(&["--aggregate-type", "posts,games", "--type", "game.accepted"]).selection.topics(&topics),
            ["p.games"]
        );
        // An aggregate id alone does not say which topic holds it (a user id is also an inbox id).
        assert_eq!(
            run(&["--aggregate", "0190e5a0-0000-7000-8000-000000000001"]).selection.topics(&topics).len(),
            AggregateType::ALL.len()
        );
    }

    #[test]
    fn the_selection_is_the_conjunction_of_its_conditions() {
        let samples = agora_schemas::catalog::samples();
        let raws: Vec<RawEnvelope> = samples.iter().filter_map(|e| e.to_raw().ok()).collect();
        assert_eq!(raws.len(), samples.len());
        let chosen = |args: &[&str]| -> Vec<String> {
            let s = run(args).selection;
            raws.iter().filter(|r| s.accepts(r)).map(|r| r.event_type.clone()).collect()
        };
        assert_eq!(chosen(&[]).len(), raws.len());
        // Samples occur one second apart from 12:00:00, in catalog order.
        assert_eq!(
            chosen(&["--from", "2026-01-01T12:00:02Z", "--to", "2026-01-01T12:00:05Z"]),
            ["follow.created", "follow.removed", "post.created"],
            "from is inclusive, to exclusive"
        );
        assert_eq!(chosen(&["--type", "post.created", "--to", "2026-01-01T12:00:04Z"]), Vec::<String>::new());
        let post_id = raws.iter().find(|r| r.event_type == "post.created").map(|r| r.aggregate_id.to_string());
        let post_id = post_id.unwrap_or_default();
        assert_eq!(
            chosen(&["--aggregate", &post_id]),
            ["post.created", "post.deleted", "post.comment_added"],
            "the post aggregate, not the likes of it"
        );
        assert_eq!(chosen(&["--aggregate", &post_id, "--type", "post.deleted"]), ["post.deleted"]);
        assert_eq!(chosen(&["--aggregate-type", "follows"]), ["follow.created", "follow.removed"]);
    }
}
