//! Keeps the deployment files, the code and the README consistent with each other:
//!
//! - `deploy/docker-compose.yml` runs every service of the README's "Services and ports" table
//!   plus Kafka, MongoDB and Redis, and points each Agora service at the compose hostnames;
//! - `deploy/local/topics.txt` and the compose `kafka-init` create exactly the topics the code
//!   uses (`agora_schemas::aggregate::Topics`);
//! - every `AGORA_` variable named in the crates' code is documented in README.md.
//!
//! Only reads repository files: no network, no processes, no Docker.

use agora_schemas::aggregate::Topics;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The crates whose code may read `AGORA_` variables.
const CRATE_DIRS: &[&str] = &["schemas", "platform", "command-api", "projector", "query-api", "realtime"];

/// Compose services that are not Agora's own but must be there.
const DEPENDENCY_SERVICES: &[&str] = &["kafka", "mongo", "redis"];

/// The prefix the compose file's services and kafka-init use.
const COMPOSE_TOPIC_PREFIX: &str = "agora";

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or_else(|e| panic!("repo root {}: {e}", root.display()))
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// README

/// One row of the README's "Services and ports" table.
#[derive(Debug, Clone)]
struct ReadmeService {
    name: String,
    /// The variable in the "env override" column, e.g. `AGORA_COMMAND_ADDR`.
    addr_var: Option<String>,
}

/// The text between the first pair of backticks in `cell`, if any.
fn backticked(cell: &str) -> Option<String> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(cell[start..start + len].trim().to_owned()).filter(|s| !s.is_empty())
}

fn table_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn is_separator_row(cells: &[String]) -> bool {
    cells.iter().all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
}

/// The services of the first table under the `## Services and ports` heading.
fn readme_services(readme: &str) -> Vec<ReadmeService> {
    const HEADING: &str = "## Services and ports";
    let mut lines = readme.lines().skip_while(|l| l.trim() != HEADING);
    assert!(lines.next().is_some(), "README.md has no `{HEADING}` heading");
    let table: Vec<&str> = lines
        .take_while(|l| !l.starts_with("## "))
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .collect();
    assert!(table.len() >= 3, "README.md: no table (header, separator, rows) under `{HEADING}`");
    let mut services = Vec::new();
    for line in &table[1..] {
        let cells = table_cells(line);
        if is_separator_row(&cells) {
            continue;
        }
        let name = backticked(&cells[0]).unwrap_or_else(|| {
            panic!("README.md `{HEADING}`: the first cell of row `{line}` holds no `service` name in backticks")
        });
        let addr_var = cells.get(2).and_then(|c| backticked(c)).filter(|v| v.starts_with("AGORA_"));
        services.push(ReadmeService { name, addr_var });
    }
    assert!(!services.is_empty(), "README.md: the table under `{HEADING}` has no rows");
    services
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

fn compose() -> Value {
    let text = read("deploy/docker-compose.yml");
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("deploy/docker-compose.yml is not valid YAML: {e}"));
    doc.apply_merge().unwrap_or_else(|e| panic!("deploy/docker-compose.yml: cannot apply `<<` merge keys: {e}"));
    doc
}

fn services(doc: &Value) -> &Mapping {
    doc.get("services")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("deploy/docker-compose.yml has no `services:` mapping"))
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    services(doc).get(name).unwrap_or_else(|| panic!("deploy/docker-compose.yml has no service `{name}`"))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment:`, whether written as a mapping or as a list of `KEY=VALUE`.
fn environment(svc: &Value, name: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match svc.get("environment") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let key = scalar(k).unwrap_or_else(|| panic!("compose service `{name}`: non-scalar env key {k:?}"));
                env.insert(key, scalar(v).unwrap_or_default());
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items {
                let text = scalar(item).unwrap_or_default();
                let (k, v) = text.split_once('=').unwrap_or((text.as_str(), ""));
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        Some(other) => panic!("compose service `{name}`: `environment` is neither a mapping nor a list: {other:?}"),
    }
    env
}

/// `${VAR:-default}` → `default`; anything else unchanged.
fn interpolation_default(value: &str) -> String {
    let v = value.trim();
    if let Some(inner) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
            return default.to_owned();
        }
        return String::new();
    }
    v.to_owned()
}

/// The hosts of a broker list (`h1:9092,h2:9092`) or a URL (`scheme://[user@]h1:p,h2:p/db?x`).
fn hosts_of(value: &str) -> Vec<String> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or("");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(',')
        .map(|hp| {
            let hp = hp.trim();
            if let Some(v6) = hp.strip_prefix('[') {
                v6.split(']').next().unwrap_or("").to_owned()
            } else {
                hp.split(':').next().unwrap_or("").to_owned()
            }
        })
        .filter(|h| !h.is_empty())
        .collect()
}

