//! The contract's wire forms, checked: the error body, decimals as strings
//! without needless zeros, RFC 3339 UTC timestamps, the order and trade objects.

use chrono::{DateTime, Utc};
use reqwest::Response;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

/// An answer read whole: status, headers and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics with the text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|err| {
            panic!(
                "the {} answer is not JSON ({err}): {:?}",
                self.status, self.text
            )
        })
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

/// Reads `response` whole.
pub async fn read(response: Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .unwrap_or_else(|err| panic!("the {status} answer's body is readable: {err}"));
    Reply {
        status,
        headers,
        text,
    }
}

/// Asserts the status and a JSON content type, and returns the JSON body; on
/// a mismatch the panic shows the body.
pub async fn expect_json(response: Response, status: u16) -> Value {
    let reply = read(response).await;
    assert_eq!(
        reply.status, status,
        "expected {status}, got {} with {}",
        reply.status, reply.text
    );
    let body = reply.json();
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "a JSON content type on {status} {body}: {:?}",
        reply.headers
    );
    body
}

/// Asserts the status and the contract's error body; returns the body.
pub async fn expect_error(response: Response, status: u16) -> Value {
    let body = expect_json(response, status).await;
    assert_error_body(&body, status);
    body
}

/// `{"error": <non-empty text>, "code": <status text>, "details": {"error":
/// <non-empty text>, …}}`, with no other top-level key.
pub fn assert_error_body(body: &Value, status: u16) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("an error body is an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "details", "error"],
        "error body keys: {body}"
    );
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_else(|| panic!("{status} has a status text"));
    assert_eq!(body["code"], reason, "code is the status text: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error is a message: {body}"
    );
    assert!(
        body["details"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "details.error is a reason: {body}"
    );
}

