//! Hostile input: generated and mutated bodies, paths,
//! query strings and headers on every endpoint are answered with a success or
//! the contract's JSON error, never a 5xx and never a dropped connection; the
//! numeric edge cases and metacharacters of every field are refused cleanly or
//! stored exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use tests::app::wire::{assert_error_body, read};
use tests::app::{AppOptions, TestApp, spawn_app};
use tests::faults::Invariants;
use uuid::Uuid;

/// Requests the generated test sends: bounded so it stays well under a minute.
const GENERATED_REQUESTS: u32 = 2500;

/// Raw JSON values that break parsers, numeric columns and SQL built by hand
/// (NUL included: PostgreSQL refuses it in text, and the api must say 400).
const HOSTILE_JSON: &[&str] = &[
    r#""\u0000""#,
    r#""a\u0000b""#,
    r#""' OR '1'='1""#,
    r#""'; DROP TABLE orders; --""#,
    r#""%_\\%""#,
    r#""𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ 中文 🚀""#,
    r#""\u202eRTL""#,
    r#""\ud800""#,
    r#""1e400""#,
    r#""-0""#,
    r#""0.000000001""#,
    r#""99999999999999999999""#,
    r#""999999999999.99999999""#,
    r#""1.00000000000000000000000000001""#,
    r#""12345678901234567890.123456789012345""#,
    r#""1000000000000""#,
    r#""NaN""#,
    r#""Infinity""#,
    r#""-1""#,
    r#""0""#,
    r#""0.0001""#,
    r#""1.5""#,
    r#""+1""#,
    r#"" 1 ""#,
    r#""1,5""#,
    r#""0x10""#,
    r#""""#,
    r#"" ""#,
    r#""BTC/USDT""#,
    r#""btc-usdt""#,
    r#""BUY""#,
    r#""sell""#,
    r#""LIMIT""#,
    r#""MARKET""#,
    r#""STOP_LIMIT""#,
    r#""TRAILING_STOP""#,
    r#""FOK""#,
    "1e400",
    "-0",
    "0.000000001",
    "99999999999999999999",
    "1",
    "-1",
    "1.5",
    "true",
    "null",
    "[]",
    "{}",
    r#"["1"]"#,
    r#"{"$gt": ""}"#,
];

/// Strings for paths and query values (percent-encoded before sending).
const HOSTILE_TEXT: &[&str] = &[
    "%00",
    "\u{0}",
    "' OR 1=1 --",
    "'; DROP TABLE orders; --",
    "BTC/USDT",
    "BTC-USDT",
    "btc-usdt",
    "BTC%2FUSDT",
    "../../etc/passwd",
    "..",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "1e400",
    "-0",
    "0.000000001",
    "99999999999999999999",
    "-1",
    "0",
    "101",
    // Offsets at and beyond what PostgreSQL's bigint and the driver take.
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    // Well-formed cursors at and beyond PostgreSQL's timestamp range.
    "-1000000000000000000.0000000000000000000000000000abcd",
    "9223372036854775807.0000000000000000000000000000abcd",
    "-210866803200000000.0000000000000000000000000000abcd",
    "9224318015999999999.0000000000000000000000000000abcd",
    "1764000000000000.0000000000000000000000000000abcd",
    "NaN",
    "",
    " ",
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "24h",
    "7D",
    "OPEN",
    "FILLED",
];

/// The fields of an order, known and unknown.
const FIELDS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "quantity",
    "price",
    "stop_price",
    "time_in_force",
    "client_order_id",
    "order_type",
    "user_id",
];

/// Content types, the first one right.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
    "application/json; charset=\"'; DROP TABLE orders; --\"",
];

/// A percent-encoded form of `text` that is always a valid URL piece.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One generated request.
#[derive(Debug, Clone)]
struct Attempt {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    credentials: Credentials,
    body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum Credentials {
    Valid,
    None,
    Garbage,
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(HOSTILE_TEXT).prop_map(str::to_owned),
        1 => "\\PC{0,40}",
        1 => (1usize..3000).prop_map(|n| "9".repeat(n)),
    ]
}