/// Every name a container can reach a compose service by: service names and `hostname:`s.
fn compose_hostnames(doc: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (k, v) in services(doc) {
        if let Some(n) = scalar(k) {
            names.insert(n);
        }
        if let Some(h) = v.get("hostname").and_then(scalar) {
            names.insert(h);
        }
    }
    names
}

/// A compose string-or-list field (`command`, `entrypoint`, healthcheck `test`) as one string.
fn joined(v: Option<&Value>) -> String {
    match v {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect::<Vec<_>>().join(" "),
        Some(other) => scalar(other).unwrap_or_default(),
        None => String::new(),
    }
}

#[test]
fn compose_runs_every_readme_service_and_the_dependencies() {
    let readme = readme_services(&read("README.md"));
    let doc = compose();
    let present: BTreeSet<String> = services(&doc).keys().filter_map(scalar).collect();

    let mut missing: Vec<String> = readme
        .iter()
        .map(|s| s.name.clone())
        .chain(DEPENDENCY_SERVICES.iter().map(|s| (*s).to_owned()))
        .filter(|name| !present.contains(name))
        .collect();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "deploy/docker-compose.yml lacks service(s) {missing:?} (README's `Services and ports` table lists {:?}; \
         dependencies {DEPENDENCY_SERVICES:?}); compose has {present:?}",
        readme.iter().map(|s| &s.name).collect::<Vec<_>>(),
    );
}

#[test]
fn compose_points_agora_services_at_compose_hostnames() {
    let readme = readme_services(&read("README.md"));
    let doc = compose();
    // The dependencies' hostnames: every compose service except Agora's own.
    let mut hostnames = compose_hostnames(&doc);
    for s in &readme {
        hostnames.remove(&s.name);
    }
    let mut problems = String::new();

    for s in &readme {
        let Some(svc) = services(&doc).get(s.name.as_str()) else {
            let _ = writeln!(problems, "- no compose service `{}`", s.name);
            continue;
        };
        let env = environment(svc, &s.name);
        for var in ["AGORA_KAFKA_BROKERS", "AGORA_MONGO_URI", "AGORA_REDIS_URL"] {
            let Some(raw) = env.get(var) else {
                let _ = writeln!(problems, "- `{}`: `{var}` is not set", s.name);
                continue;
            };
            let value = interpolation_default(raw);
            let hosts = hosts_of(&value);
            if hosts.is_empty() {
                let _ = writeln!(problems, "- `{}`: `{var}={raw}` names no host", s.name);
            }
            for h in hosts {
                if !hostnames.contains(&h) {
                    let _ = writeln!(
                        problems,
                        "- `{}`: `{var}={raw}` points at `{h}`, which is not a dependency's compose hostname {hostnames:?}",
                        s.name
                    );
                }
            }
        }
        // In a container the service must listen on every interface, not the loopback default.
        if let Some(addr_var) = &s.addr_var {
            match env.get(addr_var).map(|v| interpolation_default(v)) {
                Some(v) if v.starts_with("0.0.0.0:") || v.starts_with("[::]:") => {}
                Some(v) => {
                    let _ = writeln!(problems, "- `{}`: `{addr_var}={v}` should bind 0.0.0.0", s.name);
                }
                None => {
                    let _ = writeln!(problems, "- `{}`: `{addr_var}` is not set (bind 0.0.0.0:<port>)", s.name);
                }
            }
        }
        let health = joined(svc.get("healthcheck").and_then(|h| h.get("test")));
        if !health.contains("/ready") {
            let _ = writeln!(problems, "- `{}`: no healthcheck on `/ready` (test: {health:?})", s.name);
        }
    }
    assert!(problems.is_empty(), "deploy/docker-compose.yml:\n{problems}");
}

// ---------------------------------------------------------------------------------------
// Topics

/// The topic base names the code uses: `Topics::all()` with the prefix stripped.
fn code_topic_bases() -> BTreeSet<String> {
    Topics::new("x")
        .all()
        .iter()
        .map(|t| {
            t.strip_prefix("x.")
                .unwrap_or_else(|| panic!("Topics::new(\"x\").all() yielded `{t}`, not `x.<name>`"))
                .to_owned()
        })
        .collect()
}

