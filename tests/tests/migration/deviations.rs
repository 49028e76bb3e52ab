//! Each deviation from the TypeORM originals (D1–D14 of the schema spec),
//! proven with data. D13 is proven with the rollback contract in
//! `rollback.rs` and once more here.

use migration::{DataLoss, Operation};
use sea_orm::TransactionTrait;
use tests::db::TestDb;
use tests::sql::{column, exec, lines, scalar, sql_error, try_exec};

const USER_A: &str = "00000000-0000-0000-0000-00000000000a";
const USER_B: &str = "00000000-0000-0000-0000-00000000000b";

#[tokio::test]
async fn d1_orders_primary_key_includes_the_partition_key() {
    let db = TestDb::migrated().await;
    let id = "11111111-1111-1111-1111-111111111111";
    let insert = |created: &str| {
        format!(
            "INSERT INTO orders (order_id, user_id, symbol, side, order_type, quantity, price, created_at)
             VALUES ('{id}', '{USER_A}', 'BTC/USDT', 'BUY', 'LIMIT', 1, 100, {created})"
        )
    };
    exec(db.conn(), &insert("'2026-06-01 12:00:00+00'")).await;
    exec(db.conn(), &insert("'2026-06-01 12:00:00.000001+00'")).await; // same id, other time
    let err = try_exec(db.conn(), &insert("'2026-06-01 12:00:00+00'"))
        .await
        .expect_err("same (order_id, created_at) twice");
    let (code, message) = sql_error(&err);
    assert_eq!(code, "23505", "{message}");
    assert!(message.contains("orders_"), "{message}");
    let key: String = scalar(
        db.conn(),
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'orders_pkey'",
    )
    .await;
    assert_eq!(key, "PRIMARY KEY (order_id, created_at)");
}

#[tokio::test]
async fn d2_trades_primary_key_includes_the_partition_key() {
    let db = TestDb::migrated().await;
    let insert = format!(
        "INSERT INTO trades (trade_id, symbol, buyer_order_id, seller_order_id, buyer_user_id,
            seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
            seller_fee_asset, is_buyer_maker, executed_at)
         VALUES ('22222222-2222-2222-2222-222222222222', 'BTC/USDT', gen_random_uuid(),
            gen_random_uuid(), '{USER_A}', '{USER_B}', 100, 1, 0.1, 0.05, 'USDT', 'USDT', true,
            '2030-01-01 00:00:00+00')"
    );
    exec(db.conn(), &insert).await;
    let (code, _) = sql_error(&try_exec(db.conn(), &insert).await.expect_err("duplicate"));
    assert_eq!(code, "23505");
    let key: String = scalar(
        db.conn(),
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'trades_pkey'",
    )
    .await;
    assert_eq!(key, "PRIMARY KEY (trade_id, executed_at)");
}

#[tokio::test]
async fn d3_maintain_partitions_recreates_missing_future_partitions() {
    let db = TestDb::migrated().await;
    let orders_in_two_months: String = scalar(
        db.conn(),
        "SELECT 'orders_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months', 'YYYY_MM')",
    )
    .await;
    let trades_in_five_days: String = scalar(
        db.conn(),
        "SELECT 'trades_' || to_char((now() AT TIME ZONE 'UTC')::date + 5, 'YYYY_MM_DD')",
    )
    .await;
    exec(
        db.conn(),
        &format!("DROP TABLE {orders_in_two_months}; DROP TABLE {trades_in_five_days};"),
    )
    .await;

    exec(db.conn(), "SELECT maintain_partitions()").await;

    let present: i64 = scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM pg_class WHERE relname IN ('{orders_in_two_months}', '{trades_in_five_days}')
               AND relispartition"
        ),
    )
    .await;
    assert_eq!(present, 2);
    // It reaches 3 months and 7 days ahead, and a second run changes nothing.
    exec(db.conn(), "SELECT maintain_partitions()").await;
    let health = lines(
        db.conn(),
        "SELECT parent_table, partition_count FROM check_partition_health()",
    )
    .await;
    assert_eq!(health, vec!["orders|12", "trades|30"]);
    // The function takes a date, and date arithmetic stays a date.
    let created: String = scalar(
        db.conn(),
        "SELECT create_orders_partition(current_date + 400)",
    )
    .await;
    assert!(
        created.starts_with("Created partition: orders_"),
        "{created}"
    );
}

