//! The read paths of `service::trades` and `service::market` on real rows, with
//! exact figures: depth levels and order, best bid/ask and spread, ticker,
//! statistics per period, a user's trade history and its pages, an order's
//! fills, fill rate, and the errors.

use sea_orm::DatabaseConnection;
use sea_orm::prelude::{Decimal, Uuid};
use service::market::{self, OrderBook, Period, PriceLevel};
use service::orders::{self as svc, NewOrder};
use service::trades::{self, UserTrade};
use service::{Page, ServiceError, Side};
use tests::db::TestDb;
use tests::sql::insert_order as order;
use tests::sql::{column, exec, scalar};

const BTC: &str = "BTC/USDT";
const ETH: &str = "ETH/USDT";
const UNKNOWN: &str = "NOPE/USDT";

/// A trade between `buyer` and `seller` at `executed_at` (an SQL expression),
/// with fees 0.05 (buyer) and 0.1 (seller) unless `extra` says otherwise
/// (`column = value` pairs separated by `; `). Returns its id.
async fn trade(
    db: &DatabaseConnection,
    symbol: &str,
    (buyer, seller): (Uuid, Uuid),
    (price, quantity): (&str, &str),
    buyer_is_maker: bool,
    executed_at: &str,
    extra: &str,
) -> Uuid {
    let mut columns = vec![
        "symbol",
        "buyer_order_id",
        "seller_order_id",
        "buyer_user_id",
        "seller_user_id",
        "price",
        "quantity",
        "buyer_fee",
        "seller_fee",
        "buyer_fee_asset",
        "seller_fee_asset",
        "is_buyer_maker",
        "trade_source",
        "executed_at",
    ];
    let mut values = vec![
        format!("'{symbol}'"),
        "gen_random_uuid()".to_owned(),
        "gen_random_uuid()".to_owned(),
        format!("'{buyer}'"),
        format!("'{seller}'"),
        price.to_owned(),
        quantity.to_owned(),
        "0.05".to_owned(),
        "0.1".to_owned(),
        "'USDT'".to_owned(),
        "'USDT'".to_owned(),
        buyer_is_maker.to_string(),
        "'INTERNAL'".to_owned(),
        executed_at.to_owned(),
    ];
    for (column, value) in extra.split("; ").filter_map(|pair| pair.split_once(" = ")) {
        match columns.iter().position(|c| *c == column) {
            Some(i) => values[i] = value.to_owned(),
            None => {
                columns.push(column);
                values.push(value.to_owned());
            }
        }
    }
    scalar(
        db,
        &format!(
            "INSERT INTO trades ({}) VALUES ({}) RETURNING trade_id",
            columns.join(", "),
            values.join(", ")
        ),
    )
    .await
}

/// A fixed instant `ago` (an interval) before now, as an SQL literal: unlike
/// `now() - interval …`, it is the same instant in every statement, so trades
/// can share a timestamp exactly.
async fn instant(db: &DatabaseConnection, ago: &str) -> String {
    let at: String = scalar(db, &format!("SELECT (now() - interval '{ago}')::text")).await;
    format!("'{at}'::timestamptz")
}

/// `price quantity count` per level, decimals without trailing zeros.
fn levels(levels: &[PriceLevel]) -> Vec<String> {
    levels
        .iter()
        .map(|l| {
            format!(
                "{} {} {}",
                l.price.normalize(),
                l.quantity.normalize(),
                l.order_count
            )
        })
        .collect()
}

fn book(book: &OrderBook) -> (Vec<String>, Vec<String>) {
    (levels(&book.bids), levels(&book.asks))
}

/// `side price×quantity fee asset maker|taker order` of a user's trade.
fn seen(t: &UserTrade) -> String {
    format!(
        "{:?} {}x{} fee {} {} {} order {}",
        t.side,
        t.price.normalize(),
        t.quantity.normalize(),
        t.fee.normalize(),
        t.fee_asset,
        if t.is_maker { "maker" } else { "taker" },
        t.order_id
    )
}

fn opt(value: Option<Decimal>) -> Option<String> {
    value.map(|v| v.normalize().to_string())
}

fn assert_unknown_symbol<T: std::fmt::Debug>(result: Result<T, ServiceError>, what: &str) {
    match result {
        Err(ServiceError::UnknownSymbol(symbol)) => assert_eq!(symbol, UNKNOWN, "{what}"),
        other => panic!("{what}: expected UnknownSymbol, got {other:?}"),
    }
}

// ---------------------------------------------------------------- depth

#[tokio::test]
async fn depth_sums_remaining_quantity_per_level_best_first_without_stops() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b) = (user(1), user(2));
    // Bids: 101 (1.5), 100 (2 − 0 and 1 − 0.25, one of them 40 days old, in
    // another partition), 99.5 (1).
    order(c, a, "BTC/USDT BUY LIMIT OPEN 1.5 101", "").await;
    order(c, a, "BTC/USDT BUY LIMIT OPEN 2 100", "").await;
    order(
        c,
        b,
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 1 100",
        "filled_quantity = 0.25; created_at = now() - interval '40 days'",
    )
    .await;
    order(c, b, "BTC/USDT BUY LIMIT OPEN 1 99.5", "").await;
    // Asks: 102 (1 + 0.5), 103 (2), 105 (1).
    order(c, a, "BTC/USDT SELL LIMIT OPEN 1 102", "").await;
    order(c, b, "BTC/USDT SELL LIMIT OPEN 0.5 102", "").await;
    order(c, a, "BTC/USDT SELL LIMIT OPEN 2 103", "").await;
    order(c, b, "BTC/USDT SELL LIMIT OPEN 1 105", "").await;
    // Not liquidity: untriggered stop orders (D9), finished orders, other symbols.
    order(
        c,
        a,
        "BTC/USDT BUY STOP_LIMIT OPEN 7 101.5",
        "stop_price = 101.4",
    )
    .await;
    order(
        c,
        b,
        "BTC/USDT SELL STOP_LIMIT OPEN 7 101.75",
        "stop_price = 101.8",
    )
    .await;
    order(c, a, "BTC/USDT SELL STOP OPEN 7", "stop_price = 90").await;
    order(
        c,
        a,
        "BTC/USDT BUY LIMIT FILLED 1 101.8",
        "filled_quantity = 1",
    )
    .await;
    order(c, b, "BTC/USDT SELL LIMIT CANCELLED 1 101.9", "").await;
    order(c, a, "BTC/USDT BUY LIMIT PENDING 1 101.95", "").await;
    order(c, a, "ETH/USDT BUY LIMIT OPEN 1 101.99", "").await;

    let full = market::depth(c, BTC, 50).await.expect("depth");
    assert_eq!(full.symbol, BTC);
    assert_eq!(
        book(&full),
        (
            vec!["101 1.5 1".into(), "100 2.75 2".into(), "99.5 1 1".into()],
            vec!["102 1.5 2".into(), "103 2 1".into(), "105 1 1".into()],
        )
    );

    let top_two = market::depth(c, BTC, 2).await.expect("depth");
    assert_eq!(
        book(&top_two),
        (
            vec!["101 1.5 1".into(), "100 2.75 2".into()],
            vec!["102 1.5 2".into(), "103 2 1".into()],
        )
    );

    // The schema's function agrees on the levels both show.
    let function: Vec<String> = column(
        c,
        "SELECT side || ' ' || trim_scale(price) || ' ' || trim_scale(quantity) || ' ' || order_count
         FROM get_order_book_depth('BTC/USDT', 2)",
    )
    .await;
    assert_eq!(
        function,
        [
            "BID 101 1.5 1",
            "BID 100 2.75 2",
            "ASK 102 1.5 2",
            "ASK 103 2 1"
        ]
    );
}

