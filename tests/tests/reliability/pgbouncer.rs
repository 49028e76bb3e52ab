//! The api and the migrations through PgBouncer, the
//! Debian package's 1.18, started by each test on a free loopback port.
//!
//! Transaction mode: sqlx 0.9 sends every query SeaORM makes as a named
//! prepared statement (`sqlx_s_1`, `sqlx_s_2`, … counted per client
//! connection; with the statement cache off too), prepared in one exchange
//! and executed in the next. PgBouncer 1.18 does not track prepared
//! statements, so a plain pool collides ("prepared statement \"sqlx_s_1\"
//! already exists") or loses its statement between the two exchanges. The api
//! therefore has `DB_POOL_MODE=transaction` ([`service::pooling`]): every
//! request is one transaction begun with `DEALLOCATE ALL`, without a
//! statement cache. The tests below show the collision of a plain pool, the
//! fix under concurrency, the api's flows in both pooling modes, and
//! migrations in session mode (what they need: see the README).
//! `api_pgbouncer` runs every HTTP test through transaction mode too.

use std::sync::Arc;

use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use sea_orm::{Database, DatabaseConnection};
use serde_json::json;
use service::orders::NewOrder;
use service::pooling::{self, Pool};
use service::{OrderType, Side, TimeInForce};
use tests::app::wire::expect_json;
use tests::app::{AppDatabase, AppOptions, TestApp, server_port, spawn_app};
use tests::catalog::snapshot;
use tests::db::TestDb;
use tests::faults::{Invariants, PoolMode, Pooler};
use tests::sql::scalar;
use tokio::task::JoinSet;
use uuid::Uuid;

/// A pool of `connections` on `url`, opened at once, set up for `mode`.
async fn pool_in(url: &str, connections: u32, mode: pooling::PoolMode) -> DatabaseConnection {
    let settings = pooling::Settings {
        mode,
        max_connections: connections,
        ..pooling::Settings::default()
    };
    let mut options = settings.connect_options(url);
    options.min_connections(connections).connect_lazy(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|err| panic!("{url} connects: {err}"))
}

/// A plain pool of `connections` on `url`.
async fn pool(url: &str, connections: u32) -> DatabaseConnection {
    pool_in(url, connections, pooling::PoolMode::Direct).await
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

/// Eight traders at once through `app`, then a FOK order that cannot fill
/// (its savepoint rolls back); the invariants hold at the end.
async fn eight_traders(app: Arc<TestApp>, db: &DatabaseConnection, log: impl Fn() -> String) {
    app.get_public_json("/ready", 200).await;
    let mut traders = JoinSet::new();
    for n in 0..8 {
        let app = Arc::clone(&app);
        traders.spawn(async move { trade(&app, n).await });
    }
    while let Some(joined) = traders.join_next().await {
        if let Err(err) = joined {
            panic!("a trader failed through PgBouncer: {err}\n{}", log());
        }
    }
    let user = Uuid::new_v4();
    let fok = app
        .place_ok(
            user,
            &json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "quantity": "99",
                    "price": "49000", "time_in_force": "FOK"}),
        )
        .await;
    assert_eq!(fok["order"]["status"], "EXPIRED");
    Invariants::check(db).await.assert_hold();
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
}

/// Session mode: the api as it runs on a direct connection, with PgBouncer's
/// server pool (4) as large as the api's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_its_flows_through_pgbouncer_in_session_mode() {
    let db = TestDb::migrated().await;
    // Session mode pins a server connection to each client connection: the
    // api's four and the event relay's one.
    let pooler = Pooler::start(PoolMode::Session, server_port(db.url()), 5);
    let url = pooler.url_for(db.url());
    let app = spawn_app(
        AppOptions::jwt()
            .pool(4, std::time::Duration::from_secs(10))
            .database(AppDatabase::Url(url)),
    )
    .await;
    eight_traders(Arc::new(app), db.conn(), || pooler.log_text()).await;
}