#[tokio::test]
async fn d4_partition_bounds_are_utc_midnights_in_any_session_time_zone() {
    let db = TestDb::migrated().await;
    let txn_sql = "SET TimeZone = 'Pacific/Kiritimati';
                   SET DateStyle = 'SQL, DMY';
                   SELECT create_orders_partition('2031-01-15');
                   SELECT create_trades_partition('2031-01-15');
                   RESET TimeZone; RESET DateStyle;";
    // One connection for the SETs and the calls.
    let conn = db.connect_single().await;
    exec(&conn, txn_sql).await;
    let bounds = lines(
        db.conn(),
        "SELECT c.relname,
                to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                to_char(upper_bound AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
         FROM pg_class c,
              LATERAL (SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)')::timestamptz AS lower_bound,
                              substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz AS upper_bound) b
         WHERE c.relname IN ('orders_2031_01', 'trades_2031_01_15') ORDER BY 1",
    )
    .await;
    assert_eq!(
        bounds,
        vec![
            "orders_2031_01|2031-01-01 00:00|2031-02-01 00:00",
            "trades_2031_01_15|2031-01-15 00:00|2031-01-16 00:00",
        ]
    );
}

#[tokio::test]
async fn d4_migrating_in_a_far_east_time_zone_starts_at_the_utc_day() {
    let db = TestDb::empty().await;
    exec(
        db.conn(),
        &format!(
            "ALTER DATABASE {} SET TimeZone = 'Pacific/Kiritimati'",
            db.name()
        ),
    )
    .await;
    let conn = db.connect().await;
    migration::run(&conn, Operation::Up(None), DataLoss::Refuse)
        .await
        .expect("migrations apply under a +14:00 session zone");
    let (first, expected): (String, String) = (
        scalar(
            &conn,
            "SELECT min(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'trades'::regclass AND c.relname <> 'trades_default'",
        )
        .await,
        scalar(
            &conn,
            "SELECT 'trades_' || to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY_MM_DD')",
        )
        .await,
    );
    assert_eq!(first, expected);
    conn.close().await.ok();
}

#[tokio::test]
async fn d4_existence_check_is_schema_qualified() {
    let db = TestDb::migrated().await;
    let conn = db.connect_single().await;
    exec(
        &conn,
        "CREATE SCHEMA other; CREATE TABLE other.orders_2032_03 (x int);
         SET search_path = public, other;",
    )
    .await;
    let created: String = scalar(&conn, "SELECT create_orders_partition('2032-03-10')").await;
    assert_eq!(created, "Created partition: orders_2032_03");
    let is_partition: bool = scalar(
        &conn,
        "SELECT relispartition FROM pg_class WHERE oid = 'public.orders_2032_03'::regclass",
    )
    .await;
    assert!(is_partition);
    // A same-named table that is not a partition is an error, not "already exists".
    exec(&conn, "CREATE TABLE public.trades_2032_03_10 (x int)").await;
    let err = try_exec(&conn, "SELECT create_trades_partition('2032-03-10')")
        .await
        .expect_err("a plain table is in the way");
    assert!(
        err.to_string()
            .contains("exists but is not a partition of trades"),
        "{err}"
    );
}

