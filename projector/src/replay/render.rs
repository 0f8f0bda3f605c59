//! One stored record becomes one output line: decoded and upcast, selected or not, redacted,
//! rendered as NDJSON or CSV. No I/O.

use super::args::{Format, Options};
use agora_schemas::upcast::Upcasters;
use agora_schemas::{DecodeError, RawEnvelope};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use uuid::Uuid;

/// Payload fields that hold personal data, by event type: nulled unless the analyst asks for
/// them with `--include-message-text`. Null rather than a marker string, since a real value of
/// these fields is never null, so a redacted value cannot be mistaken for a real one.
pub const REDACTED_FIELDS: &[(&str, &str)] = &[("message.sent", "text")];

/// Where a record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogPosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for LogPosition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// Why a record was skipped.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    #[error("no value")]
    Empty,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("encoding the decoded event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("writing the CSV row: {0}")]
    Csv(#[from] csv::Error),
}

/// A stored message value as the envelope at the current schema version: decoded with the
/// upcasters, checked against its payload, and encoded again.
pub fn decode(value: Option<&[u8]>, upcasters: &Upcasters) -> Result<RawEnvelope, Undecodable> {
    let bytes = value.ok_or(Undecodable::Empty)?;
    let envelope = RawEnvelope::from_json(bytes)?.decode(upcasters)?;
    Ok(envelope.to_raw()?)
}

/// Nulls the [`REDACTED_FIELDS`] of an event; returns whether it had any.
pub fn redact(event: &mut RawEnvelope) -> bool {
    let mut redacted = false;
    for (event_type, field) in REDACTED_FIELDS {
        if event.event_type == *event_type
            && let Some(value) = event.payload.as_object_mut().and_then(|p| p.get_mut(*field))
        {
            *value = serde_json::Value::Null;
            redacted = true;
        }
    }
    redacted
}

/// One NDJSON line: the envelope's fields, then `position`.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a RawEnvelope,
    position: LogPosition<'a>,
}

/// One CSV row; its field names are the header ([`CSV_HEADER`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvRow {
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub schema_version: u16,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: u64,
    pub event_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The payload as JSON text.
    pub payload: String,
}

/// The CSV header row.
pub const CSV_HEADER: [&str; 11] = [
    "occurred_at",
    "event_type",
    "schema_version",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "event_id",
    "topic",
    "partition",
    "offset",
    "payload",
];

impl CsvRow {
    pub fn new(event: &RawEnvelope, position: LogPosition<'_>) -> Result<Self, serde_json::Error> {
        Ok(Self {
            occurred_at: event.occurred_at,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            aggregate_type: event.aggregate_type.as_str().to_owned(),
            aggregate_id: event.aggregate_id,
            aggregate_version: event.aggregate_version,
            event_id: event.event_id.0,
            topic: position.topic.to_owned(),
            partition: position.partition,
            offset: position.offset,
            payload: serde_json::to_string(&event.payload)?,
        })
    }
}

/// Reads a replay's CSV back: the header, then one [`CsvRow`] per line.
pub fn read_csv<R: std::io::Read>(reader: R) -> Result<Vec<CsvRow>, csv::Error> {
    let mut reader = csv::Reader::from_reader(reader);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    if header != CSV_HEADER {
        return Err(csv::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a replay's CSV header: {header:?}"),
        )));
    }
    reader.deserialize().collect()
}

/// The bytes a CSV writer has written, for taking out row by row.
#[derive(Debug, Clone, Default)]
struct Taken(Rc<RefCell<Vec<u8>>>);

impl std::io::Write for Taken {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders events in one format; CSV goes through one writer, whose rows are taken out one
/// by one.
#[derive(Debug)]
pub struct Renderer {
    format: Format,
    csv: csv::Writer<Taken>,
    written: Taken,
}

impl Renderer {
    pub fn new(format: Format) -> Self {
        let written = Taken::default();
        Self { format, csv: csv::WriterBuilder::new().has_headers(false).from_writer(written.clone()), written }
    }

