//! Extractors whose rejections are the contract's 400 (or 413) bodies, and the
//! forms of ids and symbols in paths (decimals and times: [`crate::wire`]).

use axum::extract::path::ErrorKind as PathErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// The request body limit: larger bodies get 413.
pub const BODY_LIMIT: usize = 16 * 1024;

/// `axum::Json` with the contract's errors: a malformed body, a missing field,
/// an unknown enum value or a wrong type is a 400 naming the field.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            "invalid request body",
            "Content-Type must be application/json",
        ),
        JsonRejection::BytesRejection(bytes)
            if bytes.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge(BODY_LIMIT)
        }
        other => ApiError::bad_request("invalid request body", clean(&other.body_text())),
    }
}

/// Query strings with the contract's errors.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid query string", clean(&rejection.body_text()))
}

/// axum's rejection texts start with a generic sentence; keep the part that
/// names the field.
fn clean(text: &str) -> String {
    text.split_once(": ")
        .map_or(text, |(_, rest)| rest)
        .to_owned()
}

/// Path parameters with the contract's errors (e.g. a segment that is not
/// UTF-8 is a 400 naming the parameter, with the error body).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(failed) => match failed.kind() {
            PathErrorKind::InvalidUtf8InPathParam { key } => {
                ApiError::field(key, "is not valid UTF-8")
            }
            _ => ApiError::bad_request("invalid path", clean(&failed.body_text())),
        },
        other => ApiError::Internal(other.body_text()),
    }
}

/// A path segment that must be a UUID.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::field("id", format!("{raw:?} is not a UUID")))
}

/// `BTC/USDT`, `BTC-USDT`, `btc_usdt` → `BTC/USDT` (the database form).
pub fn canonical_symbol(raw: &str) -> String {
    raw.trim().to_ascii_uppercase().replace(['-', '_'], "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_take_any_form_and_case() {
        for raw in ["BTC/USDT", "btc-usdt", "Btc_Usdt", " BTC-USDT "] {
            assert_eq!(canonical_symbol(raw), "BTC/USDT");
        }
    }
}