#[tokio::test]
async fn d5_an_order_outside_every_partition_is_kept_then_moved_to_its_month() {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        &format!(
            "INSERT INTO orders (order_id, user_id, symbol, side, order_type, status, quantity, price, created_at)
             VALUES ('33333333-3333-3333-3333-333333333333', '{USER_A}', 'ETH/USDT', 'SELL', 'LIMIT',
                     'OPEN', 2.5, 3000.12345678, now() - interval '40 days')"
        ),
    )
    .await;
    let before = lines(db.conn(), "SELECT tableoid::regclass, * FROM orders").await;
    assert_eq!(before.len(), 1);
    assert!(before[0].starts_with("orders_default|"), "{before:?}");

    let month: String = scalar(
        db.conn(),
        "SELECT to_char((now() - interval '40 days') AT TIME ZONE 'UTC', 'YYYY_MM')",
    )
    .await;
    let created: String = scalar(
        db.conn(),
        "SELECT create_orders_partition(((now() - interval '40 days') AT TIME ZONE 'UTC')::date)",
    )
    .await;
    assert_eq!(created, format!("Created partition: orders_{month}"));

    let after = lines(db.conn(), "SELECT tableoid::regclass, * FROM orders").await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0],
        before[0].replacen("orders_default", &format!("orders_{month}"), 1),
        "the row moved whole"
    );
    let left: i64 = scalar(db.conn(), "SELECT count(*) FROM orders_default").await;
    assert_eq!(left, 0);
    // The moved-into partition is a full partition: constraints, indexes, triggers.
    let (checks, indexes, triggers): (i64, i64, i64) = (
        scalar(
            db.conn(),
            &format!("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders_{month}'::regclass AND contype = 'c'"),
        )
        .await,
        scalar(
            db.conn(),
            &format!("SELECT count(*) FROM pg_index WHERE indrelid = 'orders_{month}'::regclass"),
        )
        .await,
        scalar(
            db.conn(),
            &format!("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders_{month}'::regclass AND NOT tgisinternal"),
        )
        .await,
    );
    assert_eq!((checks, indexes, triggers), (5, 10, 6));
    let err = try_exec(
        db.conn(),
        &format!("UPDATE orders_{month} SET quantity = -1"),
    )
    .await
    .expect_err("checks hold on the moved partition");
    assert_eq!(sql_error(&err).0, "23514");
}

#[tokio::test]
async fn d5_a_trade_after_the_thirtieth_day_is_kept_then_moved() {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
                price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset,
                is_buyer_maker, executed_at)
             VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), '{USER_A}', '{USER_B}',
                50000, 0.5, 12.5, 25, 'USDT', 'USDT', false, now() + interval '45 days')"
        ),
    )
    .await;
    let home: String = scalar(db.conn(), "SELECT tableoid::regclass::text FROM trades").await;
    assert_eq!(home, "trades_default");
    // check_partition_health() counts the ranged partitions only.
    let health = lines(db.conn(), "SELECT * FROM check_partition_health()").await;
    let first_day: String = scalar(
        db.conn(),
        "SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY_MM_DD')",
    )
    .await;
    assert!(
        health[1].starts_with(&format!("trades|30|trades_{first_day}|")),
        "{health:?}"
    );
    assert!(!health.iter().any(|h| h.contains("default")), "{health:?}");

    exec(
        db.conn(),
        "SELECT create_trades_partition(((now() + interval '45 days') AT TIME ZONE 'UTC')::date)",
    )
    .await;
    let home: String = scalar(db.conn(), "SELECT tableoid::regclass::text FROM trades").await;
    let expected: String = scalar(
        db.conn(),
        "SELECT 'trades_' || to_char((now() + interval '45 days') AT TIME ZONE 'UTC', 'YYYY_MM_DD')",
    )
    .await;
    assert_eq!(home, expected);
}

#[tokio::test]
async fn d6_orders_and_trades_reference_known_symbols() {
    let db = TestDb::migrated().await;
    let err = try_exec(
        db.conn(),
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price)
             VALUES ('{USER_A}', 'FOO/BAR', 'BUY', 'LIMIT', 1, 1)"
        ),
    )
    .await
    .expect_err("unknown symbol");
    let (code, message) = sql_error(&err);
    assert_eq!(code, "23503");
    assert!(message.contains("FK_orders_symbol"), "{message}");

    let err = try_exec(
        db.conn(),
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
                price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker)
             VALUES ('FOO/BAR', gen_random_uuid(), gen_random_uuid(), '{USER_A}', '{USER_B}',
                1, 1, 0, 0, 'USDT', 'USDT', true)"
        ),
    )
    .await
    .expect_err("unknown symbol");
    let (code, message) = sql_error(&err);
    assert_eq!(code, "23503");
    assert!(message.contains("FK_trades_symbol"), "{message}");
}

