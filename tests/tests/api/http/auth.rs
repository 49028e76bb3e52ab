//! Authentication over real HTTP, in both modes: every way a credential can
//! be missing or wrong is a 401 with the contract's body; a valid caller
//! works; market data needs no credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use super::spawn_app;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tests::app::wire::{expect_error, expect_json, mentions};
use tests::app::{AppOptions, TestApp};
use uuid::Uuid;

/// Request headers as (name, value) pairs.
type Headers = Vec<(&'static str, String)>;

/// Every user endpoint, as (method, path) with a valid-looking id.
fn user_endpoints() -> Vec<(&'static str, String)> {
    let id = Uuid::new_v4();
    vec![
        ("GET", "/api/v1/orders".to_owned()),
        ("POST", "/api/v1/orders".to_owned()),
        ("GET", format!("/api/v1/orders/{id}")),
        ("DELETE", format!("/api/v1/orders/{id}")),
        ("GET", "/api/v1/me/trades".to_owned()),
        ("GET", "/api/v1/me/stats".to_owned()),
    ]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn forge(claims: &Value, secret: &str, algorithm: Algorithm) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token is forged")
}

/// Sends `method path` with `headers` and a valid order body; expects 401.
async fn refused(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = match method {
        "GET" => app.client.get(app.url(path)),
        "POST" => app
            .client
            .post(app.url(path))
            .json(&json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": "1"})),
        "DELETE" => app.client.delete(app.url(path)),
        other => panic!("no such method in this test: {other}"),
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    expect_error(app.send(request).await, 401).await
}

#[tokio::test]
async fn jwt_mode_refuses_every_bad_credential_with_401() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();
    let sub = alice.to_string();
    let valid = app.token(alice);
    let expired = forge(
        &json!({"sub": sub, "iat": now() - 7200, "exp": now() - 60}),
        &app.jwt_secret,
        Algorithm::HS256,
    );
    let foreign = forge(
        &json!({"sub": sub, "iat": now(), "exp": now() + 3600}),
        "another-secret-of-enough-length",
        Algorithm::HS256,
    );
    let not_a_uuid = forge(
        &json!({"sub": "alice", "iat": now(), "exp": now() + 3600}),
        &app.jwt_secret,
        Algorithm::HS256,
    );
    let without_exp = forge(
        &json!({"sub": sub, "iat": now()}),
        &app.jwt_secret,
        Algorithm::HS256,
    );
    let other_algorithm = forge(
        &json!({"sub": sub, "iat": now(), "exp": now() + 3600}),
        &app.jwt_secret,
        Algorithm::HS512,
    );
    let bearer = |token: &str| format!("Bearer {token}");
    let cases: Vec<(&str, Headers, &str)> = vec![
        ("no header", vec![], "authorization"),
        (
            "not Bearer",
            vec![("authorization", format!("Basic {valid}"))],
            "bearer",
        ),
        (
            "Bearer without a token",
            vec![("authorization", "Bearer".to_owned())],
            "bearer",
        ),
        (
            "malformed token",
            vec![("authorization", bearer("not.a.token"))],
            "malformed",
        ),
        (
            "expired token",
            vec![("authorization", bearer(&expired))],
            "expired",
        ),
        (
            "another secret",
            vec![("authorization", bearer(&foreign))],
            "signature",
        ),
        (
            "sub not a UUID",
            vec![("authorization", bearer(&not_a_uuid))],
            "sub",
        ),
        // The api answers "malformed" here (its claims type needs exp before
        // the check that would name it); the contract asks for the 401 alone.
        (
            "no exp",
            vec![("authorization", bearer(&without_exp))],
            "token",
        ),
        (
            "HS512",
            vec![("authorization", bearer(&other_algorithm))],
            "hs256",
        ),
        (
            "X-User-ID alone",
            vec![("x-user-id", alice.to_string())],
            "authorization",
        ),
    ];
    for (case, headers, hint) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, path) in user_endpoints() {
            let err = refused(&app, method, &path, &headers).await;
            assert!(
                mentions(&err, hint),
                "{case}, {method} {path}: the reason says {hint}: {err}"
            );
        }
    }

    // A valid token works, and is the caller.
    let placed = app
        .place_ok(
            alice,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "40000"}),
        )
        .await;
    let listed = app.get_json("/api/v1/orders", alice, 200).await;
    assert_eq!(listed[0]["id"], placed["order"]["id"]);
    let lower_case_scheme = app
        .get_raw(
            "/api/v1/orders",
            &[("authorization", &format!("bearer {valid}"))],
        )
        .await;
    assert_eq!(expect_json(lower_case_scheme, 200).await, listed);
    app.shutdown().await;
}

#[tokio::test]
async fn trusted_header_mode_takes_a_user_id_header_and_nothing_less() {
    let app = spawn_app(AppOptions::trusted_header()).await;
    let alice = Uuid::new_v4();
    let cases: Vec<(&str, Headers)> = vec![
        ("no header", vec![]),
        ("empty", vec![("x-user-id", String::new())]),
        ("not a UUID", vec![("x-user-id", "alice".to_owned())]),
        ("almost a UUID", vec![("x-user-id", format!("{alice}0"))]),
    ];
    for (case, headers) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, path) in user_endpoints() {
            let err = refused(&app, method, &path, &headers).await;
            assert!(
                mentions(&err, "x-user-id"),
                "{case}, {method} {path}: {err}"
            );
        }
    }

    let placed = app
        .place_ok(
            alice,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "40000"}),
        )
        .await;
    let listed = app
        .get_raw("/api/v1/orders", &[("X-User-ID", &alice.to_string())])
        .await;
    let listed = expect_json(listed, 200).await;
    assert_eq!(listed[0]["id"], placed["order"]["id"]);
    let other = app.get_json("/api/v1/orders", Uuid::new_v4(), 200).await;
    assert_eq!(other, json!([]), "the header is the caller");
    app.shutdown().await;
}

#[tokio::test]
async fn market_data_needs_no_credentials_in_either_mode() {
    for options in [AppOptions::jwt(), AppOptions::trusted_header()] {
        let app = spawn_app(options).await;
        for path in [
            "/api/v1/symbols",
            "/api/v1/orderbook/BTC-USDT",
            "/api/v1/markets/BTC-USDT/ticker",
            "/api/v1/markets/BTC-USDT/stats",
            "/api/v1/trades?symbol=BTC-USDT",
            "/health",
            "/api/v1/openapi.json",
        ] {
            app.get_public_json(path, 200).await;
        }
        app.shutdown().await;
    }
}
