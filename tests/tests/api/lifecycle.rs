//! The api's lifecycle: graceful shutdown finishes requests in flight, and the
//! background jobs run partition maintenance and order expiry from the start.

use std::time::{Duration, Instant};

use api::auth::Auth;
use api::config::{AuthMode, Config};
use api::server::{Server, connect, random_secret};
use sea_orm::DatabaseConnection;
use tests::app::{AppOptions, spawn_app};
use tests::db::TestDb;
use tests::sql::{exec, scalar};

/// Polls `query` until it returns true, for at most `within`.
async fn eventually(db: &DatabaseConnection, query: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if scalar::<bool>(db, query).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_finishes_the_requests_in_flight() {
    let app = spawn_app(AppOptions::jwt()).await;
    let blocker = app.db().connect_single().await;
    // A request that waits on a lock this test holds.
    exec(
        &blocker,
        "BEGIN; LOCK TABLE symbols IN ACCESS EXCLUSIVE MODE;",
    )
    .await;
    let in_flight = {
        let client = app.client.clone();
        let url = app.url("/api/v1/symbols");
        tokio::spawn(async move { client.get(url).send().await })
    };
    let waiting = "SELECT count(*) = 1 FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    assert!(
        eventually(app.db().conn(), waiting, Duration::from_secs(10)).await,
        "the request waits on the lock"
    );
    let base = app.url("/health");
    let client = app.client.clone();
    let stopping = tokio::spawn(app.shutdown());
    // Synchronized on the listener: once it refuses connections the server
    // is stopping, and the request in flight still holds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(&base).send().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "new connections are still accepted after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    exec(&blocker, "COMMIT").await;
    let answer = in_flight
        .await
        .expect("the request task")
        .expect("the request in flight is answered");
    assert_eq!(answer.status(), 200);
    let symbols: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(symbols.as_array().map(Vec::len), Some(10));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops once the request is answered")
        .expect("the shutdown task");
    blocker.close().await.ok();
}

#[tokio::test]
async fn background_jobs_maintain_partitions_and_expire_orders_from_the_start() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let partition: String = scalar(
        c,
        "SELECT 'orders_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months', 'YYYY_MM')",
    )
    .await;
    exec(c, &format!("DROP TABLE {partition}")).await;
    exec(
        c,
        "INSERT INTO orders (order_id, user_id, symbol, side, order_type, status, quantity, price, expires_at)
         VALUES ('00000000-0000-0000-0000-0000000000e1', gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT',
                 'OPEN', 1, 100, now() - interval '1 second')",
    )
    .await;

    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(db.url().to_owned()),
        "BIND_ADDR" => Some("127.0.0.1:0".to_owned()),
        "BACKGROUND_JOBS" => Some("true".to_owned()),
        _ => None,
    })
    .expect("configuration");
    let pool = connect(db.url(), &config).await.expect("pool");
    let server = Server::start(
        pool.clone(),
        Auth::new(AuthMode::Jwt, &random_secret()),
        &config,
    )
    .await
    .expect("the api starts");

    let recreated = format!("SELECT to_regclass('{partition}') IS NOT NULL");
    assert!(
        eventually(c, &recreated, Duration::from_secs(15)).await,
        "partition maintenance ran at start"
    );
    let expired = "SELECT status = 'EXPIRED' FROM orders
                   WHERE order_id = '00000000-0000-0000-0000-0000000000e1'";
    assert!(
        eventually(c, expired, Duration::from_secs(15)).await,
        "order expiry ran at start"
    );
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("the jobs stop with the server")
        .expect("a clean stop");
    pool.close().await.ok();
}
