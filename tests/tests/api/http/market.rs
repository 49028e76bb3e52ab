//! Market data and the caller's own history over real HTTP: order book,
//! ticker, recent trades, one trade, statistics, symbols, `/me/trades`,
//! `/me/stats`. Market data needs no credentials; symbols take any form in
//! paths and queries and come back as `BTC/USDT`.

use super::spawn_app;
use serde_json::{Value, json};
use tests::app::wire::{
    self, assert_decimal, assert_timestamp, assert_trade, expect_error, mentions,
};
use tests::app::{AppOptions, TestApp};
use uuid::Uuid;

/// Bids at 49000 (1 + 0.5) and 48000 (2); asks at 51000 (1) and 52000 (0.3).
async fn a_book(app: &TestApp) {
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    app.limit(alice, "BUY", "1", "49000").await;
    app.limit(bob, "BUY", "0.5", "49000.00").await;
    app.limit(alice, "BUY", "2", "48000").await;
    app.limit(bob, "SELL", "1", "51000").await;
    app.limit(alice, "SELL", "0.3", "52000").await;
}

/// Three trades, oldest first at 50000, 50010, 50020 (alice sells, bob buys).
async fn three_trades(app: &TestApp, alice: Uuid, bob: Uuid) -> Vec<Value> {
    let mut trades = Vec::new();
    for price in ["50000", "50010", "50020"] {
        app.limit(alice, "SELL", "1", price).await;
        let placed = app.market(bob, "BUY", "1").await;
        let own = &placed["trades"][0];
        wire::assert_own_trade(own);
        trades.push(wire::public_view(own));
    }
    trades
}

#[tokio::test]
async fn the_order_book_aggregates_levels_best_first() {
    let app = spawn_app(AppOptions::jwt()).await;
    let empty = app.get_public_json("/api/v1/orderbook/btc-usdt", 200).await;
    assert_eq!((&empty["bids"], &empty["asks"]), (&json!([]), &json!([])));
    a_book(&app).await;

    let full = json!({
        "bids": [{"price": "49000", "volume": "1.5", "count": 2},
                 {"price": "48000", "volume": "2", "count": 1}],
        "asks": [{"price": "51000", "volume": "1", "count": 1},
                 {"price": "52000", "volume": "0.3", "count": 1}],
    });
    for symbol in ["BTC-USDT", "btc-usdt", "BTC%2FUSDT", "Btc_Usdt"] {
        let book = app
            .get_public_json(&format!("/api/v1/orderbook/{symbol}"), 200)
            .await;
        assert_eq!(book["symbol"], "BTC/USDT", "{symbol}");
        assert_eq!(book["bids"], full["bids"], "{symbol}");
        assert_eq!(book["asks"], full["asks"], "{symbol}");
        assert_timestamp(&book["timestamp"], "timestamp");
    }
    let top = app
        .get_public_json("/api/v1/orderbook/BTC-USDT?depth=1", 200)
        .await;
    assert_eq!(top["bids"], json!([full["bids"][0]]));
    assert_eq!(top["asks"], json!([full["asks"][0]]));
    app.get_public_json("/api/v1/orderbook/BTC-USDT?depth=100", 200)
        .await;

    for (query, field) in [
        ("depth=0", "depth"),
        ("depth=101", "depth"),
        ("depth=x", "depth"),
        ("levels=5", "levels"),
    ] {
        let err = expect_error(
            app.get_public(&format!("/api/v1/orderbook/BTC-USDT?{query}"))
                .await,
            400,
        )
        .await;
        assert!(mentions(&err, field), "{query}: {err}");
    }
    expect_error(app.get_public("/api/v1/orderbook/FOO-BAR").await, 404).await;
}

#[tokio::test]
async fn the_ticker_reports_the_top_of_the_book_and_the_last_price() {
    let app = spawn_app(AppOptions::jwt()).await;
    let quiet = app
        .get_public_json("/api/v1/markets/ETH-USDT/ticker", 200)
        .await;
    assert_eq!(quiet["symbol"], "ETH/USDT");
    for field in [
        "last_price",
        "best_bid_price",
        "best_ask_price",
        "best_bid_volume",
        "best_ask_volume",
        "spread",
        "spread_percentage",
        "total_bids_volume",
        "total_asks_volume",
    ] {
        assert!(quiet[field].is_null(), "{field} is null: {quiet}");
    }
    assert_timestamp(&quiet["timestamp"], "timestamp");

    a_book(&app).await;
    let ticker = app
        .get_public_json("/api/v1/markets/btc-usdt/ticker", 200)
        .await;
    assert_eq!(ticker["symbol"], "BTC/USDT");
    assert!(ticker["last_price"].is_null(), "no trade yet: {ticker}");
    assert_eq!(ticker["best_bid_price"], "49000");
    assert_eq!(ticker["best_bid_volume"], "1.5");
    assert_eq!(ticker["best_ask_price"], "51000");
    assert_eq!(ticker["best_ask_volume"], "1");
    assert_eq!(ticker["spread"], "2000");
    assert_decimal(&ticker["spread_percentage"], "spread_percentage");
    assert!(
        ticker["spread_percentage"]
            .as_str()
            .is_some_and(|p| p.starts_with("4.08")),
        "2000 / 49000 × 100: {ticker}"
    );
    assert_eq!(ticker["total_bids_volume"], "3.5");
    assert_eq!(ticker["total_asks_volume"], "1.3");

    expect_error(app.get_public("/api/v1/markets/FOO-BAR/ticker").await, 404).await;
}

