//! Every matching rule of the service with exact trades, prices, fees, statuses
//! and average prices. BTC/USDT: tick 0.01, sizes 0.0001..100, minimum value 10,
//! band ±10%, maker fee 0.0005, taker fee 0.0010.

use entity::orders;
use sea_orm::DatabaseConnection;
use sea_orm::prelude::Decimal;
use sea_orm::prelude::Uuid;
use service::orders::{self as svc, NewOrder, Placement};
use service::{OrderStatus, OrderType, Side, TimeInForce};
use tests::db::TestDb;
use tests::sql::{exec, lines, scalar};
use tests::{dec, user};

const BTC: &str = "BTC/USDT";

async fn place(db: &DatabaseConnection, order: NewOrder) -> Placement {
    svc::place(db, order.clone())
        .await
        .unwrap_or_else(|err| panic!("placing {order:?}: {err}"))
}

async fn limit(
    db: &DatabaseConnection,
    who: u128,
    side: Side,
    qty: &str,
    price: &str,
) -> Placement {
    place(
        db,
        NewOrder::limit(user(who), BTC, side, dec(qty), dec(price)),
    )
    .await
}

async fn stored(db: &DatabaseConnection, order: &orders::Model) -> orders::Model {
    svc::get(db, order.user_id, order.order_id)
        .await
        .expect("the order is stored")
}

/// `price×quantity buyer_fee/seller_fee maker` for each trade.
fn describe(placement: &Placement) -> Vec<String> {
    placement
        .trades
        .iter()
        .map(|t| {
            format!(
                "{}x{} {}/{} {}",
                t.price.normalize(),
                t.quantity.normalize(),
                t.buyer_fee.normalize(),
                t.seller_fee.normalize(),
                if t.is_buyer_maker {
                    "buyer-maker"
                } else {
                    "seller-maker"
                }
            )
        })
        .collect()
}

#[tokio::test]
async fn a_full_fill_trades_at_the_makers_price_with_maker_and_taker_fees() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let sell = limit(c, 1, Side::Sell, "1", "50000").await;
    assert_eq!(sell.order.status, OrderStatus::Open);
    assert!(sell.trades.is_empty());

    let buy = limit(c, 2, Side::Buy, "1", "50000").await;
    assert_eq!(describe(&buy), vec!["50000x1 50/25 seller-maker"]);
    let trade = &buy.trades[0];
    assert_eq!(
        (trade.buyer_user_id, trade.seller_user_id),
        (user(2), user(1))
    );
    assert_eq!(
        (trade.buyer_order_id, trade.seller_order_id),
        (buy.order.order_id, sell.order.order_id)
    );
    assert_eq!(
        (
            trade.buyer_fee_asset.as_str(),
            trade.trade_source.as_deref()
        ),
        ("USDT", Some("INTERNAL"))
    );
    assert_eq!(buy.order.status, OrderStatus::Filled);
    assert_eq!(buy.order.average_price, Some(dec("50000")));
    assert!(buy.order.filled_at.is_some());
    assert_eq!(
        stored(c, &buy.order).await,
        buy.order,
        "the returned order is the stored row"
    );

    let maker = stored(c, &sell.order).await;
    assert_eq!(
        (maker.status, maker.filled_quantity),
        (OrderStatus::Filled, dec("1"))
    );
    assert_eq!(maker.average_price, Some(dec("50000")));
    assert!(
        maker.filled_at.is_some(),
        "the schema's trigger stamps the maker"
    );
    let stored_trades = lines(
        c,
        "SELECT price, quantity, buyer_fee, seller_fee FROM trades",
    )
    .await;
    assert_eq!(
        stored_trades,
        vec!["50000.00000000|1.00000000|50.00000000|25.00000000"]
    );
}

