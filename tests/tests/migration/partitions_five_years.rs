//! Five years of history on PostgreSQL's default settings (D15).
//!
//! The database gets the daily `trades` partitions of the last 1,800 days and
//! the monthly `orders` partitions of those months, created one call at a time
//! as maintenance creates them, with a trade a week and an order a month. Then
//! maintenance merges the old days into months, and every read and write path
//! of the service, every view and every SQL function runs against it; lookups by
//! id lock one partition.

use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use service::market::{self, Period};
use service::orders::{self as svc, NewOrder, OrderFilter};
use service::pooling::{Pool, PoolMode};
use service::{Page, Side, maintenance, trades};
use tests::db::TestDb;
use tests::sql::{exec, lines, scalar};
use tests::{dec, user};

const BTC: &str = "BTC/USDT";
const DAYS: i64 = 1_800;

/// The two counts of a query answering `a|b`.
async fn two_counts(db: &impl sea_orm::ConnectionTrait, sql: &str) -> (i64, i64) {
    let row = lines(db, sql).await;
    let counts: Vec<i64> = row[0]
        .split('|')
        .map(|n| n.parse().unwrap_or_else(|err| panic!("{n}: {err}")))
        .collect();
    (counts[0], counts[1])
}

/// Partitions of `orders` and of `trades` this transaction holds a lock on.
async fn partitions_locked(txn: &DatabaseTransaction) -> (i64, i64) {
    two_counts(
        txn,
        "SELECT count(DISTINCT l.relation) FILTER (WHERE p.relname = 'orders') || '|' ||
                count(DISTINCT l.relation) FILTER (WHERE p.relname = 'trades')
         FROM pg_locks l
         JOIN pg_inherits i ON i.inhrelid = l.relation
         JOIN pg_class p ON p.oid = i.inhparent
         WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
}

/// Count and total quantity of `trades`, a year at a time: constant bounds
/// prune at plan time, so no statement locks more than a year of partitions.
async fn totals(db: &DatabaseConnection) -> (i64, Decimal) {
    let now = chrono::Utc::now();
    let (mut count, mut quantity) = (0, Decimal::ZERO);
    for year in 0..7 {
        let to = now - chrono::TimeDelta::days(365 * year - 60);
        let from = now - chrono::TimeDelta::days(365 * (year + 1) - 60);
        let bounds = if year == 6 {
            format!("executed_at < '{}'", to.to_rfc3339())
        } else if year == 0 {
            format!("executed_at >= '{}'", from.to_rfc3339())
        } else {
            format!(
                "executed_at >= '{}' AND executed_at < '{}'",
                from.to_rfc3339(),
                to.to_rfc3339()
            )
        };
        count += scalar::<i64>(db, &format!("SELECT count(*) FROM trades WHERE {bounds}")).await;
        quantity += scalar::<Decimal>(
            db,
            &format!("SELECT coalesce(sum(quantity), 0) FROM trades WHERE {bounds}"),
        )
        .await;
    }
    (count, quantity)
}

/// Daily and merged (longer) partitions of `trades`.
async fn trade_partitions(db: &DatabaseConnection) -> (i64, i64) {
    two_counts(
        db,
        "SELECT count(*) FILTER (WHERE range_end - range_start <= interval '1 day') || '|' ||
                count(*) FILTER (WHERE range_end - range_start > interval '1 day')
         FROM trades_partition_ranges()",
    )
    .await
}

/// Monthly and yearly `orders` partitions.
async fn order_partitions(db: &DatabaseConnection) -> (i64, i64) {
    two_counts(
        db,
        "SELECT count(*) FILTER (WHERE range_end - range_start <= interval '31 days') || '|' ||
                count(*) FILTER (WHERE range_end - range_start > interval '31 days')
         FROM range_partitions('orders')",
    )
    .await
}

#[tokio::test]
async fn d15_five_years_of_history_keep_a_bounded_layout_and_every_path_works() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let settings = lines(
        c,
        "SELECT current_setting('max_locks_per_transaction') || '|' || current_setting('max_connections')",
    )
    .await;
    tests::history::build(c, DAYS, 7)
        .await
        .expect("five years of partitions");
    // A plain count(*) over 1,830 partitions would itself run out of locks.
    let (trades_before, quantity_before) = totals(c).await;

    // Without the merge: 1,830 daily partitions of 8 relations each, more
    // than the default lock table (64 × 100 backends) holds for one statement.
    let (days, months) = trade_partitions(c).await;
    assert_eq!((days, months), (DAYS + 30, 0));
    let before = migration::lock_capacity(c).await.expect("lock capacity");
    assert!(
        before.worst_statement_locks >= (DAYS + 30) * 8,
        "{before:?}"
    );
    assert!(before.required() > 400, "{before:?}");

    let pool = Pool::new(c.clone(), PoolMode::Direct);
    let merged = maintenance::compact_trades(&pool, None)
        .await
        .expect("compaction");
    assert!(merged.len() >= 55, "{} months merged", merged.len());
    // Resumable and idempotent: nothing is left to do.
    assert!(
        maintenance::compact_trades(&pool, None)
            .await
            .expect("a second compaction")
            .is_empty()
    );

    // The daily window (90 days, plus the days of the month not yet wholly
    // past it, plus the 30 days ahead) and one partition per older month.
    let (days, months) = trade_partitions(c).await;
    assert!(days <= 90 + 31 + 30, "{days} daily partitions");
    assert!((55..=61).contains(&months), "{months} monthly partitions");
    let after = migration::lock_capacity(c).await.expect("lock capacity");
    // At most 151 days, 61 months and the default partition, 8 relations each.
    assert!(after.worst_statement_locks <= 213 * 8, "{after:?}");
    assert_eq!(
        after.required(),
        migration::DEFAULT_MAX_LOCKS_PER_TRANSACTION,
        "{after:?} on {settings:?}"
    );
    // Nothing lost, nothing doubled.
    assert_eq!(totals(c).await, (trades_before, quantity_before));

    // orders: the months of every year wholly before the monthly window (3
    // full months) merged into one partition per year.
    let orders_before: i64 = scalar(c, "SELECT count(*) FROM orders").await;
    let (monthly, yearly) = order_partitions(c).await;
    assert!(monthly >= 60 && yearly == 0, "{monthly}, {yearly}");
    let years = maintenance::compact_orders(&pool, None)
        .await
        .expect("orders compaction");
    assert!(
        (4..=5).contains(&years.len()),
        "{} years merged",
        years.len()
    );
    assert!(
        maintenance::compact_orders(&pool, None)
            .await
            .expect("a second orders compaction")
            .is_empty()
    );
    let (monthly, yearly) = order_partitions(c).await;
    // At most 14 past months, this one, the months ahead (11 from the
    // migration), the years.
    assert!(monthly <= 14 + 1 + 11, "{monthly} monthly partitions");
    assert!((4..=5).contains(&yearly), "{yearly} yearly partitions");
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM orders").await,
        orders_before
    );
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM trades").await,
        trades_before
    );

    // Every write path: a resting order, a match, a stop, a cancel, expiry.
    let (maker, taker) = (user(1), user(2));
    let resting = svc::place(
        c,
        NewOrder::limit(maker, BTC, Side::Sell, dec("2"), dec("100")),
    )
    .await
    .expect("a resting sell");
    let matched = svc::place(
        c,
        NewOrder::limit(taker, BTC, Side::Buy, dec("1"), dec("100")),
    )
    .await
    .expect("a crossing buy");
    assert_eq!(matched.trades.len(), 1);
    let stop = svc::place(
        c,
        NewOrder::stop(taker, BTC, Side::Sell, dec("1"), dec("50")),
    )
    .await
    .expect("a stop");
    let trade_id = matched.trades[0].trade_id;
    assert_eq!(trade_id.get_version_num(), 7);
    assert_eq!(resting.order.order_id.get_version_num(), 7);

    // Lookups by id alone lock one partition of their table.
    let txn = c.begin().await.expect("begin");
    let order = svc::get(&txn, maker, resting.order.order_id)
        .await
        .expect("the order by id");
    assert_eq!(order.order_id, resting.order.order_id);
    // One (two when the id's margin crosses a UTC midnight).
    let (orders_locked, trades_locked) = partitions_locked(&txn).await;
    assert!(orders_locked <= 2 && trades_locked == 0, "{orders_locked}");
    txn.rollback().await.expect("rollback");
    let txn = c.begin().await.expect("begin");
    let found = trades::get(&txn, trade_id).await.expect("the trade by id");
    assert_eq!(found.trade_id, trade_id);
    let (orders_locked, trades_locked) = partitions_locked(&txn).await;
    assert!(orders_locked == 0 && trades_locked <= 2, "{trades_locked}");
    txn.rollback().await.expect("rollback");
    let txn = c.begin().await.expect("begin");
    let cancelled = svc::cancel(&txn, taker, stop.order.order_id)
        .await
        .expect("cancel the stop");
    assert_eq!(cancelled.status, service::OrderStatus::Cancelled);
    let (orders_locked, trades_locked) = partitions_locked(&txn).await;
    assert!(orders_locked <= 2 && trades_locked == 0, "{orders_locked}");
    txn.commit().await.expect("commit");
    // A batch of cancels too: its statement keeps the partitions its orders
    // are in.
    let mut bids = Vec::new();
    for price in ["95", "96"] {
        let bid = svc::place(
            c,
            NewOrder::limit(maker, BTC, Side::Buy, dec("1"), dec(price)),
        )
        .await
        .expect("a resting bid");
        bids.push((maker, bid.order.order_id));
    }
    let txn = c.begin().await.expect("begin");
    let cancelled = svc::cancel_many(&txn, &bids).await;
    assert!(
        cancelled.iter().all(|c| c
            .as_ref()
            .is_ok_and(|o| o.status == service::OrderStatus::Cancelled)),
        "{cancelled:?}"
    );
    let (orders_locked, trades_locked) = partitions_locked(&txn).await;
    assert!(orders_locked <= 2 && trades_locked == 0, "{orders_locked}");
    txn.commit().await.expect("commit");
    // Executed again and again (past PostgreSQL's five custom plans, when it
    // may switch to a generic plan), the lookups still lock one partition:
    // their time bounds are constants, which a generic plan prunes on too.
    let txn = c.begin().await.expect("begin");
    for _ in 0..10 {
        trades::get(&txn, trade_id).await.expect("the trade by id");
        svc::get(&txn, maker, resting.order.order_id)
            .await
            .expect("the order by id");
    }
    let (orders_locked, trades_locked) = partitions_locked(&txn).await;
    assert!(
        orders_locked <= 2 && trades_locked <= 2,
        "{orders_locked}, {trades_locked}"
    );
    txn.rollback().await.expect("rollback");

    // An id that is not version 7 (an old imported trade) is still found.
    let old: Uuid = scalar(
        c,
        "SELECT trade_id FROM trades WHERE executed_at < now() - interval '4 years' LIMIT 1",
    )
    .await;
    assert_eq!(
        trades::get(c, old).await.expect("an old trade").trade_id,
        old
    );
    let old_order: Uuid = scalar(
        c,
        "SELECT order_id FROM orders WHERE created_at < now() - interval '4 years' LIMIT 1",
    )
    .await;
    assert!(svc::get(c, user(0xb1), old_order).await.is_ok());
    assert!(matches!(
        trades::get(c, Uuid::now_v7()).await,
        Err(service::ServiceError::NotFound { .. })
    ));

    // Every read path.
    svc::list(c, maker, &OrderFilter::default(), Page::first(50))
        .await
        .expect("orders list");
    trades::recent(c, BTC, 50).await.expect("recent trades");
    let history = trades::user_history(c, user(0xb1), None, Page::first(50))
        .await
        .expect("user history");
    assert_eq!(history.items.len(), 50);
    // Pages that reach back through the older spans equal one read of the
    // whole table (which the merged layout can afford here): offset pages at
    // the start, the middle and the end, and keyset pages to the last trade.
    let whole: Vec<Uuid> = tests::sql::column(
        c,
        "SELECT trade_id FROM trades
         WHERE buyer_user_id = '00000000-0000-0000-0000-0000000000b1'
            OR seller_user_id = '00000000-0000-0000-0000-0000000000b1'
         ORDER BY executed_at DESC, trade_id DESC",
    )
    .await;
    assert!(whole.len() > 200, "{} trades", whole.len());
    for (offset, limit) in [(0, 50), (120, 30), (whole.len() - 5, 10)] {
        let page = trades::user_history(
            c,
            user(0xb1),
            None,
            Page::Offset {
                limit: limit as u64,
                offset: offset as u64,
            },
        )
        .await
        .expect("an offset page");
        let ids: Vec<Uuid> = page.items.iter().map(|t| t.trade_id).collect();
        let end = (offset + limit).min(whole.len());
        assert_eq!(ids, whole[offset..end], "offset {offset}");
    }
    let mut walked = Vec::new();
    let mut page = Page::first(100);
    loop {
        let got = trades::user_history(c, user(0xb1), None, page)
            .await
            .expect("a keyset page");
        walked.extend(got.items.iter().map(|t| t.trade_id));
        match got.next {
            Some(cursor) => page = Page::After { limit: 100, cursor },
            None => break,
        }
    }
    assert_eq!(walked, whole);
    let tape: Vec<Uuid> = trades::recent(c, BTC, 200)
        .await
        .expect("a long tape")
        .iter()
        .map(|t| t.trade_id)
        .collect();
    let expected: Vec<Uuid> = tests::sql::column(
        c,
        "SELECT trade_id FROM trades WHERE symbol = 'BTC/USDT'
         ORDER BY executed_at DESC, trade_id DESC LIMIT 200",
    )
    .await;
    assert_eq!(tape, expected);
    trades::user_history(c, taker, Some(BTC), Page::first(10))
        .await
        .expect("user history of a symbol");
    trades::for_order(c, taker, matched.order.order_id)
        .await
        .expect("an order's fills");
    for period in [Period::OneHour, Period::OneDay] {
        market::stats(c, BTC, period).await.expect("stats");
        market::volume(c, BTC, period).await.expect("volume");
        market::vwap(c, BTC, period).await.expect("vwap");
    }
    market::fill_rate(c, taker, 30).await.expect("fill rate");
    market::depth(c, BTC, 20).await.expect("depth");
    market::best_bid_ask(c, BTC).await.expect("best bid/ask");
    market::ticker(c, BTC).await.expect("ticker");
    svc::expire_due(c).await.expect("expiry");

    // Maintenance.
    maintenance::maintain_partitions(c)
        .await
        .expect("maintain partitions");
    maintenance::health(c).await.expect("health");
    maintenance::refresh_order_book(c).await.expect("refresh");
    maintenance::snapshot_order_books(c, 20)
        .await
        .expect("snapshots");

    // Every view and SQL function of the schema, including the ones that
    // cannot prune at plan time (now()-based bounds, no bound at all).
    for sql in [
        "SELECT count(*) FROM trades WHERE executed_at > now() - interval '1 day'",
        "SELECT count(*) FROM v_symbol_stats_24h",
        "SELECT count(*) FROM v_monitoring_trade_volume_24h",
        "SELECT count(*) FROM v_monitoring_order_status",
        "SELECT count(*) FROM v_monitoring_active_orders",
        "SELECT count(*) FROM v_active_orders",
        "SELECT count(*) FROM v_user_order_summary",
        "SELECT count(*) FROM mv_order_book_snapshot",
        "SELECT count(*) FROM get_user_trade_history('00000000-0000-0000-0000-0000000000b1')",
        "SELECT count(*) FROM get_order_book_depth('BTC/USDT')",
        "SELECT count(*) FROM get_best_bid_ask('BTC/USDT')",
        "SELECT count(*) FROM calculate_vwap('BTC/USDT', 24)",
        "SELECT count(*) FROM get_order_fill_rate('00000000-0000-0000-0000-0000000000b1', 30)",
        "SELECT count(*) FROM get_trading_volume('BTC/USDT', '30d')",
        "SELECT count(*) FROM check_partition_health()",
        "SELECT count(*) FROM check_table_sizes()",
        "SELECT count(*) FROM check_db_connections()",
        "SELECT count(*) FROM enforce_partition_retention()",
        "SELECT count(*) FROM partition_lock_demand()",
        "SELECT count(*) FROM trades WHERE trade_id = gen_random_uuid()",
        "SELECT count(*) FROM orders WHERE order_id = gen_random_uuid()",
    ] {
        let _: i64 = scalar(c, sql).await;
    }
    exec(c, "SELECT refresh_order_book_snapshot()").await;

    // Retention drops whole months: keep a year of trades.
    exec(
        c,
        "UPDATE partition_retention_config SET retention_months = 12 WHERE table_name = 'trades'",
    )
    .await;
    let dropped = maintenance::enforce_retention(c, false)
        .await
        .expect("retention");
    let trades_dropped = dropped
        .iter()
        .filter(|p| p.parent_table == "trades")
        .count();
    assert!(
        (45..=50).contains(&trades_dropped),
        "{trades_dropped} dropped"
    );
    let oldest: i64 = scalar(
        c,
        "SELECT count(*) FROM trades WHERE executed_at < now() - interval '13 months'",
    )
    .await;
    assert_eq!(oldest, 0);
    // The candles of the dropped trades went with them, and the maintained
    // market state still equals a recomputation.
    let old_candles: i64 = scalar(
        c,
        "SELECT count(*) FROM trade_candles WHERE open_time < now() - interval '13 months'",
    )
    .await;
    assert_eq!(old_candles, 0);
    let drift = tests::faults::market_state_drift(c).await;
    assert!(drift.is_empty(), "{drift:?}");
    let (_, months) = trade_partitions(c).await;
    // The last three or four months of the year are still daily partitions.
    assert!((7..=12).contains(&months), "{months} months kept");

    // And whole years of orders: keep two years.
    exec(
        c,
        "UPDATE partition_retention_config SET retention_months = 24 WHERE table_name = 'orders'",
    )
    .await;
    let dropped = maintenance::enforce_retention(c, false)
        .await
        .expect("orders retention");
    let years_dropped: Vec<&str> = dropped
        .iter()
        .filter(|p| p.parent_table == "orders")
        .map(|p| p.partition_name.as_str())
        .collect();
    assert!(
        (2..=3).contains(&years_dropped.len())
            && years_dropped
                .iter()
                .all(|name| name.len() == "orders_2024".len()),
        "{years_dropped:?}"
    );
    let too_old: i64 = scalar(
        c,
        "SELECT count(*) FROM orders WHERE created_at < date_trunc('year', now() - interval '24 months')",
    )
    .await;
    assert_eq!(too_old, 0);
}