#[tokio::test]
async fn recent_trades_come_newest_first_within_the_limit() {
    let app = spawn_app(AppOptions::jwt()).await;
    let trades = three_trades(&app, Uuid::new_v4(), Uuid::new_v4()).await;
    let newest_first: Vec<Value> = trades.iter().rev().cloned().collect();

    for query in [
        "symbol=btc-usdt",
        "symbol=BTC-USDT",
        "symbol=BTC%2FUSDT&limit=500",
    ] {
        let listed = app
            .get_public_json(&format!("/api/v1/trades?{query}"), 200)
            .await;
        assert_eq!(listed.as_array().expect("list"), &newest_first, "{query}");
    }
    for trade in &newest_first {
        assert_trade(trade);
    }
    let two = app
        .get_public_json("/api/v1/trades?symbol=btc-usdt&limit=2", 200)
        .await;
    assert_eq!(two.as_array().expect("list"), &newest_first[..2]);
    let other = app
        .get_public_json("/api/v1/trades?symbol=ETH-USDT", 200)
        .await;
    assert_eq!(other, json!([]));

    for (query, field) in [
        ("", "symbol"),
        ("symbol=btc-usdt&limit=0", "limit"),
        ("symbol=btc-usdt&limit=501", "limit"),
        ("symbol=btc-usdt&offset=1", "offset"),
    ] {
        let err = expect_error(
            app.get_public(&format!("/api/v1/trades?{query}")).await,
            400,
        )
        .await;
        assert!(mentions(&err, field), "{query}: {err}");
    }
    expect_error(app.get_public("/api/v1/trades?symbol=FOO-BAR").await, 404).await;
}

