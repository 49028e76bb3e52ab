//! Who is calling: [`AuthUser`] is an extractor, so a handler's signature says
//! whether it needs a user. JWT (HS256, `sub` = user id, `exp` enforced) by
//! default; the `X-User-ID` header when a trusted gateway sets it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::AuthMode;
use crate::error::ApiError;

/// The header a trusted gateway sets.
pub const USER_HEADER: &str = "x-user-id";

/// The configured way of authenticating, and the JWT keys.
pub struct Auth {
    mode: AuthMode,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// Optional here so a token without it is named as such; the validation
    /// requires it.
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
}

impl Auth {
    pub fn new(mode: AuthMode, secret: &str) -> Auth {
        Auth {
            mode,
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// A token for `user_id`, valid for `ttl`.
    pub fn mint(
        &self,
        user_id: Uuid,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat: Some(now),
            exp: Some(now + ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    fn user_from_token(&self, token: &str) -> Result<Uuid, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|err| {
                ApiError::Unauthorized(match err.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                    ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
                    ErrorKind::InvalidAlgorithm => "the token must be signed with HS256".to_owned(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the token lacks the {claim} claim")
                    }
                    _ => "the token is malformed".to_owned(),
                })
            })?;
        Uuid::try_parse(&data.claims.sub)
            .map_err(|_| ApiError::Unauthorized("the token's sub is not a user id".to_owned()))
    }
}

/// The authenticated user's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser(pub Uuid);

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Auth>::from_ref(state);
        let header = |name: &str| parts.headers.get(name).map(|v| v.to_str().map(str::trim));
        match auth.mode {
            AuthMode::Jwt => {
                let value = header("authorization")
                    .ok_or_else(|| {
                        ApiError::Unauthorized("missing Authorization: Bearer <token>".to_owned())
                    })?
                    .map_err(|_| {
                        ApiError::Unauthorized("malformed Authorization header".to_owned())
                    })?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        ApiError::Unauthorized(
                            "the Authorization header must be Bearer <token>".to_owned(),
                        )
                    })?;
                auth.user_from_token(token.trim()).map(AuthUser)
            }
            AuthMode::TrustedHeader => {
                let value = header(USER_HEADER)
                    .ok_or_else(|| ApiError::Unauthorized("missing X-User-ID header".to_owned()))?
                    .map_err(|_| ApiError::Unauthorized("malformed X-User-ID header".to_owned()))?;
                Uuid::try_parse(value).map(AuthUser).map_err(|_| {
                    ApiError::Unauthorized("the X-User-ID header is not a user id".to_owned())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_their_secret_only() {
        let auth = Auth::new(AuthMode::Jwt, "a-secret-of-sixteen+");
        let user = Uuid::from_u128(7);
        let token = auth.mint(user, Duration::from_secs(60)).expect("mint");
        assert_eq!(auth.user_from_token(&token).expect("valid"), user);
        let other = Auth::new(AuthMode::Jwt, "another-secret-16chars");
        let err = other.user_from_token(&token).expect_err("foreign");
        assert!(err.to_string().contains("signature"), "{err}");
        assert!(auth.user_from_token("not.a.token").is_err());
    }
}
