//! Operations over real HTTP: liveness, readiness (503 with the reason on a
//! database with pending migrations), Prometheus metrics, the OpenAPI 3.1
//! document against the router, unknown routes and methods, and a database
//! outage answered 503 in bounded time instead of a hang.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::spawn_app;
use serde_json::json;
use tests::app::wire::{self, expect_error, expect_json, mentions};
use tests::app::{AppDatabase, AppOptions};
use uuid::Uuid;

#[tokio::test]
async fn health_and_ready_answer_on_a_migrated_database() {
    let app = spawn_app(AppOptions::jwt()).await;
    assert_eq!(
        app.get_public_json("/health", 200).await,
        json!({"status": "ok"})
    );
    assert_eq!(
        app.get_public_json("/ready", 200).await,
        json!({"status": "ready"})
    );
    app.shutdown().await;
}

#[tokio::test]
async fn ready_is_503_with_the_reason_while_migrations_are_pending() {
    let app = spawn_app(AppOptions::jwt().database(AppDatabase::Empty)).await;
    let err = expect_error(app.get_public("/ready").await, 503).await;
    assert!(mentions(&err, "pending"), "{err}");
    assert!(mentions(&err, "m1700000001000_create_enums"), "{err}");
    assert_eq!(
        app.get_public_json("/health", 200).await,
        json!({"status": "ok"}),
        "the process is up all the same"
    );
    // The probe is read-only: it created no migrations table.
    let tables = tests::sql::column::<String>(
        app.db().conn(),
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(tables, Vec::<String>::new());
}

/// The value of the first sample of `name` whose labels contain every one of
/// `labels`, in Prometheus text.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_orders_trades_and_the_pool() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    app.get_public_json("/api/v1/symbols", 200).await;
    app.limit(alice, "SELL", "1", "50000").await;
    app.market(bob, "BUY", "1").await;
    expect_error(app.get_public("/api/v1/orderbook/FOO-BAR").await, 404).await;

    let reply = wire::read(app.get_public("/metrics").await).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        reply.headers
    );
    let text = &reply.text;
    let symbols = sample(
        text,
        "http_requests_total",
        &[
            r#"route="/api/v1/symbols""#,
            r#"method="GET""#,
            r#"status="200""#,
        ],
    );
    assert!(symbols.is_some_and(|n| n >= 1.0), "{text}");
    let placed = sample(
        text,
        "http_requests_total",
        &[r#"route="/api/v1/orders""#, r#"status="201""#],
    );
    assert!(placed.is_some_and(|n| n >= 2.0), "{text}");
    let unknown = sample(
        text,
        "http_requests_total",
        &[r#"route="/api/v1/orderbook/{symbol}""#, r#"status="404""#],
    );
    assert!(unknown.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        text.contains("http_request_duration_seconds"),
        "latencies: {text}"
    );
    // Counters are per process, shared with the other tests of this binary.
    assert!(
        sample(text, "orders_placed_total", &[]).is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        sample(text, "trades_executed_total", &[]).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(text, "db_pool_connections", &[]).is_some_and(|n| n >= 1.0),
        "the pool holds the connections it just used: {text}"
    );
    app.shutdown().await;
}

/// `(METHOD, path)` of every `.route(...)` in the router's source.
fn router_routes() -> BTreeSet<(String, String)> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/src/routes/mod.rs");
    let source = std::fs::read_to_string(file).expect("the router's source is readable");
    let mut routes = BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        // The call's text up to its closing parenthesis.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(call.len(), |(at, _)| at);
        let call = &call[..end];
        let path = call.split('"').nth(1).expect("a route path literal");
        for method in ["get", "post", "put", "patch", "delete"] {
            let used = call.contains(&format!(" {method}("))
                || call.contains(&format!("({method}("))
                || call.contains(&format!(".{method}("));
            if used {
                routes.insert((method.to_ascii_uppercase(), path.to_owned()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_route() {
    let app = spawn_app(AppOptions::jwt()).await;
    let doc = app.get_public_json("/api/v1/openapi.json", 200).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }

    let routed = router_routes();
    let contract: BTreeSet<(String, String)> = [
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/{id}"),
        ("DELETE", "/api/v1/orders/{id}"),
        ("GET", "/api/v1/orderbook/{symbol}"),
        ("GET", "/api/v1/trades"),
        ("GET", "/api/v1/trades/{id}"),
        ("GET", "/api/v1/markets/{symbol}/ticker"),
        ("GET", "/api/v1/symbols"),
        ("GET", "/api/v1/me/trades"),
        ("GET", "/api/v1/me/stats"),
        ("GET", "/api/v1/markets/{symbol}/stats"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/openapi.json"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert!(
        routed.is_superset(&contract),
        "the router serves the contract; missing: {:?}",
        contract.difference(&routed).collect::<Vec<_>>()
    );
    assert_eq!(
        documented, routed,
        "the document lists exactly the router's routes"
    );
    for schema in ["OrderDto", "TradeDto", "ErrorBody", "PlaceOrderRequest"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is described"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_the_error_body() {
    let app = spawn_app(AppOptions::jwt()).await;
    expect_error(app.get_public("/api/v1/nothing-here").await, 404).await;
    expect_error(
        app.post_raw(
            "/api/v1/symbols",
            &[("content-type", "application/json")],
            "{}",
        )
        .await,
        405,
    )
    .await;
    expect_error(
        app.send(app.client.put(app.url("/api/v1/orders"))).await,
        405,
    )
    .await;
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_400_with_the_error_body() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();
    let public = [
        ("/api/v1/orderbook/%FF", "symbol"),
        ("/api/v1/markets/%FF/ticker", "symbol"),
        ("/api/v1/markets/%FF/stats", "symbol"),
        ("/api/v1/trades/%FF", "id"),
    ];
    for (path, field) in public {
        let err = expect_error(app.get_public(path).await, 400).await;
        assert!(mentions(&err, field), "{path}: {err}");
    }
    let err = expect_error(app.get("/api/v1/orders/%FF", alice).await, 400).await;
    assert!(mentions(&err, "id"), "{err}");
    let err = expect_error(app.delete("/api/v1/orders/%FF", alice).await, 400).await;
    assert!(mentions(&err, "id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_answers_503_after_the_acquire_timeout() {
    let app = spawn_app(AppOptions::jwt().pool(1, Duration::from_secs(1))).await;
    // A session of the test's that locks `symbols`: the api's only connection
    // then waits inside a query, and the next request finds no connection.
    let blocker = app.db().connect_single().await;
    tests::sql::exec(
        &blocker,
        "BEGIN; LOCK TABLE symbols IN ACCESS EXCLUSIVE MODE",
    )
    .await;

    let waiting = tokio::spawn(app.client.get(app.url("/api/v1/symbols")).send());
    let waited = Instant::now();
    loop {
        let blocked =
            tests::sql::waiting_sessions(app.db().conn(), "relation = 'symbols'::regclass").await;
        if blocked > 0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the first request never queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let err = expect_error(app.get_public("/api/v1/orderbook/BTC-USDT").await, 503).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "it waited for a connection: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    assert_eq!(err["code"], "Service Unavailable");

    tests::sql::exec(&blocker, "COMMIT").await;
    let first = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the first request ends once the lock is gone")
        .expect("its task ran")
        .expect("it was answered");
    assert_eq!(first.status().as_u16(), 200);
    app.get_public_json("/api/v1/orderbook/BTC-USDT", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_blocked_past_the_statement_timeout_is_503_and_stores_nothing() {
    let app = spawn_app(AppOptions::jwt().statement_timeout(Duration::from_millis(500))).await;
    let alice = Uuid::new_v4();
    // A session of the test's holds a lock every request below needs.
    let blocker = app.db().connect_single().await;
    tests::sql::exec(
        &blocker,
        "BEGIN; LOCK TABLE symbols IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    for attempt in ["read", "placement"] {
        let started = Instant::now();
        let answer = if attempt == "read" {
            app.get_public("/api/v1/symbols").await
        } else {
            app.place_order(
                alice,
                &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                        "quantity": "0.01", "price": "50000"}),
            )
            .await
        };
        let err = expect_error(answer, 503).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "the {attempt} was cut off after {took:?}"
        );
        assert_eq!(err["code"], "Service Unavailable", "{err}");
        assert!(mentions(&err, "DB_STATEMENT_TIMEOUT_MS"), "{err}");
    }
    tests::sql::exec(&blocker, "COMMIT").await;
    let stored: i64 = tests::sql::scalar(app.db().conn(), "SELECT count(*) FROM orders").await;
    assert_eq!(stored, 0, "the timed-out placement stored nothing");
    app.get_public_json("/api/v1/symbols", 200).await;
}

#[tokio::test]
async fn a_database_outage_is_503_within_seconds_not_a_hang() {
    // Port 1 on loopback: nothing listens, every connection attempt fails.
    let app = spawn_app(AppOptions::jwt().pool(2, Duration::from_secs(1)).database(
        AppDatabase::Url("postgres://postgres@127.0.0.1:1/x".to_owned()),
    ))
    .await;
    let alice = Uuid::new_v4();

    let timed = |started: Instant, what: &str| {
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "{what} answered after {took:?}"
        );
    };
    for path in [
        "/api/v1/orderbook/BTC-USDT",
        "/api/v1/markets/BTC-USDT/ticker",
        "/api/v1/symbols",
        "/ready",
    ] {
        let started = Instant::now();
        let err = expect_error(app.get_public(path).await, 503).await;
        timed(started, path);
        assert_eq!(err["code"], "Service Unavailable", "{path}");
    }
    let started = Instant::now();
    expect_error(app.get("/api/v1/orders", alice).await, 503).await;
    timed(started, "GET /api/v1/orders");
    let started = Instant::now();
    expect_error(
        app.place_order(
            alice,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": "1"}),
        )
        .await,
        503,
    )
    .await;
    timed(started, "POST /api/v1/orders");
    assert_eq!(
        expect_json(app.get_public("/health").await, 200).await,
        json!({"status": "ok"}),
        "liveness does not need the database"
    );
    app.shutdown().await;
}
