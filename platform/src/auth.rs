//! JWT (HS256) issue and verification, shared by every service, and the `AuthUser` extractor.

use crate::http::ApiError;
use agora_schemas::UserId;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the JWT secret is empty")]
    EmptySecret,
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("token subject is not a user id")]
    BadSubject,
}

/// The keys and policy for tokens. Cheap to clone.
#[derive(Clone)]
pub struct JwtKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("ttl", &self.0.ttl).finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &SecretString, ttl: Duration) -> Result<Self, AuthError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(bytes)?,
            decoding: DecodingKey::from_secret(bytes)?,
            validation,
            ttl,
        })))
    }

    pub fn issue(&self, user: UserId) -> Result<String, AuthError> {
        self.issue_with_ttl(user, self.0.ttl)
    }

    /// A token that expires after `ttl` (tests use this for expired tokens).
    pub fn issue_with_ttl(&self, user: UserId, ttl: Duration) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: user.to_string(), iat: now, exp: now + ttl.as_secs() as i64 };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)?)
    }

    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)?;
        data.claims.sub.parse().map_err(|_| AuthError::BadSubject)
    }
}

/// The bearer token from an `Authorization` header value, if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// The user of a request's bearer token, verified once by [`identify`]; `None` when the
/// token is missing or invalid. Later readers (rate limits, idempotency scopes, [`AuthUser`])
/// take it from the request's extensions instead of verifying the token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(pub Option<UserId>);

/// The user a request's `Authorization: Bearer` header names, if the token verifies.
pub fn caller_of(keys: &JwtKeys, headers: &axum::http::HeaderMap) -> Result<UserId, &'static str> {
    let header =
        headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or("missing bearer token")?;
    let token = bearer(header).ok_or("missing bearer token")?;
    keys.verify(token).map_err(|_| "invalid or expired token")
}

/// Middleware: verifies the bearer token once and records the [`Caller`].
pub async fn identify(
    axum::extract::State(keys): axum::extract::State<JwtKeys>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let caller = caller_of(&keys, req.headers()).ok();
    req.extensions_mut().insert(Caller(caller));
    next.run(req).await
}

/// The signed-in user of a request: a valid `Authorization: Bearer <jwt>`, or a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub UserId);

impl<S> FromRequestParts<S> for AuthUser
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(Caller(caller)) = parts.extensions.get::<Caller>() {
            return caller
                .map(AuthUser)
                .ok_or_else(|| ApiError::Unauthorized("missing, invalid or expired token".into()));
        }
        caller_of(&JwtKeys::from_ref(state), &parts.headers)
            .map(AuthUser)
            .map_err(|reason| ApiError::Unauthorized(reason.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret.to_owned()), Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_token_verifies_to_its_user() {
        let k = keys("s3cret");
        let user = UserId::new();
        let token = k.issue(user).unwrap_or_default();
        assert_eq!(k.verify(&token).ok(), Some(user));
    }

    #[test]
    fn other_secret_and_expired_tokens_fail() {
        let user = UserId::new();
        let token = keys("one").issue(user).unwrap_or_default();
        assert!(keys("two").verify(&token).is_err());
        let k = keys("one");
        let expired = k.issue_with_ttl(user, Duration::ZERO).unwrap_or_default();
        // exp == now is still within the leeway; go well past it.
        let claims = Claims { sub: user.to_string(), iat: 0, exp: chrono::Utc::now().timestamp() - 60 };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.0.encoding).unwrap_or_default();
        assert!(k.verify(&old).is_err());
        assert!(k.verify(&expired).is_ok());
        assert!(k.verify("not.a.jwt").is_err());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
