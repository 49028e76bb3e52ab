//! The service under async-std: the service crate promises that it picks no runtime,
//! so a service built on async-std can use it.
//!
//! async-std is discontinued upstream (its authors point to smol); these tests
//! keep the promise honest for services that still run on it.
//!
//! How it works: the tests crate enables sea-orm's `runtime-async-std-rustls`
//! beside `runtime-tokio-rustls`. sqlx (0.9, `sqlx-core/src/rt`) accepts both and
//! decides per call: tokio when a tokio runtime is current
//! (`tokio::runtime::Handle::try_current()`), async-io (async-std's reactor)
//! otherwise, for sockets, timeouts, sleeps and spawned tasks alike. Here no
//! tokio runtime is current, so every connection is an async-io socket; without
//! the async-std feature sqlx would panic with "this functionality requires a
//! Tokio context" at the first connect. (TestDb's drop still uses a tokio
//! runtime of its own, on a thread of its own, which is fine.)

use entity::trades;
use migration::MigratorTrait;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use service::orders::{self as svc, NewOrder};
use service::{OrderStatus, Side};
use tests::db::TestDb;
use tests::{dec, user};

fn no_tokio_here() {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "this test must run without a tokio runtime"
    );
}

#[async_std::test]
async fn a_fresh_database_migrates_and_matches_under_async_std() {
    no_tokio_here();
    let db = TestDb::empty().await;
    migration::Migrator::up(db.conn(), None)
        .await
        .expect("the migrations apply under async-std");
    let c = db.conn();
    let ask = svc::place(
        c,
        NewOrder::limit(user(1), "BTC/USDT", Side::Sell, dec("1.5"), dec("50000")),
    )
    .await
    .expect("the ask rests");
    let bid = svc::place(
        c,
        NewOrder::limit(user(2), "BTC/USDT", Side::Buy, dec("1"), dec("50001")),
    )
    .await
    .expect("the bid crosses");
    assert_eq!(bid.order.status, OrderStatus::Filled);
    assert_eq!(bid.trades.len(), 1);

    let stored = trades::Entity::find()
        .filter(trades::Column::Symbol.eq("BTC/USDT"))
        .order_by_asc(trades::Column::ExecutedAt)
        .all(c)
        .await
        .expect("the trades read back");
    assert_eq!(stored, bid.trades);
    let trade = &stored[0];
    assert_eq!(
        (
            trade.price,
            trade.quantity,
            trade.buyer_fee,
            trade.seller_fee
        ),
        (dec("50000"), dec("1"), dec("50"), dec("25"))
    );
    assert_eq!(
        (trade.buyer_order_id, trade.seller_order_id),
        (bid.order.order_id, ask.order.order_id)
    );
    let maker = svc::get(c, user(1), ask.order.order_id)
        .await
        .expect("the maker reads back");
    assert_eq!(
        (maker.status, maker.filled_quantity),
        (OrderStatus::PartiallyFilled, dec("1"))
    );
    let cancelled = svc::cancel(c, user(1), ask.order.order_id)
        .await
        .expect("the rest cancels");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
}

#[async_std::test]
async fn concurrent_placements_share_a_pool_under_async_std() {
    no_tokio_here();
    // The migrated template is built (or found) from async-std too.
    let db = TestDb::migrated().await;
    let mut tasks = Vec::new();
    for (n, symbol) in ["BTC/USDT", "ETH/USDT", "BTC/USDT", "ETH/USDT"]
        .into_iter()
        .enumerate()
    {
        let conn = db.conn().clone();
        tasks.push(async_std::task::spawn(async move {
            let seller = user(10 + n as u128);
            let buyer = user(20 + n as u128);
            svc::place(
                &conn,
                NewOrder::limit(seller, symbol, Side::Sell, dec("1"), dec("100")),
            )
            .await?;
            svc::place(
                &conn,
                NewOrder::market(buyer, symbol, Side::Buy, dec("0.5")),
            )
            .await
        }));
    }
    for task in tasks {
        let placement = task.await.expect("placements succeed on async-std tasks");
        assert_eq!(placement.order.status, OrderStatus::Filled);
        assert_eq!(placement.trades.len(), 1);
    }
    let count = trades::Entity::find()
        .all(db.conn())
        .await
        .expect("the trades read back")
        .len();
    assert_eq!(count, 4);
}