/// `details.error` of an error body, lower-cased, for "names the field" checks.
pub fn reason(body: &Value) -> String {
    body["details"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Whether `details.error` mentions `word` (any case) as a whole word: not
/// inside a longer name, so `"price"` is not found in `"stop_price"`.
pub fn mentions(body: &Value, word: &str) -> bool {
    let text = reason(body);
    let word = word.to_ascii_lowercase();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(&word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

/// A decimal as the contract writes it: a JSON string of digits with an
/// optional sign and fraction, no exponent, no trailing zeros in the fraction,
/// no leading zeros, and `"0"` for zero. Returns the text.
pub fn assert_decimal<'a>(value: &'a Value, what: &str) -> &'a str {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a decimal string, got {value}"));
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    assert!(plain, "{what} is a plain decimal, got {text:?}");
    assert!(
        whole == "0" || !whole.starts_with('0'),
        "{what} has no leading zeros, got {text:?}"
    );
    assert!(
        !digits.contains('.') || (!fraction.is_empty() && !fraction.ends_with('0')),
        "{what} has no needless trailing zeros, got {text:?}"
    );
    assert!(text != "-0", "{what}: zero is \"0\"");
    text
}

/// [`assert_decimal`] for a field that may be null.
pub fn assert_optional_decimal(value: &Value, what: &str) {
    if !value.is_null() {
        assert_decimal(value, what);
    }
}

/// An RFC 3339 timestamp in UTC, ending in `Z`. Returns it parsed.
pub fn assert_timestamp(value: &Value, what: &str) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a timestamp string, got {value}"));
    assert!(text.ends_with('Z'), "{what} is UTC with Z, got {text:?}");
    // chrono also takes a space between date and time; RFC 3339 writes T.
    assert_eq!(
        text.as_bytes().get(10),
        Some(&b'T'),
        "{what} is date T time, got {text:?}"
    );
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{what} is RFC 3339, got {text:?}: {err}"))
        .with_timezone(&Utc)
}

/// [`assert_timestamp`] for a field that may be null.
pub fn assert_optional_timestamp(value: &Value, what: &str) {
    if !value.is_null() {
        assert_timestamp(value, what);
    }
}

/// The object's keys include every one of `keys` (absent values are null,
/// not missing).
pub fn assert_has_keys(object: &Value, keys: &[&str], what: &str) -> Map<String, Value> {
    let map = object
        .as_object()
        .unwrap_or_else(|| panic!("{what} is an object: {object}"))
        .clone();
    for key in keys {
        assert!(map.contains_key(*key), "{what} has {key}: {object}");
    }
    map
}

/// The contract's order object: every field present, decimals, timestamps,
/// upper-case enums, the database form of the symbol.
pub fn assert_order(order: &Value) {
    assert_has_keys(
        order,
        &[
            "id",
            "symbol",
            "side",
            "type",
            "status",
            "quantity",
            "filled_quantity",
            "price",
            "stop_price",
            "average_price",
            "time_in_force",
            "client_order_id",
            "created_at",
            "updated_at",
            "filled_at",
            "cancelled_at",
            "expires_at",
        ],
        "order",
    );
    assert_uuid(&order["id"], "order.id");
    assert_symbol(&order["symbol"]);
    for (field, allowed) in [
        ("side", &["BUY", "SELL"][..]),
        (
            "type",
            &["MARKET", "LIMIT", "STOP", "STOP_LIMIT", "TRAILING_STOP"][..],
        ),
        (
            "status",
            &[
                "PENDING",
                "OPEN",
                "PARTIALLY_FILLED",
                "FILLED",
                "CANCELLED",
                "REJECTED",
                "EXPIRED",
            ][..],
        ),
        ("time_in_force", &["GTC", "IOC", "FOK", "DAY"][..]),
    ] {
        let value = order[field].as_str().unwrap_or_default();
        assert!(allowed.contains(&value), "order.{field}: {order}");
    }
    assert_decimal(&order["quantity"], "order.quantity");
    assert_decimal(&order["filled_quantity"], "order.filled_quantity");
    for field in ["price", "stop_price", "average_price"] {
        assert_optional_decimal(&order[field], &format!("order.{field}"));
    }
    assert_timestamp(&order["created_at"], "order.created_at");
    assert_timestamp(&order["updated_at"], "order.updated_at");
    for field in ["filled_at", "cancelled_at", "expires_at"] {
        assert_optional_timestamp(&order[field], &format!("order.{field}"));
    }
}

/// The fields of a public trade: no user, no order, no fee.
pub const PUBLIC_TRADE_FIELDS: [&str; 7] = [
    "id",
    "symbol",
    "price",
    "quantity",
    "taker_side",
    "is_buyer_maker",
    "executed_at",
];

/// What an own trade (a placement's, `/me/trades`) adds to the public fields:
/// the caller's order, side, fee and maker flag.
pub const OWN_TRADE_FIELDS: [&str; 5] = ["order_id", "side", "fee", "fee_asset", "is_maker"];

/// The contract's public trade object: exactly the public fields, so no
/// user, order or fee of anyone leaks to an anonymous reader.
pub fn assert_trade(trade: &Value) {
    let map = assert_has_keys(trade, &PUBLIC_TRADE_FIELDS, "trade");
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = PUBLIC_TRADE_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "a public trade has only the public fields");
    assert_public_values(trade);
}

fn assert_public_values(trade: &Value) {
    assert_uuid(&trade["id"], "trade.id");
    assert_symbol(&trade["symbol"]);
    for field in ["price", "quantity"] {
        assert_decimal(&trade[field], &format!("trade.{field}"));
    }
    let buyer_maker = trade["is_buyer_maker"]
        .as_bool()
        .unwrap_or_else(|| panic!("is_buyer_maker is a boolean: {trade}"));
    let taker = if buyer_maker { "SELL" } else { "BUY" };
    assert_eq!(trade["taker_side"], taker, "the taker's side: {trade}");
    assert_timestamp(&trade["executed_at"], "trade.executed_at");
}

