//! The committed schema files and fixtures against the code. These tests only read.

use agora_schemas::catalog::{fixture_name, json_schema_files};
use agora_schemas::events::{EventPayload, PostCreated};
use agora_schemas::upcast::{FnUpcaster, Upcasters};
use agora_schemas::{Envelope, Event, PostId, RawEnvelope, UserId};
use serde::Deserialize;
use std::path::PathBuf;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn json_schemas_match_the_code() {
    let dir = crate_dir().join("json");
    let files = json_schema_files().unwrap_or_else(|e| panic!("generating schemas: {e}"));
    let mut stale = Vec::new();
    // Compared as JSON values: key order is not a change (and differs when another crate in
    // the build turns on serde_json's `preserve_order`).
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    for (name, text) in &files {
        let path = dir.join(name);
        if !path.exists() || parse(&read(&path)) != parse(text) {
            stale.push(name.clone());
        }
    }
    let committed = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert!(
        stale.is_empty() && committed == files.len(),
        "schemas/json is out of date with the types ({stale:?}; {committed} files for {} schemas); \
         run `cargo run -p agora-schemas -- json schemas/json` and commit the result",
        files.len()
    );
}

#[test]
fn every_event_type_has_a_v1_fixture_and_every_fixture_decodes() {
    let dir = crate_dir().join("fixtures");
    for (event_type, _, _) in Event::TYPES {
        let path = dir.join(fixture_name(event_type, 1));
        assert!(
            path.exists(),
            "no v1 fixture for {event_type}: run `cargo run -p agora-schemas -- fixtures schemas/fixtures`"
        );
    }
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        let decoded = Envelope::from_json(read(&path).as_bytes());
        let envelope = decoded.unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
        let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        assert!(stem.starts_with(envelope.event_type()), "{stem} holds a {}", envelope.event_type());
    }
}

/// A test-only v2 of `post.created` that gained a language tag: what a real change would add.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PostCreatedV2 {
    post_id: PostId,
    author_id: UserId,
    text: String,
    language: Option<String>,
}

fn post_created_v1_to_v2(mut payload: serde_json::Value) -> Result<serde_json::Value, String> {
    let obj = payload.as_object_mut().ok_or("payload is not an object")?;
    obj.insert("language".into(), serde_json::Value::Null);
    Ok(payload)
}

#[test]
fn a_committed_v1_fixture_reads_as_a_v2_through_an_upcaster() {
    assert_eq!(PostCreated::SCHEMA_VERSION, 1, "update this test when post.created really moves to v2");
    let path = crate_dir().join("fixtures").join(fixture_name(PostCreated::EVENT_TYPE, 1));
    let raw = RawEnvelope::from_json(read(&path).as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let upcasters = Upcasters::current().with(FnUpcaster {
        event_type: PostCreated::EVENT_TYPE,
        from_version: 1,
        step: post_created_v1_to_v2,
    });
    let v2: PostCreatedV2 = raw.payload_as(&upcasters, 2).unwrap_or_else(|e| panic!("{e}"));
    let v1: PostCreated = raw.payload_as(&Upcasters::current(), 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v2, PostCreatedV2 { post_id: v1.post_id, author_id: v1.author_id, text: v1.text, language: None });
    // Without the step, a v2 reader refuses rather than guessing.
    assert!(raw.payload_as::<PostCreatedV2>(&Upcasters::current(), 2).is_err());
}
