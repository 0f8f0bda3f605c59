//! Writes the generated schema files and any missing fixtures.
//!
//! `agora-schemas json <dir>`: (re)writes the JSON Schema files.
//! `agora-schemas fixtures <dir>`: writes a fixture for each event type and version lacking
//! one; an existing fixture is history and is never rewritten.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, dir] if cmd == "json" => write(dir, agora_schemas::catalog::json_schema_files(), true),
        [cmd, dir] if cmd == "fixtures" => write(dir, agora_schemas::catalog::fixture_files(), false),
        _ => Err("usage: agora-schemas json <dir> | agora-schemas fixtures <dir>".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora-schemas: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &str, files: Result<Vec<(String, String)>, serde_json::Error>, overwrite: bool) -> Result<(), String> {
    let files = files.map_err(|e| e.to_string())?;
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(&name);
        if !overwrite && path.exists() {
            println!("kept    {}", path.display());
            continue;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote   {}", path.display());
    }
    Ok(())
}
