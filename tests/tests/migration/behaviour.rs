//! Every trigger, view and function of migrations 3–6 on real rows.

use sea_orm::DatabaseConnection;
use tests::db::TestDb;
use tests::sql::insert_order as order;
use tests::sql::{exec, lines, scalar, sql_error, try_exec};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";

async fn trade(
    db: &DatabaseConnection,
    symbol: &str,
    (buyer, seller): (&str, &str),
    (price, quantity): (&str, &str),
    buyer_is_maker: bool,
    executed_at: &str,
) -> String {
    scalar(
        db,
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
                price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset,
                is_buyer_maker, trade_source, executed_at)
             VALUES ('{symbol}', gen_random_uuid(), gen_random_uuid(), '{buyer}', '{seller}',
                {price}, {quantity},
                round({price} * {quantity} * CASE WHEN {buyer_is_maker} THEN 0.0005 ELSE 0.0010 END, 8),
                round({price} * {quantity} * CASE WHEN {buyer_is_maker} THEN 0.0010 ELSE 0.0005 END, 8),
                'USDT', 'USDT', {buyer_is_maker}, 'INTERNAL', {executed_at})
             RETURNING trade_id::text"
        ),
    )
    .await
}

#[tokio::test]
async fn lifecycle_triggers_stamp_times_and_guard_transitions() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let id = order(
        c,
        A,
        "BTC/USDT BUY LIMIT PENDING 1 100",
        "updated_at = '2020-01-01'",
    )
    .await;
    let stamp = |fields: &str| format!("SELECT {fields} FROM orders WHERE order_id = '{id}'");
    exec(
        c,
        &format!("UPDATE orders SET status = 'OPEN' WHERE order_id = '{id}'"),
    )
    .await;
    let fresh: bool = scalar(c, &stamp("updated_at > now() - interval '1 minute'")).await;
    assert!(fresh, "updated_at follows every update");
    exec(
        c,
        &format!("UPDATE orders SET status = 'PARTIALLY_FILLED', filled_quantity = 0.4 WHERE order_id = '{id}'"),
    )
    .await;
    let stamps = lines(c, &stamp("filled_at IS NULL, cancelled_at IS NULL")).await;
    assert_eq!(stamps, vec!["true|true"]);
    exec(
        c,
        &format!(
            "UPDATE orders SET status = 'FILLED', filled_quantity = 1 WHERE order_id = '{id}'"
        ),
    )
    .await;
    let stamps = lines(
        c,
        &stamp("filled_at > now() - interval '1 minute', cancelled_at IS NULL"),
    )
    .await;
    assert_eq!(stamps, vec!["true|true"]);
    let err = try_exec(
        c,
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{id}'"),
    )
    .await
    .expect_err("filled is terminal");
    assert!(
        sql_error(&err)
            .1
            .contains("Cannot change status of a filled order")
    );

    let other = order(c, A, "BTC/USDT SELL LIMIT OPEN 1 100", "").await;
    exec(
        c,
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{other}'"),
    )
    .await;
    let stamps = lines(
        c,
        &format!(
            "SELECT filled_at IS NULL, cancelled_at > now() - interval '1 minute' FROM orders
             WHERE order_id = '{other}'"
        ),
    )
    .await;
    assert_eq!(stamps, vec!["true|true"]);
    // Filled quantity can never exceed the quantity.
    let err = try_exec(
        c,
        &format!("UPDATE orders SET filled_quantity = 2 WHERE order_id = '{id}'"),
    )
    .await
    .expect_err("over-fill");
    assert!(sql_error(&err).1.contains("chk_filled_lte_quantity"));
}

#[tokio::test]
async fn symbols_updated_at_follows_updates() {
    let db = TestDb::migrated().await;
    let fresh: bool = scalar(
        db.conn(),
        "UPDATE symbols SET status = 'HALTED', updated_at = '2000-01-01' WHERE symbol = 'BTC/USDT'
         RETURNING updated_at > now() - interval '1 minute'",
    )
    .await;
    assert!(fresh);
}

#[tokio::test]
async fn order_checks_refuse_inconsistent_orders() {
    let db = TestDb::migrated().await;
    let cases = [
        ("'MARKET', 1, 100, NULL", "chk_market_no_price"),
        ("'LIMIT', 1, NULL, NULL", "chk_limit_has_price"),
        ("'STOP', 1, NULL, NULL", "chk_stop_has_stop_price"),
        ("'STOP_LIMIT', 1, 100, NULL", "chk_stop_has_stop_price"),
        ("'LIMIT', 0, 100, NULL", "chk_quantity_positive"),
    ];
    for (values, constraint) in cases {
        let err = try_exec(
            db.conn(),
            &format!(
                "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price, stop_price)
                 VALUES ('{A}', 'BTC/USDT', 'BUY', {values})"
            ),
        )
        .await
        .expect_err(constraint);
        let (code, message) = sql_error(&err);
        assert_eq!(code, "23514", "{message}");
        assert!(message.contains(constraint), "{constraint}: {message}");
    }
    let err = try_exec(
        db.conn(),
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
                price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker)
             VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), '{A}', '{A}', 1, 1, 0, 0,
                'USDT', 'USDT', true)"
        ),
    )
    .await
    .expect_err("self-trade");
    assert!(sql_error(&err).1.contains("chk_self_trade_prevention"));
}

