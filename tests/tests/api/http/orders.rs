//! `POST /api/v1/orders` over real HTTP (the OpenAPI contract): placing, the
//! 400s that name their field, malformed bodies, 413, and the 409s.
//! `order_reads.rs` has reading, cancelling and listing.

use std::time::Duration;

use super::spawn_app;
use serde_json::{Value, json};
use tests::app::wire::{self, assert_order, expect_error, mentions};
use tests::app::{AppOptions, TestApp};
use tests::sql;
use uuid::Uuid;

fn btc_limit(side: &str, quantity: &str, price: &str) -> Value {
    json!({"symbol": "BTC/USDT", "side": side, "type": "LIMIT", "quantity": quantity, "price": price})
}

/// The `Authorization` header of `user`, for the raw requests.
fn bearer(app: &TestApp, user: Uuid) -> String {
    format!("Bearer {}", app.token(user))
}

#[tokio::test]
async fn a_limit_order_is_placed_and_answered_in_the_contracts_form() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();

    let placed = app
        .place_ok(
            alice,
            &json!({"symbol": "btc-usdt", "side": "SELL", "type": "LIMIT",
                    "quantity": "1.50000000", "price": "50000.00", "client_order_id": "alice-1"}),
        )
        .await;

    assert_eq!(placed["trades"], json!([]), "nothing to match: {placed}");
    let order = &placed["order"];
    assert_order(order);
    assert_eq!(order["symbol"], "BTC/USDT");
    assert_eq!(order["side"], "SELL");
    assert_eq!(order["type"], "LIMIT");
    assert_eq!(order["status"], "OPEN");
    assert_eq!(order["quantity"], "1.5");
    assert_eq!(order["filled_quantity"], "0");
    assert_eq!(order["price"], "50000");
    assert_eq!(order["time_in_force"], "GTC", "the default time in force");
    assert_eq!(order["client_order_id"], "alice-1");
    for absent in [
        "stop_price",
        "average_price",
        "filled_at",
        "cancelled_at",
        "expires_at",
    ] {
        assert!(order[absent].is_null(), "{absent} is null: {order}");
    }

    let id = order["id"].as_str().expect("an id");
    let read = app
        .get_json(&format!("/api/v1/orders/{id}"), alice, 200)
        .await;
    assert_eq!(&read, order, "the order reads back as it was answered");
    app.shutdown().await;
}

#[tokio::test]
async fn stop_orders_keep_their_stop_price_and_time_in_force() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();

    let placed = app
        .place_ok(
            alice,
            &json!({"symbol": "BTC-USDT", "side": "BUY", "type": "STOP_LIMIT", "quantity": "0.25",
                    "price": "51000.10", "stop_price": "50500.50", "time_in_force": "DAY"}),
        )
        .await;

    let order = &placed["order"];
    assert_order(order);
    assert_eq!(order["type"], "STOP_LIMIT");
    assert_eq!(order["price"], "51000.1");
    assert_eq!(order["stop_price"], "50500.5");
    assert_eq!(order["time_in_force"], "DAY");
    assert_eq!(placed["trades"], json!([]));
}

/// A MARKET order never rests: without a time in force it is IOC (not the
/// GTC of the orders that can rest), and a FOK one stays FOK. A STOP order,
/// which waits in the book until triggered, keeps the GTC default.
#[tokio::test]
async fn a_market_order_is_ioc_unless_it_says_fok_and_a_stop_order_stays_gtc() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (maker, taker) = (Uuid::new_v4(), Uuid::new_v4());
    app.place_ok(maker, &btc_limit("SELL", "2", "50000")).await;

    let market = app
        .place_ok(
            taker,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": "1"}),
        )
        .await;
    assert_eq!(market["order"]["time_in_force"], "IOC", "{market}");
    assert_eq!(market["order"]["status"], "FILLED", "{market}");

    let fok = app
        .place_ok(
            taker,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": "5",
                    "time_in_force": "FOK"}),
        )
        .await;
    assert_eq!(fok["order"]["time_in_force"], "FOK", "{fok}");
    assert_eq!(
        fok["order"]["status"], "EXPIRED",
        "not enough to fill 5: {fok}"
    );
    assert_eq!(fok["trades"], json!([]), "{fok}");

    let stop = app
        .place_ok(
            taker,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "STOP", "quantity": "1",
                    "stop_price": "60000"}),
        )
        .await;
    assert_eq!(stop["order"]["time_in_force"], "GTC", "{stop}");
}

