//! The scheduler's entry points of `service::maintenance` on real databases:
//! partitions, retention, expiry, the materialized book, snapshots, health.

use std::collections::BTreeMap;
use std::time::Duration;

use sea_orm::prelude::Uuid;
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::json;
use service::ServiceError;
use service::maintenance::{self, PartitionHealth};
use tests::db::TestDb;
use tests::sql::insert_order as order;
use tests::sql::{column, exec, lines, scalar, waiting_sessions};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";

async fn status(db: &DatabaseConnection, id: Uuid) -> String {
    scalar(
        db,
        &format!("SELECT status::text FROM orders WHERE order_id = '{id}'"),
    )
    .await
}

/// The partition health the migrations leave: the current UTC month and the 11
/// after it; today (UTC) and the 29 days after it.
async fn initial_health(db: &DatabaseConnection) -> Vec<PartitionHealth> {
    let name = |sql: &'static str| async move { scalar::<String>(db, sql).await };
    vec![
        PartitionHealth {
            parent_table: "orders".into(),
            partition_count: 12,
            oldest_partition: Some(
                name("SELECT to_char(now() AT TIME ZONE 'UTC', '\"orders_\"YYYY_MM')").await,
            ),
            newest_partition: Some(
                name("SELECT to_char((now() AT TIME ZONE 'UTC') + interval '11 months', '\"orders_\"YYYY_MM')")
                    .await,
            ),
        },
        PartitionHealth {
            parent_table: "trades".into(),
            partition_count: 30,
            oldest_partition: Some(
                name("SELECT to_char(now() AT TIME ZONE 'UTC', '\"trades_\"YYYY_MM_DD')").await,
            ),
            newest_partition: Some(
                name("SELECT to_char((now() AT TIME ZONE 'UTC') + interval '29 days', '\"trades_\"YYYY_MM_DD')")
                    .await,
            ),
        },
    ]
}

async fn table_exists(db: &DatabaseConnection, name: &str) -> bool {
    scalar(db, &format!("SELECT to_regclass('{name}') IS NOT NULL")).await
}

#[tokio::test]
async fn maintain_partitions_recreates_missing_partitions_ahead() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let expected = initial_health(c).await;
    let next_month: String = scalar(
        c,
        "SELECT to_char((now() AT TIME ZONE 'UTC') + interval '1 month', '\"orders_\"YYYY_MM')",
    )
    .await;
    let in_three_days: String = scalar(
        c,
        "SELECT to_char((now() AT TIME ZONE 'UTC') + interval '3 days', '\"trades_\"YYYY_MM_DD')",
    )
    .await;
    exec(
        c,
        &format!("DROP TABLE {next_month}; DROP TABLE {in_three_days}"),
    )
    .await;
    assert!(!table_exists(c, &next_month).await);

    let health = maintenance::maintain_partitions(c)
        .await
        .expect("maintenance");
    assert!(table_exists(c, &next_month).await, "{next_month} is back");
    assert!(
        table_exists(c, &in_three_days).await,
        "{in_three_days} is back"
    );
    assert_eq!(health, expected);

    // Idempotent: a second run changes nothing.
    let again = maintenance::maintain_partitions(c)
        .await
        .expect("maintenance");
    assert_eq!(again, expected);
}