#[tokio::test]
async fn partial_fills_rest_and_complete_later() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let ask = limit(c, 1, Side::Sell, "2", "50000").await;
    let first = limit(c, 2, Side::Buy, "0.5", "50000").await;
    assert_eq!(first.order.status, OrderStatus::Filled);
    let maker = stored(c, &ask.order).await;
    assert_eq!(
        (maker.status, maker.filled_quantity),
        (OrderStatus::PartiallyFilled, dec("0.5"))
    );

    let second = limit(c, 3, Side::Buy, "2", "50000").await;
    assert_eq!(describe(&second), vec!["50000x1.5 75/37.5 seller-maker"]);
    assert_eq!(second.order.status, OrderStatus::PartiallyFilled);
    assert_eq!(second.order.filled_quantity, dec("1.5"));
    let maker = stored(c, &ask.order).await;
    assert_eq!(
        (maker.status, maker.filled_quantity),
        (OrderStatus::Filled, dec("2"))
    );
    // The rest of the buy rests as the best bid.
    let resting = lines(
        c,
        "SELECT side, price, quantity - filled_quantity FROM v_active_orders",
    )
    .await;
    assert_eq!(resting, vec!["BUY|50000.00000000|0.50000000"]);
}

#[tokio::test]
async fn a_market_order_sweeps_levels_in_price_order() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 1, Side::Sell, "2", "102").await;
    limit(c, 1, Side::Sell, "1", "100").await;
    limit(c, 2, Side::Sell, "1", "101").await;
    let buy = place(c, NewOrder::market(user(3), BTC, Side::Buy, dec("3"))).await;
    assert_eq!(
        describe(&buy),
        vec![
            "100x1 0.1/0.05 seller-maker",
            "101x1 0.101/0.0505 seller-maker",
            "102x1 0.102/0.051 seller-maker"
        ]
    );
    assert_eq!(buy.order.status, OrderStatus::Filled);
    assert_eq!(buy.order.average_price, Some(dec("101")));
    assert_eq!(buy.order.price, None);
    let left = lines(c, "SELECT price, quantity - filled_quantity, status FROM orders WHERE side = 'SELL' AND status <> 'FILLED'").await;
    assert_eq!(left, vec!["102.00000000|1.00000000|PARTIALLY_FILLED"]);
}

#[tokio::test]
async fn the_oldest_order_at_the_best_price_goes_first() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let far = limit(c, 1, Side::Sell, "1", "101").await;
    let older = limit(c, 2, Side::Sell, "1", "100").await;
    let newer = limit(c, 3, Side::Sell, "1", "100").await;
    let buy = limit(c, 4, Side::Buy, "1.5", "101").await;
    let makers: Vec<Uuid> = buy.trades.iter().map(|t| t.seller_order_id).collect();
    assert_eq!(makers, vec![older.order.order_id, newer.order.order_id]);
    assert_eq!(describe(&buy)[1], "100x0.5 0.05/0.025 seller-maker");
    assert_eq!(stored(c, &far.order).await.filled_quantity, Decimal::ZERO);
    assert_eq!(
        stored(c, &newer.order).await.status,
        OrderStatus::PartiallyFilled
    );
    // Bids the same way: highest first (on ETH, whose book is empty).
    let eth =
        |who, side, price: &str| NewOrder::limit(user(who), "ETH/USDT", side, dec("1"), dec(price));
    place(c, eth(5, Side::Buy, "99")).await;
    let best_bid = place(c, eth(6, Side::Buy, "100")).await;
    place(c, eth(8, Side::Buy, "100")).await;
    let sell = place(c, eth(7, Side::Sell, "99")).await;
    assert_eq!(sell.trades[0].buyer_order_id, best_bid.order.order_id);
    assert_eq!(describe(&sell), vec!["100x1 0.05/0.1 buyer-maker"]);
}

#[tokio::test]
async fn a_crossing_limit_executes_at_the_resting_price() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 1, Side::Sell, "1", "100").await;
    let buy = limit(c, 2, Side::Buy, "1", "105").await;
    assert_eq!(describe(&buy), vec!["100x1 0.1/0.05 seller-maker"]);
    assert_eq!(buy.order.average_price, Some(dec("100")));
    limit(c, 3, Side::Buy, "1", "104").await;
    let sell = limit(c, 4, Side::Sell, "1", "100").await;
    assert_eq!(describe(&sell), vec!["104x1 0.052/0.104 buyer-maker"]);
}