#[tokio::test]
async fn one_trade_is_read_by_its_id() {
    let app = spawn_app(AppOptions::jwt()).await;
    let trades = three_trades(&app, Uuid::new_v4(), Uuid::new_v4()).await;
    let id = trades[1]["id"].as_str().expect("id");

    let one = app
        .get_public_json(&format!("/api/v1/trades/{id}"), 200)
        .await;
    assert_eq!(one, trades[1]);
    expect_error(
        app.get_public(&format!("/api/v1/trades/{}", Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    let err = expect_error(app.get_public("/api/v1/trades/abc").await, 400).await;
    assert!(mentions(&err, "id"), "{err}");
}

#[tokio::test]
async fn market_stats_cover_a_period_and_refuse_others() {
    let app = spawn_app(AppOptions::jwt()).await;
    three_trades(&app, Uuid::new_v4(), Uuid::new_v4()).await;

    for (query, period) in [
        ("", "24h"),
        ("?period=1h", "1h"),
        ("?period=4h", "4h"),
        ("?period=24h", "24h"),
        ("?period=7d", "7d"),
        ("?period=30d", "30d"),
    ] {
        let stats = app
            .get_public_json(&format!("/api/v1/markets/btc-usdt/stats{query}"), 200)
            .await;
        assert_eq!(stats["symbol"], "BTC/USDT");
        assert_eq!(stats["period"], period);
        assert_eq!(stats["trade_count"], 3);
        assert_eq!(stats["base_volume"], "3");
        assert_eq!(stats["quote_volume"], "150030");
        assert_eq!(stats["vwap"], "50010");
        assert_eq!(stats["high"], "50020");
        assert_eq!(stats["low"], "50000");
        assert_eq!(stats["last"], "50020");
        let start = assert_timestamp(&stats["period_start"], "period_start");
        let end = assert_timestamp(&stats["period_end"], "period_end");
        assert!(start < end, "{stats}");
    }
    let quiet = app
        .get_public_json("/api/v1/markets/ETH-USDT/stats?period=1h", 200)
        .await;
    assert_eq!(quiet["trade_count"], 0);
    assert_eq!(quiet["base_volume"], "0");
    assert_eq!(quiet["quote_volume"], "0");
    assert!(
        quiet["vwap"].is_null() && quiet["last"].is_null(),
        "{quiet}"
    );

    for bad in ["2d", "1H", "", "24"] {
        let err = expect_error(
            app.get_public(&format!("/api/v1/markets/btc-usdt/stats?period={bad}"))
                .await,
            400,
        )
        .await;
        assert!(mentions(&err, "period"), "{bad:?}: {err}");
    }
    expect_error(app.get_public("/api/v1/markets/FOO-BAR/stats").await, 404).await;
}

#[tokio::test]
async fn candles_bucket_the_trades_and_refuse_bad_queries() {
    let app = spawn_app(AppOptions::jwt()).await;
    three_trades(&app, Uuid::new_v4(), Uuid::new_v4()).await;

    for interval in ["1m", "5m", "15m", "1h", "4h", "1d"] {
        let candles = app
            .get_public_json(
                &format!("/api/v1/markets/btc-usdt/candles?interval={interval}"),
                200,
            )
            .await;
        let candles = candles.as_array().expect("a list");
        // Three trades of a few milliseconds: one bucket, two if a boundary
        // fell between them.
        assert!((1..=2).contains(&candles.len()), "{interval}: {candles:?}");
        let count: i64 = candles
            .iter()
            .map(|c| c["trade_count"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(count, 3, "{interval}");
        assert_eq!(candles[0]["open"], "50000", "{interval}");
        assert_eq!(candles[candles.len() - 1]["close"], "50020", "{interval}");
        for candle in candles {
            let open_time = assert_timestamp(&candle["open_time"], "open_time");
            let width: i64 = match interval {
                "1m" => 60,
                "5m" => 300,
                "15m" => 900,
                "1h" => 3600,
                "4h" => 14_400,
                _ => 86_400,
            };
            assert_eq!(open_time.timestamp() % width, 0, "{candle}");
            for field in ["open", "high", "low", "close", "volume", "quote_volume"] {
                assert!(candle[field].is_string(), "{field}: {candle}");
            }
        }
        if candles.len() == 1 {
            assert_eq!(candles[0]["high"], "50020");
            assert_eq!(candles[0]["low"], "50000");
            assert_eq!(candles[0]["volume"], "3");
            assert_eq!(candles[0]["quote_volume"], "150030");
        }
    }
    let newest = app
        .get_public_json("/api/v1/markets/BTC-USDT/candles?interval=1d&limit=1", 200)
        .await;
    assert_eq!(newest.as_array().map(Vec::len), Some(1));
    let future = app
        .get_public_json(
            "/api/v1/markets/BTC-USDT/candles?interval=1h&start=2999-01-01T00:00:00Z",
            200,
        )
        .await;
    assert_eq!(future, json!([]));

    for (query, field) in [
        ("", "interval"),
        ("?interval=2m", "interval"),
        ("?interval=1h&start=yesterday", "start"),
        ("?interval=1h&end=2026-13-01T00:00:00Z", "end"),
        ("?interval=1h&limit=0", "limit"),
        ("?interval=1h&limit=1001", "limit"),
        (
            "?interval=1h&start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
            "start",
        ),
        ("?interval=1h&period=24h", "period"),
    ] {
        let err = expect_error(
            app.get_public(&format!("/api/v1/markets/btc-usdt/candles{query}"))
                .await,
            400,
        )
        .await;
        assert!(mentions(&err, field), "{query:?}: {err}");
    }
    expect_error(
        app.get_public("/api/v1/markets/FOO-BAR/candles?interval=1m")
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn symbols_list_their_trading_parameters() {
    let app = spawn_app(AppOptions::jwt()).await;
    let symbols = app.get_public_json("/api/v1/symbols", 200).await;
    let symbols = symbols.as_array().expect("a list");
    assert_eq!(symbols.len(), 10, "the ten seed symbols");
    for symbol in symbols {
        wire::assert_symbol(&symbol["symbol"]);
        for field in [
            "tick_size",
            "min_order_size",
            "max_order_size",
            "min_order_value",
            "price_band_percentage",
            "maker_fee",
            "taker_fee",
        ] {
            assert_decimal(&symbol[field], field);
        }
    }
    let btc = symbols
        .iter()
        .find(|s| s["symbol"] == "BTC/USDT")
        .expect("BTC/USDT is listed");
    assert_eq!(
        btc,
        &json!({"symbol": "BTC/USDT", "base_asset": "BTC", "quote_asset": "USDT",
                "status": "ACTIVE", "tick_size": "0.01", "min_order_size": "0.0001",
                "max_order_size": "100", "min_order_value": "10",
                "price_band_percentage": "10", "maker_fee": "0.0005", "taker_fee": "0.001"})
    );
}

#[tokio::test]
async fn my_trades_are_seen_from_my_side_and_page_by_cursor() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let trades = three_trades(&app, alice, bob).await;

    let mine = app.get_json("/api/v1/me/trades", alice, 200).await;
    let mine = mine.as_array().expect("a list");
    let ids: Vec<&Value> = mine.iter().map(|t| &t["id"]).collect();
    let newest_first: Vec<&Value> = trades.iter().rev().map(|t| &t["id"]).collect();
    assert_eq!(ids, newest_first);
    let last = &mine[0];
    assert_eq!(last["symbol"], "BTC/USDT");
    assert_eq!(last["side"], "SELL");
    assert_eq!(last["is_maker"], true);
    assert_eq!(last["price"], "50020");
    assert_eq!(last["quantity"], "1");
    assert_eq!(last["fee"], "25.01", "maker: 0.05 % of 50020");
    assert_eq!(last["fee_asset"], "USDT");
    wire::assert_own_trade(last);
    let sells = app
        .get_json("/api/v1/orders?status=FILLED", alice, 200)
        .await;
    assert_eq!(
        last["order_id"], sells[0]["id"],
        "alice's newest filled sell"
    );
    assert_timestamp(&last["executed_at"], "executed_at");

    let bobs = app
        .get_json("/api/v1/me/trades?symbol=btc-usdt", bob, 200)
        .await;
    assert_eq!(bobs[0]["side"], "BUY");
    assert_eq!(bobs[0]["is_maker"], false);
    assert_eq!(bobs[0]["fee"], "50.02", "taker: 0.1 % of 50020");
    let eth = app
        .get_json("/api/v1/me/trades?symbol=ETH-USDT", bob, 200)
        .await;
    assert_eq!(eth, json!([]));
    let stranger = app.get_json("/api/v1/me/trades", Uuid::new_v4(), 200).await;
    assert_eq!(stranger, json!([]));

    let first = wire::read(app.get("/api/v1/me/trades?limit=2", alice).await).await;
    assert_eq!(first.status, 200);
    let cursor = first
        .header("x-next-cursor")
        .expect("a full page has a cursor");
    let second = wire::read(
        app.get(&format!("/api/v1/me/trades?limit=2&cursor={cursor}"), alice)
            .await,
    )
    .await;
    assert_eq!(second.header("x-next-cursor"), None, "a short last page");
    let paged: Vec<Value> = [first.json(), second.json()]
        .iter()
        .flat_map(|page| page.as_array().expect("a page").clone())
        .collect();
    assert_eq!(&paged, mine, "the pages concatenate to the full list");
    let offset = app
        .get_json("/api/v1/me/trades?limit=2&offset=2", alice, 200)
        .await;
    assert_eq!(offset.as_array().expect("list"), &mine[2..]);

    for query in ["limit=0", "limit=501"] {
        let err = expect_error(
            app.get(&format!("/api/v1/me/trades?{query}"), alice).await,
            400,
        )
        .await;
        assert!(mentions(&err, "limit"), "{query}: {err}");
    }
    expect_error(app.get_public("/api/v1/me/trades").await, 401).await;
}

#[tokio::test]
async fn my_fill_rate_counts_my_orders() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    app.limit(alice, "SELL", "1", "50000").await;
    app.limit(alice, "SELL", "1", "51000").await;
    app.market(bob, "BUY", "1").await;

    for query in ["", "?days=30", "?days=1"] {
        let stats = app
            .get_json(&format!("/api/v1/me/stats{query}"), alice, 200)
            .await;
        assert_eq!(stats["total_orders"], 2, "{query}: {stats}");
        assert_eq!(stats["filled_orders"], 1);
        assert_eq!(stats["cancelled_orders"], 0);
        assert_eq!(stats["fill_rate"], "50");
    }
    let default = app.get_json("/api/v1/me/stats", alice, 200).await;
    assert_eq!(default["days"], 30);
    let nobody = app.get_json("/api/v1/me/stats", Uuid::new_v4(), 200).await;
    assert_eq!(nobody["total_orders"], 0);
    assert!(nobody["fill_rate"].is_null(), "{nobody}");

    for query in ["days=0", "days=3651", "days=x"] {
        let err = expect_error(
            app.get(&format!("/api/v1/me/stats?{query}"), alice).await,
            400,
        )
        .await;
        assert!(mentions(&err, "days"), "{query}: {err}");
    }
    expect_error(app.get_public("/api/v1/me/stats").await, 401).await;
}
