//! Each placement rule of the service refused with its error variant, naming the
//! field, and nothing written.

use chrono::{Duration, Utc};
use entity::orders;
use sea_orm::prelude::Uuid;
use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel};
use service::orders::{self as svc, NewOrder};
use service::{OrderType, ServiceError, Side, SymbolStatus, TimeInForce};
use tests::db::TestDb;
use tests::dec;
use tests::sql::{exec, scalar};

const BTC: &str = "BTC/USDT";

fn buy(qty: &str, price: &str) -> NewOrder {
    NewOrder::limit(Uuid::from_u128(1), BTC, Side::Buy, dec(qty), dec(price))
}

async fn rows(db: &DatabaseConnection) -> (i64, i64, i64) {
    (
        scalar(db, "SELECT count(*) FROM orders").await,
        scalar(db, "SELECT count(*) FROM trades").await,
        scalar(db, "SELECT count(*) FROM stop_orders_watchlist").await,
    )
}

/// Places `order`, expects a refusal, and checks nothing was written.
async fn refused(db: &DatabaseConnection, order: NewOrder) -> ServiceError {
    let before = rows(db).await;
    let err = svc::place(db, order.clone())
        .await
        .expect_err(&format!("{order:?} must be refused"));
    assert_eq!(rows(db).await, before, "nothing written for {order:?}");
    err
}

/// The refusal is `InvalidOrder` on `field`, its reason containing `words`.
async fn invalid(db: &DatabaseConnection, order: NewOrder, field: &str, words: &str) {
    match refused(db, order).await {
        ServiceError::InvalidOrder { field: f, reason } => {
            assert_eq!(f, field, "{reason}");
            assert!(reason.contains(words), "{words:?} not in {reason:?}");
        }
        other => panic!("expected InvalidOrder on {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_and_untradable_symbols_are_refused() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let mut order = buy("1", "100");
    order.symbol = "FOO/BAR".into();
    let err = refused(c, order).await;
    assert!(
        matches!(&err, ServiceError::UnknownSymbol(s) if s == "FOO/BAR"),
        "{err:?}"
    );

    exec(
        c,
        "UPDATE symbols SET status = 'HALTED' WHERE symbol = 'SOL/USDT'",
    )
    .await;
    let mut order = buy("1", "100");
    order.symbol = "SOL/USDT".into();
    let err = refused(c, order).await;
    assert!(
        matches!(&err, ServiceError::SymbolNotTradable { symbol, status: SymbolStatus::Halted } if symbol == "SOL/USDT"),
        "{err:?}"
    );
}

#[tokio::test]
async fn quantities_are_positive_within_the_symbols_sizes_with_8_decimals() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    invalid(c, buy("0", "100"), "quantity", "greater than 0").await;
    invalid(c, buy("-1", "100"), "quantity", "greater than 0").await;
    invalid(
        c,
        buy("0.000000001", "100"),
        "quantity",
        "more than 8 decimal places",
    )
    .await;
    invalid(
        c,
        buy("0.00001", "100000"),
        "quantity",
        "below the minimum order size 0.0001",
    )
    .await;
    invalid(
        c,
        buy("100.5", "100"),
        "quantity",
        "above the maximum order size 100",
    )
    .await;
    invalid(c, buy("1000000000000", "100"), "quantity", "too large").await;
    // The boundaries themselves are fine.
    svc::place(c, buy("100", "100")).await.expect("max size");
    svc::place(c, buy("0.0001", "100000"))
        .await
        .expect("min size and min value");
}

#[tokio::test]
async fn prices_follow_the_type_and_the_tick_size() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let user = Uuid::from_u128(1);
    let mut no_price = buy("1", "100");
    no_price.price = None;
    invalid(c, no_price, "price", "required for Limit").await;
    let mut priced_market = NewOrder::market(user, BTC, Side::Buy, dec("1"));
    priced_market.price = Some(dec("100"));
    invalid(c, priced_market, "price", "not allowed for Market").await;
    invalid(c, buy("1", "0"), "price", "greater than 0").await;
    invalid(c, buy("1", "-100"), "price", "greater than 0").await;
    invalid(
        c,
        buy("1", "100.001"),
        "price",
        "not a multiple of the tick size 0.01",
    )
    .await;
    invalid(
        c,
        buy("1", "100.000000001"),
        "price",
        "more than 8 decimal places",
    )
    .await;

    let mut stop_without = NewOrder::stop(user, BTC, Side::Buy, dec("1"), dec("100"));
    stop_without.stop_price = None;
    invalid(c, stop_without, "stop_price", "required for Stop").await;
    let mut limit_with_stop = buy("1", "100");
    limit_with_stop.stop_price = Some(dec("99"));
    invalid(c, limit_with_stop, "stop_price", "not allowed for Limit").await;
    let mut priced_stop = NewOrder::stop(user, BTC, Side::Buy, dec("1"), dec("100"));
    priced_stop.price = Some(dec("100"));
    invalid(c, priced_stop, "price", "not allowed for Stop").await;
    invalid(
        c,
        NewOrder::stop(user, BTC, Side::Buy, dec("1"), dec("0")),
        "stop_price",
        "greater than 0",
    )
    .await;
    invalid(
        c,
        NewOrder::stop_limit(user, BTC, Side::Buy, dec("1"), dec("100.005"), dec("99")),
        "price",
        "tick size",
    )
    .await;
    invalid(
        c,
        buy("1", "100").with_type(OrderType::TrailingStop),
        "type",
        "TRAILING_STOP orders are not supported",
    )
    .await;
}