#[tokio::test]
async fn invalid_parameters_are_400s_naming_the_field() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();
    let market = |quantity: &str| json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": quantity});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("zero quantity", btc_limit("BUY", "0", "50000"), "quantity"),
        (
            "negative quantity",
            btc_limit("BUY", "-1", "50000"),
            "quantity",
        ),
        (
            "above max size",
            btc_limit("BUY", "101", "50000"),
            "quantity",
        ),
        ("below min size", market("0.00001"), "quantity"),
        ("nine decimals", market("0.000000001"), "quantity"),
        ("zero price", btc_limit("BUY", "1", "0"), "price"),
        ("negative price", btc_limit("BUY", "1", "-5"), "price"),
        ("off tick", btc_limit("BUY", "1", "50000.001"), "price"),
        (
            "nine decimals in the price",
            btc_limit("BUY", "1", "50000.000000001"),
            "price",
        ),
        (
            "limit without price",
            json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "1"}),
            "price",
        ),
        (
            "market with price",
            json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": "1", "price": "50000"}),
            "price",
        ),
        (
            "stop without stop_price",
            json!({"symbol": "BTC/USDT", "side": "SELL", "type": "STOP", "quantity": "1"}),
            "stop_price",
        ),
        (
            "notional below min_order_value",
            btc_limit("BUY", "0.0001", "50000"),
            "minimum",
        ),
        (
            "trailing stop",
            json!({"symbol": "BTC/USDT", "side": "SELL", "type": "TRAILING_STOP", "quantity": "1",
                   "stop_price": "49000"}),
            "type",
        ),
        (
            "unknown symbol",
            json!({"symbol": "FOO-BAR", "side": "BUY", "type": "MARKET", "quantity": "1"}),
            "symbol",
        ),
        (
            "client_order_id over 100 characters",
            json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": "1",
                   "client_order_id": "x".repeat(101)}),
            "client_order_id",
        ),
    ];
    for (case, body, field) in cases {
        let err = expect_error(app.place_order(alice, &body).await, 400).await;
        assert!(
            mentions(&err, field),
            "{case}: the reason names {field}: {err}"
        );
    }
    // None of them left an order behind.
    let listed = app.get_json("/api/v1/orders", alice, 200).await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_limit_price_outside_the_band_of_the_last_trade_is_400() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    app.limit(alice, "SELL", "1", "50000").await;
    app.market(bob, "BUY", "1").await;

    // ±10 % of 50000: 45000..55000.
    let err = expect_error(
        app.place_order(alice, &btc_limit("SELL", "1", "55000.01"))
            .await,
        400,
    )
    .await;
    assert!(mentions(&err, "price"), "{err}");
    app.limit(alice, "SELL", "1", "55000").await;
}

#[tokio::test]
async fn malformed_bodies_are_400s_naming_the_field() {
    let app = spawn_app(AppOptions::jwt()).await;
    let auth = bearer(&app, Uuid::new_v4());
    let json_headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let cases: &[(&str, &str, &str)] = &[
        (
            "missing quantity",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET"}"#,
            "quantity",
        ),
        (
            "missing symbol",
            r#"{"side":"BUY","type":"MARKET","quantity":"1"}"#,
            "symbol",
        ),
        (
            "missing side",
            r#"{"symbol":"BTC/USDT","type":"MARKET","quantity":"1"}"#,
            "side",
        ),
        (
            "unknown side",
            r#"{"symbol":"BTC/USDT","side":"HOLD","type":"MARKET","quantity":"1"}"#,
            "side",
        ),
        (
            "unknown type",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"ICEBERG","quantity":"1"}"#,
            "type",
        ),
        (
            "lower-case enum",
            r#"{"symbol":"BTC/USDT","side":"buy","type":"MARKET","quantity":"1"}"#,
            "side",
        ),
        (
            "unknown time_in_force",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":"1","time_in_force":"GTD"}"#,
            "time_in_force",
        ),
        (
            "number for quantity",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":1.5}"#,
            "quantity",
        ),
        (
            "number for price",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"LIMIT","quantity":"1","price":50000}"#,
            "price",
        ),
        (
            "exponent for quantity",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":"1e3"}"#,
            "quantity",
        ),
        (
            "word for quantity",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":"lots"}"#,
            "quantity",
        ),
        (
            "number for symbol",
            r#"{"symbol":42,"side":"BUY","type":"MARKET","quantity":"1"}"#,
            "symbol",
        ),
        (
            "unknown field",
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":"1","leverage":"10"}"#,
            "leverage",
        ),
    ];
    for (case, body, field) in cases {
        let err = expect_error(
            app.post_raw("/api/v1/orders", &json_headers, *body).await,
            400,
        )
        .await;
        assert!(
            mentions(&err, field),
            "{case}: the reason names {field}: {err}"
        );
    }
    for (case, body) in [
        ("truncated JSON", r#"{"symbol": "BTC/USDT", "#),
        ("not JSON", "symbol=BTC/USDT"),
        ("an array", "[]"),
        ("empty", ""),
    ] {
        let reply = wire::read(app.post_raw("/api/v1/orders", &json_headers, body).await).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.text);
        wire::assert_error_body(&reply.json(), 400);
    }
    let err = expect_error(
        app.post_raw(
            "/api/v1/orders",
            &[("authorization", auth.as_str())],
            r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":"1"}"#,
        )
        .await,
        400,
    )
    .await;
    assert!(mentions(&err, "content-type"), "{err}");
}