#[tokio::test]
async fn retention_dry_run_lists_and_the_real_run_drops_partitions_past_retention() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    // Retention is 60 months for both tables: 61 months ago is past it, 59 is not.
    exec(
        c,
        "SELECT create_orders_partition(((now() AT TIME ZONE 'UTC') - interval '61 months')::date);
         SELECT create_trades_partition(((now() AT TIME ZONE 'UTC') - interval '61 months')::date);
         SELECT create_trades_partition(((now() AT TIME ZONE 'UTC') - interval '59 months')::date);",
    )
    .await;
    let old_orders: String = scalar(
        c,
        "SELECT to_char((now() AT TIME ZONE 'UTC') - interval '61 months', '\"orders_\"YYYY_MM')",
    )
    .await;
    let old_trades: String = scalar(
        c,
        "SELECT to_char((now() AT TIME ZONE 'UTC') - interval '61 months', '\"trades_\"YYYY_MM_DD')",
    )
    .await;
    let kept_trades: String = scalar(
        c,
        "SELECT to_char((now() AT TIME ZONE 'UTC') - interval '59 months', '\"trades_\"YYYY_MM_DD')",
    )
    .await;
    exec(
        c,
        &format!(
            "INSERT INTO {old_trades} (symbol, buyer_order_id, seller_order_id, buyer_user_id,
                 seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
                 seller_fee_asset, is_buyer_maker, executed_at)
             SELECT 'BTC/USDT', gen_random_uuid(), gen_random_uuid(), '{A}', '{B}', 100, 1, 0, 0,
                 'USDT', 'USDT', true,
                 ((now() AT TIME ZONE 'UTC') - interval '61 months')::date::timestamp AT TIME ZONE 'UTC'"
        ),
    )
    .await;
    let range_ends: Vec<String> = column(
        c,
        "SELECT to_char(date_trunc('month', (now() AT TIME ZONE 'UTC') - interval '61 months')
                        + interval '1 month', 'YYYY-MM-DD')
         UNION ALL
         SELECT to_char(((now() AT TIME ZONE 'UTC') - interval '61 months')::date + 1, 'YYYY-MM-DD')",
    )
    .await;

    let listed = maintenance::enforce_retention(c, true)
        .await
        .expect("dry run");
    let shown: Vec<String> = listed
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p.parent_table,
                p.partition_name,
                p.range_end.naive_utc().format("%Y-%m-%d %H:%M:%S"),
                p.dropped
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            format!("orders {old_orders} {} 00:00:00 false", range_ends[0]),
            format!("trades {old_trades} {} 00:00:00 false", range_ends[1]),
        ]
    );
    assert!(table_exists(c, &old_orders).await && table_exists(c, &old_trades).await);
    assert_eq!(
        scalar::<i64>(c, &format!("SELECT count(*) FROM {old_trades}")).await,
        1,
        "a dry run keeps the rows"
    );

    let dropped = maintenance::enforce_retention(c, false)
        .await
        .expect("real run");
    assert_eq!(
        dropped
            .iter()
            .map(|p| (p.partition_name.clone(), p.dropped))
            .collect::<Vec<_>>(),
        [(old_orders.clone(), true), (old_trades.clone(), true)]
    );
    assert!(!table_exists(c, &old_orders).await);
    assert!(!table_exists(c, &old_trades).await);
    assert!(
        table_exists(c, &kept_trades).await,
        "59 months is within retention"
    );
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM trades").await, 0);

    assert!(
        maintenance::enforce_retention(c, false)
            .await
            .expect("nothing left")
            .is_empty()
    );
}

#[tokio::test]
async fn expiry_ends_yesterdays_day_orders_and_orders_past_their_expiry() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let before_midnight = "created_at = (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') - interval '1 minute'";
    let day_yesterday = order(
        c,
        A,
        "BTC/USDT BUY LIMIT OPEN 1 100",
        &format!("time_in_force = 'DAY'; {before_midnight}"),
    )
    .await;
    let day_partial_yesterday = order(
        c,
        B,
        "BTC/USDT SELL LIMIT PARTIALLY_FILLED 2 101",
        &format!("time_in_force = 'DAY'; filled_quantity = 1; {before_midnight}"),
    )
    .await;
    let day_today = order(
        c,
        A,
        "BTC/USDT BUY LIMIT OPEN 1 100",
        "time_in_force = 'DAY'",
    )
    .await;
    let day_filled_yesterday = order(
        c,
        A,
        "BTC/USDT BUY LIMIT FILLED 1 100",
        &format!("time_in_force = 'DAY'; filled_quantity = 1; {before_midnight}"),
    )
    .await;
    let past_expiry = order(
        c,
        B,
        "ETH/USDT SELL LIMIT OPEN 1 3000",
        "expires_at = now() - interval '1 minute'",
    )
    .await;
    let before_expiry = order(
        c,
        B,
        "ETH/USDT SELL LIMIT OPEN 1 3000",
        "expires_at = now() + interval '1 hour'",
    )
    .await;
    let gtc_old = order(
        c,
        A,
        "BTC/USDT BUY LIMIT OPEN 1 100",
        "created_at = now() - interval '3 days'",
    )
    .await;

    let mut expired = maintenance::expire_orders(c).await.expect("expiry");
    expired.sort();
    let mut expected = vec![day_yesterday, day_partial_yesterday, past_expiry];
    expected.sort();
    assert_eq!(expired, expected);
    for id in [day_yesterday, day_partial_yesterday, past_expiry] {
        assert_eq!(status(c, id).await, "EXPIRED");
    }
    for (id, kept) in [
        (day_today, "OPEN"),
        (day_filled_yesterday, "FILLED"),
        (before_expiry, "OPEN"),
        (gtc_old, "OPEN"),
    ] {
        assert_eq!(status(c, id).await, kept);
    }
    assert!(
        maintenance::expire_orders(c)
            .await
            .expect("expiry")
            .is_empty(),
        "each order expires once"
    );
}