#[tokio::test]
async fn the_watchlist_follows_stop_orders_in_and_out() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let stop = order(c, A, "BTC/USDT SELL STOP OPEN 1", "stop_price = 90").await;
    let stop_limit = order(
        c,
        A,
        "BTC/USDT BUY STOP_LIMIT OPEN 2 111",
        "stop_price = 110",
    )
    .await;
    let expiring = order(c, B, "ETH/USDT BUY STOP OPEN 3", "stop_price = 3100").await;
    let rejected = order(c, B, "ETH/USDT SELL STOP OPEN 3", "stop_price = 2900").await;
    order(c, A, "BTC/USDT BUY LIMIT OPEN 1 100", "").await;
    order(c, A, "BTC/USDT BUY STOP PENDING 1", "stop_price = 120").await;
    let watched = |db: &DatabaseConnection| {
        let db = db.clone();
        async move {
            lines(
                &db,
                "SELECT symbol, side, stop_price, quantity FROM stop_orders_watchlist ORDER BY symbol, stop_price",
            )
            .await
        }
    };
    assert_eq!(
        watched(c).await,
        vec![
            "BTC/USDT|SELL|90.00000000|1.00000000",
            "BTC/USDT|BUY|110.00000000|2.00000000",
            "ETH/USDT|SELL|2900.00000000|3.00000000",
            "ETH/USDT|BUY|3100.00000000|3.00000000",
        ]
    );
    exec(
        c,
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{stop}'"),
    )
    .await;
    exec(
        c,
        &format!("UPDATE orders SET status = 'FILLED', filled_quantity = 2 WHERE order_id = '{stop_limit}'"),
    )
    .await;
    exec(
        c,
        &format!("UPDATE orders SET status = 'EXPIRED' WHERE order_id = '{expiring}'"),
    )
    .await;
    assert_eq!(
        watched(c).await,
        vec!["ETH/USDT|SELL|2900.00000000|3.00000000"]
    );
    exec(
        c,
        &format!("UPDATE orders SET status = 'REJECTED' WHERE order_id = '{rejected}'"),
    )
    .await;
    assert!(watched(c).await.is_empty());

    // An entry already there is left alone.
    exec(
        c,
        &format!(
            "INSERT INTO stop_orders_watchlist (order_id, user_id, symbol, side, stop_price, quantity)
             VALUES ('44444444-4444-4444-4444-444444444444', '{A}', 'BTC/USDT', 'BUY', 1, 1)"
        ),
    )
    .await;
    order(
        c,
        A,
        "BTC/USDT BUY STOP OPEN 5",
        "order_id = '44444444-4444-4444-4444-444444444444'; stop_price = 2",
    )
    .await;
    assert_eq!(watched(c).await, vec!["BTC/USDT|BUY|1.00000000|1.00000000"]);
}

/// A BTC book with resting orders of two users, an untriggered stop, and
/// filled and cancelled history.
async fn btc_book(c: &DatabaseConnection) {
    order(
        c,
        A,
        "BTC/USDT BUY LIMIT OPEN 2 100",
        "created_at = now() - interval '50 minutes'",
    )
    .await;
    order(
        c,
        A,
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 3 101",
        "filled_quantity = 1; created_at = now() - interval '40 minutes'",
    )
    .await;
    order(c, A, "BTC/USDT SELL LIMIT OPEN 1 105", "").await;
    order(
        c,
        A,
        "BTC/USDT BUY LIMIT FILLED 1 99",
        "filled_quantity = 1",
    )
    .await;
    order(c, A, "BTC/USDT BUY LIMIT CANCELLED 4 90", "").await;
    order(
        c,
        B,
        "BTC/USDT SELL LIMIT OPEN 2 104",
        "created_at = now() - interval '30 minutes'",
    )
    .await;
    order(
        c,
        B,
        "BTC/USDT SELL LIMIT OPEN 1 104",
        "created_at = now() - interval '20 minutes'",
    )
    .await;
    order(c, B, "BTC/USDT BUY STOP OPEN 0.5", "stop_price = 110").await;
}

