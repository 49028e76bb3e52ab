//! Who is calling: [`AuthUser`] is an extractor, so a handler's signature says
//! whether it needs a user. JWT (HS256, `sub` = user id, `exp` enforced) by
//! default; the `X-User-ID` header when a trusted gateway sets it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{AuthMode, TrustedProxies};
use crate::error::ApiError;

/// The header a trusted gateway sets.
pub const USER_HEADER: &str = "x-user-id";

/// The configured way of authenticating, and the JWT keys.
pub struct Auth {
    mode: AuthMode,
    /// Trusted-header mode: the peers allowed to send `X-User-ID`; `None`
    /// trusts every peer (only sensible on a loopback `BIND_ADDR`).
    trusted_proxies: Option<TrustedProxies>,
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
            trusted_proxies: None,
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// Accepts `X-User-ID` only from peers inside `proxies`.
    pub fn with_trusted_proxies(mut self, proxies: Option<TrustedProxies>) -> Auth {
        self.trusted_proxies = proxies;
        self
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

    fn user_from_token(&self, token: &str) -> Result<Uuid, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                    ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
                    ErrorKind::InvalidAlgorithm => "the token must be signed with HS256".to_owned(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the token lacks the {claim} claim")
                    }
                    _ => "the token is malformed".to_owned(),
                }
            })?;
        Uuid::try_parse(&data.claims.sub).map_err(|_| "the token's sub is not a user id".to_owned())
    }
}

/// The authenticated user's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser(pub Uuid);

/// Who a request says it comes from, decided once per request by the api's
/// middleware (the rate limiter keys on it) and read by [`AuthUser`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credentials were presented.
    Anonymous,
    /// Valid credentials of this user.
    User(Uuid),
    /// Credentials were presented but refused, for this reason (a 401 on any
    /// endpoint that needs a user).
    Refused(String),
}

impl Auth {
    /// `Err(reason)` when trusted-header mode names `TRUSTED_PROXIES` and
    /// `peer` is outside them: such a request did not come through the
    /// gateway, so the api does not serve it at all.
    pub fn admit(&self, peer: Option<IpAddr>) -> Result<(), String> {
        match (&self.mode, &self.trusted_proxies) {
            (AuthMode::TrustedHeader, Some(proxies))
                if !peer.is_some_and(|ip| proxies.contains(ip)) =>
            {
                Err(format!(
                    "requests are accepted only from TRUSTED_PROXIES; {} is not one",
                    peer.map_or_else(|| "this peer".to_owned(), |ip| ip.to_string())
                ))
            }
            _ => Ok(()),
        }
    }

    /// Reads the request's credentials: a bearer JWT, or in trusted-header
    /// mode the `X-User-ID` header, which only a peer inside
    /// `TRUSTED_PROXIES` (when set) may send. A header sent twice is refused:
    /// which copy a proxy checked is anyone's guess.
    pub fn caller(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Caller {
        match self.mode {
            AuthMode::Jwt => {
                match single_header(headers, AUTHORIZATION.as_str(), "Authorization") {
                    Ok(None) => Caller::Anonymous,
                    Err(reason) => Caller::Refused(reason),
                    Ok(Some(value)) => {
                        let token = value
                            .strip_prefix("Bearer ")
                            .or_else(|| value.strip_prefix("bearer "));
                        match token {
                            None => Caller::Refused(
                                "the Authorization header must be Bearer <token>".to_owned(),
                            ),
                            Some(token) => match self.user_from_token(token.trim()) {
                                Ok(user) => Caller::User(user),
                                Err(err) => Caller::Refused(err),
                            },
                        }
                    }
                }
            }
            AuthMode::TrustedHeader => match single_header(headers, USER_HEADER, "X-User-ID") {
                Ok(None) => Caller::Anonymous,
                Err(reason) => Caller::Refused(reason),
                Ok(Some(value)) => {
                    if let Err(reason) = self.admit(peer) {
                        return Caller::Refused(reason);
                    }
                    match Uuid::try_parse(value) {
                        Ok(user) => Caller::User(user),
                        Err(_) => {
                            Caller::Refused("the X-User-ID header is not a user id".to_owned())
                        }
                    }
                }
            },
        }
    }
}

/// The one value of header `name`, trimmed; `None` when absent. Sent twice
/// or not visible ASCII: refused, with a reason naming `label`.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    label: &str,
) -> Result<Option<&'h str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("the {label} header was sent more than once"));
    }
    first
        .to_str()
        .map(|value| Some(value.trim()))
        .map_err(|_| format!("malformed {label} header"))
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip());
                Arc::<Auth>::from_ref(state).caller(&parts.headers, peer)
            }
        };
        match caller {
            Caller::User(user) => Ok(AuthUser(user)),
            Caller::Refused(reason) => Err(ApiError::Unauthorized(reason)),
            Caller::Anonymous => {
                let auth = Arc::<Auth>::from_ref(state);
                Err(ApiError::Unauthorized(match auth.mode {
                    AuthMode::Jwt => "missing Authorization: Bearer <token>".to_owned(),
                    AuthMode::TrustedHeader => "missing X-User-ID header".to_owned(),
                }))
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
