//! The OpenAPI document describes every route the query routers serve, with the contract's
//! parameters, answers and headers.

use agora_query_api::openapi::document;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(method, path)` of every `.route("<path>", <method>(..).<method>(..))` in `src/routes/`:
/// what the routers serve, read from their source so that a route added without its
/// annotation fails here.
fn served_routes() -> BTreeSet<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        for chunk in source.split(".route(\"").skip(1) {
            let Some((route, rest)) = chunk.split_once('"') else { continue };
            // The method routers of this route: up to the call's closing parenthesis.
            let mut depth = 1usize;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let handlers = &rest[..end];
            for method in METHODS {
                let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
                });
                if called {
                    routes.insert((method.to_owned(), route.to_owned()));
                }
            }
        }
    }
    routes
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

/// `schema`, with a `$ref` to a component followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

#[test]
fn the_document_is_openapi_3_1_with_bearer_auth() {
    let doc = serde_json::to_value(document()).unwrap_or_default();
    assert_eq!(doc["openapi"], "3.1.0");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!((bearer["type"].as_str(), bearer["scheme"].as_str()), (Some("http"), Some("bearer")), "{bearer}");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[test]
fn every_served_route_is_documented_and_nothing_else() {
    let doc = serde_json::to_value(document()).unwrap_or_default();
    let served = served_routes();
    // The scan itself works: it finds routes of every query module.
    for known in ["/v1/users/{user_id}", "/v1/posts/{post_id}/comments", "/v1/games/{game_id}", "/v1/notifications"] {
        assert!(served.contains(&("get".to_owned(), known.to_owned())), "the source scan missed {known}: {served:?}");
    }
    let mut expected = served.clone();
    for ops in ["/health", "/ready", "/metrics"] {
        expected.insert(("get".to_owned(), ops.to_owned()));
    }
    let documented = operations(&doc);
    let undocumented: Vec<_> = expected.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&expected).collect();
    assert!(undocumented.is_empty(), "served but not in the document (add them to openapi.rs): {undocumented:?}");
    assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
}

#[test]
fn every_query_documents_its_answers_headers_and_parameters() {
    let doc = serde_json::to_value(document()).unwrap_or_default();
    let queries: Vec<(String, String)> = operations(&doc).into_iter().filter(|(_, p)| p.starts_with("/v1/")).collect();
    assert!(queries.len() >= 13, "{queries:?}");
    for (method, path) in &queries {
        let label = format!("{method} {path}");
        assert_eq!(method, "get", "{label}: the query API only reads");
        let op = &doc["paths"][path][method];
        assert_eq!(op["security"], serde_json::json!([{"bearer": []}]), "{label}");
        let params: Vec<&Value> = op["parameters"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let param = |name: &str, place: &str| params.iter().find(|p| p["name"] == name && p["in"] == place).copied();
        for header in ["X-Consistency-Token", "If-None-Match"] {
            assert!(param(header, "header").is_some_and(|p| p["required"] == false), "{label}: header {header}");
        }
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            assert!(param(name, "path").is_some_and(|p| p["required"] == true), "{label}: path parameter {name}");
        }

        let responses = &op["responses"];
        let ok = &responses["200"];
        let body = resolve(&doc, &ok["content"]["application/json"]["schema"]);
        assert!(body.is_object() && !body.as_object().is_some_and(|o| o.is_empty()), "{label}: no 200 body: {ok}");
        for header in ["ETag", "X-Consistency"] {
            assert!(ok["headers"][header].is_object(), "{label}: 200 lacks the {header} header");
        }
        assert!(responses["304"]["headers"]["ETag"].is_object(), "{label}: no 304 with ETag");
        assert!(responses["304"]["content"].is_null(), "{label}: a 304 has no body");

        let mut errors = vec!["400", "401", "429", "503"];
        if path.contains('{') {
            errors.push("404");
        }
        let queried = params.iter().any(|p| p["in"] == "query");
        if queried {
            errors.push("422");
        }
        for status in &errors {
            let schema = &responses[*status]["content"]["application/problem+json"]["schema"];
            assert_eq!(schema["$ref"], "#/components/schemas/Problem", "{label}: {status} is not problem JSON");
        }
        for status in ["429", "503"] {
            assert!(responses[status]["headers"]["Retry-After"].is_object(), "{label}: {status} lacks Retry-After");
        }
        let statuses: BTreeSet<&str> = responses.as_object().into_iter().flatten().map(|(s, _)| s.as_str()).collect();
        let allowed: BTreeSet<&str> = errors.iter().copied().chain(["200", "304"]).collect();
        assert_eq!(statuses, allowed, "{label}: answers it cannot give, or lacks");

        // A list: `limit` 1-100, `cursor`, and `{items: [...], next_cursor: string | null}`.
        if let Some(limit) = param("limit", "query") {
            let s = &limit["schema"];
            assert_eq!((s["minimum"].as_i64(), s["maximum"].as_i64()), (Some(1), Some(100)), "{label}: limit");
            assert!(param("cursor", "query").is_some(), "{label}: a list without cursor");
            assert_eq!(body["properties"]["items"]["type"], "array", "{label}: {body}");
            assert_eq!(body["properties"]["next_cursor"]["type"], serde_json::json!(["string", "null"]), "{label}");
            let required: Vec<&Value> = body["required"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            assert!(required.contains(&&Value::from("items")) && required.contains(&&Value::from("next_cursor")));
        }
    }
}

#[test]
fn list_parameters_and_enums_are_the_contracts() {
    let doc = serde_json::to_value(document()).unwrap_or_default();
    let param = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"].as_array().and_then(|a| a.iter().find(|p| p["name"] == name)).cloned()
    };
    assert_eq!(param("/v1/notifications", "unread").map(|p| p["schema"]["type"].clone()), Some("boolean".into()));
    let status = param("/v1/users/{user_id}/games", "status").unwrap_or_default();
    assert_eq!(status["schema"]["enum"], serde_json::json!(["pending", "active", "finished"]), "{status}");
    let game = &doc["components"]["schemas"]["Game"]["properties"];
    assert_eq!(game["result"]["enum"], serde_json::json!(["1-0", "0-1", "1/2-1/2", null]));
    assert_eq!(game["turn"]["enum"], serde_json::json!(["white", "black"]));
    let kinds = &doc["components"]["schemas"]["Notification"]["properties"]["kind"]["enum"];
    let expected = ["follow", "like", "comment", "message", "game_challenge", "game_move", "game_end"];
    assert_eq!(kinds, &serde_json::json!(expected));
    let user = &doc["components"]["schemas"]["User"];
    assert_eq!(user["required"], serde_json::json!(["user_id", "handle", "display_name"]), "{user}");
}