fn set_difference_report(what: &str, expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> String {
    let missing: Vec<_> = expected.difference(actual).collect();
    let extra: Vec<_> = actual.difference(expected).collect();
    let mut report = String::new();
    if !missing.is_empty() {
        let _ = writeln!(report, "{what} lacks {missing:?}");
    }
    if !extra.is_empty() {
        let _ = writeln!(report, "{what} has {extra:?}, which the code does not use");
    }
    report
}

#[test]
fn topics_txt_lists_exactly_the_code_topics() {
    let text = read("deploy/local/topics.txt");
    let lines: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    let listed: BTreeSet<String> = lines.iter().cloned().collect();
    let mut dupes = lines.clone();
    dupes.sort();
    let dupes: BTreeSet<String> = dupes.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).collect();
    let expected = code_topic_bases();

    let mut report = set_difference_report("deploy/local/topics.txt", &expected, &listed);
    if !dupes.is_empty() {
        let _ = writeln!(report, "deploy/local/topics.txt repeats {dupes:?}");
    }
    assert!(report.is_empty(), "{report}(Topics::new(\"x\").all() gives {expected:?})");
}

#[test]
fn compose_kafka_init_creates_exactly_the_code_topics() {
    let doc = compose();
    let init = service(&doc, "kafka-init");
    let script = format!("{} {}", joined(init.get("entrypoint")), joined(init.get("command")));

    // Every word that names a topic under the compose prefix, e.g. `agora.users`.
    let prefix = format!("{COMPOSE_TOPIC_PREFIX}.");
    let created: BTreeSet<String> = script
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '\\' | '=' | ','))
        .filter(|w| w.starts_with(&prefix) && w.len() > prefix.len())
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = code_topic_bases().iter().map(|b| format!("{prefix}{b}")).collect();

    let mut report = set_difference_report("compose service `kafka-init`", &expected, &created);
    for needle in ["kafka-topics.sh", "--create", "--partitions 12", "retention.ms=-1"] {
        if !script.contains(needle) {
            let _ = writeln!(report, "compose service `kafka-init` does not use `{needle}`");
        }
    }
    // The services must use the same prefix as the topics kafka-init creates.
    for (name, svc) in services(&doc) {
        let name = scalar(name).unwrap_or_default();
        let env = environment(svc, &name);
        if let Some(p) = env.get("AGORA_TOPIC_PREFIX")
            && interpolation_default(p) != COMPOSE_TOPIC_PREFIX
        {
            let _ =
                writeln!(report, "compose service `{name}` sets AGORA_TOPIC_PREFIX={p}, not {COMPOSE_TOPIC_PREFIX}");
        }
    }
    assert!(report.is_empty(), "deploy/docker-compose.yml:\n{report}");
}

// ---------------------------------------------------------------------------------------
// Environment variables in the README

/// Each `AGORA_[A-Z0-9_]+` token in `text` that starts at a word boundary and does not end
/// in `_` (a trailing underscore marks a prefix such as `AGORA_STACK_`, not a variable).
fn agora_tokens(text: &str) -> BTreeSet<String> {
    const HEAD: &str = "AGORA_";
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(HEAD).map(|i| i + from) {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let mut end = i + HEAD.len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let token = &text[i..end];
        if boundary && token.len() > HEAD.len() && !token.ends_with('_') {
            found.insert(token.to_owned());
        }
        from = end.max(i + 1);
    }
    found
}