    /// What goes before the first event: the CSV header row, or nothing.
    pub fn header(&mut self) -> Result<Vec<u8>, csv::Error> {
        match self.format {
            Format::Ndjson => Ok(Vec::new()),
            Format::Csv => {
                self.csv.write_record(CSV_HEADER)?;
                self.take()
            }
        }
    }

    /// One event as its line, newline included.
    pub fn render(&mut self, event: &RawEnvelope, position: LogPosition<'_>) -> Result<Vec<u8>, Undecodable> {
        match self.format {
            Format::Ndjson => {
                let mut line = serde_json::to_vec(&Line { event, position })?;
                line.push(b'\n');
                Ok(line)
            }
            Format::Csv => {
                self.csv.serialize(CsvRow::new(event, position)?)?;
                Ok(self.take()?)
            }
        }
    }

    fn take(&mut self) -> Result<Vec<u8>, csv::Error> {
        self.csv.flush()?;
        Ok(std::mem::take(&mut *self.written.0.borrow_mut()))
    }
}

/// What became of one record.
#[derive(Debug)]
pub enum Processed {
    /// Not an event this reader can decode.
    Undecodable(Undecodable),
    /// An event the selection leaves out.
    Filtered { occurred_at: DateTime<Utc> },
    /// An event to write, rendered.
    Selected { occurred_at: DateTime<Utc>, line: Vec<u8> },
}

/// Decodes, selects, redacts and renders one record.
pub fn process(
    value: Option<&[u8]>,
    position: LogPosition<'_>,
    options: &Options,
    upcasters: &Upcasters,
    renderer: &mut Renderer,
) -> Processed {
    let mut event = match decode(value, upcasters) {
        Ok(event) => event,
        Err(e) => return Processed::Undecodable(e),
    };
    let occurred_at = event.occurred_at;
    if !options.selection.accepts(&event) {
        return Processed::Filtered { occurred_at };
    }
    if !options.include_message_text {
        redact(&mut event);
    }
    match renderer.render(&event, position) {
        Ok(line) => Processed::Selected { occurred_at, line },
        Err(e) => Processed::Undecodable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::args::{Parsed, parse};
    use agora_schemas::Envelope;
    use agora_schemas::catalog::samples;
    use serde_json::{Value, json};

    const AT: LogPosition<'static> = LogPosition { topic: "p.conversations", partition: 2, offset: 41 };

    fn options(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    fn sample(event_type: &str) -> Envelope {
        samples().into_iter().find(|e| e.event_type() == event_type).unwrap_or_else(|| panic!("{event_type}"))
    }

    fn bytes(e: &Envelope) -> Vec<u8> {
        e.to_json().unwrap_or_default()
    }

    fn selected(p: Processed) -> Vec<u8> {
        match p {
            Processed::Selected { line, .. } => line,
            other => panic!("not selected: {other:?}"),
        }
    }

    #[test]
    fn only_message_text_is_redacted() {
        for e in samples() {
            let mut raw = e.to_raw().unwrap_or_else(|err| panic!("{err}"));
            let before = raw.clone();
            let redacted = redact(&mut raw);
            if e.event_type() == "message.sent" {
                assert!(redacted);
                assert_eq!(raw.payload["text"], Value::Null);
                let mut expected = before.payload.clone();
                expected["text"] = Value::Null;
                assert_eq!(raw.payload, expected, "nothing else changes");
            } else {
                assert!(!redacted, "{}", e.event_type());
                assert_eq!(raw, before);
            }
        }
    }

    #[test]
    fn an_ndjson_line_is_the_stored_envelope_plus_its_position() {
        let e = sample("post.created");
        let mut r = Renderer::new(Format::Ndjson);
        assert!(r.header().unwrap_or_default().is_empty());
        let line = selected(process(Some(&bytes(&e)), AT, &options(&[]), &Upcasters::current(), &mut r));
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        let mut v: Value = serde_json::from_slice(&line).unwrap_or_default();
        assert_eq!(v["position"], json!({"topic": "p.conversations", "partition": 2, "offset": 41}));
        v.as_object_mut().map(|o| o.remove("position"));
        let stored: Value = serde_json::from_slice(&bytes(&e)).unwrap_or_default();
        assert_eq!(v, stored);
    }

    #[test]
    fn message_text_is_null_by_default_and_kept_on_request() {
        let e = sample("message.sent");
        let mut r = Renderer::new(Format::Ndjson);
        let text =
            |line: Vec<u8>| serde_json::from_slice::<Value>(&line).unwrap_or_default()["payload"]["text"].clone();
        let ups = Upcasters::current();
        let redacted = selected(process(Some(&bytes(&e)), AT, &options(&[]), &ups, &mut r));
        assert_eq!(text(redacted), Value::Null);
        let kept = selected(process(Some(&bytes(&e)), AT, &options(&["--include-message-text"]), &ups, &mut r));
        assert_eq!(text(kept), json!("hi"));
        let mut csv = Renderer::new(Format::Csv);
        let row = selected(process(Some(&bytes(&e)), AT, &options(&[]), &ups, &mut csv));
        assert!(!String::from_utf8_lossy(&row).contains("hi"), "{}", String::from_utf8_lossy(&row));
    }

    #[test]
    fn csv_rows_read_back_under_their_header() {
        let ups = Upcasters::current();
        let mut r = Renderer::new(Format::Csv);
        let mut out = r.header().unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&out).trim_end(), CSV_HEADER.join(","));
        let all = samples();
        let o = options(&["--include-message-text"]);
        for (i, e) in all.iter().enumerate() {
            let at = LogPosition { topic: "p.x", partition: 1, offset: i as i64 };
            out.extend(selected(process(Some(&bytes(e)), at, &o, &ups, &mut r)));
        }
        let rows = read_csv(out.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), all.len());
        for (i, (row, e)) in rows.iter().zip(&all).enumerate() {
            let raw = e.to_raw().unwrap_or_else(|err| panic!("{err}"));
            let expected = CsvRow::new(&raw, LogPosition { topic: "p.x", partition: 1, offset: i as i64 })
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(row, &expected);
            assert_eq!(serde_json::from_str::<Value>(&row.payload).ok(), Some(raw.payload.clone()));
        }
        // The text of a timestamp is the NDJSON one.
        let json_time = serde_json::to_value(all[0].occurred_at).unwrap_or_default();
        assert!(String::from_utf8_lossy(&out).contains(json_time.as_str().unwrap_or("?")));
        assert!(read_csv("a,b\n1,2\n".as_bytes()).is_err(), "another header is refused");
    }

