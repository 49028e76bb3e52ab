//! The api and the migrations through PgBouncer (issue 7, part 1), the
//! Debian package's 1.18, started by each test on a free loopback port.
//!
//! Finding: the api cannot run through PgBouncer 1.18 in transaction mode.
//! sqlx 0.9 sends every query SeaORM makes as a named prepared statement
//! (`sqlx_s_1`, `sqlx_s_2`, … counted per client connection), and turning its
//! statement cache off (`?statement-cache-capacity=0`) does not change that:
//! the names are still used, only no longer reused. PgBouncer 1.18 does not
//! track prepared statements, so two client connections served by one server
//! connection collide ("prepared statement \"sqlx_s_1\" already exists",
//! a 500). What works: session mode (tested below, for the api and the
//! migrations, whose lock is a session-level advisory lock anyway), or
//! PgBouncer 1.21+ with `max_prepared_statements` set, which tracks
//! protocol-level prepared statements in transaction mode.

use std::sync::Arc;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use tests::app::wire::expect_json;
use tests::app::{AppDatabase, AppOptions, TestApp, spawn_app};
use tests::catalog::snapshot;
use tests::db::TestDb;
use tests::faults::{Invariants, PoolMode, Pooler};
use tests::sql::scalar;
use tokio::task::JoinSet;
use uuid::Uuid;

/// The port of the server behind `url`.
fn server_port(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(5432)
}

/// A pool of `connections` on `url`, opened at once.
async fn pool(url: &str, connections: u32) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(connections)
        .min_connections(connections)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|err| panic!("{url} connects: {err}"))
}

/// One trader's story: rest, get crossed, cancel, list, read the book.
async fn trade(app: &TestApp, n: usize) {
    let (maker, taker) = (Uuid::new_v4(), Uuid::new_v4());
    let price = format!("{}", 49_000 + n * 10);
    let ask = app.limit(maker, "SELL", "0.2", &price).await;
    let bid = app.limit(maker, "BUY", "0.1", "48000").await;
    let crossed = app.market(taker, "BUY", "0.1").await;
    assert!(
        !crossed["trades"].as_array().is_none_or(Vec::is_empty),
        "{crossed}"
    );
    let id = bid["id"].as_str().expect("an id");
    let cancelled = expect_json(
        app.delete(&format!("/api/v1/orders/{id}"), maker).await,
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "CANCELLED");
    let listed = app
        .get_json("/api/v1/orders?symbol=BTC-USDT", maker, 200)
        .await;
    let ask_id = ask["id"].as_str().expect("an id");
    assert!(listed.to_string().contains(ask_id), "{listed}");
    let one = app
        .get_json(&format!("/api/v1/orders/{ask_id}"), maker, 200)
        .await;
    assert_eq!(one["id"], ask_id, "{one}");
    app.get_public_json("/api/v1/orderbook/BTC-USDT", 200).await;
    app.get_json("/api/v1/me/trades", taker, 200).await;
}

/// Eight traders at once through PgBouncer in session mode (transaction
/// mode cannot serve the api, see the next test), with PgBouncer's server
/// pool (4) as large as the api's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_its_flows_through_pgbouncer_in_session_mode() {
    let db = TestDb::migrated().await;
    let pooler = Pooler::start(PoolMode::Session, server_port(db.url()), 4);
    let url = pooler.url_for(db.url());
    let app = Arc::new(
        spawn_app(
            AppOptions::jwt()
                .pool(4, std::time::Duration::from_secs(10))
                .database(AppDatabase::Url(url)),
        )
        .await,
    );
    app.get_public_json("/ready", 200).await;
    let mut traders = JoinSet::new();
    for n in 0..8 {
        let app = Arc::clone(&app);
        traders.spawn(async move { trade(&app, n).await });
    }
    while let Some(joined) = traders.join_next().await {
        if let Err(err) = joined {
            panic!(
                "a trader failed through PgBouncer: {err}\n{}",
                pooler.log_text()
            );
        }
    }
    // A FOK order that cannot fill, and an idempotent retry: both paths roll back.
    let user = Uuid::new_v4();
    let fok = app
        .place_ok(
            user,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "99",
                    "price": "49000", "time_in_force": "FOK"}),
        )
        .await;
    assert_eq!(fok["order"]["status"], "EXPIRED");
    Invariants::check(db.conn()).await.assert_hold();
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
}

/// The finding itself: sqlx 0.9 names every prepared statement
/// (`sqlx_s_1`, `sqlx_s_2`, … per client connection), with its statement
/// cache on or off, so two client connections that PgBouncer 1.18 in
/// transaction mode puts on one server connection collide; the simple query
/// protocol (no prepared statement) works.
#[tokio::test]
async fn sqlx_prepared_statements_collide_in_transaction_mode_and_simple_queries_work() {
    let db = TestDb::migrated().await;
    let pooler = Pooler::start(PoolMode::Transaction, server_port(db.url()), 1);
    let url = pooler.url_for(db.url());
    let query = "SELECT count(*) FROM symbols WHERE symbol <> 'NONE'";
    for url in [url.clone(), format!("{url}?statement-cache-capacity=0")] {
        let (first, second) = (pool(&url, 1).await, pool(&url, 1).await);
        let mut collisions = Vec::new();
        for _ in 0..5 {
            for conn in [&first, &second] {
                let prepared = Statement::from_string(DbBackend::Postgres, query);
                if let Err(err) = conn.query_one_raw(prepared).await {
                    collisions.push(err.to_string());
                }
            }
        }
        assert!(
            collisions.iter().any(|e| e.contains("sqlx_s_")),
            "expected sqlx's named statements to collide through PgBouncer 1.18 in \
             transaction mode ({url}), got {collisions:?}"
        );
        for _ in 0..5 {
            for conn in [&first, &second] {
                conn.execute_unprepared(query)
                    .await
                    .unwrap_or_else(|err| panic!("a simple query through PgBouncer: {err}"));
            }
        }
    }
}

/// A full migrate up, down and up again through PgBouncer in session mode
/// (the migration lock is a session-level advisory lock) gives the catalog
/// of a direct run.
#[tokio::test]
async fn migrations_run_up_and_down_through_pgbouncer_in_session_mode() {
    let db = TestDb::empty().await;
    let pooler = Pooler::start(PoolMode::Session, server_port(db.url()), 4);
    let through = pool(&pooler.url_for(db.url()), 2).await;
    for operation in [
        migration::Operation::Up(None),
        migration::Operation::Down(None),
        migration::Operation::Up(None),
    ] {
        migration::run(&through, operation, migration::DataLoss::Refuse)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "{operation:?} through PgBouncer: {err}\n{}",
                    pooler.log_text()
                )
            });
    }
    let applied: i64 = scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await;
    assert_eq!(applied, 6);
    let direct = TestDb::empty().await;
    migration::run(
        direct.conn(),
        migration::Operation::Up(None),
        migration::DataLoss::Refuse,
    )
    .await
    .unwrap_or_else(|err| panic!("direct up: {err}"));
    let (expected, actual) = (snapshot(direct.conn()).await, snapshot(db.conn()).await);
    let diff = expected.diff(&actual);
    assert!(diff.is_empty(), "through PgBouncer vs direct:\n{diff}");
}