#[tokio::test]
async fn ioc_fills_what_it_can_and_expires_the_rest() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 1, Side::Sell, "1", "100").await;
    let ioc = place(
        c,
        NewOrder::limit(user(2), BTC, Side::Buy, dec("2"), dec("100"))
            .with_time_in_force(TimeInForce::Ioc),
    )
    .await;
    assert_eq!(ioc.trades.len(), 1);
    assert_eq!(
        (ioc.order.status, ioc.order.filled_quantity),
        (OrderStatus::Expired, dec("1"))
    );
    let resting: i64 = scalar(c, "SELECT count(*) FROM v_active_orders").await;
    assert_eq!(resting, 0);
}

#[tokio::test]
async fn fok_fills_completely_or_not_at_all() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let a = limit(c, 1, Side::Sell, "1", "100").await;
    let b = limit(c, 2, Side::Sell, "1", "101").await;
    let fok = |qty: &str| {
        NewOrder::limit(user(3), BTC, Side::Buy, dec(qty), dec("101"))
            .with_time_in_force(TimeInForce::Fok)
    };
    let killed = place(c, fok("2.5")).await;
    assert!(killed.trades.is_empty());
    assert_eq!(
        (killed.order.status, killed.order.filled_quantity),
        (OrderStatus::Expired, Decimal::ZERO)
    );
    assert_eq!(
        stored(c, &a.order).await.status,
        OrderStatus::Open,
        "nothing executed"
    );
    let filled = place(c, fok("2")).await;
    assert_eq!(
        describe(&filled),
        vec![
            "100x1 0.1/0.05 seller-maker",
            "101x1 0.101/0.0505 seller-maker"
        ]
    );
    assert_eq!(filled.order.status, OrderStatus::Filled);
    assert_eq!(stored(c, &b.order).await.status, OrderStatus::Filled);
}

#[tokio::test]
async fn market_orders_without_liquidity_expire() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let empty = place(c, NewOrder::market(user(1), BTC, Side::Buy, dec("1"))).await;
    assert!(empty.trades.is_empty());
    assert_eq!(
        (empty.order.status, empty.order.average_price),
        (OrderStatus::Expired, None)
    );
    limit(c, 2, Side::Sell, "1", "100").await;
    let partial = place(c, NewOrder::market(user(1), BTC, Side::Buy, dec("3"))).await;
    assert_eq!(
        (partial.order.status, partial.order.filled_quantity),
        (OrderStatus::Expired, dec("1"))
    );
    assert_eq!(partial.order.average_price, Some(dec("100")));
}

#[tokio::test]
async fn self_trade_prevention_expires_the_incoming_rest() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let other = limit(c, 1, Side::Sell, "1", "100").await;
    let own = limit(c, 2, Side::Sell, "1", "100").await;
    let buy = limit(c, 2, Side::Buy, "2", "100").await;
    assert_eq!(describe(&buy), vec!["100x1 0.1/0.05 seller-maker"]);
    assert_eq!(buy.trades[0].seller_order_id, other.order.order_id);
    assert_eq!(
        (buy.order.status, buy.order.filled_quantity),
        (OrderStatus::Expired, dec("1"))
    );
    assert_eq!(
        stored(c, &own.order).await.status,
        OrderStatus::Open,
        "the own order stays"
    );
    // Whatever the type and time in force: a FOK meeting its own order first.
    let fok = place(
        c,
        NewOrder::limit(user(2), BTC, Side::Buy, dec("1"), dec("100"))
            .with_time_in_force(TimeInForce::Fok),
    )
    .await;
    assert!(fok.trades.is_empty());
    assert_eq!(fok.order.status, OrderStatus::Expired);
    let self_trades: i64 = scalar(
        c,
        "SELECT count(*) FROM trades WHERE buyer_user_id = seller_user_id",
    )
    .await;
    assert_eq!(self_trades, 0);
}