/// `source` without its `#[cfg(test)]` items (usually `mod tests { ... }`): variables that
/// only tests name, such as a deliberately mistyped `AGORA_KAFKA_BROKER` fed to the
/// unknown-variable warning, are not configuration. Braces are counted naively; an item whose
/// braces do not balance is cut to the end of the file.
fn without_test_items(source: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find(ATTR) {
        out.push_str(&rest[..at]);
        let after = &rest[at + ATTR.len()..];
        let Some(open) = after.find(['{', ';']) else {
            return out;
        };
        if after.as_bytes()[open] == b';' {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut close = None;
        for (j, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + j + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match close {
            Some(c) => rest = &after[c..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The `.rs` files of `dir`, recursively, skipping `target` and hidden directories and the
/// integration-test directories `tests` and `benches` (tests may name any variable).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let file_type = entry.file_type().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if file_type.is_dir() {
            if !matches!(name.as_str(), "target" | "tests" | "benches") && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if file_type.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn readme_documents_every_agora_variable_in_the_code() {
    let root = repo_root();
    let readme = agora_tokens(&read("README.md"));

    // token -> the files naming it
    let mut in_code: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut scanned = 0usize;
    for krate in CRATE_DIRS {
        let dir = root.join(krate);
        if !dir.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for file in files {
            scanned += 1;
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let rel = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
            for token in agora_tokens(&without_test_items(&text)) {
                if token.starts_with("AGORA_STACK_") || token.starts_with("AGORA_TEST_") {
                    continue;
                }
                in_code.entry(token).or_default().insert(rel.clone());
            }
        }
    }
    assert!(scanned > 0, "found no .rs files under {CRATE_DIRS:?} in {}", root.display());

    let missing: Vec<String> = in_code
        .iter()
        .filter(|(token, _)| !readme.contains(*token))
        .map(|(token, files)| format!("- {token} (named in {})", files.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not document {} variable(s) the code names; add them to its Configuration table:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The helpers above, on known inputs

#[test]
fn helpers_parse_what_they_claim_to() {
    assert_eq!(hosts_of("kafka:9092,kafka2:9092"), vec!["kafka", "kafka2"]);
    assert_eq!(hosts_of("mongodb://u:p@mongo:27017,m2:27017/agora?replicaSet=rs"), vec!["mongo", "m2"]);
    assert_eq!(hosts_of("redis://redis:6379/0"), vec!["redis"]);
    assert_eq!(hosts_of("127.0.0.1:9092"), vec!["127.0.0.1"]);
    assert_eq!(interpolation_default("${AGORA_X:-kafka:9092}"), "kafka:9092");
    assert_eq!(interpolation_default("kafka:9092"), "kafka:9092");

    let tokens = agora_tokens("a AGORA_LOG_FORMAT `AGORA_LOG` XAGORA_NOT AGORA_STACK_ AGORA_ AGORA_lower");
    assert_eq!(tokens, BTreeSet::from(["AGORA_LOG".to_owned(), "AGORA_LOG_FORMAT".to_owned()]));

    let src = "fn a() { \"AGORA_REAL\"; }\n#[cfg(test)]\nmod tests { fn t() { let _ = \"AGORA_FAKE\"; if x { } } }\nfn b() {}\n";
    let kept = without_test_items(src);
    assert!(kept.contains("AGORA_REAL") && !kept.contains("AGORA_FAKE") && kept.contains("fn b()"), "{kept}");

    let readme = "x\n## Services and ports\n\n| service | bind | env override | role |\n| --- | --- | --- | --- |\n\
                  | `a-b` | 1 | `AGORA_A_ADDR` | r |\n| `c` | 2 | none | r |\n\n## Next\n| `d` | | | |\n";
    let rows = readme_services(readme);
    let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["a-b", "c"]);
    assert_eq!(rows[0].addr_var.as_deref(), Some("AGORA_A_ADDR"));
    assert_eq!(rows[1].addr_var, None);
}

// ---------------------------------------------------------------------------------------
// docs

/// `docs/contract.md` is the shared contract, word for word, wherever the shared folder sits
/// beside the checkout (it does for developers and CI).
#[test]
fn the_contract_copy_matches_the_shared_contract() {
    let shared = repo_root().join("..").join("shared").join("CONTRACT.md");
    let Ok(original) = std::fs::read_to_string(&shared) else {
        // A clone on its own: the copy is all there is.
        assert!(repo_root().join("docs/contract.md").exists(), "docs/contract.md is missing");
        return;
    };
    assert!(read("docs/contract.md") == original, "docs/contract.md differs from {}: copy it again", shared.display());
}

/// Every metric name defined in a `telemetry.rs` is documented in `docs/metrics.md`.
#[test]
fn every_metric_is_documented() {
    let doc = read("docs/metrics.md");
    let mut missing = BTreeSet::new();
    for dir in CRATE_DIRS {
        let path = repo_root().join(dir).join("src").join("telemetry.rs");
        let Ok(code) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, _) in code.match_indices("\"agora_") {
            let rest = &code[i + 1..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !doc.contains(&format!("`{name}`")) {
                missing.insert(format!("{name} ({dir}/src/telemetry.rs)"));
            }
        }
    }
    assert!(missing.is_empty(), "metrics missing from docs/metrics.md: {missing:?}");
}