fn hostile_json() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(HOSTILE_JSON).prop_map(str::to_owned),
        1 => "\\PC{0,30}".prop_map(|s| Value::String(s).to_string()),
        1 => (90usize..300).prop_map(|n| Value::String("x".repeat(n)).to_string()),
        1 => (-1.0e30f64..1.0e30).prop_map(|f| f.to_string()),
    ]
}

/// A valid order, then some of its fields replaced or removed, maybe unknown
/// fields added, maybe the text cut or a byte flipped.
fn order_body() -> impl Strategy<Value = Vec<u8>> {
    let base = prop_oneof![
        Just(json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                    "quantity": "0.01", "price": "40000.00"})),
        Just(
            json!({"symbol": "BTC-USDT", "side": "SELL", "type": "LIMIT",
                    "quantity": "0.01", "price": "60000.00", "time_in_force": "GTC"})
        ),
        Just(json!({"symbol": "ETH/USDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})),
        Just(
            json!({"symbol": "BTC/USDT", "side": "SELL", "type": "STOP_LIMIT",
                    "quantity": "0.01", "price": "39000", "stop_price": "39500"})
        ),
    ];
    let edits = proptest::collection::vec(
        (
            proptest::sample::select(FIELDS),
            proptest::option::weighted(0.85, hostile_json()),
        ),
        0..4,
    );
    let damage = prop_oneof![
        6 => Just(None),
        1 => (0usize..200, any::<u8>()).prop_map(|(at, byte)| Some((at, Some(byte)))),
        1 => (0usize..200).prop_map(|at| Some((at, None))),
    ];
    (base, edits, damage).prop_map(|(base, edits, damage)| {
        let mut fields: Vec<(String, String)> = base
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default();
        for (field, value) in edits {
            fields.retain(|(k, _)| k != field);
            if let Some(value) = value {
                fields.push((field.to_owned(), value));
            }
        }
        let text = format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut bytes = text.into_bytes();
        match damage {
            Some((at, Some(byte))) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            Some((at, None)) => bytes.truncate(at),
            _ => {}
        }
        bytes
    })
}

fn path() -> impl Strategy<Value = (Method, String)> {
    let id = prop_oneof![
        2 => Just(Uuid::new_v4().to_string()),
        3 => hostile_text(),
    ];
    let segment = hostile_text();
    let query = proptest::collection::vec(
        (
            proptest::sample::select(
                &[
                    "symbol", "status", "limit", "offset", "cursor", "depth", "period", "days",
                    "side",
                ][..],
            ),
            hostile_text(),
        ),
        0..4,
    )
    .prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    });
    (0usize..14, id, segment, query).prop_map(|(route, id, segment, query)| {
        let (id, segment) = (encode(&id), encode(&segment));
        let (method, path) = match route {
            0 => (Method::GET, "/api/v1/orders".to_owned()),
            1 => (Method::POST, "/api/v1/orders".to_owned()),
            2 => (Method::GET, format!("/api/v1/orders/{id}")),
            3 => (Method::DELETE, format!("/api/v1/orders/{id}")),
            4 => (Method::GET, format!("/api/v1/orderbook/{segment}")),
            5 => (Method::GET, format!("/api/v1/markets/{segment}/ticker")),
            6 => (Method::GET, format!("/api/v1/markets/{segment}/stats")),
            7 => (Method::GET, "/api/v1/symbols".to_owned()),
            8 => (Method::GET, "/api/v1/trades".to_owned()),
            9 => (Method::GET, format!("/api/v1/trades/{id}")),
            10 => (Method::GET, "/api/v1/me/trades".to_owned()),
            11 => (Method::GET, "/api/v1/me/stats".to_owned()),
            12 => (Method::PUT, format!("/api/v1/orders/{id}")),
            _ => (Method::GET, format!("/api/v1/{segment}")),
        };
        let path = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        (method, path)
    })
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        path(),
        proptest::sample::select(CONTENT_TYPES),
        prop_oneof![
            6 => Just(Credentials::Valid),
            1 => Just(Credentials::None),
            1 => Just(Credentials::Garbage),
        ],
        order_body(),
        proptest::bool::weighted(0.8),
    )
        .prop_map(
            |((method, path), content_type, credentials, body, with_body)| {
                let body = (with_body || method == Method::POST).then_some(body);
                Attempt {
                    method,
                    path,
                    content_type: (!content_type.is_empty()).then_some(content_type),
                    credentials,
                    body,
                }
            },
        )
}