#[tokio::test]
async fn depth_of_an_empty_book_is_empty_and_bad_arguments_are_refused() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let empty = market::depth(c, "SOL/USDT", 10).await.expect("depth");
    assert!(empty.bids.is_empty() && empty.asks.is_empty(), "{empty:?}");

    for levels in [0, 1001] {
        match market::depth(c, BTC, levels).await {
            Err(ServiceError::InvalidArgument { field: "depth", .. }) => {}
            other => panic!("depth {levels}: {other:?}"),
        }
    }
    assert_unknown_symbol(market::depth(c, UNKNOWN, 10).await, "depth");
}

// ---------------------------------------------------------------- top of book and ticker

#[tokio::test]
async fn best_bid_ask_gives_prices_volumes_and_rounded_spread() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b) = (user(1), user(2));
    order(c, a, "BTC/USDT BUY LIMIT OPEN 1 30000", "").await;
    order(
        c,
        b,
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 2 30000",
        "filled_quantity = 1.5",
    )
    .await;
    order(c, a, "BTC/USDT BUY LIMIT OPEN 5 29999", "").await;
    order(c, b, "BTC/USDT SELL LIMIT OPEN 0.75 30001.37", "").await;
    order(c, a, "BTC/USDT SELL LIMIT OPEN 3 30002", "").await;
    // A stop order priced across the book is not the best bid (D9).
    order(
        c,
        a,
        "BTC/USDT BUY STOP_LIMIT OPEN 1 30005",
        "stop_price = 30004",
    )
    .await;

    let top = market::best_bid_ask(c, BTC).await.expect("best bid/ask");
    assert_eq!(top.symbol, BTC);
    assert_eq!(opt(top.best_bid).as_deref(), Some("30000"));
    assert_eq!(opt(top.best_bid_volume).as_deref(), Some("1.5"));
    assert_eq!(opt(top.best_ask).as_deref(), Some("30001.37"));
    assert_eq!(opt(top.best_ask_volume).as_deref(), Some("0.75"));
    assert_eq!(opt(top.spread).as_deref(), Some("1.37"));
    // 1.37 / 30000 × 100 = 0.0045666… → 0.0046
    assert_eq!(top.spread_percentage, Some(dec("0.0046")));

    // As the schema's function computes it.
    let function: String = scalar(
        c,
        "SELECT concat_ws(' ', trim_scale(best_bid), trim_scale(best_ask), trim_scale(spread),
                spread_percentage) FROM get_best_bid_ask('BTC/USDT')",
    )
    .await;
    assert_eq!(function, "30000 30001.37 1.37 0.0046");

    // One side empty: no spread.
    order(c, a, "ETH/USDT BUY LIMIT OPEN 1 2000", "").await;
    let one_sided = market::best_bid_ask(c, ETH).await.expect("best bid/ask");
    assert_eq!(opt(one_sided.best_bid).as_deref(), Some("2000"));
    assert_eq!(
        (
            one_sided.best_ask,
            one_sided.best_ask_volume,
            one_sided.spread,
            one_sided.spread_percentage
        ),
        (None, None, None, None)
    );
    assert_unknown_symbol(market::best_bid_ask(c, UNKNOWN).await, "best_bid_ask");
}

#[tokio::test]
async fn ticker_is_all_nulls_on_an_empty_market_and_exact_on_a_busy_one() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let before = chrono::Utc::now();
    let empty = market::ticker(c, BTC).await.expect("ticker");
    assert_eq!(empty.symbol, BTC);
    assert_eq!(
        [
            empty.last_price,
            empty.best_bid_price,
            empty.best_ask_price,
            empty.best_bid_volume,
            empty.best_ask_volume,
            empty.spread,
            empty.spread_percentage,
            empty.total_bids_volume,
            empty.total_asks_volume,
        ],
        [None; 9]
    );
    assert!(empty.timestamp >= before);
    let json = serde_json::to_value(&empty).expect("serializes");
    assert_eq!(json["last_price"], serde_json::Value::Null);
    assert_eq!(json["symbol"], BTC);

    let (a, b) = (user(1), user(2));
    order(c, a, "BTC/USDT BUY LIMIT OPEN 1 100", "").await;
    order(
        c,
        b,
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 2 100",
        "filled_quantity = 0.5",
    )
    .await;
    order(c, a, "BTC/USDT BUY LIMIT OPEN 4 98", "").await;
    order(c, b, "BTC/USDT SELL LIMIT OPEN 3 104", "").await;
    order(c, a, "BTC/USDT SELL LIMIT OPEN 1 110", "").await;
    order(
        c,
        a,
        "BTC/USDT SELL STOP_LIMIT OPEN 9 99",
        "stop_price = 99.5",
    )
    .await;
    // Two trades at the same instant: the larger trade_id is the newer one.
    trade(
        c,
        BTC,
        (a, b),
        ("101", "1"),
        true,
        "now() - interval '2 hours'",
        "",
    )
    .await;
    trade(
        c,
        BTC,
        (a, b),
        ("102", "1"),
        true,
        "'2020-01-01T00:00:00Z'",
        "",
    )
    .await;
    let tie = &instant(c, "1 hour").await;
    trade(
        c,
        BTC,
        (b, a),
        ("103", "1"),
        false,
        tie,
        "trade_id = 'ffffffff-0000-0000-0000-000000000000'",
    )
    .await;
    trade(
        c,
        BTC,
        (b, a),
        ("104", "1"),
        false,
        tie,
        "trade_id = '00000000-0000-0000-0000-0000000000ff'",
    )
    .await;
    trade(c, ETH, (a, b), ("3000", "1"), true, "now()", "").await;

    let ticker = market::ticker(c, BTC).await.expect("ticker");
    assert_eq!(opt(ticker.last_price).as_deref(), Some("103"));
    assert_eq!(opt(ticker.best_bid_price).as_deref(), Some("100"));
    assert_eq!(opt(ticker.best_bid_volume).as_deref(), Some("2.5"));
    assert_eq!(opt(ticker.best_ask_price).as_deref(), Some("104"));
    assert_eq!(opt(ticker.best_ask_volume).as_deref(), Some("3"));
    assert_eq!(opt(ticker.spread).as_deref(), Some("4"));
    assert_eq!(ticker.spread_percentage, Some(dec("4.0000")));
    assert_eq!(opt(ticker.total_bids_volume).as_deref(), Some("6.5"));
    assert_eq!(opt(ticker.total_asks_volume).as_deref(), Some("4"));
    assert_unknown_symbol(market::ticker(c, UNKNOWN).await, "ticker");
}

// ---------------------------------------------------------------- statistics