#[tokio::test]
async fn a_body_over_16_kib_is_413_with_the_error_body() {
    let app = spawn_app(AppOptions::jwt()).await;
    let auth = bearer(&app, Uuid::new_v4());
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let padded = |bytes: usize| {
        let head = r#"{"symbol":"BTC/USDT","side":"BUY","type":"MARKET","quantity":"1","note":""#;
        let tail = r#""}"#;
        format!(
            "{head}{}{tail}",
            "x".repeat(bytes - head.len() - tail.len())
        )
    };

    let over = padded(16 * 1024 + 1);
    assert_eq!(over.len(), 16 * 1024 + 1);
    expect_error(app.post_raw("/api/v1/orders", &headers, over).await, 413).await;

    // Just under the limit the body is read, and refused for what it says.
    let under = padded(16 * 1024 - 16);
    let err = expect_error(app.post_raw("/api/v1/orders", &headers, under).await, 400).await;
    assert!(mentions(&err, "note"), "{err}");
}

#[tokio::test]
async fn a_duplicate_client_order_id_is_409_naming_the_existing_order() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let with_id = |price: &str| {
        json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "1",
               "price": price, "client_order_id": "dup-1"})
    };
    let first = app.place_ok(alice, &with_id("40000")).await;

    let err = expect_error(app.place_order(alice, &with_id("40001")).await, 409).await;
    assert_eq!(
        err["details"]["existing_order_id"], first["order"]["id"],
        "{err}"
    );

    // Another user may use the same id.
    app.place_ok(bob, &with_id("40002")).await;
    let alices = app.get_json("/api/v1/orders", alice, 200).await;
    assert_eq!(alices.as_array().map(Vec::len), Some(1), "{alices}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_with_one_client_order_id_create_one_order() {
    let app = spawn_app(AppOptions::jwt().pool(8, Duration::from_secs(5))).await;
    let alice = Uuid::new_v4();
    let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "1",
                       "price": "40000", "client_order_id": "race-1"});
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let request = app.authorize(
            app.client.post(app.url("/api/v1/orders")).json(&order),
            alice,
        );
        racing.spawn(async move {
            let response = request.send().await.expect("an answer");
            wire::read(response).await
        });
    }
    let mut created = Vec::new();
    let mut conflicts = Vec::new();
    while let Some(reply) = racing.join_next().await {
        let reply = reply.expect("the request task ran");
        match reply.status {
            201 => created.push(reply.json()["order"]["id"].clone()),
            409 => conflicts.push(reply.json()),
            other => panic!("a racing placement answered {other}: {}", reply.text),
        }
    }
    assert_eq!(created.len(), 1, "exactly one placement wins");
    for conflict in &conflicts {
        wire::assert_error_body(conflict, 409);
        assert_eq!(conflict["details"]["existing_order_id"], created[0]);
    }
    let listed = app.get_json("/api/v1/orders", alice, 200).await;
    let listed: Vec<Value> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|order| order["id"].clone())
        .collect();
    assert_eq!(listed, created);
}

#[tokio::test]
async fn a_client_order_id_may_be_reused_after_24_hours() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();
    let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "1",
                       "price": "40000", "client_order_id": "daily"});
    let first = app.place_ok(alice, &order).await;
    let id = first["order"]["id"].as_str().expect("id");
    sql::exec(
        app.db().conn(),
        &format!(
            "UPDATE orders SET created_at = now() - interval '25 hours' WHERE order_id = '{id}'"
        ),
    )
    .await;

    let second = app.place_ok(alice, &order).await;
    assert_ne!(second["order"]["id"], first["order"]["id"]);
    let err = expect_error(app.place_order(alice, &order).await, 409).await;
    assert_eq!(err["details"]["existing_order_id"], second["order"]["id"]);
}

#[tokio::test]
async fn placing_on_a_symbol_that_is_not_active_is_409() {
    let app = spawn_app(AppOptions::jwt()).await;
    sql::exec(
        app.db().conn(),
        "UPDATE symbols SET status = 'HALTED' WHERE symbol = 'ETH/USDT'",
    )
    .await;

    let err = expect_error(
        app.place_order(
            Uuid::new_v4(),
            &json!({"symbol": "eth-usdt", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "3000"}),
        )
        .await,
        409,
    )
    .await;
    assert!(mentions(&err, "halted"), "{err}");
}