#[tokio::test]
async fn order_views_report_the_book_and_the_users() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    btc_book(c).await;
    let active = lines(
        c,
        "SELECT user_id = '00000000-0000-0000-0000-00000000000a', side, trim_scale(price),
                trim_scale(remaining_quantity)
         FROM v_active_orders WHERE symbol = 'BTC/USDT'",
    )
    .await;
    assert_eq!(
        active,
        vec![
            "true|BUY|101|2",
            "true|BUY|100|2",
            "false|SELL|104|2",
            "false|SELL|104|1",
            "true|SELL|105|1",
        ],
        "price-time priority, stop orders left out"
    );
    let summary = lines(
        c,
        "SELECT user_id = '00000000-0000-0000-0000-00000000000a', open_orders, filled_orders,
                cancelled_orders, trim_scale(total_volume)
         FROM v_user_order_summary WHERE symbol = 'BTC/USDT' ORDER BY 1 DESC",
    )
    .await;
    assert_eq!(summary, vec!["true|3|1|1|99", "false|3|0|0|0"]);
    let monitoring = lines(
        c,
        "SELECT symbol, buy_orders, sell_orders, total_orders, trim_scale(total_quantity)
         FROM v_monitoring_active_orders",
    )
    .await;
    assert_eq!(monitoring, vec!["BTC/USDT|3|3|6|8.5"]);
    let statuses = lines(
        c,
        "SELECT status, count, percentage FROM v_monitoring_order_status",
    )
    .await;
    assert_eq!(statuses[0], "OPEN|5|62.50");
    let mut rest = statuses[1..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        vec![
            "CANCELLED|1|12.50",
            "FILLED|1|12.50",
            "PARTIALLY_FILLED|1|12.50"
        ]
    );
    // Orders older than 24 hours are not in the status distribution.
    order(
        c,
        A,
        "ETH/USDT BUY LIMIT OPEN 1 3000",
        "created_at = now() - interval '25 hours'",
    )
    .await;
    let total: i64 = scalar(
        c,
        "SELECT sum(count)::bigint FROM v_monitoring_order_status",
    )
    .await;
    assert_eq!(total, 8);
}

async fn recent_trades(c: &DatabaseConnection) {
    let ago = |span: &str| format!("now() - interval '{span}'");
    trade(
        c,
        "BTC/USDT",
        (A, B),
        ("100", "1"),
        false,
        &ago("10 minutes"),
    )
    .await;
    trade(c, "BTC/USDT", (B, A), ("110", "2"), true, &ago("2 hours")).await;
    trade(c, "BTC/USDT", (A, B), ("50", "10"), false, &ago("30 hours")).await;
    trade(
        c,
        "ETH/USDT",
        (A, B),
        ("3000", "0.5"),
        true,
        &ago("5 minutes"),
    )
    .await;
}

#[tokio::test]
async fn trade_views_report_the_last_24_hours() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    recent_trades(c).await;
    let stats = lines(
        c,
        "SELECT symbol, trade_count, trim_scale(volume), trim_scale(quote_volume),
                trim_scale(low_price), trim_scale(high_price), trim_scale(last_price)
         FROM v_symbol_stats_24h ORDER BY symbol",
    )
    .await;
    assert_eq!(
        stats,
        vec![
            "BTC/USDT|2|3|320|100|110|100",
            "ETH/USDT|1|0.5|1500|3000|3000|3000"
        ]
    );
    let volume = lines(
        c,
        "SELECT symbol, trade_count, trim_scale(volume), trim_scale(quote_volume), trim_scale(avg_price)
         FROM v_monitoring_trade_volume_24h ORDER BY symbol",
    )
    .await;
    assert_eq!(
        volume,
        vec!["BTC/USDT|2|3|320|105", "ETH/USDT|1|0.5|1500|3000"]
    );
}

#[tokio::test]
async fn book_functions_aggregate_price_levels() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    btc_book(c).await;
    order(c, B, "BTC/USDT BUY LIMIT OPEN 1.25 100", "").await;
    order(c, B, "BTC/USDT BUY LIMIT OPEN 1 98", "").await;
    let depth = lines(
        c,
        "SELECT side, trim_scale(price), trim_scale(quantity), order_count
         FROM get_order_book_depth('BTC/USDT', 2)",
    )
    .await;
    assert_eq!(
        depth,
        vec![
            "BID|101|2|1",
            "BID|100|3.25|2",
            "ASK|104|3|2",
            "ASK|105|1|1"
        ]
    );
    let full: i64 = scalar(c, "SELECT count(*) FROM get_order_book_depth('BTC/USDT')").await;
    assert_eq!(full, 5);
    let best = lines(c, "SELECT * FROM get_best_bid_ask('BTC/USDT')").await;
    assert_eq!(best, vec!["101.00000000|104.00000000|3.00000000|2.9703"]);
    let empty = lines(c, "SELECT * FROM get_best_bid_ask('DOT/USDT')").await;
    assert_eq!(empty, vec!["|||"]);
}

