//! Cancels in batches: `cancel_many` answers every request as a cancel alone
//! would and writes the orders of one symbol with one statement; the
//! sequencer batches the cancels of a symbol in the same queue as its
//! placements, in arrival order, and hands a symbol's queue over to a task
//! when the caller that wrote a lone order at once goes away.

use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use sea_orm::prelude::Uuid;
use service::orders::{self as svc, NewOrder, Placement, Sequencer, SequencerSettings};
use service::pooling::{Pool, PoolMode};
use service::{OrderStatus, ServiceError, Side};
use tests::db::TestDb;
use tests::sql::{exec, scalar};
use tests::{dec, user};

use super::concurrency::waiting_for_an_advisory_lock;

const BTC: &str = "BTC/USDT";
const ETH: &str = "ETH/USDT";

async fn place(db: &DatabaseConnection, order: NewOrder) -> Placement {
    svc::place(db, order.clone())
        .await
        .unwrap_or_else(|err| panic!("placing {order:?}: {err}"))
}

async fn resting(
    db: &DatabaseConnection,
    who: u128,
    symbol: &str,
    side: Side,
    price: &str,
) -> Uuid {
    let placed = place(
        db,
        NewOrder::limit(user(who), symbol, side, dec("1"), dec(price)),
    )
    .await;
    assert_eq!(placed.order.status, OrderStatus::Open);
    placed.order.order_id
}

/// The book sequence of `symbol`: one more per statement that changed its
/// levels.
async fn book_sequence(db: &DatabaseConnection, symbol: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT coalesce((SELECT book_sequence FROM event_sequences WHERE symbol = '{symbol}'), 0)"
        ),
    )
    .await
}

/// A short description of an answer, comparable across orders.
fn answer(result: &Result<entity::orders::Model, ServiceError>) -> String {
    match result {
        Ok(order) => format!("{:?}", order.status),
        Err(ServiceError::TerminalStatus { status, .. }) => format!("terminal {status:?}"),
        Err(ServiceError::Forbidden { .. }) => "forbidden".into(),
        Err(ServiceError::NotFound { .. }) => "not found".into(),
        Err(other) => format!("unexpected {other}"),
    }
}

/// Every kind of request in one list: two symbols, an order named twice,
/// another user's order, an unknown id, a filled order, a stop order. Each
/// answer is what a cancel alone gives, the answered rows are as stored, and
/// each symbol's orders were written by one statement (one book event per
/// symbol, where cancelling one by one writes one per order).
#[tokio::test]
async fn cancel_many_answers_each_request_as_a_cancel_alone_and_writes_a_symbol_at_once() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let b1 = resting(c, 1, BTC, Side::Buy, "49000").await;
    let b2 = resting(c, 1, BTC, Side::Buy, "48000").await;
    let b3 = resting(c, 2, BTC, Side::Buy, "47000").await;
    let e1 = resting(c, 1, ETH, Side::Buy, "2900").await;
    resting(c, 3, BTC, Side::Sell, "50000").await;
    let filled = place(
        c,
        NewOrder::limit(user(1), BTC, Side::Buy, dec("1"), dec("50000")),
    )
    .await
    .order;
    assert_eq!(filled.status, OrderStatus::Filled);
    let stop = place(
        c,
        NewOrder::stop(user(1), BTC, Side::Sell, dec("1"), dec("40000")),
    )
    .await
    .order;
    let (btc_before, eth_before) = (book_sequence(c, BTC).await, book_sequence(c, ETH).await);
    let order_events_before: i64 =
        scalar(c, "SELECT count(*) FROM event_outbox WHERE kind = 'order'").await;

    let requests = [
        (user(1), b1),
        (user(1), b1),
        (user(2), b2),
        (user(1), Uuid::new_v4()),
        (user(1), filled.order_id),
        (user(1), stop.order_id),
        (user(1), e1),
        (user(2), b3),
        (user(1), b2),
    ];
    let results = svc::cancel_many(c, &requests).await;
    let answers: Vec<String> = results.iter().map(answer).collect();
    assert_eq!(
        answers,
        [
            "Cancelled",
            "terminal Cancelled",
            "forbidden",
            "not found",
            "terminal Filled",
            "Cancelled",
            "Cancelled",
            "Cancelled",
            "Cancelled",
        ]
    );
    for ((who, id), result) in requests.iter().zip(&results) {
        if let Ok(row) = result {
            assert_eq!(row.order_id, *id);
            let stored = svc::get(c, *who, *id).await.expect("the order is stored");
            assert_eq!(row, &stored, "the answer is the row as stored");
            assert!(stored.cancelled_at.is_some(), "cancelled_at is set");
        }
    }
    // One statement per symbol: BTC's three book orders change its levels
    // once, ETH's once.
    assert_eq!(book_sequence(c, BTC).await, btc_before + 1);
    assert_eq!(book_sequence(c, ETH).await, eth_before + 1);
    let order_events: i64 =
        scalar(c, "SELECT count(*) FROM event_outbox WHERE kind = 'order'").await;
    assert_eq!(
        order_events - order_events_before,
        5,
        "one order event per cancelled order"
    );
    let watched: i64 = scalar(
        c,
        &format!(
            "SELECT count(*) FROM stop_orders_watchlist WHERE order_id = '{}'",
            stop.order_id
        ),
    )
    .await;
    assert_eq!(watched, 0, "the cancelled stop order left the watchlist");
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}