#[tokio::test]
async fn day_orders_and_expiring_orders_expire_when_due() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let today = place(
        c,
        NewOrder::limit(user(1), BTC, Side::Buy, dec("1"), dec("100"))
            .with_time_in_force(TimeInForce::Day),
    )
    .await;
    assert_eq!(today.order.status, OrderStatus::Open);
    exec(
        c,
        "INSERT INTO orders (order_id, user_id, symbol, side, order_type, status, quantity, price, time_in_force, created_at)
         VALUES ('00000000-0000-0000-0000-0000000000d1', gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 1, 99, 'DAY',
                 date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 second');
         INSERT INTO orders (order_id, user_id, symbol, side, order_type, status, quantity, price, expires_at)
         VALUES ('00000000-0000-0000-0000-0000000000d2', gen_random_uuid(), 'BTC/USDT', 'SELL', 'LIMIT', 'PARTIALLY_FILLED', 1, 120, now() - interval '1 second'),
                ('00000000-0000-0000-0000-0000000000d3', gen_random_uuid(), 'BTC/USDT', 'SELL', 'LIMIT', 'OPEN', 1, 121, now() + interval '1 hour');",
    )
    .await;
    let mut expired = svc::expire_due(c).await.expect("expiry");
    expired.sort();
    assert_eq!(expired, vec![user(0xd1), user(0xd2)]);
    assert!(
        svc::expire_due(c).await.expect("expiry").is_empty(),
        "each order expires once"
    );
    assert_eq!(stored(c, &today.order).await.status, OrderStatus::Open);
    let statuses = lines(c, "SELECT order_id, status FROM orders WHERE order_id::text LIKE '00000000-0000-0000-0000-0000000000d%' ORDER BY 1").await;
    assert_eq!(
        statuses,
        vec![
            "00000000-0000-0000-0000-0000000000d1|EXPIRED",
            "00000000-0000-0000-0000-0000000000d2|EXPIRED",
            "00000000-0000-0000-0000-0000000000d3|OPEN"
        ]
    );
}

#[tokio::test]
async fn a_stop_order_triggers_when_the_last_price_reaches_it() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 1, Side::Sell, "1", "100").await;
    limit(c, 2, Side::Buy, "1", "100").await; // last price 100
    let stop = place(
        c,
        NewOrder::stop(user(3), BTC, Side::Sell, dec("1"), dec("95")),
    )
    .await;
    assert_eq!(
        (stop.order.order_type, stop.order.status),
        (OrderType::Stop, OrderStatus::Open)
    );
    let watched: i64 = scalar(c, "SELECT count(*) FROM stop_orders_watchlist").await;
    assert_eq!(watched, 1);
    let stop_limit = place(
        c,
        NewOrder::stop_limit(user(4), BTC, Side::Buy, dec("1"), dec("106"), dec("105")),
    )
    .await;
    assert_eq!(stop_limit.order.status, OrderStatus::Open);

    // A resting bid the triggered STOP (a MARKET sell) will hit, then a trade at 95.
    let bid = limit(c, 5, Side::Buy, "1", "94").await;
    limit(c, 6, Side::Sell, "1", "95").await;
    let trade_at_95 = limit(c, 7, Side::Buy, "1", "95").await;
    assert_eq!(
        describe(&trade_at_95),
        vec!["95x1 0.095/0.0475 seller-maker"]
    );
    assert_eq!(trade_at_95.triggered.len(), 1);
    let triggered = &trade_at_95.triggered[0];
    assert_eq!(triggered.order.order_id, stop.order.order_id);
    assert_eq!(
        (triggered.order.order_type, triggered.order.status),
        (OrderType::Market, OrderStatus::Filled)
    );
    assert_eq!(triggered.trades.len(), 1);
    assert_eq!(triggered.trades[0].buyer_order_id, bid.order.order_id);
    assert_eq!(triggered.trades[0].price, dec("94"));
    // The BUY stop at 105 is untouched, the SELL stop left the watchlist.
    let watched = lines(c, "SELECT side, stop_price FROM stop_orders_watchlist").await;
    assert_eq!(watched, vec!["BUY|105.00000000"]);

    // A trade at 105 triggers the STOP_LIMIT: a LIMIT buy at 106 that rests.
    limit(c, 8, Side::Sell, "1", "103").await;
    let up = limit(c, 9, Side::Buy, "1", "103").await;
    assert!(up.triggered.is_empty(), "103 does not reach 105");
    limit(c, 8, Side::Sell, "1", "105").await;
    let reach = place(c, NewOrder::market(user(9), BTC, Side::Buy, dec("1"))).await;
    assert_eq!(reach.trades[0].price, dec("105"));
    let fired = &reach.triggered[0].order;
    assert_eq!(
        (fired.order_type, fired.status, fired.price),
        (OrderType::Limit, OrderStatus::Open, Some(dec("106")))
    );
    let watched: i64 = scalar(c, "SELECT count(*) FROM stop_orders_watchlist").await;
    assert_eq!(watched, 0);
}