#[tokio::test]
async fn trade_history_is_seen_from_the_users_side() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    recent_trades(c).await;
    let history = lines(
        c,
        &format!(
            "SELECT symbol, side, trim_scale(price), trim_scale(quantity), trim_scale(fee), is_maker
             FROM get_user_trade_history('{A}')"
        ),
    )
    .await;
    assert_eq!(
        history,
        vec![
            "ETH/USDT|BUY|3000|0.5|0.75|true",
            "BTC/USDT|BUY|100|1|0.1|false",
            "BTC/USDT|SELL|110|2|0.22|false",
            "BTC/USDT|BUY|50|10|0.5|false",
        ]
    );
    let seller_view = lines(
        c,
        &format!(
            "SELECT side, trim_scale(fee), is_maker FROM get_user_trade_history('{B}', 'BTC/USDT', 1, 0)"
        ),
    )
    .await;
    assert_eq!(seller_view, vec!["SELL|0.05|true"]);
    let page = lines(
        c,
        &format!("SELECT trim_scale(price) FROM get_user_trade_history('{A}', 'BTC/USDT', 2, 1)"),
    )
    .await;
    assert_eq!(page, vec!["110", "50"]);
}

#[tokio::test]
async fn market_statistics_functions() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    recent_trades(c).await;
    let vwap: Option<String> = scalar(c, "SELECT calculate_vwap('BTC/USDT')::text").await;
    assert_eq!(vwap.as_deref(), Some("106.66666667"));
    let vwap_1h: Option<String> = scalar(c, "SELECT calculate_vwap('BTC/USDT', 1)::text").await;
    assert_eq!(vwap_1h.as_deref(), Some("100.00000000"));
    let none: Option<String> = scalar(c, "SELECT calculate_vwap('DOT/USDT')::text").await;
    assert_eq!(none, None);

    let volume = lines(
        c,
        "SELECT symbol, trade_count, trim_scale(base_volume), trim_scale(quote_volume),
                period_end - period_start
         FROM get_trading_volume('BTC/USDT')",
    )
    .await;
    assert_eq!(volume, vec!["BTC/USDT|2|3|320|1 day"]);
    let week = lines(
        c,
        "SELECT trade_count, trim_scale(base_volume) FROM get_trading_volume('BTC/USDT', '7d')",
    )
    .await;
    assert_eq!(week, vec!["3|13"]);
    let quiet = lines(
        c,
        "SELECT trade_count, trim_scale(base_volume), trim_scale(quote_volume)
         FROM get_trading_volume('DOT/USDT', '1h')",
    )
    .await;
    assert_eq!(quiet, vec!["0|0|0"]);
}

#[tokio::test]
async fn fill_rate_counts_the_users_recent_orders() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    btc_book(c).await;
    order(
        c,
        A,
        "ETH/USDT BUY LIMIT FILLED 1 3000",
        "filled_quantity = 1",
    )
    .await;
    order(
        c,
        A,
        "ETH/USDT BUY LIMIT FILLED 1 3000",
        "filled_quantity = 1; created_at = now() - interval '40 days'",
    )
    .await;
    let rate = lines(c, &format!("SELECT * FROM get_order_fill_rate('{A}')")).await;
    // A: OPEN, PARTIALLY_FILLED, OPEN, FILLED, CANCELLED on BTC and one FILLED ETH.
    assert_eq!(rate, vec!["6|2|1|1|33.33"]);
    let longer = lines(
        c,
        &format!("SELECT total_orders, fill_rate FROM get_order_fill_rate('{A}', 60)"),
    )
    .await;
    assert_eq!(longer, vec!["7|42.86"]);
    let nobody = lines(
        c,
        "SELECT * FROM get_order_fill_rate('00000000-0000-0000-0000-0000000000ff')",
    )
    .await;
    assert_eq!(nobody, vec!["0|0|0|0|"]);
}

#[tokio::test]
async fn health_functions_describe_the_database() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let connections = lines(
        c,
        "SELECT active_connections >= 1, idle_connections >= 0,
                max_connections = current_setting('max_connections')::int
         FROM check_db_connections()",
    )
    .await;
    assert_eq!(connections, vec!["true|true|true"]);
    let health = lines(c, "SELECT * FROM check_partition_health()").await;
    let expected = lines(
        c,
        "SELECT 'orders', 12, 'orders_' || to_char(m, 'YYYY_MM'), 'orders_' || to_char(m + interval '11 months', 'YYYY_MM')
         FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS m) x
         UNION ALL
         SELECT 'trades', 30, 'trades_' || to_char(d, 'YYYY_MM_DD'), 'trades_' || to_char(d + 29, 'YYYY_MM_DD')
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) y",
    )
    .await;
    assert_eq!(health, expected);
}