/// Sends `attempt`; panics on a dropped connection, a 5xx or an error
/// without the contract's body. Returns the status.
async fn answer(app: &TestApp, user: Uuid, attempt: &Attempt) -> u16 {
    let mut request = app
        .client
        .request(attempt.method.clone(), app.url(&attempt.path));
    if let Some(content_type) = attempt.content_type {
        request = request.header("content-type", content_type);
    }
    request = match attempt.credentials {
        Credentials::Valid => app.authorize(request, user),
        Credentials::None => request,
        Credentials::Garbage => request.header("authorization", "Bearer ' OR 1=1 --"),
    };
    if let Some(body) = &attempt.body {
        request = request.body(body.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => panic!("no answer (dropped connection?) to {attempt:?}: {err}"),
    };
    let reply = read(response).await;
    assert!(
        reply.status < 500,
        "{} to {attempt:?}: {}",
        reply.status,
        reply.text
    );
    if reply.status >= 400 {
        assert_error_body(&reply.json(), reply.status);
    } else if attempt.path.starts_with("/api/") {
        let _ = reply.json();
    }
    reply.status
}

/// Thousands of generated requests on every route: never a 5xx, never a
/// dropped connection, always the contract's error body; afterwards the
/// invariants hold over whatever was accepted.
#[test]
fn generated_requests_get_a_success_or_the_contracts_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let app = runtime.block_on(spawn_app(AppOptions::jwt()));
    let user = Uuid::new_v4();
    let mut runner = TestRunner::new(Config {
        cases: GENERATED_REQUESTS,
        failure_persistence: None,
        max_shrink_iters: 16,
        ..Config::default()
    });
    let (sent, ok) = (AtomicU64::new(0), AtomicU64::new(0));
    let result = runner.run(&attempt(), |attempt| {
        let status = runtime.block_on(answer(&app, user, &attempt));
        sent.fetch_add(1, Ordering::Relaxed);
        if status < 300 {
            ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    let invariants = runtime.block_on(Invariants::check(app.db().conn()));
    invariants.assert_hold();
    println!(
        "hostile input: {} requests, {} answered 2xx, 0 answered 5xx; {invariants:?}",
        sent.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed)
    );
    runtime.block_on(app.shutdown());
}

/// Each numeric edge case in each decimal field: a 400 that names the field,
/// or (for a value the symbol allows) a 201 whose stored value is exact.
#[tokio::test]
async fn numeric_edge_cases_are_refused_or_stored_exactly() {
    let app = spawn_app(AppOptions::jwt()).await;
    let user = Uuid::new_v4();
    let edges = [
        "1e400",
        "-0",
        "0.000000001",
        "99999999999999999999",
        "999999999999.99999999",
        "1.00000000000000000000000000001",
        "0.10000000000000000000000000000001",
        "0",
        "-1",
        "NaN",
        "Infinity",
        "1e2",
        " 1",
        "",
    ];
    let mut sent = 0;
    for field in ["quantity", "price", "stop_price"] {
        for edge in edges {
            for raw in [Value::String(edge.to_owned()), raw_number(edge)] {
                let mut order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "STOP_LIMIT",
                                       "quantity": "0.01", "price": "40000", "stop_price": "40000"});
                order[field] = raw.clone();
                let reply = read(app.place_order(user, &order).await).await;
                sent += 1;
                match reply.status {
                    400 => assert_error_body(&reply.json(), 400),
                    201 => {
                        let stored = &reply.json()["order"][field];
                        let sent_value: rust_decimal::Decimal = edge
                            .parse()
                            .unwrap_or_else(|_| panic!("{field}={raw} accepted: {}", reply.text));
                        let stored: rust_decimal::Decimal = stored
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or_else(|| panic!("{field} comes back a decimal: {stored}"));
                        assert_eq!(stored, sent_value, "{field}={raw} stored exactly");
                    }
                    other => panic!("{field}={raw}: {other} {}", reply.text),
                }
            }
        }
    }
    println!("numeric edges: {sent} placements, 0 answered 5xx");
    app.shutdown().await;
}