#[tokio::test]
async fn a_stop_already_reached_triggers_when_placed() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 1, Side::Sell, "2", "100").await;
    limit(c, 2, Side::Buy, "1", "100").await; // last price 100, 1 left at 100
    let stop = place(
        c,
        NewOrder::stop(user(3), BTC, Side::Buy, dec("1"), dec("99")),
    )
    .await;
    assert_eq!(stop.order.order_type, OrderType::Market);
    assert_eq!(stop.order.status, OrderStatus::Filled);
    assert_eq!(describe(&stop), vec!["100x1 0.1/0.05 seller-maker"]);
    assert!(stop.triggered.is_empty());
}

#[tokio::test]
async fn a_trigger_cascade_runs_until_no_stop_is_reached() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 1, Side::Sell, "1", "100").await;
    limit(c, 2, Side::Buy, "1", "100").await; // last 100
    place(
        c,
        NewOrder::stop(user(3), BTC, Side::Sell, dec("1"), dec("99")),
    )
    .await;
    place(
        c,
        NewOrder::stop(user(4), BTC, Side::Sell, dec("1"), dec("98")),
    )
    .await;
    limit(c, 5, Side::Buy, "1", "98").await; // the first stop sells here: last 98
    limit(c, 5, Side::Buy, "1", "96").await; // ... which reaches the second: last 96
    limit(c, 6, Side::Sell, "1", "99").await;
    let trigger = limit(c, 7, Side::Buy, "1", "99").await;
    let prices: Vec<Decimal> = trigger
        .triggered
        .iter()
        .flat_map(|e| e.trades.iter().map(|t| t.price))
        .collect();
    assert_eq!(prices, vec![dec("98"), dec("96")]);
}

#[tokio::test]
async fn cancel_ends_an_active_order_and_refuses_everything_else() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let resting = limit(c, 1, Side::Buy, "1", "100").await;
    let cancelled = svc::cancel(c, user(1), resting.order.order_id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert!(cancelled.cancelled_at.is_some());
    assert_eq!(stored(c, &resting.order).await, cancelled);
    let again = svc::cancel(c, user(1), resting.order.order_id)
        .await
        .expect_err("twice");
    assert!(
        matches!(
            again,
            service::ServiceError::TerminalStatus {
                status: OrderStatus::Cancelled,
                ..
            }
        ),
        "{again}"
    );
    let foreign = limit(c, 2, Side::Buy, "1", "100").await;
    let err = svc::cancel(c, user(1), foreign.order.order_id)
        .await
        .expect_err("not the owner");
    assert!(
        matches!(err, service::ServiceError::Forbidden { .. }),
        "{err}"
    );
    let err = svc::cancel(c, user(1), Uuid::from_u128(42))
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, service::ServiceError::NotFound { .. }),
        "{err}"
    );
    let sell = limit(c, 3, Side::Sell, "1", "100").await;
    let err = svc::cancel(c, user(3), sell.order.order_id)
        .await
        .expect_err("filled");
    assert!(
        matches!(
            err,
            service::ServiceError::TerminalStatus {
                status: OrderStatus::Filled,
                ..
            }
        ),
        "{err}"
    );
    // A cancelled stop order leaves the watchlist.
    let stop = place(
        c,
        NewOrder::stop(user(4), BTC, Side::Sell, dec("1"), dec("90")),
    )
    .await;
    svc::cancel(c, user(4), stop.order.order_id)
        .await
        .expect("cancel the stop");
    let watched: i64 = scalar(c, "SELECT count(*) FROM stop_orders_watchlist").await;
    assert_eq!(watched, 0);
}