/// A trade seen from the caller's side: the public fields and the caller's
/// own, and nothing of the counterparty.
pub fn assert_own_trade(trade: &Value) {
    let own: Vec<&str> = PUBLIC_TRADE_FIELDS
        .iter()
        .chain(OWN_TRADE_FIELDS.iter())
        .copied()
        .collect();
    let map = assert_has_keys(trade, &own, "own trade");
    assert_eq!(
        map.len(),
        own.len(),
        "an own trade has no other fields: {trade}"
    );
    assert_public_values(trade);
    assert_uuid(&trade["order_id"], "trade.order_id");
    assert_decimal(&trade["fee"], "trade.fee");
    let side = trade["side"].as_str().unwrap_or_default();
    assert!(["BUY", "SELL"].contains(&side), "trade.side: {trade}");
    let maker = trade["is_maker"].as_bool().unwrap_or_default();
    let buyer_maker = trade["is_buyer_maker"].as_bool().unwrap_or_default();
    assert_eq!(
        maker,
        (side == "BUY") == buyer_maker,
        "is_maker agrees: {trade}"
    );
}

/// The public view of an own trade: what `GET /api/v1/trades` shows of it.
pub fn public_view(trade: &Value) -> Value {
    Value::Object(
        PUBLIC_TRADE_FIELDS
            .iter()
            .map(|field| ((*field).to_owned(), trade[*field].clone()))
            .collect(),
    )
}

/// A symbol in the database form (`BTC/USDT`), as every response carries it.
pub fn assert_symbol(value: &Value) {
    let text = value.as_str().unwrap_or_default();
    let database_form = text.split_once('/').is_some_and(|(base, quote)| {
        !base.is_empty()
            && !quote.is_empty()
            && (base.chars().chain(quote.chars()))
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    assert!(database_form, "symbol in the BASE/QUOTE form: {value}");
}

/// A UUID string.
pub fn assert_uuid(value: &Value, what: &str) -> uuid::Uuid {
    value
        .as_str()
        .and_then(|text| uuid::Uuid::try_parse(text).ok())
        .unwrap_or_else(|| panic!("{what} is a UUID, got {value}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decimals_must_be_strings_without_needless_zeros() {
        for good in ["0", "1.5", "50000", "-2.25", "0.00000001"] {
            assert_eq!(assert_decimal(&json!(good), "x"), good);
        }
        for bad in [
            json!("1.50"),
            json!("50000.00"),
            json!("1."),
            json!("01"),
            json!("-0"),
            json!("1e3"),
            json!(""),
            json!(1.5),
            Value::Null,
        ] {
            let refused = std::panic::catch_unwind(|| {
                assert_decimal(&bad, "x");
            });
            assert!(refused.is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn timestamps_must_be_utc_with_z() {
        assert_timestamp(&json!("2025-11-23T10:30:45Z"), "t");
        assert_timestamp(&json!("2025-11-23T10:30:45.123456Z"), "t");
        for bad in ["2025-11-23T10:30:45+00:00", "2025-11-23 10:30:45Z", "now"] {
            let refused = std::panic::catch_unwind(|| {
                assert_timestamp(&json!(bad), "t");
            });
            assert!(refused.is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn mentions_finds_whole_words_only() {
        let body = json!({"details": {"error": "stop_price: is required for STOP orders"}});
        assert!(mentions(&body, "stop_price"));
        assert!(mentions(&body, "STOP"));
        assert!(!mentions(&body, "price"));
        assert!(!mentions(&body, "stop_"));
    }

    #[test]
    fn error_bodies_have_exactly_three_keys() {
        let good = json!({"error": "no", "code": "Not Found", "details": {"error": "why"}});
        assert_error_body(&good, 404);
        for bad in [
            json!({"error": "no", "code": "Not Found", "details": {"error": "why"}, "extra": 1}),
            json!({"error": "no", "code": "Bad Request", "details": {"error": "why"}}),
            json!({"error": "no", "code": "Not Found", "details": {}}),
            json!({"error": "", "code": "Not Found", "details": {"error": "why"}}),
        ] {
            let refused = std::panic::catch_unwind(|| assert_error_body(&bad, 404));
            assert!(refused.is_err(), "{bad} is refused");
        }
    }
}
