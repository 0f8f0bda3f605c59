//! Running Schemathesis against a service's OpenAPI document and reading its report: shared
//! by command-api's and query-api's conformance tests.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `name`'s value, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// The `st` binary: `AGORA_TEST_SCHEMATHESIS`, the venv `deploy/local/test.sh` installs, or
/// `PATH`. Panics, naming the script, when there is none.
pub fn binary() -> PathBuf {
    if let Ok(given) = std::env::var("AGORA_TEST_SCHEMATHESIS") {
        let path = PathBuf::from(&given);
        assert!(
            path.is_file(),
            "AGORA_TEST_SCHEMATHESIS={given} is not a file: run deploy/local/test.sh, which installs Schemathesis"
        );
        return path;
    }
    let cache = std::env::var_os("AGORA_CACHE_DIR").map(PathBuf::from).or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("agora"))
    });
    if let Some(venv) = cache.map(|c| c.join("venv-schemathesis/bin/st")).filter(|p| p.is_file()) {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("st")).find(|p| p.is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!(
            "Schemathesis (`st`) not found: neither AGORA_TEST_SCHEMATHESIS, nor \
             ${{XDG_CACHE_HOME:-$HOME/.cache}}/agora/venv-schemathesis/bin/st, nor `st` on PATH. \
             Run the tests through deploy/local/test.sh, which installs it (pinned) and sets \
             AGORA_TEST_SCHEMATHESIS, or: python3 -m venv ~/.cache/agora/venv-schemathesis && \
             ~/.cache/agora/venv-schemathesis/bin/pip install schemathesis==4.32.5"
        )
    })
}

/// Panics, naming the command that starts it, unless Kafka, the MongoDB-protocol store and
/// Redis all accept a connection (`mongo_uri` and `redis_url` as the services take them).
pub async fn require_stack(kafka: &str, mongo_uri: &str, redis_url: &str) {
    let addrs = [
        ("kafka", kafka.to_owned()),
        ("ferretdb", mongo_uri.trim_start_matches("mongodb://").trim_end_matches('/').to_owned()),
        ("redis", redis_url.trim_start_matches("redis://").trim_end_matches('/').to_owned()),
    ];
    for (name, addr) in addrs {
        let ok = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)).await;
        assert!(
            matches!(ok, Ok(Ok(_))),
            "{name} is not reachable at {addr}: start the stack with `deploy/local/stack.sh up` (deploy/local/test.sh does)"
        );
    }
}

/// 2xx, 304 and 4xx answers (and any other) of one operation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub ok: usize,
    pub not_modified: usize,
    pub client_error: usize,
    pub other: usize,
}

/// Requests with a method the document does not list for the path: Schemathesis's probes
/// that undeclared methods are refused.
pub const UNDOCUMENTED: &str = "(undocumented method on a documented path)";

/// Per operation (`METHOD /path/{template}`), the answers recorded in `st`'s NDJSON report:
/// every interaction of every finished scenario, whatever the phase.
pub fn tally(report: &Path, paths: &[String], operations: &[String]) -> BTreeMap<String, Tally> {
    let file = std::fs::File::open(report).unwrap_or_else(|e| panic!("opening {}: {e}", report.display()));
    let mut table: BTreeMap<String, Tally> = operations.iter().map(|op| (op.clone(), Tally::default())).collect();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.unwrap();
        let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(finished) = event.get("ScenarioFinished") else { continue };
        let Some(interactions) = finished["recorder"]["interactions"].as_object() else { continue };
        for interaction in interactions.values() {
            let Some(status) = interaction["response"]["status_code"].as_u64() else { continue };
            let request = &interaction["request"];
            let method = request["method"].as_str().unwrap_or_default().to_uppercase();
            let uri = request["uri"].as_str().unwrap_or_default();
            let label = format!("{method} {}", template_of(uri, paths));
            let label = if table.contains_key(&label) { label } else { UNDOCUMENTED.to_owned() };
            let t = table.entry(label).or_default();
            match status {
                200..=299 => t.ok += 1,
                304 => t.not_modified += 1,
                400..=499 => t.client_error += 1,
                _ => t.other += 1,
            }
        }
    }
    table
}

/// The documented path template a request URI matches (segment by segment, `{x}` matching any
/// one segment), or the URI's path itself.
pub fn template_of(uri: &str, paths: &[String]) -> String {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    paths
        .iter()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
        })
        // The most literal match wins: `/a/b` over `/a/{x}`.
        .min_by_key(|t| t.matches('{').count())
        .cloned()
        .unwrap_or_else(|| path.to_owned())
}

pub fn render(table: &BTreeMap<String, Tally>) -> String {
    let width = table.keys().map(String::len).max().unwrap_or(9).max(9);
    let mut out = format!("{:width$}  {:>5}  {:>5}  {:>5}  {:>5}\n", "operation", "2xx", "304", "4xx", "other");
    for (op, t) in table {
        out.push_str(&format!(
            "{op:width$}  {:>5}  {:>5}  {:>5}  {:>5}\n",
            t.ok, t.not_modified, t.client_error, t.other
        ));
    }
    out
}