#[tokio::test]
async fn refresh_brings_the_materialized_book_up_to_date() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    order(c, A, "BTC/USDT BUY LIMIT OPEN 1 100", "").await;
    let partial = order(
        c,
        B,
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 2 100",
        "filled_quantity = 0.5",
    )
    .await;
    order(c, B, "BTC/USDT SELL LIMIT OPEN 3 105", "").await;
    order(
        c,
        A,
        "BTC/USDT SELL STOP_LIMIT OPEN 1 99",
        "stop_price = 99.5",
    )
    .await;
    let book = "SELECT symbol, side, trim_scale(price), trim_scale(total_quantity), order_count
                FROM mv_order_book_snapshot ORDER BY symbol, side, price";
    assert!(lines(c, book).await.is_empty(), "not refreshed yet");

    maintenance::refresh_order_book(c).await.expect("refresh");
    assert_eq!(
        lines(c, book).await,
        ["BTC/USDT|BUY|100|2.5|2", "BTC/USDT|SELL|105|3|1"]
    );

    exec(
        c,
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{partial}'"),
    )
    .await;
    maintenance::refresh_order_book(c).await.expect("refresh");
    assert_eq!(
        lines(c, book).await,
        ["BTC/USDT|BUY|100|1|1", "BTC/USDT|SELL|105|3|1"]
    );
}

#[tokio::test]
async fn snapshots_hold_each_active_book_as_json_with_increasing_sequence_numbers() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    exec(
        c,
        "UPDATE symbols SET status = 'HALTED' WHERE symbol = 'DOGE/USDT';
         UPDATE symbols SET status = 'DELISTED' WHERE symbol = 'MATIC/USDT';",
    )
    .await;
    // Bids 100 (two orders, the older first), 99.5; asks 101, 101.25.
    let newer = order(
        c,
        B,
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 1 100",
        "filled_quantity = 0.5; created_at = now() - interval '1 minute'",
    )
    .await;
    let older = order(
        c,
        A,
        "BTC/USDT BUY LIMIT OPEN 1 100",
        "created_at = now() - interval '2 minutes'",
    )
    .await;
    let lower = order(c, A, "BTC/USDT BUY LIMIT OPEN 0.25 99.5", "").await;
    let ask = order(c, B, "BTC/USDT SELL LIMIT OPEN 2 101", "").await;
    let higher_ask = order(c, B, "BTC/USDT SELL LIMIT OPEN 1.1 101.25", "").await;
    // Not in a snapshot: a stop order and a filled order.
    order(
        c,
        A,
        "BTC/USDT BUY STOP_LIMIT OPEN 1 100.5",
        "stop_price = 100.4",
    )
    .await;
    order(
        c,
        A,
        "BTC/USDT SELL LIMIT FILLED 1 100.75",
        "filled_quantity = 1",
    )
    .await;
    // ETH has an earlier snapshot: the next one continues its sequence.
    exec(
        c,
        "INSERT INTO order_book_snapshots (symbol, bids, asks, sequence_number)
         VALUES ('ETH/USDT', '[]', '[]', 41)",
    )
    .await;

    let first = maintenance::snapshot_order_books(c, 1)
        .await
        .expect("snapshots");
    let symbols: Vec<&str> = first.iter().map(|s| s.symbol.as_str()).collect();
    assert_eq!(
        symbols,
        [
            "ADA/USDT",
            "AVAX/USDT",
            "BNB/USDT",
            "BTC/USDT",
            "DOT/USDT",
            "ETH/USDT",
            "SOL/USDT",
            "XRP/USDT"
        ],
        "one per ACTIVE symbol"
    );
    let sequence: BTreeMap<&str, i64> = first
        .iter()
        .map(|s| (s.symbol.as_str(), s.sequence_number))
        .collect();
    assert_eq!(sequence["BTC/USDT"], 1);
    assert_eq!(sequence["ETH/USDT"], 42);
    let btc = &first[3];
    assert_eq!(
        btc.bids,
        json!([{"price": "100", "quantity": "1.5", "orders": [older, newer]}])
    );
    assert_eq!(
        btc.asks,
        json!([{"price": "101", "quantity": "2", "orders": [ask]}])
    );
    assert_eq!(first[0].bids, json!([]));
    assert_eq!(first[0].asks, json!([]));

    let second = maintenance::snapshot_order_books(c, 5)
        .await
        .expect("snapshots");
    let btc = second
        .iter()
        .find(|s| s.symbol == "BTC/USDT")
        .expect("BTC/USDT");
    assert_eq!(btc.sequence_number, 2);
    assert_eq!(
        btc.bids,
        json!([
            {"price": "100", "quantity": "1.5", "orders": [older, newer]},
            {"price": "99.5", "quantity": "0.25", "orders": [lower]},
        ])
    );
    assert_eq!(
        btc.asks,
        json!([
            {"price": "101", "quantity": "2", "orders": [ask]},
            {"price": "101.25", "quantity": "1.1", "orders": [higher_ask]},
        ])
    );
    // The stored row is what was returned.
    let stored: String = scalar(
        c,
        "SELECT bids::text FROM order_book_snapshots WHERE symbol = 'BTC/USDT' AND sequence_number = 2",
    )
    .await;
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("json");
    assert_eq!(stored, btc.bids);
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM order_book_snapshots").await,
        1 + 8 + 8
    );

    match maintenance::snapshot_order_books(c, 0).await {
        Err(ServiceError::InvalidArgument { field: "depth", .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn racing_snapshotters_get_distinct_increasing_sequence_numbers() {
    let db = TestDb::migrated().await;
    order(db.conn(), A, "BTC/USDT BUY LIMIT OPEN 1 100", "").await;
    let mut racers = Vec::new();
    for _ in 0..4 {
        let pool = db.connect().await;
        racers.push(tokio::spawn(async move {
            maintenance::snapshot_order_books(&pool, 10).await
        }));
    }
    for racer in racers {
        racer
            .await
            .expect("the task ran")
            .expect("every snapshotter succeeds");
    }
    let per_symbol: Vec<String> = column(
        db.conn(),
        "SELECT symbol || ' ' || string_agg(sequence_number::text, ',' ORDER BY sequence_number)
         FROM order_book_snapshots GROUP BY symbol ORDER BY symbol",
    )
    .await;
    assert_eq!(per_symbol.len(), 10);
    for line in per_symbol {
        assert!(line.ends_with(" 1,2,3,4"), "{line}");
    }
}

#[tokio::test]
async fn a_snapshot_waits_for_a_placement_holding_the_book_lock() {
    let db = TestDb::migrated().await;
    let other = db.connect().await;
    // A placement in progress: it holds BTC/USDT's book lock and has written
    // an order it has not committed yet.
    let placement = other.begin().await.expect("a transaction");
    exec(
        &placement,
        "SELECT pg_advisory_xact_lock(x'74650001'::int, hashtext('BTC/USDT'))",
    )
    .await;
    exec(
        &placement,
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price)
             VALUES ('{A}', 'BTC/USDT', 'SELL', 'LIMIT', 'OPEN', 1, 200)"
        ),
    )
    .await;

    let pool = db.conn().clone();
    let snapshot = tokio::spawn(async move { maintenance::snapshot_order_books(&pool, 5).await });
    // Synchronized on the lock table: the snapshot's session waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while waiting_sessions(db.conn(), "true").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot never waited"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!snapshot.is_finished(), "the snapshot waits for the lock");

    placement.commit().await.expect("commit");
    let snapshots = snapshot
        .await
        .expect("the task ran")
        .expect("the snapshot is taken");
    let btc = snapshots
        .iter()
        .find(|s| s.symbol == "BTC/USDT")
        .expect("BTC/USDT");
    assert_eq!(
        btc.asks[0]["price"], "200",
        "it sees the committed placement"
    );
}

#[tokio::test]
async fn maintenance_runs_inside_a_callers_transaction() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let txn = c.begin().await.expect("a transaction");
    let snapshots = maintenance::snapshot_order_books(&txn, 5)
        .await
        .expect("snapshots in a savepoint each");
    assert_eq!(snapshots.len(), 10);
    let partitions = maintenance::maintain_partitions(&txn)
        .await
        .expect("maintenance");
    assert_eq!(partitions.len(), 2);
    txn.rollback().await.expect("rollback");
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM order_book_snapshots").await,
        0
    );
}

