//! The OpenAPI 3.1 document of query-api, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

use crate::routes;
use agora_platform::http::openapi::BearerAuth;
use agora_platform::http::{FieldError, Problem};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Agora query API", version = "1", description = "Read models built from the event log. See docs/contract.md."),
    paths(
        routes::users::get_user,
        routes::users::by_handle,
        routes::users::posts,
        routes::posts::followers,
        routes::posts::following,
        routes::posts::post,
        routes::posts::comments,
        routes::games::game,
        routes::games::user_games,
        routes::conversations::conversations,
        routes::conversations::messages,
        routes::notifications::list,
        routes::notifications::unread_count,
        routes::feed::feed,
        routes::feed::suggested,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth, &ReadConventions),
)]
struct QueryDoc;

/// What the middleware in front of every query route adds (`crate::consistency`,
/// `crate::etag`), on every `/v1` `GET`: the `X-Consistency-Token` and `If-None-Match`
/// request headers, the `ETag` and `X-Consistency` headers of a 200, and the 304 answer.
#[derive(Debug)]
struct ReadConventions;

fn string_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new().schema_type(Type::String).build()
}

fn etag_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(string_schema()))
        .description(Some("a weak tag of the answer; send it back as `If-None-Match`"))
        .build()
}

fn consistency_header() -> utoipa::openapi::header::Header {
    let stale = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["stale"])).build();
    HeaderBuilder::new()
        .schema(Some(stale))
        .description(Some("`stale` when the projector did not reach the `X-Consistency-Token` in time"))
        .build()
}

impl Modify for ReadConventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let Some(operation) = item.get.as_mut() else { continue };
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.push(RefOr::T(
                ParameterBuilder::new()
                    .name("X-Consistency-Token")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "read your writes: one or more `consistency_token`s of command answers, \
                         comma-separated; the query waits up to `AGORA_CONSISTENCY_WAIT_MS` for the \
                         projector to reach them. A malformed token is 400.",
                    ))
                    .schema(Some(string_schema()))
                    .build(),
            ));
            parameters.push(RefOr::T(
                ParameterBuilder::new()
                    .name("If-None-Match")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("`ETag`s of answers held; an answer with one of them (or `*`) is 304"))
                    .schema(Some(string_schema()))
                    .build(),
            ));
            if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") {
                ok.headers.insert("ETag".to_owned(), RefOr::T(etag_header()));
                ok.headers.insert("X-Consistency".to_owned(), RefOr::T(consistency_header()));
            }
            let not_modified = ResponseBuilder::new()
                .description("not modified: `If-None-Match` names this answer's `ETag`; no body")
                .header("ETag", etag_header())
                .header("X-Consistency", consistency_header())
                .build();
            operation.responses.responses.insert("304".to_owned(), RefOr::T(not_modified));
        }
    }
}

/// The whole document: the queries and the ops endpoints.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = QueryDoc::openapi();
    doc.merge(agora_platform::health::OpsDoc::openapi());
    doc
}