#[tokio::test]
async fn a_limit_notional_reaches_the_minimum_order_value() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    invalid(
        c,
        buy("0.0001", "100"),
        "quantity",
        "notional 0.01 (price × quantity) is below the minimum order value 10",
    )
    .await;
    svc::place(c, buy("0.1", "100")).await.expect("exactly 10");
    // A MARKET order has no price to check.
    svc::place(
        c,
        NewOrder::market(Uuid::from_u128(2), BTC, Side::Sell, dec("0.0001")),
    )
    .await
    .expect("market");
}

#[tokio::test]
async fn a_limit_price_stays_within_the_band_around_the_last_trade() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    // No trade yet: no band.
    svc::place(
        c,
        NewOrder::limit(Uuid::from_u128(2), BTC, Side::Sell, dec("1"), dec("100")),
    )
    .await
    .expect("a first ask");
    svc::place(c, buy("1", "100"))
        .await
        .expect("a trade at 100");
    invalid(
        c,
        buy("1", "110.01"),
        "price",
        "outside the price band 90..110",
    )
    .await;
    invalid(
        c,
        buy("1", "89.99"),
        "price",
        "outside the price band 90..110",
    )
    .await;
    svc::place(c, buy("1", "90"))
        .await
        .expect("the band's floor");
    svc::place(c, buy("1", "110"))
        .await
        .expect("the band's ceiling");
}

#[tokio::test]
async fn client_order_ids_and_expiry_times_are_checked() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    invalid(
        c,
        buy("1", "100").with_client_order_id("x".repeat(101)),
        "client_order_id",
        "at most 100",
    )
    .await;
    invalid(
        c,
        buy("1", "100").with_client_order_id("  "),
        "client_order_id",
        "must not be empty",
    )
    .await;
    let past = (Utc::now() - Duration::seconds(5)).fixed_offset();
    invalid(
        c,
        buy("1", "100").with_expires_at(past),
        "expires_at",
        "not in the future",
    )
    .await;
    svc::place(c, buy("1", "100").with_client_order_id("é".repeat(100)))
        .await
        .expect("100 characters");
}

#[tokio::test]
async fn a_reused_client_order_id_names_the_first_order() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let first = svc::place(c, buy("1", "100").with_client_order_id("retry-1"))
        .await
        .expect("first");
    let err = refused(c, buy("2", "101").with_client_order_id("retry-1")).await;
    match err {
        ServiceError::DuplicateClientOrderId {
            client_order_id,
            existing_order_id,
        } => {
            assert_eq!(client_order_id, "retry-1");
            assert_eq!(existing_order_id, first.order.order_id);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // Another user may use the same id; an id older than 24 hours is free again.
    let mut other_user = buy("1", "100").with_client_order_id("retry-1");
    other_user.user_id = Uuid::from_u128(9);
    svc::place(c, other_user).await.expect("another user");
    exec(
        c,
        "UPDATE orders SET status = 'CANCELLED' WHERE client_order_id = 'retry-1'",
    )
    .await;
    exec(
        c,
        "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, client_order_id, created_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'BTC/USDT', 'BUY', 'LIMIT', 'CANCELLED', 1, 100, 'old-1',
                 now() - interval '25 hours')",
    )
    .await;
    svc::place(
        c,
        buy("1", "100")
            .with_client_order_id("old-1")
            .with_time_in_force(TimeInForce::Ioc),
    )
    .await
    .expect("older than 24 hours");
}

#[tokio::test]
async fn database_refusals_map_to_variants() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let row = orders::Model {
        order_id: Uuid::new_v4(),
        user_id: Uuid::from_u128(1),
        institution_id: None,
        symbol: BTC.into(),
        side: Side::Buy,
        order_type: OrderType::Market,
        status: service::OrderStatus::Open,
        quantity: dec("1"),
        filled_quantity: dec("0"),
        price: Some(dec("100")),
        average_price: None,
        stop_price: None,
        time_in_force: TimeInForce::Gtc,
        client_order_id: None,
        order_source: None,
        fee_profile_id: None,
        created_at: Utc::now().fixed_offset(),
        updated_at: Utc::now().fixed_offset(),
        filled_at: None,
        cancelled_at: None,
        expires_at: None,
    };
    let err = ServiceError::from(
        row.clone()
            .into_active_model()
            .reset_all()
            .insert(c)
            .await
            .expect_err("a MARKET order with a price"),
    );
    assert!(
        matches!(err, ServiceError::InvalidOrder { field: "price", .. }),
        "{err:?}"
    );
    let mut unknown = row;
    unknown.order_type = OrderType::Limit;
    unknown.symbol = "NOPE/USDT".into();
    let err = ServiceError::from(
        unknown
            .into_active_model()
            .reset_all()
            .insert(c)
            .await
            .expect_err("an unknown symbol"),
    );
    assert!(matches!(err, ServiceError::UnknownSymbol(_)), "{err:?}");
}
