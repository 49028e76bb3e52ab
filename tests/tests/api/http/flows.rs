//! The flows of the existing end-to-end collection over real HTTP, each
//! checked through the order, trades, order-book and ticker endpoints.
//!
//! Fees: the seed symbols charge the maker 0.05 % and the taker 0.1 % of the
//! notional, in the quote asset.

use super::spawn_app;
use serde_json::{Value, json};
use tests::app::wire::{
    assert_order, assert_own_trade, assert_timestamp, assert_trade, expect_error, public_view,
};
use tests::app::{AppOptions, TestApp};
use uuid::Uuid;

async fn order(app: &TestApp, user: Uuid, order: &Value) -> Value {
    let id = order["id"].as_str().expect("an order id");
    let read = app
        .get_json(&format!("/api/v1/orders/{id}"), user, 200)
        .await;
    assert_order(&read);
    read
}

async fn recent_trades(app: &TestApp) -> Vec<Value> {
    let trades = app
        .get_public_json("/api/v1/trades?symbol=btc-usdt", 200)
        .await;
    let trades = trades.as_array().expect("a list").clone();
    for trade in &trades {
        assert_trade(trade);
        let id = trade["id"].as_str().expect("a trade id");
        let one = app
            .get_public_json(&format!("/api/v1/trades/{id}"), 200)
            .await;
        assert_eq!(&one, trade, "GET /trades/{{id}} agrees with the list");
    }
    trades
}

async fn book(app: &TestApp) -> Value {
    let book = app.get_public_json("/api/v1/orderbook/BTC-USDT", 200).await;
    assert_eq!(book["symbol"], "BTC/USDT");
    assert_timestamp(&book["timestamp"], "book.timestamp");
    book
}

async fn ticker(app: &TestApp) -> Value {
    let ticker = app
        .get_public_json("/api/v1/markets/btc-usdt/ticker", 200)
        .await;
    assert_eq!(ticker["symbol"], "BTC/USDT");
    assert_timestamp(&ticker["timestamp"], "ticker.timestamp");
    ticker
}

