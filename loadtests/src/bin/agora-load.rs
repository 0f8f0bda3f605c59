//! The benchmark report command (issue 6).
//!
//! ```text
//! agora-load report [--json docs/benchmarks.json] [--docs docs] [--check]
//! ```
//! Writes `docs/benchmarks.md` and `docs/benchmarks/<tier>.svg` from the run's JSON; with
//! `--check`, writes nothing and fails, naming the files, if what is there differs from what
//! the JSON gives (the files are generated, never edited by hand).

use agora_loadtests::load::report::{RunReport, files};
use anyhow::Context;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("report") => {}
        other => anyhow::bail!("usage: agora-load report [--json FILE] [--docs DIR] [--check] (got {other:?})"),
    }
    let (mut json, mut docs, mut check) = (PathBuf::from("docs/benchmarks.json"), PathBuf::from("docs"), false);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--json" => json = args.next().context("--json needs a file")?.into(),
            "--docs" => docs = args.next().context("--docs needs a folder")?.into(),
            "--check" => check = true,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let text = std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let report: RunReport =
        serde_json::from_str(&text).with_context(|| format!("{} is not a run report", json.display()))?;
    let mut stale = Vec::new();
    for (name, contents) in files(&report) {
        let path = docs.join(&name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    anyhow::ensure!(
        stale.is_empty(),
        "these differ from what {} gives (regenerate with `agora-load report`, never edit by hand): {}",
        json.display(),
        stale.join(", ")
    );
    Ok(())
}