#[tokio::test]
async fn d7_every_terminal_status_is_final() {
    let db = TestDb::migrated().await;
    for (status, article) in [
        ("FILLED", "a filled"),
        ("CANCELLED", "a cancelled"),
        ("REJECTED", "a rejected"),
        ("EXPIRED", "an expired"),
    ] {
        let id: String = scalar(
            db.conn(),
            &format!(
                "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price)
                 VALUES ('{USER_A}', 'BTC/USDT', 'BUY', 'LIMIT', '{status}', 1, 100)
                 RETURNING order_id::text"
            ),
        )
        .await;
        let err = try_exec(
            db.conn(),
            &format!("UPDATE orders SET status = 'OPEN' WHERE order_id = '{id}'"),
        )
        .await
        .expect_err("terminal");
        let (code, message) = sql_error(&err);
        assert_eq!(code, "23514", "{message}");
        assert!(
            message.contains(&format!("Cannot change status of {article} order")),
            "{message}"
        );
        let still: String = scalar(
            db.conn(),
            &format!("SELECT status::text FROM orders WHERE order_id = '{id}'"),
        )
        .await;
        assert_eq!(still, status);
    }
}

#[tokio::test]
async fn d8_a_stop_order_enters_the_watchlist_when_it_opens_later() {
    let db = TestDb::migrated().await;
    let id: String = scalar(
        db.conn(),
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, stop_price)
             VALUES ('{USER_A}', 'BTC/USDT', 'SELL', 'STOP', 'PENDING', 0.3, 45000)
             RETURNING order_id::text"
        ),
    )
    .await;
    let count = format!("SELECT count(*) FROM stop_orders_watchlist WHERE order_id = '{id}'");
    assert_eq!(scalar::<i64>(db.conn(), &count).await, 0);
    exec(
        db.conn(),
        &format!("UPDATE orders SET status = 'OPEN' WHERE order_id = '{id}'"),
    )
    .await;
    let entry = lines(
        db.conn(),
        &format!(
            "SELECT user_id, symbol, side, stop_price, quantity FROM stop_orders_watchlist
             WHERE order_id = '{id}'"
        ),
    )
    .await;
    assert_eq!(
        entry,
        vec![format!("{USER_A}|BTC/USDT|SELL|45000.00000000|0.30000000")]
    );
}

#[tokio::test]
async fn d9_resting_stop_orders_are_not_book_liquidity() {
    let db = TestDb::migrated().await;
    // A real book: bid 100, ask 101. Stop-limit orders priced through it rest
    // untriggered; counting them would cross the book (bid 105 > ask 101).
    exec(
        db.conn(),
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, stop_price) VALUES
             ('{USER_A}', 'SOL/USDT', 'BUY',  'LIMIT',      'OPEN', 1, 100, NULL),
             ('{USER_B}', 'SOL/USDT', 'SELL', 'LIMIT',      'OPEN', 2, 101, NULL),
             ('{USER_A}', 'SOL/USDT', 'BUY',  'STOP_LIMIT', 'OPEN', 5, 105, 104),
             ('{USER_B}', 'SOL/USDT', 'SELL', 'STOP_LIMIT', 'OPEN', 5, 95, 96)"
        ),
    )
    .await;
    let best = lines(db.conn(), "SELECT * FROM get_best_bid_ask('SOL/USDT')").await;
    assert_eq!(best, vec!["100.00000000|101.00000000|1.00000000|1.0000"]);
    let depth = lines(
        db.conn(),
        "SELECT side, price, quantity, order_count FROM get_order_book_depth('SOL/USDT')",
    )
    .await;
    assert_eq!(
        depth,
        vec![
            "BID|100.00000000|1.00000000|1",
            "ASK|101.00000000|2.00000000|1"
        ]
    );
    let active: Vec<String> = column(
        db.conn(),
        "SELECT order_type::text FROM v_active_orders WHERE symbol = 'SOL/USDT'",
    )
    .await;
    assert_eq!(active, vec!["LIMIT", "LIMIT"]);
    exec(db.conn(), "SELECT refresh_order_book_snapshot()").await;
    let book = lines(
        db.conn(),
        "SELECT side, price, total_quantity, order_count FROM mv_order_book_snapshot
         WHERE symbol = 'SOL/USDT' ORDER BY side, price",
    )
    .await;
    assert_eq!(
        book,
        vec![
            "BUY|100.00000000|1.00000000|1",
            "SELL|101.00000000|2.00000000|1"
        ]
    );
}

