//! Least privilege: with the roles of `scripts/roles.sql`,
//! the api serves its flows connected as the application role (migrations
//! off), which cannot change the schema nor delete history; the analytics role
//! only reads.

use serde_json::json;
use tests::app::wire::{expect_error, expect_json};
use tests::app::{AppDatabase, AppOptions, spawn_app};
use tests::db::TestDb;
use tests::faults::{Invariants, Roles};
use tests::sql::{scalar, sql_error, try_exec, wait_until_relayed};
use uuid::Uuid;

async fn connect(url: &str) -> sea_orm::DatabaseConnection {
    sea_orm::Database::connect(url)
        .await
        .unwrap_or_else(|err| panic!("{url} connects: {err}"))
}

/// Place, cross, cancel, list, read the book, ticker, trades, stats and
/// /ready, all through the api connected as the application role.
#[tokio::test]
async fn the_api_serves_its_flows_as_the_application_role() {
    // Declared first, so dropped after the database (even on a panic): a
    // role with grants in a live database cannot be dropped.
    let roles;
    let db = TestDb::migrated().await;
    roles = Roles::apply(&db);
    {
        let app = spawn_app(
            AppOptions::jwt().database(AppDatabase::Url(Roles::url_as(db.url(), &roles.app))),
        )
        .await;
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let ask = app.limit(alice, "SELL", "0.5", "50000.00").await;
        let resting = app.limit(alice, "BUY", "0.2", "49000.00").await;
        let taken = app.market(bob, "BUY", "0.2").await;
        assert_eq!(taken["trades"].as_array().map(Vec::len), Some(1), "{taken}");
        let id = resting["id"].as_str().expect("an id");
        let cancelled = expect_json(
            app.delete(&format!("/api/v1/orders/{id}"), alice).await,
            200,
        )
        .await;
        assert_eq!(cancelled["status"], "CANCELLED");
        let listed = app
            .get_json("/api/v1/orders?symbol=BTC-USDT", alice, 200)
            .await;
        assert!(
            listed
                .to_string()
                .contains(ask["id"].as_str().expect("an id"))
        );
        let book = app.get_public_json("/api/v1/orderbook/BTC-USDT", 200).await;
        assert_eq!(book["asks"][0]["volume"], "0.3", "{book}");
        app.get_public_json("/api/v1/markets/BTC-USDT/ticker", 200)
            .await;
        app.get_public_json("/api/v1/markets/BTC-USDT/stats?period=24h", 200)
            .await;
        app.get_public_json("/api/v1/trades?symbol=BTC-USDT", 200)
            .await;
        app.get_json("/api/v1/me/trades", bob, 200).await;
        app.get_json("/api/v1/me/stats", bob, 200).await;
        app.get_public_json("/ready", 200).await;
        // A stop order goes through the watchlist triggers.
        app.place_ok(
            bob,
            &json!({"symbol": "BTC/USDT", "side": "SELL", "type": "STOP_LIMIT",
                    "quantity": "0.1", "price": "45000", "stop_price": "46000"}),
        )
        .await;
        // The client_order_id conflict path reads as the role too.
        let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                           "quantity": "0.01", "price": "48000", "client_order_id": "lp-1"});
        app.place_ok(bob, &order).await;
        expect_error(app.place_order(bob, &order).await, 409).await;
        // The relay publishes every event as the role (reads, marks), and
        // the book stream's snapshot reads the sequences.
        wait_until_relayed(db.conn(), std::time::Duration::from_secs(20)).await;
        let published: i64 = scalar(db.conn(), "SELECT count(*) FROM event_outbox").await;
        assert!(published > 0, "the flows wrote events");
        let as_app = connect(&Roles::url_as(db.url(), &roles.app)).await;
        let snapshot = service::events::book_snapshot(&as_app, "BTC/USDT")
            .await
            .expect("the role reads the book and its sequence");
        assert!(
            snapshot.sequence > 0 && !snapshot.asks.is_empty(),
            "{snapshot:?}"
        );
        app.shutdown().await;
    }
    Invariants::check(db.conn()).await.assert_hold();
    drop(db);
}

/// The application role cannot create, alter, drop, truncate or delete
/// history, nor run the migrations; the analytics role cannot write at all.
#[tokio::test]
async fn the_roles_cannot_do_what_they_do_not_need() {
    let roles;
    let db = TestDb::migrated().await;
    roles = Roles::apply(&db);
    {
        let app = connect(&Roles::url_as(db.url(), &roles.app)).await;
        for statement in [
            "CREATE TABLE intruder (id int)",
            "ALTER TABLE orders ADD COLUMN intruder int",
            "DROP TABLE trades",
            "TRUNCATE orders",
            "DELETE FROM orders",
            "DELETE FROM trades",
            "DELETE FROM seaql_migrations",
            "UPDATE market_levels SET quantity = 0",
            "UPDATE market_sides SET quantity = 0",
            "DELETE FROM market_last_trade",
            "DELETE FROM trade_candles",
            "UPDATE symbols SET status = 'HALTED'",
            "CREATE INDEX intruder ON orders (user_id)",
            "REFRESH MATERIALIZED VIEW mv_order_book_snapshot",
            "CREATE TABLE orders_intruder PARTITION OF orders \
             FOR VALUES FROM ('2999-01-01') TO ('2999-02-01')",
            // Events are the triggers' to write.
            "INSERT INTO event_outbox (kind, symbol, payload) VALUES ('trade', 'BTC/USDT', '{}')",
            "UPDATE event_sequences SET book_sequence = 0",
        ] {
            let refused = try_exec(&app, statement)
                .await
                .expect_err(&format!("the application role ran {statement}"));
            let (code, text) = sql_error(&refused);
            assert_eq!(
                code, "42501",
                "{statement}: refused for lack of privilege, not {text}"
            );
        }
        let migrated = migration::run(
            &app,
            migration::Operation::Up(None),
            migration::DataLoss::Refuse,
        )
        .await;
        // Even with nothing pending, `up` first makes sure seaql_migrations
        // exists, which needs CREATE on the schema.
        assert!(migrated.is_err(), "the application role ran the migrator");
        let down = migration::run(
            &app,
            migration::Operation::Down(Some(1)),
            migration::DataLoss::Allow,
        )
        .await;
        assert!(
            down.is_err(),
            "the application role rolled a migration back"
        );
        let analytics = connect(&Roles::url_as(db.url(), &roles.analytics)).await;
        let symbols: i64 = scalar(&analytics, "SELECT count(*) FROM symbols").await;
        assert!(symbols > 0);
        let _: i64 = scalar(&analytics, "SELECT count(*) FROM v_symbol_stats_24h").await;
        for statement in [
            "INSERT INTO orders (user_id, symbol, side, order_type, quantity) \
             VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'MARKET', 1)",
            "UPDATE symbols SET status = 'HALTED'",
            "DELETE FROM stop_orders_watchlist",
            "SELECT maintain_partitions()",
        ] {
            let refused = try_exec(&analytics, statement)
                .await
                .expect_err(&format!("the analytics role ran {statement}"));
            // Writes stop at its read-only default first (25006); the rest at
            // privileges (42501).
            let (code, text) = sql_error(&refused);
            assert!(
                code == "42501" || code == "25006",
                "{statement}: refused by the role's limits, not {text}"
            );
        }
        let applied: i64 = scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await;
        let all = <migration::Migrator as migration::MigratorTrait>::migrations().len();
        assert_eq!(applied as usize, all, "the schema is untouched");
    }
    drop(db);
}
