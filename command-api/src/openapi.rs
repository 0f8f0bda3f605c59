//! The OpenAPI 3.1 document of command-api, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

use crate::routes;
use agora_platform::consistency::Position;
use agora_platform::http::openapi::BearerAuth;
use agora_platform::http::{FieldError, Problem};
use utoipa::OpenApi;

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
    modifiers(&BearerAuth),
)]
struct CommandDoc;

/// The whole document: the commands and the ops endpoints.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = CommandDoc::openapi();
    doc.merge(agora_platform::health::OpsDoc::openapi());
    doc
}