#[tokio::test]
async fn stats_cover_each_period_and_nothing_outside_it() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b) = (user(1), user(2));
    for (price, quantity, ago) in [
        ("100", "1", "30 minutes"),
        ("110", "2", "2 hours"),
        ("90", "1", "10 hours"),
        ("120", "1", "3 days"),
        ("80", "4", "20 days"),
        ("200", "1", "40 days"),
    ] {
        trade(
            c,
            BTC,
            (a, b),
            (price, quantity),
            true,
            &format!("now() - interval '{ago}'"),
            "",
        )
        .await;
    }
    // Another symbol's trade does not count.
    trade(
        c,
        ETH,
        (a, b),
        ("3000", "1"),
        true,
        "now() - interval '10 minutes'",
        "",
    )
    .await;

    // period: count base quote vwap high low last
    let expected = [
        (Period::OneHour, "1 1 100 100 100 100 100"),
        (Period::FourHours, "2 3 320 106.66666667 110 100 100"),
        (Period::OneDay, "3 4 410 102.5 110 90 100"),
        (Period::SevenDays, "4 5 530 106 120 90 100"),
        (Period::ThirtyDays, "5 9 850 94.44444444 120 80 100"),
    ];
    for (period, figures) in expected {
        let stats = market::stats(c, BTC, period).await.expect("stats");
        let shown = format!(
            "{} {} {} {} {} {} {}",
            stats.trade_count,
            stats.base_volume.normalize(),
            stats.quote_volume.normalize(),
            opt(stats.vwap).unwrap_or_default(),
            opt(stats.high).unwrap_or_default(),
            opt(stats.low).unwrap_or_default(),
            opt(stats.last).unwrap_or_default(),
        );
        assert_eq!(shown, figures, "{period}");
        assert_eq!(stats.period, period);
        assert_eq!(
            stats.period_end - stats.period_start,
            period.duration(),
            "{period}"
        );

        let vwap = market::vwap(c, BTC, period).await.expect("vwap");
        assert_eq!(vwap, stats.vwap, "{period}");
        let function: Option<Decimal> = scalar(
            c,
            &format!("SELECT calculate_vwap('BTC/USDT', {})", period.hours()),
        )
        .await;
        assert_eq!(vwap, function, "calculate_vwap over {period}");

        let volume = market::volume(c, BTC, period).await.expect("volume");
        let function: String = scalar(
            c,
            &format!(
                "SELECT concat_ws(' ', trade_count, trim_scale(base_volume), trim_scale(quote_volume))
                 FROM get_trading_volume('BTC/USDT', '{period}')"
            ),
        )
        .await;
        assert_eq!(
            format!(
                "{} {} {}",
                volume.trade_count,
                volume.base_volume.normalize(),
                volume.quote_volume.normalize()
            ),
            function,
            "get_trading_volume over {period}"
        );
    }

    // Nor does a trade stamped in the future (calculate_vwap, which has no
    // upper bound, would count it; get_trading_volume does not).
    trade(
        c,
        BTC,
        (a, b),
        ("1000", "1"),
        true,
        "now() + interval '1 hour'",
        "",
    )
    .await;
    let hour = market::stats(c, BTC, Period::OneHour).await.expect("stats");
    assert_eq!((hour.trade_count, hour.vwap), (1, Some(dec("100"))));

    let quiet = market::stats(c, "SOL/USDT", Period::OneDay)
        .await
        .expect("stats");
    assert_eq!(
        (quiet.trade_count, quiet.base_volume, quiet.quote_volume),
        (0, Decimal::ZERO, Decimal::ZERO)
    );
    assert_eq!(
        [quiet.vwap, quiet.high, quiet.low, quiet.last],
        [None, None, None, None]
    );
    assert_eq!(
        market::vwap(c, "SOL/USDT", Period::ThirtyDays)
            .await
            .expect("vwap"),
        None
    );

    assert_unknown_symbol(market::stats(c, UNKNOWN, Period::OneDay).await, "stats");
    assert_unknown_symbol(market::vwap(c, UNKNOWN, Period::OneDay).await, "vwap");
    assert_unknown_symbol(market::volume(c, UNKNOWN, Period::OneDay).await, "volume");
}