#[tokio::test]
async fn health_reports_connections_tables_and_partitions() {
    let db = TestDb::migrated().await;
    // One session throughout, so the rows it writes are in the statistics it reads.
    let session = db.connect_single().await;
    for _ in 0..5 {
        order(&session, A, "BTC/USDT BUY LIMIT OPEN 1 100", "").await;
    }
    exec(&session, "SELECT pg_stat_force_next_flush()").await;

    let health = maintenance::health(&session).await.expect("health");
    let max: String = scalar(&session, "SHOW max_connections").await;
    assert_eq!(health.connections.max_connections.to_string(), max);
    assert!(
        health.connections.active_connections >= 1,
        "the health query itself is active: {:?}",
        health.connections
    );

    let tables: BTreeMap<&str, i64> = health
        .tables
        .iter()
        .map(|t| (t.table_name.as_str(), t.row_count))
        .collect();
    assert_eq!(
        tables.keys().copied().collect::<Vec<_>>(),
        [
            "event_outbox",
            "event_sequences",
            "market_last_trade",
            "market_levels",
            "market_sides",
            "order_book_snapshots",
            "orders",
            "partition_retention_config",
            "seaql_migrations",
            "stop_orders_watchlist",
            "symbols",
            "trade_candles",
            "trades",
        ],
        "partitions are counted in their parent, not listed"
    );
    assert_eq!(tables["orders"], 5);
    assert!(health.tables.iter().all(|t| !t.total_size.is_empty()));

    assert_eq!(health.partitions, initial_health(&session).await);
}