/// `edge` as a bare JSON number where it is one, else as a string.
fn raw_number(edge: &str) -> Value {
    serde_json::from_str::<Value>(edge)
        .ok()
        .filter(Value::is_number)
        .unwrap_or_else(|| Value::String(format!("{edge} ")))
}

/// SQL metacharacters, unicode and overlong text in `client_order_id` and in
/// the symbol: the id is stored byte for byte (and found again by a read) or
/// refused with a 400; the schema is untouched.
#[tokio::test]
async fn metacharacters_and_unicode_are_stored_exactly_or_refused() {
    let app = spawn_app(AppOptions::jwt()).await;
    let user = Uuid::new_v4();
    let texts = [
        "' OR '1'='1",
        "'; DROP TABLE orders; --",
        "\\'; SELECT pg_sleep(10); --",
        "%_\\%",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ 中文 🚀",
        "\u{202e}RTL",
        "tab\tand\nnewline",
        "a\u{0}b",
        &"x".repeat(100),
        &"x".repeat(101),
        &"é".repeat(100),
        &"y".repeat(100_000),
    ];
    let mut stored = 0;
    for text in texts {
        let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                           "quantity": "0.01", "price": "40000", "client_order_id": text});
        let reply = read(app.place_order(user, &order).await).await;
        match reply.status {
            201 => {
                let body = reply.json();
                assert_eq!(body["order"]["client_order_id"], text, "stored exactly");
                let id = body["order"]["id"].as_str().expect("an id");
                let again = app
                    .get_json(&format!("/api/v1/orders/{id}"), user, 200)
                    .await;
                assert_eq!(again["client_order_id"], text, "read back exactly");
                stored += 1;
            }
            400 | 413 => assert_error_body(&reply.json(), reply.status),
            other => panic!(
                "client_order_id {:?}: {other} {}",
                text.chars().take(40).collect::<String>(),
                reply.text
            ),
        }
        let as_symbol = json!({"symbol": text, "side": "BUY", "type": "MARKET", "quantity": "1"});
        let reply = read(app.place_order(user, &as_symbol).await).await;
        assert!(
            reply.status == 400 || reply.status == 413,
            "symbol {:?}: {} {}",
            text.chars().take(40).collect::<String>(),
            reply.status,
            reply.text
        );
        assert_error_body(&reply.json(), reply.status);
        // Paths stay under the HTTP server's URI limit (64 KiB in hyper).
        let text = &text[..text.len().min(4000)];
        for path in [
            format!("/api/v1/orderbook/{}", encode(text)),
            format!("/api/v1/trades?symbol={}", encode(text)),
            format!(
                "/api/v1/orders?symbol={}&status={}",
                encode(text),
                encode(text)
            ),
        ] {
            let reply = read(app.get(&path, user).await).await;
            assert!(
                reply.status < 500,
                "{path}: {} {}",
                reply.status,
                reply.text
            );
            if reply.status >= 400 {
                assert_error_body(&reply.json(), reply.status);
            }
        }
    }
    assert!(stored >= 5, "the plain texts are stored, got {stored}");
    // The orders table is still there and holds exactly what was accepted.
    let count: i64 = tests::sql::scalar(app.db().conn(), "SELECT count(*) FROM orders").await;
    assert_eq!(count, stored);
    app.shutdown().await;
}