/// Inside a caller's transaction a batch of cancels is part of it: rolled
/// back with it, nothing cancelled.
#[tokio::test]
async fn cancel_many_in_a_transaction_is_rolled_back_with_it() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let b1 = resting(c, 1, BTC, Side::Buy, "49000").await;
    let b2 = resting(c, 1, BTC, Side::Buy, "48000").await;
    let txn = sea_orm::TransactionTrait::begin(c).await.expect("begin");
    let results = svc::cancel_many(&txn, &[(user(1), b1), (user(1), b2)]).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|o| o.status == OrderStatus::Cancelled)),
        "{results:?}"
    );
    sea_orm::TransactionSession::rollback(txn)
        .await
        .expect("rollback");
    let open: i64 = scalar(c, "SELECT count(*) FROM orders WHERE status = 'OPEN'").await;
    assert_eq!(open, 2, "the rolled-back cancels left both orders open");
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}

/// A sequencer with the default settings on a pool of its own.
async fn sequencer(db: &TestDb) -> Sequencer {
    Sequencer::new(
        Pool::new(db.connect().await, PoolMode::Direct),
        svc::PlacementLimits::default(),
        SequencerSettings::default(),
    )
}

/// A session holding BTC/USDT's book lock in an open transaction (its
/// `COMMIT` lets the waiting batches go).
async fn hold_the_btc_book(db: &TestDb) -> DatabaseConnection {
    let blocker = db.connect_single().await;
    exec(&blocker, "BEGIN").await;
    exec(
        &blocker,
        "SELECT pg_advisory_xact_lock(x'74650001'::int, hashtext('BTC/USDT'))",
    )
    .await;
    blocker
}

/// Returns once exactly `n` placements or cancels wait in the sequencer's
/// queues.
pub(super) async fn queued(sequencer: &Sequencer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sequencer.queued() != n {
        assert!(
            Instant::now() < deadline,
            "{} queued, {n} expected",
            sequencer.queued()
        );
        tokio::task::yield_now().await;
    }
}

/// Places `order` through `sequencer` on a task of its own.
pub(super) fn spawn_place(
    sequencer: &Sequencer,
    order: NewOrder,
) -> tokio::task::JoinHandle<Result<Placement, ServiceError>> {
    let sequencer = sequencer.clone();
    tokio::spawn(async move { sequencer.place(order).await })
}

