//! Extractors whose rejections are the contract's 400 (or 413) bodies, and the
//! wire forms of decimals, timestamps and symbols.

use std::str::FromStr;

use axum::extract::path::ErrorKind as PathErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serializer};
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

/// Decimals travel as JSON strings: `"50000.5"`. Numbers, exponents and more
/// than 28 significant digits are refused with a reason.
pub fn decimal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(deserializer)
        .map_err(|_| serde::de::Error::custom("expected a decimal string such as \"1.5\""))?;
    parse_decimal(&text).map_err(serde::de::Error::custom)
}

/// [`decimal`] for an optional field.
pub fn optional_decimal<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Decimal>, D::Error> {
    match Option::<String>::deserialize(deserializer)
        .map_err(|_| serde::de::Error::custom("expected a decimal string such as \"1.5\""))?
    {
        None => Ok(None),
        Some(text) => parse_decimal(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+');
    if !valid {
        return Err(format!("{text:?} is not a plain decimal number"));
    }
    let value =
        Decimal::from_str(text).map_err(|_| format!("{text:?} is not a decimal within range"))?;
    // Decimal keeps 28 significant digits and rounds the rest away silently:
    // a value it cannot hold exactly is refused, never stored rounded.
    if plain_digits(text) != plain_digits(&value.to_string()) {
        return Err(format!(
            "{text:?} has more significant digits than the 28 that are kept exactly"
        ));
    }
    Ok(value)
}

/// The digits of a plain decimal without sign, leading zeros of the whole
/// part or trailing zeros of the fraction: `"-007.50"` → `"7.5"`.
fn plain_digits(text: &str) -> String {
    let unsigned = text.trim_start_matches(['+', '-']);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    format!(
        "{}.{}",
        whole.trim_start_matches('0'),
        fraction.trim_end_matches('0')
    )
}

/// A decimal as the shortest string that keeps its value: `"1.5"`, `"0"`.
pub fn decimal_string(value: &Decimal) -> String {
    let normal = value.normalize();
    if normal.is_zero() {
        "0".to_owned()
    } else {
        normal.to_string()
    }
}

pub fn serialize_decimal<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&decimal_string(value))
}

pub fn serialize_optional_decimal<S: Serializer>(
    value: &Option<Decimal>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&decimal_string(v)),
        None => s.serialize_none(),
    }
}

/// RFC 3339 in UTC: `2025-11-23T10:30:45.123456Z`.
pub fn timestamp_string(value: &DateTime<FixedOffset>) -> String {
    value
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn serialize_timestamp<S: Serializer>(
    value: &DateTime<FixedOffset>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp_string(value))
}

pub fn serialize_optional_timestamp<S: Serializer>(
    value: &Option<DateTime<FixedOffset>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&timestamp_string(v)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_value_and_drop_trailing_zeros() {
        assert_eq!(decimal_string(&Decimal::new(150_000_000, 8)), "1.5");
        assert_eq!(decimal_string(&Decimal::new(0, 8)), "0");
        assert_eq!(decimal_string(&Decimal::new(5_000_000_000_000, 8)), "50000");
        assert!(parse_decimal("1e400").is_err());
        assert!(parse_decimal("NaN").is_err());
        assert!(parse_decimal("").is_err());
        assert!(parse_decimal(&"9".repeat(40)).is_err());
        assert_eq!(parse_decimal("-0").map(|d| d.is_zero()), Ok(true));
        assert_eq!(parse_decimal("0.000000001").map(|d| d.scale()), Ok(9));
        // 30 significant digits: Decimal would round it to 1.
        let rounded = parse_decimal("1.00000000000000000000000000001").expect_err("inexact");
        assert!(rounded.contains("significant digits"), "{rounded}");
        assert!(parse_decimal(&format!("0.{}1", "0".repeat(28))).is_err());
        assert_eq!(
            parse_decimal("0007.500000000000000000000000000000").map(|d| d.normalize().to_string()),
            Ok("7.5".to_owned())
        );
        assert_eq!(
            parse_decimal("-12345678901234567890.12345678"),
            Ok(Decimal::from_str("-12345678901234567890.12345678").expect("28 digits"))
        );
    }

    #[test]
    fn symbols_take_any_form_and_case() {
        for raw in ["BTC/USDT", "btc-usdt", "Btc_Usdt", " BTC-USDT "] {
            assert_eq!(canonical_symbol(raw), "BTC/USDT");
        }
    }
}
