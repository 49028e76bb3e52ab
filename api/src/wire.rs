//! The contract's wire formats, each a newtype that carries its serde and
//! its OpenAPI schema once: [`Dec`], a decimal as a JSON string, and
//! [`Time`], an RFC 3339 UTC timestamp. The DTOs, the WebSocket frames and the
//! broker's messages write decimals and times through them.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// A decimal on the wire: a JSON string of plain digits, `"50000.5"`, `"0"`.
/// Written as the shortest string that keeps the value (no trailing zeros);
/// read from a string only (a JSON number would reach most clients as a
/// binary float), without exponent, with at most the 28 significant digits
/// that are kept exactly — anything else is refused with a reason, never
/// rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dec(pub Decimal);

impl Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&decimal_string(&self.0))
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Dec, D::Error> {
        // A visitor rather than a String read first: a missing field keeps
        // serde's "missing field" error, a number gets "expected a decimal
        // string".
        struct DecimalString;
        impl serde::de::Visitor<'_> for DecimalString {
            type Value = Dec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string such as \"1.5\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Dec, E> {
                parse_decimal(text).map(Dec).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DecimalString)
    }
}

impl PartialSchema for Dec {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A decimal number as a string of plain digits, e.g. \"50000.5\" or \"0\": \
                 written without trailing zeros, read without exponent and with at most 28 \
                 significant digits (at most 8 decimals where an order takes it).",
            ))
            .examples(["50000.5"])
            .into()
    }
}

impl ToSchema for Dec {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Decimal")
    }
}

/// A time on the wire: RFC 3339 in UTC, `2025-11-23T10:30:45.123456Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub DateTime<FixedOffset>);

impl From<DateTime<FixedOffset>> for Time {
    fn from(value: DateTime<FixedOffset>) -> Time {
        Time(value)
    }
}

impl From<DateTime<Utc>> for Time {
    fn from(value: DateTime<Utc>) -> Time {
        Time(value.fixed_offset())
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&timestamp_string(&self.0))
    }
}

impl PartialSchema for Time {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 in UTC, to the microsecond."))
            .examples(["2025-11-23T10:30:45.123456Z"])
            .into()
    }
}

impl ToSchema for Time {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
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

/// RFC 3339 in UTC: `2025-11-23T10:30:45.123456Z`.
pub fn timestamp_string(value: &DateTime<FixedOffset>) -> String {
    value
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
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
    fn the_newtypes_write_and_read_the_contracts_forms() {
        let dec: Dec = serde_json::from_str("\"50000.50\"").expect("a decimal string");
        assert_eq!(serde_json::to_string(&dec).expect("json"), "\"50000.5\"");
        let number = serde_json::from_str::<Dec>("1.5").expect_err("a number is refused");
        assert!(number.to_string().contains("decimal string"), "{number}");
        let none: Option<Dec> = serde_json::from_str("null").expect("null");
        assert_eq!(none, None);
        let at = DateTime::parse_from_rfc3339("2025-11-23T12:30:45.123456+02:00").expect("a time");
        assert_eq!(
            serde_json::to_string(&Time(at)).expect("json"),
            "\"2025-11-23T10:30:45.123456Z\""
        );
    }
}