#[tokio::test]
async fn a_users_orders_list_newest_first_in_offset_and_keyset_pages() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let mut placed = Vec::new();
    for i in 0..7 {
        let order = limit(c, 1, Side::Buy, "1", &format!("{}", 90 + i)).await;
        placed.push(order.order.order_id);
    }
    limit(c, 2, Side::Buy, "1", "80").await; // someone else's
    placed.reverse();
    let filter = svc::OrderFilter::default();
    let all = svc::list(c, user(1), &filter, service::Page::first(100))
        .await
        .expect("list");
    let ids: Vec<Uuid> = all.items.iter().map(|o| o.order_id).collect();
    assert_eq!(ids, placed);
    assert_eq!(all.next, None, "a short page has no next page");

    let mut keyset = Vec::new();
    let mut page = service::Page::first(3);
    loop {
        let found = svc::list(c, user(1), &filter, page).await.expect("page");
        keyset.extend(found.items.iter().map(|o| o.order_id));
        match found.next {
            Some(cursor) => page = service::Page::After { limit: 3, cursor },
            None => break,
        }
    }
    assert_eq!(keyset, placed);
    let second = svc::list(
        c,
        user(1),
        &filter,
        service::Page::Offset {
            limit: 3,
            offset: 3,
        },
    )
    .await
    .expect("offset page");
    let ids: Vec<Uuid> = second.items.iter().map(|o| o.order_id).collect();
    assert_eq!(ids, placed[3..6].to_vec());
    let filtered = svc::list(
        c,
        user(1),
        &svc::OrderFilter {
            symbol: Some("ETH/USDT".into()),
            status: None,
        },
        service::Page::first(10),
    )
    .await
    .expect("filtered");
    assert!(filtered.items.is_empty());
}

// ------------------------------------------------------------ place_many

/// A batch reads the book's best bid and ask from the market levels at a
/// cost that does not grow with the levels: 5,000 on each side, and the
/// batch's reads of `market_levels` (in its transaction's statistics) stay a
/// handful, where an aggregate over a side would read every level.
#[tokio::test]
async fn a_batch_reads_the_best_prices_without_reading_every_level() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    exec(
        c,
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price) \
             SELECT '{maker}', 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 1, 50 + i * 0.01 \
             FROM generate_series(1, 5000) AS i; \
             INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price) \
             SELECT '{maker}', 'BTC/USDT', 'SELL', 'LIMIT', 'OPEN', 1, 101 + i * 0.01 \
             FROM generate_series(1, 5000) AS i",
            maker = user(500)
        ),
    )
    .await;
    let txn = sea_orm::TransactionTrait::begin(c).await.expect("begin");
    let orders = vec![
        NewOrder::limit(user(1), BTC, Side::Buy, dec("1"), dec("100.5")),
        NewOrder::limit(user(2), BTC, Side::Sell, dec("1"), dec("100.6")),
    ];
    for result in svc::place_many(&txn, orders, &svc::PlacementLimits::default()).await {
        let placed = result.expect("placed");
        assert_eq!(placed.order.status, OrderStatus::Open, "{placed:?}");
    }
    let read: i64 = scalar(
        &txn,
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
         FROM pg_stat_xact_user_tables WHERE relname = 'market_levels'",
    )
    .await;
    assert!(read < 100, "the batch read {read} rows of market_levels");
    // Dropped uncommitted: rolled back.
    drop(txn);
}