#[tokio::test]
async fn d10_the_materialized_book_refreshes_concurrently_again_and_again() {
    let db = TestDb::migrated().await;
    exec(db.conn(), "SELECT refresh_order_book_snapshot()").await;
    exec(
        db.conn(),
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price)
             VALUES ('{USER_A}', 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 1.5, 100),
                    ('{USER_B}', 'BTC/USDT', 'BUY', 'LIMIT', 'PARTIALLY_FILLED', 2, 100)"
        ),
    )
    .await;
    exec(
        db.conn(),
        &format!("UPDATE orders SET filled_quantity = 0.5 WHERE user_id = '{USER_B}'"),
    )
    .await;
    exec(db.conn(), "SELECT refresh_order_book_snapshot()").await;
    let book = lines(
        db.conn(),
        "SELECT symbol, side, price, total_quantity, order_count FROM mv_order_book_snapshot",
    )
    .await;
    assert_eq!(book, vec!["BTC/USDT|BUY|100.00000000|3.00000000|2"]);
    let unique: bool = scalar(
        db.conn(),
        "SELECT indisunique FROM pg_index WHERE indexrelid = '\"IDX_mv_order_book\"'::regclass",
    )
    .await;
    assert!(unique);
}

#[tokio::test]
async fn d11_check_table_sizes_reports_parents_with_their_partitions_totals() {
    let db = TestDb::migrated().await;
    // One connection: the statistics it flushes when idle are there for its next query.
    let conn = db.connect_single().await;
    exec(
        &conn,
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, created_at)
             SELECT '{USER_A}', 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 1, 100, now() - (i || ' days')::interval
             FROM generate_series(0, 99) i;
             ANALYZE orders; ANALYZE symbols;
             SELECT pg_stat_force_next_flush();"
        ),
    )
    .await;
    let sizes = lines(
        &conn,
        "SELECT table_name, row_count, total_size <> '0 bytes' FROM check_table_sizes()",
    )
    .await;
    // 100 orders spread over the default and current-month partitions, reported once.
    assert!(sizes.contains(&"orders|100|true".to_owned()), "{sizes:?}");
    assert!(sizes.contains(&"symbols|10|true".to_owned()), "{sizes:?}");
    assert!(
        !sizes
            .iter()
            .any(|s| s.starts_with("orders_") || s.starts_with("trades_")),
        "partitions are folded into their parent: {sizes:?}"
    );
    assert_eq!(
        sizes[0].split('|').next(),
        Some("trades"),
        "largest first: {sizes:?}"
    );
    let names: Vec<String> = column(
        &conn,
        "SELECT table_name FROM check_table_sizes() ORDER BY 1",
    )
    .await;
    assert_eq!(
        names,
        vec![
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
            "trades"
        ]
    );
    conn.close().await.ok();
}

