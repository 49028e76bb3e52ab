//! A row of every table through its model and back, every view through its
//! read-only model, and the relations between the models.

use entity::links::{OrderBuyTrades, TradeBuyerOrder, TradeSellerOrder};
use entity::prelude::*;
use entity::sea_orm_active_enums::{
    OrderSideEnum, OrderStatusEnum, OrderTypeEnum, SymbolStatusEnum, TimeInForceEnum,
};
use entity::views::{self, v_active_orders};
use entity::{
    order_book_snapshots, orders, partition_retention_config, stop_orders_watchlist, symbols,
    trades,
};
use sea_orm::prelude::{DateTimeWithTimeZone, Time, Uuid};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, ModelTrait, QueryFilter,
};
use tests::db::TestDb;
use tests::dec;
use tests::sql::exec;

fn at(text: &str) -> DateTimeWithTimeZone {
    DateTimeWithTimeZone::parse_from_rfc3339(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

const BUYER: &str = "00000000-0000-0000-0000-0000000000b1";
const SELLER: &str = "00000000-0000-0000-0000-0000000000c1";

fn symbol() -> symbols::Model {
    symbols::Model {
        symbol_id: 1000,
        symbol: "TEST/USDT".into(),
        base_asset: "TEST".into(),
        quote_asset: "USDT".into(),
        status: SymbolStatusEnum::Maintenance,
        status_reason: Some("wallet upgrade".into()),
        estimated_resume: Some(at("2026-12-01T08:00:00.000001+01:00")),
        tick_size: dec("0.00000001"),
        min_order_size: dec("0.12345678"),
        max_order_size: dec("999999999999.99999999"),
        min_order_value: dec("5.5"),
        price_band_percentage: dec("12.34"),
        maker_fee: dec("0.0002"),
        taker_fee: dec("0.0007"),
        trading_start: Some(Time::from_hms_micro_opt(9, 30, 0, 250).expect("a time")),
        trading_end: Some(Time::from_hms_opt(17, 0, 0).expect("a time")),
        trading_timezone: Some("Asia/Tokyo".into()),
        created_at: at("2026-01-02T03:04:05.678901Z"),
        updated_at: at("2026-01-02T03:04:05.678901Z"),
    }
}

fn order(
    id: &str,
    user: &str,
    side: OrderSideEnum,
    created_at: DateTimeWithTimeZone,
) -> orders::Model {
    orders::Model {
        order_id: uuid(id),
        user_id: uuid(user),
        institution_id: Some(uuid("00000000-0000-0000-0000-0000000000aa")),
        symbol: "BTC/USDT".into(),
        side,
        order_type: OrderTypeEnum::Limit,
        status: OrderStatusEnum::PartiallyFilled,
        quantity: dec("1.23456789"),
        filled_quantity: dec("0.00000001"),
        price: Some(dec("65432.10987654")),
        average_price: Some(dec("65432.1")),
        stop_price: None,
        time_in_force: TimeInForceEnum::Gtc,
        client_order_id: Some(format!("client-{id}")),
        order_source: Some("API".into()),
        fee_profile_id: Some(uuid("00000000-0000-0000-0000-0000000000fe")),
        created_at,
        updated_at: created_at,
        filled_at: None,
        cancelled_at: None,
        expires_at: Some(at("2027-01-01T00:00:00-05:00")),
    }
}

fn trade(buy: &orders::Model, sell: &orders::Model) -> trades::Model {
    trades::Model {
        trade_id: uuid("00000000-0000-0000-0000-00000000d001"),
        symbol: "BTC/USDT".into(),
        buyer_order_id: buy.order_id,
        seller_order_id: sell.order_id,
        buyer_user_id: buy.user_id,
        seller_user_id: sell.user_id,
        buyer_institution_id: None,
        seller_institution_id: Some(uuid("00000000-0000-0000-0000-0000000000ab")),
        price: dec("65432.10987654"),
        quantity: dec("0.00000001"),
        buyer_fee: dec("0.00000065"),
        seller_fee: dec("0.00000033"),
        buyer_fee_asset: "USDT".into(),
        seller_fee_asset: "USDT".into(),
        is_buyer_maker: false,
        trade_source: Some("INTERNAL".into()),
        execution_venue: Some("MAIN".into()),
        executed_at: at("2026-11-20T10:30:45.123456Z"),
        settled_at: Some(at("2026-11-20T10:30:46Z")),
    }
}

/// Inserts `model` with every column set, as a service writing a full row
/// would, and returns what the database stored.
async fn insert<M, A>(db: &DatabaseConnection, model: M) -> M
where
    M: IntoActiveModel<A>,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A> + Into<M>,
{
    let active = model.into_active_model().reset_all();
    match active.insert(db).await {
        Ok(stored) => stored.into(),
        Err(err) => panic!("insert failed: {err}"),
    }
}

#[tokio::test]
async fn every_table_round_trips_every_field() {
    let db = TestDb::migrated().await;
    let c = db.conn();

    let symbol = symbol();
    assert_eq!(insert(c, symbol.clone()).await, symbol);
    let read = Symbols::find_by_id(1000).one(c).await.expect("read");
    assert_eq!(read.as_ref(), Some(&symbol));

    let buy = order(
        "00000000-0000-0000-0000-00000000a001",
        BUYER,
        OrderSideEnum::Buy,
        at("2026-11-20T10:30:45.123456+09:00"),
    );
    // Last month: stored in orders_default, still the same row.
    let sell = order(
        "00000000-0000-0000-0000-00000000a002",
        SELLER,
        OrderSideEnum::Sell,
        at("2026-10-15T23:59:59.999999Z"),
    );
    for model in [&buy, &sell] {
        let stored = insert(c, model.clone()).await;
        assert_eq!(&stored, model);
        let read = Orders::find_by_id((model.order_id, model.created_at))
            .one(c)
            .await
            .expect("read");
        assert_eq!(read.as_ref(), Some(model));
    }

    let trade = trade(&buy, &sell);
    assert_eq!(insert(c, trade.clone()).await, trade);
    let read = Trades::find_by_id((trade.trade_id, trade.executed_at))
        .one(c)
        .await
        .expect("read");
    assert_eq!(read.as_ref(), Some(&trade));

    let entry = stop_orders_watchlist::Model {
        order_id: uuid("00000000-0000-0000-0000-00000000e001"),
        user_id: uuid(BUYER),
        symbol: "ETH/USDT".into(),
        side: OrderSideEnum::Sell,
        stop_price: dec("2999.99999999"),
        quantity: dec("0.5"),
        added_at: at("2026-11-25T00:00:00.000001Z"),
    };
    assert_eq!(insert(c, entry.clone()).await, entry);
    assert_eq!(
        StopOrdersWatchlist::find_by_id(entry.order_id)
            .one(c)
            .await
            .expect("read"),
        Some(entry)
    );

    let snapshot = order_book_snapshots::Model {
        snapshot_id: 77,
        symbol: "BTC/USDT".into(),
        bids: serde_json::json!([{"price": "65432.1", "quantity": "1.5", "orders": [BUYER]}]),
        asks: serde_json::json!([]),
        sequence_number: 9_007_199_254_740_993,
        created_at: at("2026-11-25T12:00:00Z"),
    };
    assert_eq!(insert(c, snapshot.clone()).await, snapshot);
    assert_eq!(
        OrderBookSnapshots::find_by_id(77)
            .one(c)
            .await
            .expect("read"),
        Some(snapshot)
    );

    let retention = partition_retention_config::Model {
        table_name: "audit_log".into(),
        retention_months: 18,
        description: Some("Keep audits 18 months".into()),
        updated_at: Some(at("2026-11-25T12:00:00+05:30")),
    };
    assert_eq!(insert(c, retention.clone()).await, retention);
    assert_eq!(
        PartitionRetentionConfig::find_by_id("audit_log")
            .one(c)
            .await
            .expect("read"),
        Some(retention)
    );
}

#[tokio::test]
async fn models_serialize_with_the_database_strings() {
    let buy = order(
        "00000000-0000-0000-0000-00000000a001",
        BUYER,
        OrderSideEnum::Buy,
        at("2026-11-20T10:30:45Z"),
    );
    let json = serde_json::to_value(&buy).expect("serialize");
    assert_eq!(json["side"], "BUY");
    assert_eq!(json["status"], "PARTIALLY_FILLED");
    assert_eq!(json["order_type"], "LIMIT");
    assert_eq!(json["time_in_force"], "GTC");
    assert_eq!(json["quantity"], "1.23456789");
    let back: orders::Model = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, buy);
    let unknown = serde_json::from_str::<OrderTypeEnum>("\"ICEBERG\"");
    assert!(unknown.is_err());
}

/// A book and a fill, for the view and relation tests.
async fn book(db: &DatabaseConnection) -> (orders::Model, orders::Model, trades::Model) {
    let now = recently(db).await;
    let buy = order(
        "00000000-0000-0000-0000-00000000a001",
        BUYER,
        OrderSideEnum::Buy,
        now,
    );
    let mut sell = order(
        "00000000-0000-0000-0000-00000000a002",
        SELLER,
        OrderSideEnum::Sell,
        now,
    );
    sell.price = Some(dec("70000"));
    let buy = insert(db, buy).await;
    let sell = insert(db, sell).await;
    let mut fill = trade(&buy, &sell);
    fill.executed_at = buy.created_at;
    let fill = insert(db, fill).await;
    exec(db, "SELECT refresh_order_book_snapshot()").await;
    (buy, sell, fill)
}

/// A minute ago, in the database's clock, to the millisecond.
async fn recently(db: &DatabaseConnection) -> DateTimeWithTimeZone {
    tests::sql::scalar(
        db,
        "SELECT date_trunc('milliseconds', now() - interval '1 minute')",
    )
    .await
}

#[tokio::test]
async fn every_view_reads_through_its_model() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (buy, sell, _) = book(c).await;

    let active = views::VActiveOrders::find()
        .filter(v_active_orders::Column::Symbol.eq("BTC/USDT"))
        .all(c)
        .await
        .expect("v_active_orders");
    assert_eq!(active.len(), 2);
    assert_eq!(active[0].order_id, buy.order_id, "bids first");
    assert_eq!(active[0].remaining_quantity, dec("1.23456788"));
    assert_eq!(active[1].price, dec("70000"));

    let summary = views::VUserOrderSummary::find_by_id((buy.user_id, "BTC/USDT".to_owned()))
        .one(c)
        .await
        .expect("v_user_order_summary")
        .expect("a row for the buyer");
    assert_eq!((summary.open_orders, summary.filled_orders), (1, 0));

    let stats = views::VSymbolStats24h::find_by_id("BTC/USDT")
        .one(c)
        .await
        .expect("v_symbol_stats_24h")
        .expect("a row");
    assert_eq!(
        (stats.trade_count, stats.last_price),
        (1, dec("65432.10987654"))
    );

    let monitoring = views::VMonitoringActiveOrders::find_by_id("BTC/USDT")
        .one(c)
        .await
        .expect("v_monitoring_active_orders")
        .expect("a row");
    assert_eq!((monitoring.buy_orders, monitoring.sell_orders), (1, 1));

    let volume = views::VMonitoringTradeVolume24h::find()
        .all(c)
        .await
        .expect("volume view");
    assert_eq!(volume.len(), 1);
    assert_eq!(volume[0].avg_price, dec("65432.10987654"));

    let statuses = views::VMonitoringOrderStatus::find()
        .all(c)
        .await
        .expect("status view");
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].status, OrderStatusEnum::PartiallyFilled);
    assert_eq!((statuses[0].count, statuses[0].percentage), (2, dec("100")));

    let level = views::MvOrderBookSnapshot::find_by_id((
        "BTC/USDT".to_owned(),
        OrderSideEnum::Sell,
        dec("70000"),
    ))
    .one(c)
    .await
    .expect("mv_order_book_snapshot")
    .expect("the ask level");
    assert_eq!(
        (level.total_quantity, level.order_count),
        (sell.quantity - sell.filled_quantity, 1)
    );
}