#[tokio::test]
async fn a_limit_sell_is_filled_by_a_market_buy() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    let sell = app.limit(alice, "SELL", "1", "50000.00").await;
    assert_eq!(sell["status"], "OPEN");
    assert_eq!(
        book(&app).await["asks"],
        json!([{"price": "50000", "volume": "1", "count": 1}])
    );

    let placed = app.market(bob, "BUY", "1").await;
    let buy = &placed["order"];
    assert_order(buy);
    assert_eq!(buy["status"], "FILLED");
    assert_eq!(buy["type"], "MARKET");
    assert!(buy["price"].is_null(), "a market order has no price: {buy}");
    assert_eq!(buy["filled_quantity"], "1");
    assert_eq!(buy["average_price"], "50000");
    assert_timestamp(&buy["filled_at"], "filled_at");

    let trades = placed["trades"].as_array().expect("trades");
    assert_eq!(trades.len(), 1, "{placed}");
    let trade = &trades[0];
    // The buyer's own view: its order, side and fee; nothing of the seller.
    assert_own_trade(trade);
    assert_eq!(trade["symbol"], "BTC/USDT");
    assert_eq!(trade["price"], "50000");
    assert_eq!(trade["quantity"], "1");
    assert_eq!(trade["order_id"], buy["id"]);
    assert_eq!(trade["side"], "BUY");
    assert_eq!(trade["taker_side"], "BUY");
    assert_eq!(trade["is_buyer_maker"], false);
    assert_eq!(trade["is_maker"], false);
    assert_eq!(trade["fee"], "50", "taker: 0.1 % of 50000");
    assert_eq!(trade["fee_asset"], "USDT");
    let text = placed.to_string();
    assert!(
        !text.contains(&alice.to_string()) && !text.contains(sell["id"].as_str().unwrap_or("-")),
        "the placement names neither the seller nor the seller's order: {placed}"
    );

    let sell = order(&app, alice, &sell).await;
    assert_eq!(sell["status"], "FILLED");
    assert_eq!(sell["filled_quantity"], "1");
    assert_eq!(sell["average_price"], "50000");
    assert_eq!(&order(&app, bob, buy).await, buy);

    assert_eq!(recent_trades(&app).await, vec![public_view(trade)]);
    let book = book(&app).await;
    assert_eq!((&book["bids"], &book["asks"]), (&json!([]), &json!([])));
    let ticker = ticker(&app).await;
    assert_eq!(ticker["last_price"], "50000");
    for empty in [
        "best_bid_price",
        "best_ask_price",
        "best_bid_volume",
        "best_ask_volume",
        "spread",
        "spread_percentage",
        "total_bids_volume",
        "total_asks_volume",
    ] {
        assert!(ticker[empty].is_null(), "{empty} is null: {ticker}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_market_buy_sweeps_two_price_levels() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, carol, bob) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let cheap = app.limit(alice, "SELL", "0.5", "50000").await;
    let dear = app.limit(carol, "SELL", "0.5", "50100").await;

    let placed = app.market(bob, "BUY", "0.8").await;
    let buy = &placed["order"];
    assert_eq!(buy["status"], "FILLED");
    assert_eq!(buy["filled_quantity"], "0.8");
    // (0.5 × 50000 + 0.3 × 50100) / 0.8
    assert_eq!(buy["average_price"], "50037.5");

    let trades = placed["trades"].as_array().expect("trades").clone();
    let fills: Vec<(&Value, &Value, &Value, &Value)> = trades
        .iter()
        .map(|t| (&t["price"], &t["quantity"], &t["order_id"], &t["fee"]))
        .collect();
    assert_eq!(
        fills,
        vec![
            (&json!("50000"), &json!("0.5"), &buy["id"], &json!("25")),
            (&json!("50100"), &json!("0.3"), &buy["id"], &json!("15.03")),
        ],
        "the cheaper level first, each at its maker's price, with the buyer's taker fee"
    );
    for (maker, order, fee) in [(alice, &cheap, "12.5"), (carol, &dear, "7.515")] {
        let own = app.get_json("/api/v1/me/trades", maker, 200).await;
        assert_own_trade(&own[0]);
        assert_eq!(own[0]["order_id"], order["id"]);
        assert_eq!(own[0]["fee"], fee, "the maker's fee");
        assert_eq!(own[0]["is_maker"], true);
    }

    let cheap = order(&app, alice, &cheap).await;
    assert_eq!(cheap["status"], "FILLED");
    let dear = order(&app, carol, &dear).await;
    assert_eq!(dear["status"], "PARTIALLY_FILLED");
    assert_eq!(dear["filled_quantity"], "0.3");
    assert_eq!(dear["average_price"], "50100");
    assert!(dear["filled_at"].is_null(), "{dear}");

    let newest_first: Vec<Value> = trades.iter().rev().map(public_view).collect();
    assert_eq!(recent_trades(&app).await, newest_first);
    let book = book(&app).await;
    assert_eq!(book["bids"], json!([]));
    assert_eq!(
        book["asks"],
        json!([{"price": "50100", "volume": "0.2", "count": 1}])
    );
    let ticker = ticker(&app).await;
    assert_eq!(ticker["last_price"], "50100");
    assert_eq!(ticker["best_ask_price"], "50100");
    assert_eq!(ticker["best_ask_volume"], "0.2");
    assert_eq!(ticker["total_asks_volume"], "0.2");
    assert!(ticker["best_bid_price"].is_null() && ticker["spread"].is_null());
    app.shutdown().await;
}

#[tokio::test]
async fn a_limit_buy_crossing_a_cheaper_sell_executes_at_the_sells_price() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let sell = app.limit(alice, "SELL", "1", "50000").await;

    let placed = app
        .place_ok(
            bob,
            &json!({"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT",
                    "quantity": "2", "price": "50500"}),
        )
        .await;
    let buy = &placed["order"];
    assert_eq!(buy["status"], "PARTIALLY_FILLED");
    assert_eq!(buy["price"], "50500", "the limit stays as given");
    assert_eq!(buy["filled_quantity"], "1");
    assert_eq!(buy["average_price"], "50000", "filled at the maker's price");
    let trades = placed["trades"].as_array().expect("trades");
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0]["price"], "50000");
    assert_eq!(trades[0]["quantity"], "1");
    assert_eq!(trades[0]["is_buyer_maker"], false);
    assert_eq!(trades[0]["fee"], "50");

    assert_eq!(order(&app, alice, &sell).await["status"], "FILLED");
    assert_eq!(&order(&app, bob, buy).await, buy);
    let public: Vec<Value> = trades.iter().map(public_view).collect();
    assert_eq!(recent_trades(&app).await, public);
    let book = book(&app).await;
    assert_eq!(
        book["bids"],
        json!([{"price": "50500", "volume": "1", "count": 1}]),
        "the rest of the buy rests"
    );
    assert_eq!(book["asks"], json!([]));
    let ticker = ticker(&app).await;
    assert_eq!(ticker["last_price"], "50000");
    assert_eq!(ticker["best_bid_price"], "50500");
    assert_eq!(ticker["best_bid_volume"], "1");
    assert_eq!(ticker["total_bids_volume"], "1");
    assert!(ticker["best_ask_price"].is_null());

    // The rest can be cancelled; the filled sell cannot.
    let path = format!("/api/v1/orders/{}", buy["id"].as_str().expect("id"));
    let cancelled = tests::app::wire::expect_json(app.delete(&path, bob).await, 200).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["filled_quantity"], "1");
    let sell_path = format!("/api/v1/orders/{}", sell["id"].as_str().expect("id"));
    expect_error(app.delete(&sell_path, alice).await, 409).await;
    app.shutdown().await;
}