    #[test]
    fn undecodable_records_are_reported_not_fatal() {
        let ups = Upcasters::current();
        let mut r = Renderer::new(Format::Ndjson);
        let o = options(&[]);
        let bad = |value: Option<&[u8]>, r: &mut Renderer| {
            matches!(process(value, AT, &o, &ups, r), Processed::Undecodable(_))
        };
        assert!(bad(None, &mut r));
        assert!(bad(Some(b"not json"), &mut r));
        let mut unknown: Value = serde_json::from_slice(&bytes(&sample("post.created"))).unwrap_or_default();
        unknown["event_type"] = json!("post.exploded");
        assert!(bad(Some(&serde_json::to_vec(&unknown).unwrap_or_default()), &mut r));
        let mut future = unknown.clone();
        future["event_type"] = json!("post.created");
        future["schema_version"] = json!(9);
        assert!(bad(Some(&serde_json::to_vec(&future).unwrap_or_default()), &mut r));
    }

    #[test]
    fn filtered_events_still_tell_their_time() {
        let e = sample("post.created");
        let o = options(&["--type", "like.added"]);
        match process(Some(&bytes(&e)), AT, &o, &Upcasters::current(), &mut Renderer::new(Format::Ndjson)) {
            Processed::Filtered { occurred_at } => assert_eq!(occurred_at, e.occurred_at),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_event_type_decodes_at_its_current_version() {
        for e in samples() {
            let decoded = decode(Some(&bytes(&e)), &Upcasters::current()).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(Some(decoded.schema_version), agora_schemas::Event::current_version(e.event_type()));
            assert_eq!(Some(decoded), e.to_raw().ok(), "{}", e.event_type());
        }
    }
}