/// Cancels and placements of one symbol share its queue: while a cancel's
/// batch waits for the book lock, a market buy, then two cancels queue. The
/// buy comes after the first cancel (so it takes the second ask, not the
/// cancelled first), and the two cancels after the buy form one batch: the
/// ask the buy filled is answered FILLED, the other is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequencer_batches_cancels_in_arrival_order_with_placements() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let a1 = resting(c, 1, BTC, Side::Sell, "50000").await;
    let a2 = resting(c, 1, BTC, Side::Sell, "50001").await;
    let a3 = resting(c, 1, BTC, Side::Sell, "50002").await;
    let sequencer = sequencer(&db).await;
    let blocker = hold_the_btc_book(&db).await;

    let first = tokio::spawn({
        let sequencer = sequencer.clone();
        async move { sequencer.cancel(user(1), a1).await }
    });
    waiting_for_an_advisory_lock(c).await;
    let buy = spawn_place(
        &sequencer,
        NewOrder::market(user(2), BTC, Side::Buy, dec("1")),
    );
    queued(&sequencer, 1).await;
    let second = tokio::spawn({
        let sequencer = sequencer.clone();
        async move { sequencer.cancel(user(1), a2).await }
    });
    queued(&sequencer, 2).await;
    let third = tokio::spawn({
        let sequencer = sequencer.clone();
        async move { sequencer.cancel(user(1), a3).await }
    });
    queued(&sequencer, 3).await;
    exec(&blocker, "COMMIT").await;

    let first = first.await.expect("the first cancel");
    let buy = buy.await.expect("the buy").expect("the buy is placed");
    let second = second.await.expect("the second cancel");
    let third = third.await.expect("the third cancel");
    assert_eq!(answer(&first), "Cancelled");
    assert_eq!(buy.order.status, OrderStatus::Filled);
    assert_eq!(buy.trades.len(), 1);
    assert_eq!(
        buy.trades[0].seller_order_id, a2,
        "the buy came after the first cancel"
    );
    assert_eq!(answer(&second), "terminal Filled");
    assert_eq!(answer(&third), "Cancelled");
    let stats = sequencer.stats();
    assert_eq!(
        (stats.cancel_batches, stats.cancels, stats.largest_cancel),
        (2, 3, 2),
        "the two cancels queued together went as one batch"
    );
    assert_eq!((stats.batches, stats.orders), (1, 1));
    sequencer.shutdown().await;
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}

/// A cancel the sequencer cannot make is answered without queueing: another
/// user's order, an unknown id; after shutdown, cancels are refused.
#[tokio::test]
async fn the_sequencer_answers_refused_cancels_at_once_and_none_after_shutdown() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let b1 = resting(c, 1, BTC, Side::Buy, "49000").await;
    let sequencer = sequencer(&db).await;
    assert_eq!(answer(&sequencer.cancel(user(2), b1).await), "forbidden");
    assert_eq!(
        answer(&sequencer.cancel(user(1), Uuid::new_v4()).await),
        "not found"
    );
    assert_eq!(sequencer.stats().cancel_batches, 0, "nothing was queued");
    sequencer.shutdown().await;
    assert!(matches!(
        sequencer.cancel(user(1), b1).await,
        Err(ServiceError::Unavailable(_))
    ));
    let open: i64 = scalar(c, "SELECT count(*) FROM orders WHERE status = 'OPEN'").await;
    assert_eq!(open, 1);
}

/// A lone placement on an idle symbol is written by its caller; when that
/// caller goes away mid-way (its future dropped while it waits for the book
/// lock), what queued behind it is still written, by a task of the symbol,
/// and the lone placement is all or nothing: here nothing, as its commit was
/// never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_hands_the_queue_over() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let sequencer = sequencer(&db).await;
    let blocker = hold_the_btc_book(&db).await;
    let gone = spawn_place(
        &sequencer,
        NewOrder::limit(user(1), BTC, Side::Buy, dec("1"), dec("49000"))
            .with_client_order_id("gone"),
    );
    waiting_for_an_advisory_lock(c).await;
    let queued_behind = spawn_place(
        &sequencer,
        NewOrder::limit(user(2), BTC, Side::Buy, dec("1"), dec("48000"))
            .with_client_order_id("behind"),
    );
    queued(&sequencer, 1).await;
    gone.abort();
    assert!(
        gone.await.is_err_and(|e| e.is_cancelled()),
        "the first caller went away"
    );
    exec(&blocker, "COMMIT").await;
    // Without a hand-over nothing would ever take the queued placement.
    let behind = tokio::time::timeout(Duration::from_secs(30), queued_behind)
        .await
        .expect("the queued placement is taken over and written")
        .expect("the queued placement's caller")
        .expect("the queued placement is written");
    assert_eq!(behind.order.status, OrderStatus::Open);
    sequencer.shutdown().await;
    let stored: Vec<String> = tests::sql::column(
        c,
        "SELECT client_order_id FROM orders ORDER BY client_order_id",
    )
    .await;
    assert_eq!(
        stored,
        ["behind"],
        "the dropped placement was never committed"
    );
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}
