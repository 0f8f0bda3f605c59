//! The OpenAPI document describes every command route, with the contract's statuses.

use agora_command_api::openapi::document;

#[test]
fn every_command_endpoint_is_documented_as_openapi_3_1() {
    let doc = serde_json::to_value(document()).unwrap_or_default();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("post", "/v1/auth/register"),
        ("post", "/v1/auth/login"),
        ("patch", "/v1/me"),
        ("post", "/v1/posts"),
        ("delete", "/v1/posts/{post_id}"),
        ("put", "/v1/posts/{post_id}/like"),
        ("delete", "/v1/posts/{post_id}/like"),
        ("post", "/v1/posts/{post_id}/comments"),
        ("put", "/v1/follows/{user_id}"),
        ("delete", "/v1/follows/{user_id}"),
        ("post", "/v1/messages"),
        ("post", "/v1/conversations/{conversation_id}/read"),
        ("post", "/v1/games"),
        ("post", "/v1/games/{game_id}/accept"),
        ("post", "/v1/games/{game_id}/moves"),
        ("post", "/v1/games/{game_id}/resign"),
        ("post", "/v1/notifications/read"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
    ];
    for (method, path) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        if path.starts_with("/v1/") {
            for status in ["400", "401", "404", "413", "415", "422", "429", "503"] {
                assert!(op["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
            let ok = ["200", "201", "202"].iter().any(|s| op["responses"][*s].is_object());
            assert!(ok, "{method} {path} has no success response");
        }
    }
    let documented: usize =
        doc["paths"].as_object().map(|p| p.values().map(|m| m.as_object().map_or(0, |m| m.len())).sum()).unwrap_or(0);
    assert_eq!(documented, expected.len(), "documented operations beyond the list: update the test");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
