//! Pieces of the OpenAPI documents the APIs share: problem responses, bearer auth, and the
//! ops endpoints.

use std::collections::BTreeMap;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

fn describe(status: u16) -> &'static str {
    match status {
        400 => "malformed JSON or query string",
        401 => "missing, invalid or expired token",
        403 => "authenticated but not allowed",
        404 => "unknown target (an id that names nothing, malformed or not)",
        409 => "conflict: stale version or ply, not your turn, game not active, handle taken",
        413 => "body over 64 KiB",
        415 => "body not JSON",
        422 => "well-formed but invalid",
        429 => "rate limited; retry after `Retry-After` seconds",
        503 => "a dependency is down; nothing was accepted; retry after `Retry-After` seconds",
        _ => "error",
    }
}

/// Problem-JSON responses for `statuses`; 429 and 503 document `Retry-After`.
pub fn problem_responses(statuses: &[u16]) -> BTreeMap<String, RefOr<Response>> {
    statuses
        .iter()
        .map(|&status| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            let mut response =
                ResponseBuilder::new().description(describe(status)).content("application/problem+json", content);
            if status == 429 || status == 503 {
                let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).build();
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new().schema(Some(seconds)).description(Some("whole seconds")).build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// The errors any authenticated command can answer.
#[derive(Debug)]
pub struct CommandErrors;

impl utoipa::IntoResponses for CommandErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problem_responses(&[400, 401, 403, 404, 409, 413, 415, 422, 429, 503])
    }
}

/// The errors any authenticated query can answer.
#[derive(Debug)]
pub struct QueryErrors;

impl utoipa::IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problem_responses(&[400, 401, 403, 404, 422, 429, 503])
    }
}

/// Adds the `bearer` security scheme (JWT in `Authorization: Bearer <token>`).
#[derive(Debug)]
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
