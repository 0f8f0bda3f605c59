//! The OpenAPI 3.1 document of command-api, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

use crate::routes;
use agora_platform::consistency::Position;
use agora_platform::http::openapi::BearerAuth;
use agora_platform::http::{FieldError, Problem};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Agora command API", version = "1", description = "Commands become events in Kafka. See docs/contract.md."),
    paths(
        routes::auth::register,
        routes::auth::login,
        routes::me::update,
        routes::posts::create,
        routes::posts::delete,
        routes::posts::like,
        routes::posts::unlike,
        routes::posts::comment,
        routes::follows::follow,
        routes::follows::unfollow,
        routes::messages::send,
        routes::messages::read,
        routes::games::challenge,
        routes::games::accept,
        routes::games::play,
        routes::games::resign,
        routes::notifications::read,
    ),
    components(schemas(Problem, FieldError, Position, routes::Accepted)),
    modifiers(&BearerAuth, &OptionalBodies),
)]
struct CommandDoc;

/// An optional request body (`POST /v1/notifications/read`) is absent or the object, never
/// JSON `null`: utoipa documents `Option<Body>` as "the body or null", but a `null` body is
/// refused with 422 (`ApiJson`'s optional form takes only "no `Content-Type`, no bytes" as no body).
#[derive(Debug)]
struct OptionalBodies;

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let Some(RefOr::T(body)) = operation.request_body.as_mut() else { continue };
                if body.required == Some(Required::True) {
                    continue;
                }
                for content in body.content.values_mut() {
                    let RefOr::T(content) = content else { continue };
                    let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else { continue };
                    let mut not_null = one_of.items.iter().filter(|s| !is_null(s));
                    if let (Some(only), None) = (not_null.next(), not_null.next()) {
                        content.schema = Some(only.clone());
                    }
                }
            }
        }
    }
}

/// The whole document: the commands and the ops endpoints.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = CommandDoc::openapi();
    doc.merge(agora_platform::health::OpsDoc::openapi());
    doc
}