#[tokio::test]
async fn d12_an_unknown_volume_period_is_an_error_naming_the_accepted_ones() {
    let db = TestDb::migrated().await;
    let err = try_exec(
        db.conn(),
        "SELECT * FROM get_trading_volume('BTC/USDT', '2h')",
    )
    .await
    .expect_err("2h is not a period");
    let (code, message) = sql_error(&err);
    assert_eq!(code, "22023");
    assert!(
        message.contains("invalid period '2h': accepted periods are 1h, 4h, 24h, 7d, 30d"),
        "{message}"
    );
    for period in ["1h", "4h", "24h", "7d", "30d"] {
        let span: String = scalar(
            db.conn(),
            &format!(
                "SELECT (period_end - period_start)::text FROM get_trading_volume('BTC/USDT', '{period}')"
            ),
        )
        .await;
        let expected = match period {
            "1h" => "01:00:00",
            "4h" => "04:00:00",
            "24h" => "1 day",
            "7d" => "7 days",
            _ => "30 days",
        };
        assert_eq!(span, expected, "period {period}");
    }
}

#[tokio::test]
async fn d13_rolling_back_symbols_removes_the_updated_at_function() {
    let db = TestDb::empty().await;
    migration::run(db.conn(), Operation::Up(Some(2)), DataLoss::Refuse)
        .await
        .expect("up 2");
    migration::run(db.conn(), Operation::Down(Some(1)), DataLoss::Refuse)
        .await
        .expect("down 1");
    let left: i64 = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_proc WHERE proname = 'update_updated_at_column'",
    )
    .await;
    assert_eq!(left, 0);
}

/// `maintain_partitions()` as psql shows it: the NOTICE naming both
/// retention periods (`unset` when a table has none).
fn maintain_with_psql(db: &TestDb) -> String {
    let output = std::process::Command::new(tests::db::server_binaries().join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT maintain_partitions()",
        ])
        .arg(db.url())
        .output()
        .unwrap_or_else(|err| panic!("cannot run psql: {err}"));
    assert!(output.status.success(), "psql failed: {output:?}");
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// The horizon: the month three months ahead and the day seven days ahead
/// exist after `maintain_partitions()`, the ones after them do not; and the
/// NOTICE names both retention periods as configured.
#[tokio::test]
async fn maintain_partitions_reaches_three_months_and_seven_days_ahead_and_names_the_retention() {
    let db = TestDb::migrated().await;
    // The migrations create more ahead than maintenance does: take away
    // every partition from its horizon on.
    exec(
        db.conn(),
        r"DO $$
         DECLARE
             v_today date := (now() AT TIME ZONE 'UTC')::date;
             r record;
         BEGIN
             FOR r IN
                 SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE (i.inhparent = 'orders'::regclass AND c.relname ~ '^orders_\d{4}_\d{2}$'
                        AND to_date(substring(c.relname FROM 8), 'YYYY_MM')
                            >= date_trunc('month', v_today) + interval '3 months')
                    OR (i.inhparent = 'trades'::regclass AND c.relname ~ '^trades_\d{4}_\d{2}_\d{2}$'
                        AND to_date(substring(c.relname FROM 8), 'YYYY_MM_DD') >= v_today + 7)
             LOOP
                 EXECUTE format('DROP TABLE %I', r.relname);
             END LOOP;
         END $$",
    )
    .await;
    let notice = maintain_with_psql(&db);
    assert_eq!(
        notice,
        "NOTICE:  Partition maintenance done. Retention: orders 60 months, trades 60 months \
         (applied only by enforce_partition_retention)"
    );
    let exists: Vec<String> = column(
        db.conn(),
        "WITH utc AS (SELECT (now() AT TIME ZONE 'UTC')::date AS today)
         SELECT name || ' ' || (to_regclass(name) IS NOT NULL) FROM utc, LATERAL (VALUES
             ('orders_' || to_char(date_trunc('month', today) + interval '3 months', 'YYYY_MM')),
             ('orders_' || to_char(date_trunc('month', today) + interval '4 months', 'YYYY_MM')),
             ('trades_' || to_char(today + 7, 'YYYY_MM_DD')),
             ('trades_' || to_char(today + 8, 'YYYY_MM_DD'))) v(name)",
    )
    .await;
    let present: Vec<&str> = exists
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(present, ["true", "false", "true", "false"], "{exists:?}");

    exec(
        db.conn(),
        "UPDATE partition_retention_config SET retention_months = 36 WHERE table_name = 'orders';
         DELETE FROM partition_retention_config WHERE table_name = 'trades';",
    )
    .await;
    assert_eq!(
        maintain_with_psql(&db),
        "NOTICE:  Partition maintenance done. Retention: orders 36 months, trades unset months \
         (applied only by enforce_partition_retention)"
    );
}

