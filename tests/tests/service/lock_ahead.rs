//! The sequencer's lock ahead: a batch of placements queued behind another
//! opens its transaction and asks for the book lock while the other commits,
//! and takes its orders when the lock is granted; a batch whose client order
//! id is locked elsewhere does not wait for it under the book lock.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use service::orders::{self as svc, NewOrder, Placement, Sequencer, SequencerSettings};
use service::pooling::{Pool, PoolMode};
use service::{OrderStatus, ServiceError, Side};
use tests::db::TestDb;
use tests::sql::{exec, scalar};
use tests::{dec, user};

use super::cancels::{queued, spawn_place};
use super::concurrency::waiting_for_an_advisory_lock;

const BTC: &str = "BTC/USDT";

fn bid(who: u128, price: &str) -> NewOrder {
    NewOrder::limit(user(who), BTC, Side::Buy, dec("1"), dec(price))
}

async fn sequencer(db: &TestDb, lock_ahead: bool) -> Sequencer {
    Sequencer::new(
        Pool::new(db.connect().await, PoolMode::Direct),
        svc::PlacementLimits::default(),
        SequencerSettings {
            lock_ahead,
            ..SequencerSettings::default()
        },
    )
}

/// A session holding the row of BTC/USDT's bid level at `price` (which
/// exists) in an open transaction: a write that changes that level waits
/// until its `COMMIT`.
async fn hold_the_level(db: &TestDb, price: &str) -> DatabaseConnection {
    let holder = db.connect_single().await;
    exec(&holder, "BEGIN").await;
    let held: i64 = scalar(
        &holder,
        &format!(
            "SELECT count(*) FROM (SELECT 1 FROM market_levels \
             WHERE symbol = '{BTC}' AND side = 'BUY' AND price = {price} FOR UPDATE) l"
        ),
    )
    .await;
    assert_eq!(held, 1, "the level at {price} exists");
    holder
}

/// Returns once `n` sessions wait for a lock of any kind.
async fn waiting_sessions(db: &DatabaseConnection, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = tests::sql::waiting_sessions(db, "true").await;
        if waiting >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} sessions wait for a lock, {n} expected"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for a placement spawned with [`spawn_place`] and its result.
async fn placed(handle: tokio::task::JoinHandle<Result<Placement, ServiceError>>) -> Placement {
    handle
        .await
        .expect("the placing task")
        .expect("the order is placed")
}

/// A lone bid (written by its caller) waits on the 49000 level while a
/// second bid queues; once the first has written, the second's batch asks
/// for the book lock before the first commits, and then waits on the 48000
/// level while a third bid queues; once the second has written, the third's
/// batch asks for the lock before the second commits. Both count as locked
/// ahead, and every bid is placed, in arrival order. Without lock ahead the
/// same bids place the same way, none locked ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_behind_another_asks_for_the_book_lock_while_it_commits() {
    for lock_ahead in [true, false] {
        let db = TestDb::migrated().await;
        let c = db.conn();
        for price in ["49000", "48000"] {
            svc::place(c, bid(9, price)).await.expect("a resting bid");
        }
        let sequencer = sequencer(&db, lock_ahead).await;
        let first_level = hold_the_level(&db, "49000").await;
        let second_level = hold_the_level(&db, "48000").await;

        let first = spawn_place(&sequencer, bid(1, "49000"));
        waiting_sessions(c, 1).await;
        let second = spawn_place(&sequencer, bid(2, "48000"));
        queued(&sequencer, 1).await;
        exec(&first_level, "COMMIT").await;
        let first = placed(first).await;
        // The second bid's batch now waits on the 48000 level.
        queued(&sequencer, 0).await;
        waiting_sessions(c, 1).await;
        let third = spawn_place(&sequencer, bid(3, "47000"));
        queued(&sequencer, 1).await;
        exec(&second_level, "COMMIT").await;
        let second = placed(second).await;
        let third = placed(third).await;

        for placed in [&first, &second, &third] {
            assert_eq!(placed.order.status, OrderStatus::Open);
        }
        assert!(first.order.created_at < second.order.created_at);
        assert!(
            second.order.created_at < third.order.created_at,
            "the batch locked ahead stamps its order after the batch before it"
        );
        let stats = sequencer.stats();
        assert_eq!((stats.batches, stats.orders), (3, 3));
        assert_eq!(
            stats.locked_ahead,
            2 * u64::from(lock_ahead),
            "lock ahead {lock_ahead}: the second batch asked for the lock while the first committed, the third while the second did"
        );
        sequencer.shutdown().await;
        let stored: i64 = scalar(c, "SELECT count(*) FROM orders WHERE status = 'OPEN'").await;
        assert_eq!(stored, 5);
        assert_eq!(
            tests::faults::market_state_drift(c).await,
            Vec::<String>::new()
        );
    }
}

/// A queued placement whose client order id another session has locked: its
/// batch takes the book lock, finds the client order id taken and gives the
/// book lock back before it waits for the id, as a placement alone does (id
/// first, book second). A placement on the symbol goes through meanwhile;
/// the queued one is placed once the id is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_does_not_wait_for_a_client_order_id_under_the_book_lock() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    svc::place(c, bid(9, "49000")).await.expect("a resting bid");
    let sequencer = sequencer(&db, true).await;
    let level = hold_the_level(&db, "49000").await;
    let first = spawn_place(&sequencer, bid(1, "49000"));
    waiting_sessions(c, 1).await;

    let id_holder = db.connect_single().await;
    exec(&id_holder, "BEGIN").await;
    exec(
        &id_holder,
        &format!(
            "SELECT pg_advisory_xact_lock(x'74650002'::int, hashtext('{}:taken'))",
            user(2)
        ),
    )
    .await;
    let second = spawn_place(&sequencer, bid(2, "48000").with_client_order_id("taken"));
    queued(&sequencer, 1).await;
    exec(&level, "COMMIT").await;
    placed(first).await;
    // The second bid waits for its client order id, not holding the book.
    waiting_for_an_advisory_lock(c).await;
    let meanwhile = tokio::time::timeout(Duration::from_secs(30), svc::place(c, bid(3, "47000")))
        .await
        .expect("the book is free while the queued bid waits for its client order id")
        .expect("a bid placed meanwhile");
    assert_eq!(meanwhile.order.status, OrderStatus::Open);
    assert!(!second.is_finished());
    exec(&id_holder, "COMMIT").await;
    let second = placed(second).await;
    assert_eq!(second.order.status, OrderStatus::Open);
    assert_eq!(second.order.client_order_id.as_deref(), Some("taken"));
    assert!(meanwhile.order.created_at < second.order.created_at);
    sequencer.shutdown().await;
    assert_eq!(
        tests::faults::market_state_drift(c).await,
        Vec::<String>::new()
    );
}