#[test]
fn periods_parse_their_five_names_and_refuse_anything_else() {
    let parsed: Vec<Period> = ["1h", "4h", "24h", "7d", "30d"]
        .iter()
        .map(|text| text.parse().unwrap_or_else(|err| panic!("{text}: {err}")))
        .collect();
    assert_eq!(parsed, Period::ALL);
    assert_eq!(
        Period::ALL.map(Period::hours),
        [1, 4, 24, 168, 720],
        "window lengths"
    );
    assert_eq!(
        serde_json::to_string(&Period::SevenDays).expect("serializes"),
        "\"7d\""
    );
    for text in ["", "2d", "24H", "1d", " 1h", "1h "] {
        match text.parse::<Period>() {
            Err(
                err @ ServiceError::InvalidArgument {
                    field: "period", ..
                },
            ) => {
                assert!(
                    err.to_string().contains("1h, 4h, 24h, 7d, 30d"),
                    "{text:?}: {err}"
                );
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- fill rate

#[tokio::test]
async fn fill_rate_counts_the_users_orders_of_the_window() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b) = (user(1), user(2));
    for spec in [
        "BTC/USDT BUY LIMIT FILLED 1 100",
        "BTC/USDT SELL LIMIT FILLED 1 100",
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 1 100",
        "BTC/USDT BUY LIMIT CANCELLED 1 100",
        "ETH/USDT BUY LIMIT OPEN 1 100",
    ] {
        order(c, a, spec, "").await;
    }
    order(
        c,
        a,
        "BTC/USDT BUY LIMIT FILLED 1 100",
        "created_at = now() - interval '40 days'",
    )
    .await;
    order(c, b, "BTC/USDT BUY LIMIT FILLED 1 100", "").await;

    let month = market::fill_rate(c, a, 30).await.expect("fill rate");
    assert_eq!(
        (
            month.total_orders,
            month.filled_orders,
            month.partially_filled_orders,
            month.cancelled_orders
        ),
        (5, 2, 1, 1)
    );
    assert_eq!(month.fill_rate, Some(dec("40.00")));
    let two_months = market::fill_rate(c, a, 60).await.expect("fill rate");
    assert_eq!((two_months.total_orders, two_months.filled_orders), (6, 3));
    assert_eq!(two_months.fill_rate, Some(dec("50.00")));

    let nobody = market::fill_rate(c, user(99), 30).await.expect("fill rate");
    assert_eq!((nobody.total_orders, nobody.fill_rate), (0, None));
    for days in [0, 3651] {
        match market::fill_rate(c, a, days).await {
            Err(ServiceError::InvalidArgument { field: "days", .. }) => {}
            other => panic!("{days} days: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- trades

#[tokio::test]
async fn get_and_recent_trades_newest_first() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b) = (user(1), user(2));
    let old = trade(
        c,
        BTC,
        (a, b),
        ("100", "1"),
        true,
        "now() - interval '3 days'",
        "",
    )
    .await;
    let tie = &instant(c, "1 hour").await;
    let low = trade(
        c,
        BTC,
        (a, b),
        ("101", "1"),
        true,
        tie,
        "trade_id = '00000000-0000-0000-0000-000000000001'",
    )
    .await;
    let high = trade(
        c,
        BTC,
        (a, b),
        ("102", "1"),
        true,
        tie,
        "trade_id = 'f0000000-0000-0000-0000-000000000001'",
    )
    .await;
    let newest = trade(c, BTC, (b, a), ("103", "2"), false, "now()", "").await;
    trade(c, ETH, (a, b), ("3000", "1"), true, "now()", "").await;

    let found = trades::get(c, low).await.expect("the trade");
    assert_eq!((found.trade_id, found.price), (low, dec("101")));
    assert_eq!((found.buyer_user_id, found.seller_user_id), (a, b));
    match trades::get(c, user(404)).await {
        Err(ServiceError::NotFound {
            entity: "trade",
            id,
        }) => assert_eq!(id, user(404).to_string()),
        other => panic!("{other:?}"),
    }

    let all: Vec<Uuid> = trades::recent(c, BTC, 10)
        .await
        .expect("recent")
        .iter()
        .map(|t| t.trade_id)
        .collect();
    assert_eq!(all, [newest, high, low, old]);
    let two: Vec<Uuid> = trades::recent(c, BTC, 2)
        .await
        .expect("recent")
        .iter()
        .map(|t| t.trade_id)
        .collect();
    assert_eq!(two, [newest, high]);
    assert!(
        trades::recent(c, "SOL/USDT", 10)
            .await
            .expect("recent")
            .is_empty()
    );
    assert_unknown_symbol(trades::recent(c, UNKNOWN, 10).await, "recent");
    match trades::recent(c, BTC, 0).await {
        Err(ServiceError::InvalidArgument { field: "limit", .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn user_history_shows_each_trade_from_the_users_side() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (me, other) = (user(1), user(2));
    let my_buy = user(0xb1);
    let my_sell = user(0x51);
    let my_eth_sell = user(0xe5);
    // I bought as the maker.
    let t1 = trade(
        c,
        BTC,
        (me, other),
        ("100", "1.5"),
        true,
        "now() - interval '3 hours'",
        &format!("buyer_order_id = '{my_buy}'; buyer_fee = 0.075; seller_fee = 0.15"),
    )
    .await;
    // I sold as the taker (the buyer rested).
    let t2 = trade(
        c,
        BTC,
        (other, me),
        ("101", "2"),
        true,
        "now() - interval '2 hours'",
        &format!("seller_order_id = '{my_sell}'; buyer_fee = 0.101; seller_fee = 0.202"),
    )
    .await;
    // I sold ETH as the maker (the buyer took), fee in another asset.
    let t3 = trade(
        c,
        ETH,
        (other, me),
        ("3000", "0.1"),
        false,
        "now() - interval '1 hour'",
        &format!(
            "seller_order_id = '{my_eth_sell}'; buyer_fee = 0.3; seller_fee = 0.15; seller_fee_asset = 'ETH'"
        ),
    )
    .await;
    // Not mine.
    trade(c, BTC, (other, user(3)), ("99", "1"), true, "now()", "").await;

    let page = trades::user_history(c, me, None, Page::first(50))
        .await
        .expect("history");
    assert_eq!(page.next, None, "a short page has no next page");
    let ids: Vec<Uuid> = page.items.iter().map(|t| t.trade_id).collect();
    assert_eq!(ids, [t3, t2, t1]);
    assert_eq!(
        page.items.iter().map(seen).collect::<Vec<_>>(),
        [
            format!("Sell 3000x0.1 fee 0.15 ETH maker order {my_eth_sell}"),
            format!("Sell 101x2 fee 0.202 USDT taker order {my_sell}"),
            format!("Buy 100x1.5 fee 0.075 USDT maker order {my_buy}"),
        ]
    );
    assert_eq!(page.items[2].symbol, BTC);

    // The same sides, fees and maker flags as get_user_trade_history.
    let function: Vec<String> = column(
        c,
        &format!(
            "SELECT concat_ws(' ', side, trim_scale(fee), is_maker)
             FROM get_user_trade_history('{me}')"
        ),
    )
    .await;
    assert_eq!(function, ["SELL 0.15 t", "SELL 0.202 f", "BUY 0.075 t"]);

    let btc_only = trades::user_history(c, me, Some(BTC), Page::first(50))
        .await
        .expect("history");
    let ids: Vec<Uuid> = btc_only.items.iter().map(|t| t.trade_id).collect();
    assert_eq!(ids, [t2, t1]);
    assert!(
        trades::user_history(c, me, Some("SOL/USDT"), Page::first(50))
            .await
            .expect("history")
            .items
            .is_empty()
    );
    assert_unknown_symbol(
        trades::user_history(c, me, Some(UNKNOWN), Page::first(50)).await,
        "user_history",
    );

    let json = serde_json::to_value(&page.items[1]).expect("serializes");
    assert_eq!(json["side"], "SELL");
    assert_eq!(json["is_maker"], false);
    assert_eq!(json["trade_id"], t2.to_string());
    assert!(
        json["fee"].is_string(),
        "decimals travel as strings: {json}"
    );
}

#[tokio::test]
async fn user_history_offset_and_keyset_pages_add_up_to_the_full_list() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let me = user(1);
    // 23 trades of mine, alternately bought and sold, several sharing a
    // timestamp (so trade_id breaks ties), spread over days and partitions,
    // between trades of other users.
    let base = instant(c, "0 hours").await;
    for i in 0..23u32 {
        let at = format!("{base} - interval '{} hours'", (i / 3) * 7);
        let mine = if i % 2 == 0 {
            (me, user(2))
        } else {
            (user(3), me)
        };
        trade(c, BTC, mine, ("100", "1"), i % 3 == 0, &at, "").await;
        trade(c, BTC, (user(4), user(5)), ("100", "1"), true, &at, "").await;
    }
    let full = trades::user_history(c, me, None, Page::first(1000))
        .await
        .expect("history");
    assert_eq!(full.items.len(), 23);
    let expected: Vec<Uuid> = column(
        c,
        &format!(
            "SELECT trade_id FROM trades WHERE '{me}' IN (buyer_user_id, seller_user_id)
             ORDER BY executed_at DESC, trade_id DESC"
        ),
    )
    .await;
    let full_ids: Vec<Uuid> = full.items.iter().map(|t| t.trade_id).collect();
    assert_eq!(full_ids, expected);

    // Offset pages of 5.
    let mut by_offset = Vec::new();
    for offset in (0..30).step_by(5) {
        let page = trades::user_history(c, me, None, Page::Offset { limit: 5, offset })
            .await
            .expect("page");
        by_offset.extend(page.items.iter().map(|t| t.trade_id));
    }
    assert_eq!(by_offset, expected);

    // Keyset pages of 5, following `next` until it runs out.
    let mut by_cursor = Vec::new();
    let mut page = trades::user_history(c, me, None, Page::first(5))
        .await
        .expect("first page");
    let mut pages = 1;
    loop {
        by_cursor.extend(page.items.iter().map(|t| t.trade_id));
        let Some(cursor) = page.next else { break };
        page = trades::user_history(c, me, None, Page::After { limit: 5, cursor })
            .await
            .expect("next page");
        pages += 1;
    }
    assert_eq!(by_cursor, expected);
    assert_eq!(pages, 5, "4 full pages and a last one of 3");

    // A cursor token round-trips and pages from where it says.
    let first = trades::user_history(c, me, None, Page::first(4))
        .await
        .expect("page");
    let token = first
        .next
        .expect("a full page has a next cursor")
        .to_string();
    let resumed = trades::user_history(
        c,
        me,
        None,
        Page::After {
            limit: 4,
            cursor: token.parse().expect("a valid token"),
        },
    )
    .await
    .expect("page");
    let resumed_ids: Vec<Uuid> = resumed.items.iter().map(|t| t.trade_id).collect();
    assert_eq!(resumed_ids, expected[4..8]);

    match trades::user_history(c, me, None, Page::first(0)).await {
        Err(ServiceError::InvalidArgument { field: "limit", .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_orders_fills_are_its_owners_alone() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (maker, taker) = (user(1), user(2));
    let sell = svc::place(
        c,
        NewOrder::limit(maker, BTC, Side::Sell, dec("2"), dec("50000")),
    )
    .await
    .expect("the sell rests");
    let first = svc::place(c, NewOrder::market(taker, BTC, Side::Buy, dec("0.5")))
        .await
        .expect("the first buy fills");
    let second = svc::place(
        c,
        NewOrder::limit(taker, BTC, Side::Buy, dec("1"), dec("50000")),
    )
    .await
    .expect("the second buy fills");

    let fills = trades::for_order(c, maker, sell.order.order_id)
        .await
        .expect("fills");
    let ids: Vec<Uuid> = fills.iter().map(|t| t.trade_id).collect();
    assert_eq!(ids, [first.trades[0].trade_id, second.trades[0].trade_id]);
    assert_eq!(
        fills.iter().map(|t| t.quantity).collect::<Vec<_>>(),
        [dec("0.5"), dec("1")]
    );
    let mine = trades::for_order(c, taker, second.order.order_id)
        .await
        .expect("fills");
    assert_eq!(mine, second.trades);

    match trades::for_order(c, taker, sell.order.order_id).await {
        Err(ServiceError::Forbidden {
            entity: "order", ..
        }) => {}
        other => panic!("another user's order: {other:?}"),
    }
    match trades::for_order(c, maker, user(404)).await {
        Err(ServiceError::NotFound {
            entity: "order", ..
        }) => {}
        other => panic!("no such order: {other:?}"),
    }

    // The maker sees both fills as a maker's sells, with the maker fee.
    let history = trades::user_history(c, maker, Some(BTC), Page::first(10))
        .await
        .expect("history");
    assert_eq!(
        history.items.iter().map(seen).collect::<Vec<_>>(),
        [
            format!(
                "Sell 50000x1 fee 25 USDT maker order {}",
                sell.order.order_id
            ),
            format!(
                "Sell 50000x0.5 fee 12.5 USDT maker order {}",
                sell.order.order_id
            ),
        ]
    );
}

#[tokio::test]
async fn reads_work_inside_a_callers_transaction() {
    use sea_orm::TransactionTrait;

    let db = TestDb::migrated().await;
    let txn = db.conn().begin().await.expect("a transaction");
    order(db.conn(), user(1), "BTC/USDT SELL LIMIT OPEN 1 100", "").await;
    // Rows the transaction itself wrote are in its reads.
    exec(
        &txn,
        "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price)
         VALUES ('00000000-0000-0000-0000-000000000002', 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 1, 99)",
    )
    .await;
    let inside = market::depth(&txn, BTC, 5).await.expect("depth");
    assert_eq!(
        book(&inside),
        (vec!["99 1 1".into()], vec!["100 1 1".into()])
    );
    txn.rollback().await.expect("rollback");
    let outside = market::depth(db.conn(), BTC, 5).await.expect("depth");
    assert_eq!(book(&outside), (vec![], vec!["100 1 1".into()]));
}

/// Pages the driver or PostgreSQL cannot take are refused by the service as
/// the argument they are: an offset past `bigint` (sqlx panics binding it), a
/// cursor before 4713 BC (PostgreSQL: "timestamp out of range"). The earliest
/// cursor PostgreSQL holds still runs, so the bound is not too tight.
#[tokio::test]
async fn listings_refuse_offsets_and_cursors_out_of_the_databases_range() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let me = user(1);
    svc::place(c, NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100")))
        .await
        .expect("an order to list");
    let id = "0000000000000000000000000000abcd";
    let earliest = format!("{}.{id}", service::pagination::MIN_TIMESTAMP_MICROS);
    let earliest: service::Cursor = earliest.parse().expect("in range");
    let page = svc::list(
        c,
        me,
        &Default::default(),
        Page::After {
            limit: 10,
            cursor: earliest,
        },
    )
    .await
    .expect("the earliest cursor reaches PostgreSQL and lists nothing older");
    assert!(page.items.is_empty());
    let history = trades::user_history(
        c,
        me,
        None,
        Page::After {
            limit: 10,
            cursor: earliest,
        },
    )
    .await
    .expect("the earliest cursor");
    assert!(history.items.is_empty());

    let too_far = Page::Offset {
        limit: 10,
        offset: i64::MAX as u64 + 1,
    };
    let largest = Page::Offset {
        limit: 10,
        offset: i64::MAX as u64,
    };
    let early = format!("-1000000000000000000.{id}").parse::<service::Cursor>();
    let hand_made = Page::After {
        limit: 10,
        cursor: service::Cursor {
            at: chrono::DateTime::from_timestamp_micros(-1_000_000_000_000_000_000)
                .expect("chrono holds it")
                .fixed_offset(),
            id: Uuid::nil(),
        },
    };
    assert_field(early.map(|_| ()), "cursor");
    for (page, field) in [(too_far, "offset"), (hand_made, "cursor")] {
        assert_field(svc::list(c, me, &Default::default(), page).await, field);
        assert_field(trades::user_history(c, me, None, page).await, field);
        assert_field(trades::user_history(c, me, Some(BTC), page).await, field);
    }
    // i64::MAX itself is a valid offset: an empty page, not an error.
    let empty = svc::list(c, me, &Default::default(), largest)
        .await
        .expect("bigint offset");
    assert!(empty.items.is_empty());
}

fn assert_field<T: std::fmt::Debug>(result: Result<T, ServiceError>, expected: &str) {
    match result {
        Err(ServiceError::InvalidArgument { field, .. }) => assert_eq!(field, expected),
        other => panic!("expected InvalidArgument {{ field: {expected:?} }}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- candles

/// One trade as the candles need it.
#[derive(Clone, Debug)]
struct Tick {
    at: chrono::DateTime<chrono::Utc>,
    id: Uuid,
    price: Decimal,
    quantity: Decimal,
}

/// The candles of `ticks` computed here, oldest first: the reference the
/// service's buckets must equal.
fn reference_candles(ticks: &[Tick], interval: market::Interval) -> Vec<market::Candle> {
    let width = interval.seconds();
    let mut sorted = ticks.to_vec();
    sorted.sort_by_key(|t| (t.at, t.id));
    let mut out: Vec<market::Candle> = Vec::new();
    for t in sorted {
        let open_time =
            chrono::DateTime::from_timestamp(t.at.timestamp().div_euclid(width) * width, 0)
                .expect("a bucket");
        match out.last_mut() {
            Some(c) if c.open_time == open_time => {
                c.high = c.high.max(t.price);
                c.low = c.low.min(t.price);
                c.close = t.price;
                c.volume += t.quantity;
                c.quote_volume += t.price * t.quantity;
                c.trade_count += 1;
            }
            _ => out.push(market::Candle {
                open_time,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: t.quantity,
                quote_volume: t.price * t.quantity,
                trade_count: 1,
            }),
        }
    }
    out
}

/// Decimals compared by value (the database keeps its scale).
fn candle_text(c: &market::Candle) -> String {
    format!(
        "{} o{} h{} l{} c{} v{} q{} n{}",
        c.open_time.to_rfc3339(),
        c.open.normalize(),
        c.high.normalize(),
        c.low.normalize(),
        c.close.normalize(),
        c.volume.normalize(),
        c.quote_volume.normalize(),
        c.trade_count
    )
}

#[tokio::test]
async fn candles_equal_a_computation_over_the_trades_for_every_interval_and_window() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b) = (user(1), user(2));
    // Trades over two years, in today's and older partitions and in the
    // default one; ties on one instant (open and close then follow trade id);
    // another symbol's trades that must not count.
    let ages = [
        "30 seconds",
        "95 seconds",
        "10 minutes",
        "59 minutes",
        "3 hours",
        "5 hours",
        "23 hours",
        "30 hours",
        "3 days",
        "9 days",
        "40 days",
        "100 days",
        "200 days",
        "450 days",
        "900 days",
    ];
    for (i, ago) in ages.iter().enumerate() {
        let at = instant(c, ago).await;
        for k in 0..3 {
            let price = format!("{}.{}", 100 + i * 3 + k, 25 * k);
            let quantity = format!("0.{}", 1 + (i + k) % 9);
            trade(c, BTC, (a, b), (&price, &quantity), k % 2 == 0, &at, "").await;
        }
        trade(c, ETH, (a, b), ("1", "1"), true, &at, "").await;
    }
    let sql = "SELECT executed_at, trade_id, price, quantity FROM trades WHERE symbol = 'BTC/USDT'";
    let ticks: Vec<Tick> = tests::sql::rows(c, sql)
        .await
        .iter()
        .map(|row| Tick {
            at: tests::sql::get::<chrono::DateTime<chrono::FixedOffset>>(row, 0, sql).to_utc(),
            id: tests::sql::get(row, 1, sql),
            price: tests::sql::get(row, 2, sql),
            quantity: tests::sql::get(row, 3, sql),
        })
        .collect();
    assert_eq!(ticks.len(), ages.len() * 3);
    let texts = |candles: &[market::Candle]| candles.iter().map(candle_text).collect::<Vec<_>>();
    let now = chrono::Utc::now();

    for interval in market::Interval::ALL {
        let all = reference_candles(&ticks, interval);
        // The newest `limit` buckets, oldest first.
        for limit in [1u64, 2, 5, 1000] {
            let got = market::candles(
                c,
                BTC,
                market::CandleQuery {
                    interval,
                    start: None,
                    end: None,
                    limit,
                },
            )
            .await
            .expect("newest candles");
            let from = all.len().saturating_sub(limit as usize);
            assert_eq!(
                texts(&got),
                texts(&all[from..]),
                "{interval}, limit {limit}"
            );
        }
        // Windows that start and end mid-bucket bound open_time.
        for (start_ago, end_ago) in [(2.0f64, 0.5f64), (45.0, 2.5), (1000.0, 150.0), (0.01, -1.0)] {
            let start = now - chrono::TimeDelta::seconds((start_ago * 86_400.0) as i64 + 17);
            let end = now - chrono::TimeDelta::seconds((end_ago * 86_400.0) as i64 + 13);
            let expected: Vec<_> = all
                .iter()
                .filter(|c| c.open_time >= start && c.open_time < end)
                .cloned()
                .collect();
            for limit in [3u64, 1000] {
                let got = market::candles(
                    c,
                    BTC,
                    market::CandleQuery {
                        interval,
                        start: Some(start),
                        end: Some(end),
                        limit,
                    },
                )
                .await
                .expect("a window");
                let want = &expected[..expected.len().min(limit as usize)];
                assert_eq!(
                    texts(&got),
                    texts(want),
                    "{interval} from {start} to {end}, limit {limit}"
                );
            }
            // Only an end: the newest buckets before it.
            let got = market::candles(
                c,
                BTC,
                market::CandleQuery {
                    interval,
                    start: None,
                    end: Some(end),
                    limit: 4,
                },
            )
            .await
            .expect("before an end");
            let before: Vec<_> = all.iter().filter(|c| c.open_time < end).cloned().collect();
            assert_eq!(
                texts(&got),
                texts(&before[before.len().saturating_sub(4)..]),
                "{interval} before {end}"
            );
        }
    }

    // The errors.
    let query = |limit| market::CandleQuery {
        interval: market::Interval::OneHour,
        start: None,
        end: None,
        limit,
    };
    assert_unknown_symbol(market::candles(c, UNKNOWN, query(10)).await, "candles");
    assert!(
        market::candles(c, ETH, query(10))
            .await
            .is_ok_and(|v| !v.is_empty())
    );
    for limit in [0, 1001] {
        match market::candles(c, BTC, query(limit)).await {
            Err(ServiceError::InvalidArgument { field, .. }) => assert_eq!(field, "limit"),
            other => panic!("limit {limit}: {other:?}"),
        }
    }
    let backwards = market::CandleQuery {
        start: Some(now),
        end: Some(now - chrono::TimeDelta::hours(1)),
        ..query(10)
    };
    match market::candles(c, BTC, backwards).await {
        Err(ServiceError::InvalidArgument { field, .. }) => assert_eq!(field, "start"),
        other => panic!("start after end: {other:?}"),
    }
    for bad in ["2m", "1H", "", "60"] {
        let err = bad.parse::<market::Interval>().expect_err(bad);
        assert!(err.to_string().contains("1m, 5m, 15m, 1h, 4h, 1d"), "{err}");
    }
}

// ---------------------------------------------------------------- market state

use tests::faults::market_state_drift as drift;
use tests::{dec, user};

#[tokio::test]
async fn the_market_state_follows_every_write_the_service_and_an_operator_make() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (a, b, s) = (user(1), user(2), user(3));
    let step = async |what: &str| {
        let found = drift(c).await;
        assert!(found.is_empty(), "after {what}: {found:?}");
    };
    // The service: resting orders on several levels, a partial fill, a
    // sweep, a cancel, a stop that triggers, a DAY order that expires.
    for (price, quantity) in [("100", "1"), ("100", "2.5"), ("101", "1"), ("103", "0.4")] {
        svc::place(
            c,
            NewOrder::limit(a, BTC, Side::Sell, dec(quantity), dec(price)),
        )
        .await
        .expect("a resting sell");
    }
    let bid = svc::place(c, NewOrder::limit(b, BTC, Side::Buy, dec("2"), dec("99")))
        .await
        .expect("a resting buy");
    step("resting orders").await;
    svc::place(
        c,
        NewOrder::limit(b, BTC, Side::Buy, dec("1.5"), dec("100")),
    )
    .await
    .expect("a partial fill of the 100 level");
    step("a partial fill").await;
    svc::place(c, NewOrder::stop(s, BTC, Side::Buy, dec("0.1"), dec("101")))
        .await
        .expect("a stop");
    svc::place(c, NewOrder::market(b, BTC, Side::Buy, dec("2.5")))
        .await
        .expect("a sweep that reaches the stop");
    step("a sweep and a stop trigger").await;
    svc::cancel(c, b, bid.order.order_id).await.expect("cancel");
    step("a cancel").await;
    let day = svc::place(
        c,
        NewOrder::limit(a, ETH, Side::Sell, dec("1"), dec("3000"))
            .with_time_in_force(service::TimeInForce::Day),
    )
    .await
    .expect("a DAY order");
    exec(
        c,
        &format!(
            "UPDATE orders SET created_at = created_at - interval '2 days'
             WHERE order_id = '{}'",
            day.order.order_id
        ),
    )
    .await;
    step("a direct update of created_at").await;
    svc::expire_due(c).await.expect("expiry");
    step("expiry").await;

    // An operator in psql: insert, change, cancel and delete orders; insert,
    // correct and delete trades, also the newest.
    exec(
        c,
        "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, stop_price)
         VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 7, 95, NULL),
                (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 3, 95, NULL),
                (gen_random_uuid(), 'BTC/USDT', 'SELL', 'STOP', 'OPEN', 1, NULL, 90)",
    )
    .await;
    step("direct inserts").await;
    exec(
        c,
        "UPDATE orders SET quantity = quantity + 1 WHERE symbol = 'BTC/USDT' AND price = 95",
    )
    .await;
    step("a direct update of quantities").await;
    exec(
        c,
        "UPDATE orders SET status = 'CANCELLED' WHERE symbol = 'BTC/USDT' AND price = 95 AND quantity = 8",
    )
    .await;
    step("a direct cancel").await;
    exec(
        c,
        "DELETE FROM orders WHERE symbol = 'BTC/USDT' AND price = 95",
    )
    .await;
    step("a direct delete").await;
    let newest = trade(
        c,
        BTC,
        (a, b),
        ("777", "1"),
        true,
        "now() + interval '1 second'",
        "",
    )
    .await;
    step("a direct trade insert").await;
    let last: Decimal = scalar(
        c,
        "SELECT price FROM market_last_trade WHERE symbol = 'BTC/USDT'",
    )
    .await;
    assert_eq!(last, dec("777"));
    exec(
        c,
        &format!("UPDATE trades SET price = 778 WHERE trade_id = '{newest}'"),
    )
    .await;
    step("a direct trade correction").await;
    exec(
        c,
        &format!("DELETE FROM trades WHERE trade_id = '{newest}'"),
    )
    .await;
    step("the newest trade deleted").await;
    let last: Decimal = scalar(
        c,
        "SELECT price FROM market_last_trade WHERE symbol = 'BTC/USDT'",
    )
    .await;
    assert_ne!(last, dec("778"));

    // The reads agree with the orders themselves.
    let book = market::depth(c, BTC, 10).await.expect("depth");
    let expected_levels: Vec<String> = column(
        c,
        "SELECT side::text || ' ' || price::text || ' ' || sum(quantity - filled_quantity)::text || ' ' || count(*)
         FROM orders WHERE symbol = 'BTC/USDT' AND status IN ('OPEN', 'PARTIALLY_FILLED')
           AND order_type = 'LIMIT' AND price IS NOT NULL
         GROUP BY side, price ORDER BY side, CASE WHEN side = 'BUY' THEN -price ELSE price END",
    )
    .await;
    let got: Vec<String> = book
        .bids
        .iter()
        .map(|l| format!("BUY {} {} {}", l.price, l.quantity, l.order_count))
        .chain(
            book.asks
                .iter()
                .map(|l| format!("SELL {} {} {}", l.price, l.quantity, l.order_count)),
        )
        .collect();
    assert_eq!(got, expected_levels);
    let ticker = market::ticker(c, BTC).await.expect("ticker");
    assert_eq!(ticker.last_price, Some(last));

    // A damaged state is reported, and rebuilt.
    exec(
        c,
        "UPDATE market_levels SET quantity = quantity + 1 WHERE symbol = 'BTC/USDT'",
    )
    .await;
    exec(c, "DELETE FROM market_last_trade WHERE symbol = 'BTC/USDT'").await;
    let found = drift(c).await;
    assert!(found.len() >= 2, "{found:?}");
    exec(c, "SELECT rebuild_market_state('BTC/USDT')").await;
    step("a rebuild").await;
}

/// 3,000 trades of `symbol` (an SQL expression of the series' `i`) spread
/// over 31 days at every second offset, up to `future_seconds` after now, so
/// each window starts and ends inside a minute with trades on both sides of
/// its edges; and BTC/USDT trades in the seconds around the start of every
/// period's window.
async fn window_trades(c: &DatabaseConnection, symbol: &str, future_seconds: i64) {
    exec(
        c,
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id,
                seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
                seller_fee_asset, is_buyer_maker, executed_at)
             SELECT {symbol}, gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
                gen_random_uuid(), 100 + (i * 37) % 91 + (i % 7) * 0.125, 0.001 * (1 + i % 13),
                0, 0, 'USDT', 'USDT', i % 2 = 0,
                now() - make_interval(secs => (i * 7919) % (31 * 86400) - {future_seconds}
                                              + (i % 10) * 0.1)
             FROM generate_series(1, 3000) i"
        ),
    )
    .await;
    for hours in [1, 4, 24, 168, 720] {
        exec(
            c,
            &format!(
                "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id,
                    seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
                    seller_fee_asset, is_buyer_maker, executed_at)
                 SELECT 'BTC/USDT', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
                    gen_random_uuid(), 150 + d, 1, 0, 0, 'USDT', 'USDT', true,
                    now() - interval '{hours} hours' + make_interval(secs => d)
                 FROM generate_series(-3, 3) d"
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn stats_from_stored_candles_equal_a_computation_over_the_window_s_trades() {
    use sea_orm::TransactionTrait;
    let db = TestDb::migrated().await;
    let c = db.conn();
    // Trades spread over 31 days at every second offset, so each window
    // starts and ends inside a minute with trades on both sides of its edges.
    window_trades(c, "'BTC/USDT'", 0).await;
    let txn = c.begin().await.expect("begin");
    for period in Period::ALL {
        let got = market::stats(&txn, BTC, period).await.expect("stats");
        let expected: String = scalar(
            &txn,
            &format!(
                "SELECT count(*) || '|' || coalesce(sum(quantity), 0) || '|'
                        || coalesce(round(sum(price * quantity), 8), 0) || '|'
                        || coalesce(round(sum(price * quantity) / nullif(sum(quantity), 0), 8)::text, '-')
                        || '|' || coalesce(max(price)::text, '-') || '|' || coalesce(min(price)::text, '-')
                 FROM trades WHERE symbol = 'BTC/USDT'
                   AND executed_at >= now() - interval '{} hours' AND executed_at <= now()",
                period.hours()
            ),
        )
        .await;
        let text = |v: Option<Decimal>| v.map_or_else(|| "-".to_owned(), |d| d.to_string());
        assert_eq!(
            format!(
                "{}|{}|{}|{}|{}|{}",
                got.trade_count,
                got.base_volume,
                got.quote_volume,
                text(got.vwap),
                text(got.high),
                text(got.low)
            ),
            expected,
            "{period}"
        );
        assert!(got.trade_count > 0, "{period}");
    }
    txn.rollback().await.expect("rollback");
}

/// The market-data functions and the view that migration 10 redefined over the
/// market state return, to the last decimal and scale, what their original
/// definitions computed over `orders` and `trades` (the queries below are
/// those definitions), in one transaction so `now()` is the same for both.
#[tokio::test]
async fn original_market_functions_over_the_state_equal_their_definitions() {
    use sea_orm::TransactionTrait;
    let db = TestDb::migrated().await;
    let c = db.conn();
    // Trades of two symbols over 31 days at every second offset, some in the
    // future (calculate_vwap and the view have no upper bound).
    window_trades(
        c,
        "CASE WHEN i % 3 = 0 THEN 'ETH/USDT' ELSE 'BTC/USDT' END",
        7200,
    )
    .await;
    // A book: resting limits (some partly filled) on many levels, stop orders
    // with prices (never in the book) and orders that left it.
    exec(
        c,
        "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, filled_quantity,
            price, stop_price)
         SELECT gen_random_uuid(), 'BTC/USDT',
            (CASE WHEN i % 2 = 0 THEN 'BUY' ELSE 'SELL' END)::order_side_enum,
            (CASE WHEN i % 11 = 0 THEN 'STOP_LIMIT' ELSE 'LIMIT' END)::order_type_enum,
            (CASE WHEN i % 5 = 0 THEN 'PARTIALLY_FILLED' WHEN i % 13 = 0 THEN 'CANCELLED'
                  ELSE 'OPEN' END)::order_status_enum,
            1 + i % 4, CASE WHEN i % 5 = 0 OR i % 13 = 0 THEN 0.5 ELSE 0 END,
            CASE WHEN i % 2 = 0 THEN 100 - (i % 40) * 0.5 ELSE 101 + (i % 40) * 0.5 END,
            CASE WHEN i % 11 = 0 THEN 99 END
         FROM generate_series(1, 400) i",
    )
    .await;
    assert_eq!(drift(c).await, Vec::<String>::new());

    let txn = c.begin().await.expect("begin");
    let mut checked = 0;
    let mut same = |what: String, got: Vec<Option<String>>, expected: Vec<Option<String>>| {
        assert!(!expected.is_empty(), "{what}: nothing to compare");
        assert_eq!(got, expected, "{what}");
        checked += 1;
    };
    for hours in [1, 2, 4, 24, 25, 168, 720, 1000] {
        for symbol in [BTC, ETH, "SOL/USDT"] {
            same(
                format!("calculate_vwap({symbol}, {hours})"),
                column(&txn, &format!("SELECT calculate_vwap('{symbol}', {hours})::text")).await,
                column(
                    &txn,
                    &format!(
                        "SELECT round(sum(t.price * t.quantity) / nullif(sum(t.quantity), 0), 8)::text
                         FROM trades t WHERE t.symbol = '{symbol}'
                           AND t.executed_at >= now() - make_interval(hours => {hours})"
                    ),
                )
                .await,
            );
        }
    }
    for period in ["1h", "4h", "24h", "7d", "30d"] {
        for symbol in [BTC, ETH, "SOL/USDT"] {
            let interval = match period {
                "1h" => "1 hour",
                "4h" => "4 hours",
                "24h" => "24 hours",
                "7d" => "7 days",
                _ => "30 days",
            };
            same(
                format!("get_trading_volume({symbol}, {period})"),
                column(
                    &txn,
                    &format!("SELECT g::text FROM get_trading_volume('{symbol}', '{period}') g"),
                )
                .await,
                column(
                    &txn,
                    &format!(
                        "SELECT row('{symbol}'::varchar(20), count(*), coalesce(sum(t.quantity), 0),
                                    coalesce(round(sum(t.quantity * t.price), 8), 0),
                                    now() - interval '{interval}', now())::text
                         FROM trades t WHERE t.symbol = '{symbol}'
                           AND t.executed_at >= now() - interval '{interval}'
                           AND t.executed_at <= now()"
                    ),
                )
                .await,
            );
        }
    }
    same(
        "v_symbol_stats_24h".to_owned(),
        column(
            &txn,
            "SELECT v::text FROM v_symbol_stats_24h v ORDER BY v.symbol",
        )
        .await,
        column(
            &txn,
            "SELECT row(t.symbol, count(*), sum(t.quantity), sum(t.quantity * t.price),
                        min(t.price), max(t.price),
                        (array_agg(t.price ORDER BY t.executed_at DESC, t.trade_id DESC))[1])::text
             FROM trades t WHERE t.executed_at >= now() - interval '24 hours'
             GROUP BY t.symbol ORDER BY t.symbol",
        )
        .await,
    );
    for depth in [1, 5, 20, 100] {
        let side = |name: &str, side: &str, order: &str| {
            format!(
                "(SELECT '{name}'::varchar(4) AS side, o.price, sum(o.quantity - o.filled_quantity) AS q,
                         count(*)::int AS n
                  FROM orders o
                  WHERE o.symbol = 'BTC/USDT' AND o.side = '{side}'
                    AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price IS NOT NULL
                    AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')
                  GROUP BY o.price ORDER BY o.price {order} LIMIT {depth})"
            )
        };
        same(
            format!("get_order_book_depth(BTC, {depth})"),
            column(
                &txn,
                &format!("SELECT d::text FROM get_order_book_depth('BTC/USDT', {depth}) d"),
            )
            .await,
            column(
                &txn,
                &format!(
                    "SELECT row(l.side, l.price, l.q, l.n)::text FROM ({} UNION ALL {}) l
                     ORDER BY l.side = 'ASK',
                              CASE WHEN l.side = 'BID' THEN l.price END DESC,
                              CASE WHEN l.side = 'ASK' THEN l.price END ASC",
                    side("BID", "BUY", "DESC"),
                    side("ASK", "SELL", "ASC")
                ),
            )
            .await,
        );
    }
    for symbol in [BTC, ETH] {
        let best = |side: &str, agg: &str| {
            format!(
                "(SELECT {agg}(o.price) FROM orders o WHERE o.symbol = '{symbol}' AND o.side = '{side}'
                   AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price IS NOT NULL
                   AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP'))"
            )
        };
        same(
            format!("get_best_bid_ask({symbol})"),
            column(
                &txn,
                &format!("SELECT b::text FROM get_best_bid_ask('{symbol}') b"),
            )
            .await,
            column(
                &txn,
                &format!(
                    "SELECT row(b.bid, b.ask, b.ask - b.bid,
                                round((b.ask - b.bid) / nullif(b.bid, 0) * 100, 4))::text
                     FROM (SELECT {} AS bid, {} AS ask) b",
                    best("BUY", "max"),
                    best("SELL", "min")
                ),
            )
            .await,
        );
    }
    txn.rollback().await.expect("rollback");
    assert_eq!(checked, 8 * 3 + 5 * 3 + 1 + 4 + 2);
}

/// Migrations 9 to 12 applied to a database that already holds resting
/// orders and trades (the candles before the previous hour built before the
/// triggers exist, the rest after them) leave a state equal to the
/// recomputation, candles on both sides of that cutoff, and the ticker's side
/// totals those of the book.
#[tokio::test]
async fn upgrading_a_loaded_database_builds_the_market_state_exactly() {
    use migration::{DataLoss, MigratorTrait, Operation};
    let db = TestDb::migrated().await;
    let c = db.conn();
    let after_8 = u32::try_from(migration::Migrator::migrations().len() - 8).expect("a few");
    migration::run(c, Operation::Down(Some(after_8)), DataLoss::Refuse)
        .await
        .expect("down to migration 8");
    let market_tables: i64 = scalar(
        c,
        "SELECT count(*) FROM pg_class WHERE relname IN ('market_levels', 'market_sides', 'trade_candles')",
    )
    .await;
    assert_eq!(market_tables, 0, "migration 8 has no market state");
    window_trades(c, "'ETH/USDT'", 0).await;
    for (n, spec) in [
        "BTC/USDT BUY LIMIT OPEN 1 100",
        "BTC/USDT BUY LIMIT OPEN 2.5 100",
        "BTC/USDT BUY LIMIT PARTIALLY_FILLED 3 99",
        "BTC/USDT SELL LIMIT OPEN 0.4 103",
        "BTC/USDT SELL LIMIT FILLED 1 104",
        "ETH/USDT SELL LIMIT OPEN 7 200",
    ]
    .into_iter()
    .enumerate()
    {
        let extra = if spec.contains("PARTIALLY") {
            "filled_quantity = 1.25"
        } else if spec.contains("FILLED") {
            "filled_quantity = 1"
        } else {
            ""
        };
        order(c, user(n as u128 + 1), spec, extra).await;
    }
    migration::run(c, Operation::Up(None), DataLoss::Refuse)
        .await
        .expect("up from migration 8");

    let found = drift(c).await;
    assert!(found.is_empty(), "after the upgrade: {found:?}");
    let cutoff = "date_bin('1 hour', now() - interval '1 hour', '1970-01-01 00:00:00+00')";
    for (what, predicate) in [
        ("before", format!("open_time < {cutoff}")),
        ("from", format!("open_time >= {cutoff}")),
    ] {
        let candles: i64 = scalar(
            c,
            &format!(
                "SELECT count(*) FROM trade_candles WHERE bucket_seconds = 60 AND {predicate}"
            ),
        )
        .await;
        assert!(candles > 0, "minute candles {what} the cutoff");
    }
    let ticker = market::ticker(c, BTC).await.expect("ticker");
    assert_eq!(
        (opt(ticker.total_bids_volume), opt(ticker.total_asks_volume)),
        (Some("5.25".into()), Some("0.4".into()))
    );
}

/// `orders::list` decodes its rows by hand (SeaORM's derived mapping formats
/// an error for each NULL column): every column, NULL or not, of every order
/// type and status comes out as SeaORM maps the same row.
#[tokio::test]
async fn order_rows_decode_as_seaorm_maps_them() {
    use sea_orm::{ConnectionTrait, EntityTrait, FromQueryResult, QueryOrder};
    let db = TestDb::migrated().await;
    let c = db.conn();
    let user = Uuid::from_u128(0x0de);
    order(c, user, "BTC/USDT BUY LIMIT OPEN 1.5 50000", "").await;
    order(
        c,
        user,
        "ETH/USDT SELL STOP_LIMIT PENDING 2 2900",
        "stop_price = 3000; time_in_force = 'DAY'; client_order_id = 'mine-1'; \
         expires_at = now() + interval '1 day'; institution_id = gen_random_uuid(); \
         fee_profile_id = gen_random_uuid(); order_source = 'api'",
    )
    .await;
    order(
        c,
        user,
        "BTC/USDT SELL MARKET FILLED 0.5",
        "filled_quantity = 0.5; average_price = 50100.12345678; time_in_force = 'IOC'; \
         filled_at = now()",
    )
    .await;
    order(
        c,
        user,
        "BTC/USDT BUY LIMIT CANCELLED 3 49000",
        "filled_quantity = 1; average_price = 49000; time_in_force = 'FOK'; cancelled_at = now()",
    )
    .await;
    let statement =
        svc::list_statement(user, &svc::OrderFilter::default(), Page::first(50)).expect("page");
    let rows = c.query_all_raw(statement).await.expect("rows");
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(
            svc::order_from_row(row).expect("decoded by hand"),
            entity::orders::Model::from_query_result(row, "").expect("mapped by SeaORM")
        );
    }
    // And the page is what SeaORM's own query returns.
    let listed = svc::list(c, user, &svc::OrderFilter::default(), Page::first(50))
        .await
        .expect("listed");
    let found = entity::orders::Entity::find()
        .order_by_desc(entity::orders::Column::CreatedAt)
        .order_by_desc(entity::orders::Column::OrderId)
        .all(c)
        .await
        .expect("found");
    assert_eq!(listed.items, found);
}