#[tokio::test]
async fn d14_retention_lists_old_partitions_and_drops_them_only_when_asked() {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        &format!(
            "SELECT create_orders_partition(((now() AT TIME ZONE 'UTC') - interval '62 months')::date);
             SELECT create_trades_partition(((now() AT TIME ZONE 'UTC') - interval '61 months')::date);
             SELECT create_orders_partition(((now() AT TIME ZONE 'UTC') - interval '59 months')::date);
             INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, created_at)
             VALUES ('{USER_A}', 'BTC/USDT', 'BUY', 'LIMIT', 'FILLED', 1, 100, now() - interval '62 months');"
        ),
    )
    .await;
    let old_orders: String = scalar(
        db.conn(),
        "SELECT 'orders_' || to_char((now() AT TIME ZONE 'UTC') - interval '62 months', 'YYYY_MM')",
    )
    .await;
    let old_trades: String = scalar(
        db.conn(),
        "SELECT 'trades_' || to_char((now() AT TIME ZONE 'UTC') - interval '61 months', 'YYYY_MM_DD')",
    )
    .await;
    let kept: String = scalar(
        db.conn(),
        "SELECT 'orders_' || to_char((now() AT TIME ZONE 'UTC') - interval '59 months', 'YYYY_MM')",
    )
    .await;

    let dry: Vec<String> = column(
        db.conn(),
        "SELECT partition_name || ' dropped=' || dropped FROM enforce_partition_retention()",
    )
    .await;
    assert_eq!(
        dry,
        vec![
            format!("{old_orders} dropped=false"),
            format!("{old_trades} dropped=false")
        ]
    );
    // maintain_partitions() never drops anything.
    exec(db.conn(), "SELECT maintain_partitions()").await;
    let exists = |name: &str| format!("SELECT to_regclass('{name}') IS NOT NULL");
    assert!(scalar::<bool>(db.conn(), &exists(&old_orders)).await);

    let wet: Vec<String> = column(
        db.conn(),
        "SELECT partition_name || ' dropped=' || dropped FROM enforce_partition_retention(false)",
    )
    .await;
    assert_eq!(
        wet,
        vec![
            format!("{old_orders} dropped=true"),
            format!("{old_trades} dropped=true")
        ]
    );
    assert!(!scalar::<bool>(db.conn(), &exists(&old_orders)).await);
    assert!(!scalar::<bool>(db.conn(), &exists(&old_trades)).await);
    assert!(scalar::<bool>(db.conn(), &exists(&kept)).await);
    let health = lines(
        db.conn(),
        "SELECT parent_table, partition_count FROM check_partition_health()",
    )
    .await;
    assert_eq!(health, vec!["orders|13", "trades|30"]);
}