/// A batch answers each order on its own: a refused order (bad quantity,
/// another symbol, a client order id used earlier in the same batch) is
/// refused alone, and the next order of the batch matches the previous one.
#[tokio::test]
async fn a_batch_answers_each_order_and_refusals_leave_the_others_alone() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let limits = svc::PlacementLimits::default();
    let results = svc::place_many(
        c,
        vec![
            NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("50000"))
                .with_client_order_id("a"),
            NewOrder::limit(user(1), BTC, Side::Sell, dec("0"), dec("50000")),
            NewOrder::limit(user(1), "ETH/USDT", Side::Sell, dec("1"), dec("3000")),
            NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("50001"))
                .with_client_order_id("a"),
            NewOrder::limit(user(2), BTC, Side::Buy, dec("0.4"), dec("50000")),
        ],
        &limits,
    )
    .await;
    use service::ServiceError;
    let first = results[0].as_ref().expect("the first order rests");
    assert_eq!(
        (first.order.status, first.trades.len()),
        (OrderStatus::Open, 0)
    );
    assert!(
        matches!(
            &results[1],
            Err(ServiceError::InvalidOrder {
                field: "quantity",
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], Err(ServiceError::InvalidArgument { field: "symbol", reason })
            if reason.contains("ETH/USDT")),
        "{:?}",
        results[2]
    );
    match &results[3] {
        Err(service::ServiceError::DuplicateClientOrderId {
            existing_order_id, ..
        }) => assert_eq!(*existing_order_id, first.order.order_id),
        other => panic!("the second use of client order id a: {other:?}"),
    }
    let taker = results[4].as_ref().expect("the buy matches");
    assert_eq!(
        (taker.order.status, taker.trades.len()),
        (OrderStatus::Filled, 1)
    );
    assert_eq!(taker.trades[0].seller_order_id, first.order.order_id);
    assert_eq!(
        stored(c, &first.order).await.filled_quantity,
        dec("0.4"),
        "the maker's fill is stored"
    );
    let count: i64 = scalar(c, "SELECT count(*) FROM orders").await;
    assert_eq!(count, 2, "refused orders leave nothing behind");
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}

/// What a placement answers is the order as stored, to the decimal scale and
/// the microsecond, alone and in a batch (whose orders are written together
/// at its end): an expiry given with nanoseconds and another offset, a
/// resting order, a partial and a full fill, an expired market order.
#[tokio::test]
async fn each_answer_is_the_order_as_stored_alone_and_in_a_batch() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    limit(c, 9, Side::Sell, "2", "50000").await;
    limit(c, 9, Side::Buy, "1", "49000").await;
    let plus_two = chrono::FixedOffset::east_opt(2 * 3600).expect("offset");
    let expires = chrono::Timelike::with_nanosecond(
        &(chrono::Utc::now() + chrono::Duration::hours(5)),
        123_456_789,
    )
    .expect("a valid time")
    .with_timezone(&plus_two);
    let orders = vec![
        NewOrder::limit(user(1), BTC, Side::Sell, dec("0.5"), dec("51000"))
            .with_expires_at(expires)
            .with_client_order_id("kept"),
        NewOrder::limit(user(2), BTC, Side::Buy, dec("0.75"), dec("50000")),
        NewOrder::market(user(3), BTC, Side::Sell, dec("0.25")),
        NewOrder::market(user(4), BTC, Side::Sell, dec("5")),
    ];
    let alone =
        NewOrder::limit(user(5), BTC, Side::Buy, dec("0.1"), dec("48000")).with_expires_at(expires);
    let mut answers: Vec<Placement> = Vec::new();
    for result in svc::place_many(c, orders, &svc::PlacementLimits::default()).await {
        answers.push(result.expect("placed"));
    }
    answers.push(place(c, alone).await);
    let statuses: Vec<OrderStatus> = answers.iter().map(|a| a.order.status).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Open,
            OrderStatus::Filled,
            OrderStatus::Filled,
            OrderStatus::Expired,
            OrderStatus::Open
        ],
        "{answers:#?}"
    );
    for answer in &answers {
        assert_eq!(answer.order, stored(c, &answer.order).await);
    }
    assert_eq!(answers[0].order.quantity.scale(), 8);
    assert_eq!(
        answers[0].order.expires_at.map(|t| t.timestamp_micros()),
        Some(expires.timestamp_micros())
    );
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}

