//! `ApiJson<T>`: the JSON body extractor whose every rejection is a problem-JSON error with
//! the contract's status (400 syntax, 413 size, 415 media type, 422 shape or field rule).

use super::{ApiError, FieldError};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

fn is_json(req: &Request) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(req.into_body(), super::BODY_LIMIT_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a request body: 400 when it is not JSON, 422 when it is JSON of the wrong shape
/// (not an object, a missing or unknown field, a wrong type), naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, on the whole body, so a truncated body is a 400 whatever it holds.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    // serde would read an array as a struct's fields in order; bodies are objects.
    if !value.is_object() {
        return Err(ApiError::Invalid { detail: "the body must be a JSON object".into(), errors: Vec::new() });
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let message = e.inner().to_string();
        let path = e.path().to_string();
        // The path names the field of a wrong type or unknown name; a missing field's path is
        // its parent, so take its name from the message.
        let field = match (path.as_str(), named_field(&message)) {
            ("." | "", Some(name)) => name,
            ("." | "", None) => String::new(),
            (_, Some(name)) if !path.ends_with(&name) => format!("{path}.{name}"),
            _ => path,
        };
        let errors = if field.is_empty() { Vec::new() } else { vec![FieldError::new(field.clone(), message.clone())] };
        let detail = if field.is_empty() { message } else { format!("{field}: {message}") };
        ApiError::Invalid { detail, errors }
    })
}

/// The field a serde message names in backticks: `unknown field `x``, `missing field `x``.
fn named_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next().map(str::to_owned)
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// An optional body: a request without one (no `Content-Type`, empty body) gives `None`;
/// any body present must be valid JSON as for [`ApiJson`].
impl<S, T> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let no_type = !req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, super::BODY_LIMIT_BYTES).await.map_err(|_| ApiError::PayloadTooLarge)?;
        if no_type && bytes.is_empty() {
            return Ok(None);
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        <ApiJson<T> as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        text: String,
        n: Option<u32>,
    }

    fn status(r: Result<Body, ApiError>) -> (u16, Vec<String>) {
        match r {
            Ok(_) => (200, Vec::new()),
            Err(ApiError::Invalid { errors, .. }) => (422, errors.into_iter().map(|e| e.field).collect()),
            Err(e) => (e.status().as_u16(), Vec::new()),
        }
    }

    #[test]
    fn bodies_are_objects_and_errors_name_their_field() {
        assert_eq!(status(parse(br#"{"text":"x"}"#)), (200, vec![]));
        assert_eq!(status(parse(br#"["x"]"#)), (422, vec![]));
        assert_eq!(status(parse(br#""x""#)), (422, vec![]));
        assert_eq!(status(parse(br#"{"text":"x","extra":1}"#)), (422, vec!["extra".to_owned()]));
        assert_eq!(status(parse(br#"{}"#)), (422, vec!["text".to_owned()]));
        assert_eq!(status(parse(br#"{"text":5}"#)), (422, vec!["text".to_owned()]));
        assert_eq!(status(parse(br#"{"text":"x","n":-1}"#)), (422, vec!["n".to_owned()]));
    }

    #[test]
    fn anything_that_is_not_json_is_a_400() {
        for bad in [&br#"{"text": 5"#[..], b"[1, 2", b"", b"{", b"nope", b"{\"text\":\"x\"} trailing"] {
            assert_eq!(status(parse(bad)).0, 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
