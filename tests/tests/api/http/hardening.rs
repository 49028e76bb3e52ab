//! The api's defences, over real HTTP: range-checked paging, exact decimals,
//! a bounded metrics registry, one identity per request, the peer check of
//! trusted-header mode, timeouts, load shedding, rate limits and the panic
//! guard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::state::AppState;
use axum::Router;
use axum::routing::get;
use serde_json::json;
use tests::app::AppOptions;
use tests::app::wire::{self, expect_error, mentions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use super::spawn_app;

/// How long a test waits for something the server must do by itself.
const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn offsets_and_cursors_beyond_what_postgresql_takes_are_400s_naming_them() {
    let app = spawn_app(AppOptions::trusted_header()).await;
    let user = Uuid::new_v4();
    for path in ["/api/v1/orders", "/api/v1/me/trades"] {
        for (query, field) in [
            ("offset=9223372036854775808", "offset"),
            ("offset=18446744073709551615", "offset"),
            ("offset=18446744073709551616", "offset"),
            (
                "cursor=-1000000000000000000.0000000000000000000000000000abcd",
                "cursor",
            ),
            (
                "cursor=9223372036854775807.0000000000000000000000000000abcd",
                "cursor",
            ),
        ] {
            let body = expect_error(app.get(&format!("{path}?{query}"), user).await, 400).await;
            assert!(mentions(&body, field), "{path}?{query}: {body}");
        }
        // The largest offset PostgreSQL takes is served (an empty page).
        let last = app
            .get_json(&format!("{path}?offset=9223372036854775807"), user, 200)
            .await;
        assert_eq!(last, json!([]), "{path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_decimal_with_more_digits_than_kept_exactly_is_refused_not_rounded() {
    let app = spawn_app(AppOptions::trusted_header()).await;
    let user = Uuid::new_v4();
    for (field, value) in [
        ("quantity", "1.00000000000000000000000000001"),
        ("price", "50000.0000000000000000000000001"),
        ("quantity", "0.000000001"),
    ] {
        let mut order = json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT",
                               "quantity": "1", "price": "50000"});
        order[field] = json!(value);
        let body = expect_error(app.place_order(user, &order).await, 400).await;
        assert!(mentions(&body, field), "{field}={value}: {body}");
    }
    let listed = app.get_json("/api/v1/orders", user, 200).await;
    assert_eq!(listed, json!([]), "nothing was stored");
    app.shutdown().await;
}

#[tokio::test]
async fn made_up_methods_share_one_metrics_label() {
    let app = spawn_app(AppOptions::jwt()).await;
    for n in 0..5 {
        let method = reqwest::Method::from_bytes(format!("PROBE{n}").as_bytes()).expect("method");
        let response = app
            .send(app.client.request(method, app.url("/api/v1/symbols")))
            .await;
        assert_eq!(response.status(), 405);
    }
    let metrics = wire::read(app.get_public("/metrics").await).await.text;
    assert!(!metrics.contains("PROBE"), "no series per made-up method");
    assert!(
        metrics.contains(r#"method="OTHER""#),
        "made-up methods are counted as OTHER"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn two_user_headers_are_refused() {
    let app = spawn_app(AppOptions::trusted_header()).await;
    let (alice, bob) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let body = expect_error(
        app.get_raw(
            "/api/v1/orders",
            &[("X-User-ID", &alice), ("X-User-ID", &bob)],
        )
        .await,
        401,
    )
    .await;
    assert!(wire::reason(&body).contains("more than once"), "{body}");
    let same_twice = app
        .get_raw(
            "/api/v1/orders",
            &[("X-User-ID", &alice), ("X-User-ID", &alice)],
        )
        .await;
    assert_eq!(same_twice.status(), 401, "even the same value twice");
    let once = app
        .get_raw("/api/v1/orders", &[("X-User-ID", &alice)])
        .await;
    assert_eq!(once.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn only_trusted_proxies_are_served_in_trusted_header_mode() {
    let outside =
        spawn_app(AppOptions::trusted_header().setting("TRUSTED_PROXIES", "10.0.0.0/8")).await;
    let user = Uuid::new_v4();
    let body = expect_error(outside.get("/api/v1/orders", user).await, 401).await;
    assert!(wire::reason(&body).contains("trusted_proxies"), "{body}");
    // Nothing of the contract is served around the gateway, market data
    // included; probes and scrapers still reach the operations endpoints.
    expect_error(outside.get_public("/api/v1/symbols").await, 401).await;
    outside.get_public_json("/health", 200).await;
    let metrics = wire::read(outside.get_public("/metrics").await).await;
    assert_eq!(metrics.status, 200);
    outside.shutdown().await;

    let inside = spawn_app(
        AppOptions::trusted_header().setting("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32"),
    )
    .await;
    inside.get_json("/api/v1/orders", user, 200).await;
    inside.shutdown().await;
}

/// Sends `head` on a fresh connection and waits for the server to close it;
/// returns what it answered (possibly nothing) and how long it took.
async fn close_after(app: &tests::app::TestApp, head: &str) -> (String, Duration) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connects");
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WITHIN, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection within {WITHIN:?}"
    );
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let app = spawn_app(AppOptions::jwt().setting("HEADER_READ_TIMEOUT_MS", "300")).await;
    let (answer, waited) = close_after(&app, "GET /health HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        waited >= Duration::from_millis(250),
        "not before the timeout: {waited:?}"
    );
    assert!(
        !answer.contains("200 OK"),
        "no answer to half a head: {answer:?}"
    );
    // A whole head is answered as usual.
    let (answer, _) = close_after(
        &app,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    app.shutdown().await;
}

/// A route whose handler tells `entered` it runs, then waits for a permit
/// of `release` (a permit added before the wait is not lost).
fn held_route(entered: mpsc::UnboundedSender<()>, release: Arc<Semaphore>) -> Router<AppState> {
    Router::new().route(
        "/test/held",
        get(move || {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                let _ = entered.send(());
                match release.acquire().await {
                    Ok(_) => "released",
                    Err(_) => "closed",
                }
            }
        }),
    )
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_a_503_with_the_contracts_body() {
    let (entered, mut entered_rx) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let app = spawn_app(
        AppOptions::jwt()
            .setting("REQUEST_TIMEOUT_MS", "300")
            .extra_routes(held_route(entered, release)),
    )
    .await;
    let reply = wire::read(app.get_public("/test/held").await).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    wire::assert_error_body(&reply.json(), 503);
    assert!(reply.text.contains("REQUEST_TIMEOUT_MS"), "{}", reply.text);
    assert!(reply.header("retry-after").is_some());
    assert!(entered_rx.recv().await.is_some(), "the handler did run");
    app.get_public_json("/health", 200).await;
    app.shutdown().await;
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed_at_once() {
    let (entered, mut entered_rx) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let app = Arc::new(
        spawn_app(
            AppOptions::jwt()
                .setting("MAX_CONCURRENT_REQUESTS", "2")
                .extra_routes(held_route(entered, release.clone())),
        )
        .await,
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let app = app.clone();
        held.push(tokio::spawn(async move {
            wire::read(app.get_public("/test/held").await).await
        }));
    }
    // Both slots are taken once both handlers run.
    for _ in 0..2 {
        assert!(entered_rx.recv().await.is_some());
    }
    let started = Instant::now();
    let shed = wire::read(app.get_public("/health").await).await;
    assert_eq!(shed.status, 503, "{}", shed.text);
    wire::assert_error_body(&shed.json(), 503);
    assert_eq!(shed.header("retry-after").as_deref(), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed at once, not queued"
    );
    release.add_permits(2);
    for request in held {
        let reply = request.await.expect("the held request");
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    app.get_public_json("/health", 200).await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    async fn panics() -> &'static str {
        panic!("forced by the test")
    }
    let routes = Router::new().route("/test/panic", get(panics));
    let app = spawn_app(AppOptions::jwt().extra_routes(routes)).await;
    for _ in 0..3 {
        let body = expect_error(app.get_public("/test/panic").await, 500).await;
        assert!(
            !body.to_string().contains("forced by the test"),
            "the panic's text stays in the log: {body}"
        );
        app.get_public_json("/health", 200).await;
    }
    let metrics = wire::read(app.get_public("/metrics").await).await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains(r#"route="/test/panic""#) && l.contains(r#"status="500""#)),
        "the 500 is counted"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_per_user_and_per_address_and_recover() {
    let app = spawn_app(
        AppOptions::trusted_header()
            .setting("RATE_LIMIT_PER_SECOND", "1")
            .setting("RATE_LIMIT_BURST", "3")
            .setting("ANONYMOUS_RATE_LIMIT_PER_SECOND", "1")
            .setting("ANONYMOUS_RATE_LIMIT_BURST", "2"),
    )
    .await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    for _ in 0..3 {
        app.get_json("/api/v1/orders", alice, 200).await;
    }
    let limited = wire::read(app.get("/api/v1/orders", alice).await).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    wire::assert_error_body(&limited.json(), 429);
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another user has a bucket of its own.
    app.get_json("/api/v1/orders", bob, 200).await;
    // Anonymous callers are limited by address.
    for _ in 0..2 {
        app.get_public_json("/api/v1/symbols", 200).await;
    }
    let anonymous = wire::read(app.get_public("/api/v1/symbols").await).await;
    assert_eq!(anonymous.status, 429, "{}", anonymous.text);
    // The wait Retry-After names is the limit's own window, not a guess.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    app.get_json("/api/v1/orders", alice, 200).await;
    app.shutdown().await;
}

/// Validates `document` with openapi-spec-validator (Python; `.ci/run`
/// installs it), the validator client generators trust.
fn validate_openapi(document: &serde_json::Value) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("openapi-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
    let path = dir.join("openapi.json");
    std::fs::write(&path, document.to_string()).map_err(|err| err.to_string())?;
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))\n",
        ])
        .arg(&path)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.map_err(|err| format!("python3 cannot run: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_openapi_document_passes_a_real_validator() {
    let app = spawn_app(AppOptions::jwt()).await;
    let document = app.get_public_json("/api/v1/openapi.json", 200).await;
    if let Err(problems) = validate_openapi(&document) {
        panic!(
            "openapi-spec-validator rejects /api/v1/openapi.json (install it with \
             `python3 -m pip install openapi-spec-validator`):\n{problems}"
        );
    }
    // Query parameters are in the query, typed and bounded.
    let list = &document["paths"]["/api/v1/orders"]["get"]["parameters"];
    let limit = list
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "limit"))
        .unwrap_or_else(|| panic!("a limit parameter: {list}"));
    assert_eq!(limit["in"], "query", "{limit}");
    assert_eq!(limit["required"], json!(false), "{limit}");
    assert_eq!(limit["schema"]["maximum"], json!(100), "{limit}");
    assert_eq!(limit["schema"]["default"], json!(50), "{limit}");
    // The validator does catch the old mistake: the same parameter declared
    // in the path of a route that has no such segment.
    let mut broken = document.clone();
    broken["paths"]["/api/v1/orders"]["get"]["parameters"][0]["in"] = json!("path");
    broken["paths"]["/api/v1/orders"]["get"]["parameters"][0]["required"] = json!(true);
    assert!(
        validate_openapi(&broken).is_err(),
        "a path parameter the path does not have is refused"
    );
    app.shutdown().await;
}

/// Makes the next `budget` order inserts fail with a serialization failure
/// (40001), as PostgreSQL raises it: a sequence counts the attempts, and is
/// not rolled back with them.
const FORCE_40001: &str = "
    CREATE TABLE fault_budget (budget bigint NOT NULL);
    INSERT INTO fault_budget VALUES (0);
    CREATE SEQUENCE fault_40001;
    CREATE FUNCTION fail_40001() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        IF nextval('fault_40001') <= (SELECT budget FROM fault_budget) THEN
            RAISE EXCEPTION 'forced by the test' USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN NEW;
    END $fn$;
    CREATE TRIGGER fail_40001 BEFORE INSERT ON orders
        FOR EACH ROW EXECUTE FUNCTION fail_40001();";

#[tokio::test]
async fn a_serialization_failure_is_retried_then_answered_503() {
    let app = spawn_app(AppOptions::trusted_header()).await;
    let db = app.db().conn();
    tests::sql::exec(db, FORCE_40001).await;
    let user = Uuid::new_v4();
    let order = |id: &str| {
        json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01",
               "price": "40000", "client_order_id": id})
    };

    // Two failures: the service's retries absorb them.
    tests::sql::exec(db, "UPDATE fault_budget SET budget = 2").await;
    let placed = wire::expect_json(app.place_order(user, &order("retried")).await, 201).await;
    assert_eq!(placed["order"]["client_order_id"], "retried");
    let attempts: i64 = tests::sql::scalar(db, "SELECT last_value FROM fault_40001").await;
    assert_eq!(
        attempts, 3,
        "two failed attempts, then the one that committed"
    );

    // More failures than retries: 503 with Retry-After, nothing stored.
    tests::sql::exec(
        db,
        "UPDATE fault_budget SET budget = 1000; ALTER SEQUENCE fault_40001 RESTART",
    )
    .await;
    let reply = wire::read(app.place_order(user, &order("refused")).await).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    wire::assert_error_body(&reply.json(), 503);
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    let stored: Vec<String> = tests::sql::column(
        db,
        "SELECT client_order_id FROM orders WHERE client_order_id IS NOT NULL ORDER BY 1",
    )
    .await;
    assert_eq!(
        stored,
        vec!["retried".to_owned()],
        "the refused one left nothing"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn resting_orders_past_the_users_cap_are_a_409_naming_it() {
    let app =
        spawn_app(AppOptions::trusted_header().setting("MAX_RESTING_ORDERS_PER_USER", "3")).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    for price in ["39000", "39001", "39002"] {
        app.limit(alice, "BUY", "0.01", price).await;
    }
    let capped = json!({"symbol": "ETH-USDT", "side": "BUY", "type": "LIMIT",
                        "quantity": "0.01", "price": "3000"});
    let body = expect_error(app.place_order(alice, &capped).await, 409).await;
    assert_eq!(body["details"]["limit"], 3, "{body}");
    assert!(wire::reason(&body).contains("3 resting"), "{body}");
    // A stop order would wait in the book too.
    let stop = json!({"symbol": "BTC-USDT", "side": "SELL", "type": "STOP", "quantity": "0.01",
                      "stop_price": "30000"});
    expect_error(app.place_order(alice, &stop).await, 409).await;
    // Another user is not affected, and an order that cannot rest still trades.
    app.limit(bob, "SELL", "0.01", "40002").await;
    let ioc = json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01",
                     "price": "40002", "time_in_force": "IOC"});
    let crossed = wire::expect_json(app.place_order(alice, &ioc).await, 201).await;
    assert_eq!(crossed["order"]["status"], "FILLED", "{crossed}");
    // Cancelling one frees a place.
    let open = app.get_json("/api/v1/orders?status=OPEN", alice, 200).await;
    let id = open[0]["id"].as_str().expect("an id");
    wire::expect_json(
        app.delete(&format!("/api/v1/orders/{id}"), alice).await,
        200,
    )
    .await;
    wire::expect_json(app.place_order(alice, &capped).await, 201).await;
    app.shutdown().await;
}