/// An order the database refuses while the batch writes it (here a trigger an
/// operator added) fails the batch's transaction; the batch is placed again
/// one by one, so that order fails alone and the others are stored.
#[tokio::test]
async fn an_order_the_database_refuses_fails_alone_and_the_batch_is_placed_one_by_one() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    exec(
        c,
        "CREATE FUNCTION refuse_777() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.quantity = 0.777 THEN
                 RAISE EXCEPTION 'quantity 0.777 is refused by the operator';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER trg_refuse_777 BEFORE INSERT ON orders
             FOR EACH ROW EXECUTE FUNCTION refuse_777();",
    )
    .await;
    let limits = svc::PlacementLimits::default();
    let results = svc::place_many(
        c,
        vec![
            NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("50000")),
            NewOrder::limit(user(2), BTC, Side::Sell, dec("0.777"), dec("50000")),
            NewOrder::limit(user(3), BTC, Side::Buy, dec("0.5"), dec("50000")),
        ],
        &limits,
    )
    .await;
    let first = results[0].as_ref().expect("the first order is placed");
    match &results[1] {
        Err(err) => assert!(err.to_string().contains("0.777 is refused"), "{err}"),
        Ok(p) => panic!("the refused order was placed: {p:?}"),
    }
    let third = results[2].as_ref().expect("the third order is placed");
    assert_eq!(third.trades.len(), 1);
    assert_eq!(third.trades[0].seller_order_id, first.order.order_id);
    let stored_quantities = lines(c, "SELECT quantity::text FROM orders ORDER BY created_at").await;
    assert_eq!(stored_quantities, ["1.00000000", "0.50000000"]);
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}

/// A fee exactly on the midpoint of the eighth place rounds half-up (away
/// from zero), not to the even digit: 10.01 × 1.0005 = 10.015005 at the
/// taker's 0.001 is 0.010015005, stored 0.01001501 (half-even would keep
/// 0.01001500); the maker's 0.0050075025 is 0.00500750.
#[tokio::test]
async fn a_fee_on_the_rounding_midpoint_rounds_half_up() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let fees: String = lines(
        c,
        "SELECT maker_fee::text, taker_fee::text FROM symbols WHERE symbol = 'BTC/USDT'",
    )
    .await
    .join(" ");
    assert_eq!(fees, "0.0005|0.0010", "the seed's fees this test counts on");
    limit(c, 1, Side::Sell, "1.0005", "10.01").await;
    let taker = limit(c, 2, Side::Buy, "1.0005", "10.01").await;
    assert_eq!(taker.trades.len(), 1, "{:?}", describe(&taker));
    let trade = &taker.trades[0];
    assert_eq!(
        trade.buyer_fee,
        dec("0.01001501"),
        "the taker's 0.010015005, half-up"
    );
    assert_eq!(
        trade.seller_fee,
        dec("0.0050075"),
        "the maker's 0.0050075025"
    );
}

/// A placement's statements run with generic plans (the statement that
/// takes the book lock sets `plan_cache_mode` for the transaction): the
/// write of a match, whose makers' partitions a custom plan prunes while
/// planning over every `orders` partition, is planned once per connection,
/// not at every execution. Its setting stays for the rest of a caller's
/// transaction, as documented.
#[tokio::test]
async fn a_placement_plans_its_statements_once_per_connection() {
    let db = TestDb::migrated().await;
    let c = db.connect_single().await;
    for _ in 0..8 {
        svc::place(
            &c,
            NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("50000")),
        )
        .await
        .expect("an ask rests");
        let buy = svc::place(&c, NewOrder::market(user(2), BTC, Side::Buy, dec("1")))
            .await
            .expect("a market buy fills");
        assert_eq!(buy.trades.len(), 1);
    }
    let plans = lines(
        &c,
        "SELECT generic_plans || ' generic, ' || custom_plans || ' custom' \
         FROM pg_prepared_statements WHERE statement LIKE '%WITH makers AS%'",
    )
    .await;
    assert!(!plans.is_empty(), "the write of a match was prepared");
    for plan in &plans {
        assert!(plan.ends_with(" 0 custom"), "{plans:?}");
    }
    let txn = sea_orm::TransactionTrait::begin(&c).await.expect("begin");
    svc::place(
        &txn,
        NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("50000")),
    )
    .await
    .expect("placed in the caller's transaction");
    assert_eq!(
        scalar::<String>(&txn, "SELECT current_setting('plan_cache_mode')").await,
        "force_generic_plan"
    );
    txn.rollback().await.expect("rollback");
    assert_eq!(
        scalar::<String>(&c, "SELECT current_setting('plan_cache_mode')").await,
        "auto",
        "only for the transaction"
    );
}