#[tokio::test]
async fn writes_through_a_view_model_are_refused() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    book(c).await;
    let row = views::VActiveOrders::find()
        .one(c)
        .await
        .expect("read")
        .expect("a row");
    let mut active = row.clone().into_active_model();
    active.price = sea_orm::Set(dec("1"));
    let err = active.update(c).await.expect_err("views are read-only");
    assert!(
        err.to_string()
            .contains("v_active_orders is a read-only view"),
        "{err}"
    );
    let err = row
        .clone()
        .delete(c)
        .await
        .expect_err("views are read-only");
    assert!(err.to_string().contains("read-only"), "{err}");
    let unchanged = views::VActiveOrders::find_by_id(row.order_id)
        .one(c)
        .await
        .expect("read");
    assert_eq!(unchanged, Some(row));
}

#[tokio::test]
async fn relations_reach_symbols_orders_trades_and_the_watchlist() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let (buy, sell, fill) = book(c).await;

    // Foreign keys (D6): orders and trades to their symbol.
    let symbol = buy
        .find_related(Symbols)
        .one(c)
        .await
        .expect("related")
        .expect("BTC/USDT");
    assert_eq!(symbol.symbol, "BTC/USDT");
    let with_symbol = Trades::find()
        .find_also_related(Symbols)
        .all(c)
        .await
        .expect("find_also_related");
    assert_eq!(with_symbol.len(), 1);
    assert_eq!(
        with_symbol[0].1.as_ref().map(|s| s.base_asset.as_str()),
        Some("BTC")
    );
    let btc_orders = symbol.find_related(Orders).all(c).await.expect("has_many");
    assert_eq!(btc_orders.len(), 2);

    // A trade's orders, and an order's trades.
    let buyer = fill
        .find_linked(TradeBuyerOrder)
        .one(c)
        .await
        .expect("linked");
    assert_eq!(buyer.as_ref(), Some(&buy));
    let seller = fill.find_seller_order().one(c).await.expect("seller");
    assert_eq!(seller.as_ref(), Some(&sell));
    let pairs = Trades::find()
        .find_also_linked(TradeSellerOrder)
        .all(c)
        .await
        .expect("find_also_linked");
    assert_eq!(pairs[0].1.as_ref().map(|o| o.order_id), Some(sell.order_id));
    assert_eq!(
        buy.find_linked(OrderBuyTrades)
            .all(c)
            .await
            .expect("linked"),
        vec![fill.clone()]
    );
    assert_eq!(
        sell.find_trades().all(c).await.expect("trades"),
        vec![fill.clone()]
    );
    assert!(
        sell.find_linked(OrderBuyTrades)
            .all(c)
            .await
            .expect("linked")
            .is_empty()
    );

    // A watchlist entry's order, both ways.
    let mut stop = order(
        "00000000-0000-0000-0000-00000000a003",
        BUYER,
        OrderSideEnum::Buy,
        buy.created_at,
    );
    stop.order_type = OrderTypeEnum::Stop;
    stop.status = OrderStatusEnum::Open;
    stop.price = None;
    stop.filled_quantity = dec("0");
    stop.stop_price = Some(dec("80000"));
    let stop = insert(c, stop).await;
    let entry = StopOrdersWatchlist::find_by_id(stop.order_id)
        .one(c)
        .await
        .expect("watchlist")
        .expect("the trigger added it");
    assert_eq!(
        entry.find_related(Orders).one(c).await.expect("related"),
        Some(stop.clone())
    );
    let pairs = Orders::find()
        .filter(orders::Column::OrderType.eq(OrderTypeEnum::Stop))
        .find_also_related(StopOrdersWatchlist)
        .all(c)
        .await
        .expect("find_also_related");
    assert_eq!(pairs, vec![(stop, Some(entry))]);
}
