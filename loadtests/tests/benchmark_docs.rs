//! `docs/benchmarks.md` and its plots are generated from the committed `docs/benchmarks.json`
//! by `agora-load report`, never edited by hand: regenerate them here and fail on any
//! difference, naming the files.

use agora_loadtests::load::report::{RunReport, stale};
use std::path::Path;

#[test]
fn the_committed_benchmark_report_is_what_its_json_generates() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let json =
        std::fs::read_to_string(docs.join("benchmarks.json")).unwrap_or_else(|e| panic!("docs/benchmarks.json: {e}"));
    let report: RunReport =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("docs/benchmarks.json is not a run report: {e}"));
    assert!(!report.steps.is_empty(), "the committed run has no steps");
    let stale: Vec<String> = stale(&report, &docs).into_iter().map(|name| format!("docs/{name}")).collect();
    assert!(
        stale.is_empty(),
        "these differ from what docs/benchmarks.json gives; regenerate with \
         `cargo run -p agora-loadtests --bin agora-load -- report`, never edit by hand: {stale:?}"
    );
}