/// Transaction mode (`DB_POOL_MODE=transaction`): eight api connections'
/// transactions take turns on PgBouncer's two server connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_its_flows_through_pgbouncer_in_transaction_mode() {
    let app = Arc::new(
        spawn_app(
            AppOptions::jwt()
                .pool(8, std::time::Duration::from_secs(10))
                .through_transaction_pooler(),
        )
        .await,
    );
    let direct = app.db().conn().clone();
    let watched = Arc::downgrade(&app);
    let log = move || {
        watched
            .upgrade()
            .and_then(|app| app.pooler_log())
            .unwrap_or_default()
    };
    eight_traders(app, &direct, log).await;
}

/// The collision itself: sqlx 0.9 names every prepared statement
/// (`sqlx_s_1`, `sqlx_s_2`, … per client connection), with its statement
/// cache on or off, so two plain client connections that PgBouncer 1.18 in
/// transaction mode puts on one server connection collide; the simple query
/// protocol (no prepared statement) works.
#[tokio::test]
async fn plain_sqlx_prepared_statements_collide_in_transaction_mode() {
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

/// The fix: `service::pooling` in transaction mode. Six client pools (two
/// connections each) over one server connection run prepared statements,
/// savepoints that commit and savepoints that roll back after an error,
/// placements and cancels, all at once, and none fails; what each unit
/// committed is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooling_in_transaction_mode_shares_server_connections_without_collisions() {
    let db = TestDb::migrated().await;
    let pooler = Pooler::start(PoolMode::Transaction, server_port(db.url()), 1);
    let url = pooler.url_for(db.url());
    let mut clients = JoinSet::new();
    for client in 0..6u32 {
        let url = url.clone();
        clients.spawn(async move {
            let pool = Pool::new(
                pool_in(&url, 2, pooling::PoolMode::Transaction).await,
                pooling::PoolMode::Transaction,
            );
            let user = Uuid::new_v4();
            for round in 0..10u32 {
                let price = Decimal::from(40_000 + client * 100 + round);
                pool.run(async |db| -> Result<(), service::ServiceError> {
                    let counted = db
                        .query_one_raw(Statement::from_sql_and_values(
                            DbBackend::Postgres,
                            "SELECT count(*) AS n FROM symbols WHERE symbol <> $1",
                            [format!("NONE{client}").into()],
                        ))
                        .await?;
                    assert!(counted.is_some(), "a count row");
                    // A savepoint whose statement fails, rolled back: the
                    // unit's transaction goes on.
                    let failing = db.begin().await?;
                    let refused = failing.execute_unprepared("SELECT 1 / 0").await;
                    assert!(refused.is_err(), "division by zero is refused");
                    failing.rollback().await?;
                    let placed = service::orders::place(
                        db,
                        NewOrder {
                            user_id: user,
                            symbol: "BTC/USDT".to_owned(),
                            side: Side::Buy,
                            order_type: OrderType::Limit,
                            quantity: Decimal::new(1, 2),
                            price: Some(price),
                            stop_price: None,
                            time_in_force: TimeInForce::Gtc,
                            client_order_id: Some(format!("c{client}r{round}")),
                            expires_at: None,
                            order_source: Some("API".to_owned()),
                        },
                    )
                    .await?;
                    if round % 2 == 0 {
                        service::orders::cancel(db, user, placed.order.order_id).await?;
                    }
                    Ok(())
                })
                .await
                .unwrap_or_else(|err| panic!("client {client}, round {round}: {err}"));
            }
            user
        });
    }
    let mut users = Vec::new();
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(user) => users.push(user),
            Err(err) => panic!("a client failed: {err}\n{}", pooler.log_text()),
        }
    }
    for user in users {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE status = 'OPEN') * 100 \
                    + count(*) FILTER (WHERE status = 'CANCELLED') \
             FROM orders WHERE user_id = '{user}'"
        );
        let counts: i64 = scalar(db.conn(), &sql).await;
        assert_eq!(
            counts,
            5 * 100 + 5,
            "five open and five cancelled for {user}"
        );
    }
    Invariants::check(db.conn()).await.assert_hold();
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
    let all = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(applied as usize, all);
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