/// X1: `v_symbol_stats_24h.last_price` is declared `numeric`, not the
/// original's `numeric(20,8)`; its values are the stored prices, digit for
/// digit.
/// The cutoff is `now()` minus the table's retention: a partition whose
/// upper bound is exactly the cutoff holds only older rows and goes; one whose
/// upper bound is a microsecond later stays. One transaction, so `now()` is
/// the same for the partitions' bounds and for the function.
#[tokio::test]
async fn d14_a_partition_ending_exactly_at_the_cutoff_goes_and_one_a_microsecond_later_stays() {
    let db = TestDb::migrated().await;
    let txn = db.conn().begin().await.expect("begin");
    exec(
        &txn,
        "DO $$
         DECLARE
             v_cutoff timestamptz := now() - make_interval(months => (
                 SELECT retention_months FROM partition_retention_config WHERE table_name = 'trades'));
         BEGIN
             EXECUTE format('CREATE TABLE trades_d14_before PARTITION OF trades FOR VALUES FROM (%L) TO (%L)',
                            v_cutoff - interval '1 day', v_cutoff);
             EXECUTE format('CREATE TABLE trades_d14_after PARTITION OF trades FOR VALUES FROM (%L) TO (%L)',
                            v_cutoff, v_cutoff + interval '1 microsecond');
         END $$",
    )
    .await;
    let listed: Vec<String> = column(
        &txn,
        "SELECT partition_name || ' ' || (range_end = now() - make_interval(months => (
             SELECT retention_months FROM partition_retention_config WHERE table_name = 'trades')))
         FROM enforce_partition_retention()",
    )
    .await;
    assert_eq!(listed, vec!["trades_d14_before true"]);
    let dropped: Vec<String> = column(
        &txn,
        "SELECT partition_name FROM enforce_partition_retention(false)",
    )
    .await;
    assert_eq!(dropped, vec!["trades_d14_before"]);
    let left: Vec<String> = column(
        &txn,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'trades'::regclass AND c.relname LIKE 'trades_d14_%'",
    )
    .await;
    assert_eq!(left, vec!["trades_d14_after"]);
    txn.rollback().await.expect("rollback");
}

#[tokio::test]
async fn x1_the_24h_last_price_is_unconstrained_numeric_with_the_stored_value() {
    let db = TestDb::migrated().await;
    let declared: String = scalar(
        db.conn(),
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'v_symbol_stats_24h'::regclass AND attname = 'last_price'",
    )
    .await;
    assert_eq!(declared, "numeric");
    exec(
        db.conn(),
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
                price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker)
             VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), '{USER_A}', '{USER_B}',
                50000.12345678, 1, 0, 0, 'USDT', 'USDT', true)"
        ),
    )
    .await;
    let last: String = scalar(
        db.conn(),
        "SELECT last_price::text FROM v_symbol_stats_24h WHERE symbol = 'BTC/USDT'",
    )
    .await;
    assert_eq!(
        last, "50000.12345678",
        "the stored price, its eight places kept"
    );
}

/// X2: `trg_remove_stop_order_from_watchlist` fires `WHEN (OLD.status IS
/// DISTINCT FROM NEW.status)` where the original says `<>`: the same, since
/// `orders.status` is NOT NULL.
#[tokio::test]
async fn x2_the_watchlist_removal_fires_on_a_status_change_as_with_not_equal() {
    let db = TestDb::migrated().await;
    let definition: String = scalar(
        db.conn(),
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger
         WHERE tgname = 'trg_remove_stop_order_from_watchlist' AND tgrelid = 'orders'::regclass",
    )
    .await;
    assert!(definition.contains("IS DISTINCT FROM"), "{definition}");
    let not_null: bool = scalar(
        db.conn(),
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'",
    )
    .await;
    assert!(
        not_null,
        "status is NOT NULL: IS DISTINCT FROM and <> agree"
    );
    let id: String = scalar(
        db.conn(),
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, stop_price)
             VALUES ('{USER_A}', 'BTC/USDT', 'SELL', 'STOP', 'OPEN', 0.3, 45000)
             RETURNING order_id::text"
        ),
    )
    .await;
    let count = format!("SELECT count(*) FROM stop_orders_watchlist WHERE order_id = '{id}'");
    assert_eq!(scalar::<i64>(db.conn(), &count).await, 1);
    // An update that keeps the status does not fire it.
    exec(
        db.conn(),
        &format!("UPDATE orders SET quantity = 0.4 WHERE order_id = '{id}'"),
    )
    .await;
    assert_eq!(scalar::<i64>(db.conn(), &count).await, 1);
    exec(
        db.conn(),
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{id}'"),
    )
    .await;
    assert_eq!(
        scalar::<i64>(db.conn(), &count).await,
        0,
        "cancelled: it leaves"
    );
}
