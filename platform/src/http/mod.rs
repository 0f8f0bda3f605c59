//! HTTP plumbing every API shares: the problem-JSON error, the strict JSON extractor and the
//! middleware stack (request ids, tracing spans, limits, CORS, compression, security headers).

mod error;
mod json;
mod middleware;
pub mod openapi;
mod server;

pub use error::{ApiError, FieldError, Problem};
pub use json::ApiJson;
pub use middleware::{BODY_LIMIT_BYTES, RequestId, layers, run_to_completion, serve};
pub use server::Server;
