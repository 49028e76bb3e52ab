//! Stop triggers against the rest of the book: a triggered order queues as if
//! just placed, and a cancel racing a trigger still cancels. Both were found by
//! the model and concurrency tests and are pinned here exactly.

use service::Side;
use service::orders::{self as svc, NewOrder, Placement};
use tests::db::TestDb;
use tests::{dec, user};

const BTC: &str = "BTC/USDT";

/// A trade at 100 (user 1 sells to user 2), then user 3's STOP_LIMIT buy of 1
/// with stop 103 and limit 104, untriggered; returns the stop's placement.
async fn book_with_a_stop(c: &sea_orm::DatabaseConnection) -> Placement {
    place(
        c,
        NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("100")),
    )
    .await;
    place(
        c,
        NewOrder::limit(user(2), BTC, Side::Buy, dec("1"), dec("100")),
    )
    .await; // last 100
    place(
        c,
        NewOrder::stop_limit(user(3), BTC, Side::Buy, dec("1"), dec("104"), dec("103")),
    )
    .await
}

async fn place(db: &sea_orm::DatabaseConnection, order: NewOrder) -> Placement {
    svc::place(db, order.clone())
        .await
        .unwrap_or_else(|err| panic!("placing {order:?}: {err}"))
}

/// The matching rules: a triggered stop order "is matched as if just placed".
/// A STOP_LIMIT that triggers and rests should therefore queue behind the
/// orders already resting at its price. An engine that keeps the stop's
/// original `created_at`, which is what the book orders by, lets the triggered
/// order jump ahead of bids that were resting before it triggered.
#[tokio::test]
async fn a_triggered_stop_limit_queues_behind_orders_resting_before_the_trigger() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let stop = book_with_a_stop(c).await;
    // A bid at 104 placed after the stop, before the trigger.
    let resting = place(
        c,
        NewOrder::limit(user(4), BTC, Side::Buy, dec("2"), dec("104")),
    )
    .await;
    // A sell hits that bid at 104: the last price reaches 103, the stop
    // triggers, finds no ask and rests as a LIMIT buy at 104.
    let trigger = place(
        c,
        NewOrder::limit(user(5), BTC, Side::Sell, dec("1"), dec("103")),
    )
    .await;
    assert_eq!(trigger.trades[0].buyer_order_id, resting.order.order_id);
    assert_eq!(trigger.triggered.len(), 1);
    assert_eq!(trigger.triggered[0].order.order_id, stop.order.order_id);
    // The next sell at 104 belongs to the bid that rested first.
    let next = place(
        c,
        NewOrder::limit(user(6), BTC, Side::Sell, dec("1"), dec("104")),
    )
    .await;
    assert_eq!(
        next.trades[0].buyer_order_id, resting.order.order_id,
        "the triggered stop ({}) took priority over the bid resting before its trigger",
        stop.order.order_id
    );
}

/// A cancel that races a stop order's trigger. `cancel` reads the order, then
/// updates it by its key `(order_id, created_at)`; a trigger that rewrites
/// `created_at` (to queue the triggered order at the trigger time) makes the
/// key the cancel read stale. The cancel's UPDATE waits for the trigger's
/// transaction, then no longer matches the row, and the cancel answers
/// `TerminalStatus { status: Open }` for an order that is active. (Across a
/// month boundary the row moves partition and PostgreSQL refuses the waiting
/// UPDATE with 40001 instead.)
#[tokio::test]
async fn a_cancel_racing_a_stop_trigger_cancels_the_triggered_order() {
    cancel_racing_a_stop_trigger(false).await;
}

/// The same race with the cancel inside a transaction of the caller's (as
/// behind a transaction-mode pooler), and the stop order placed 40 days ago,
/// so the trigger moves its row to another partition and the waiting UPDATE
/// fails with 40001: that attempt is a savepoint, rolled back, and the retry
/// in the same transaction cancels.
#[tokio::test]
async fn a_cancel_in_a_callers_transaction_racing_a_stop_trigger_cancels_it() {
    cancel_racing_a_stop_trigger(true).await;
}

async fn cancel_racing_a_stop_trigger(in_transaction: bool) {
    use sea_orm::TransactionTrait;
    use tests::sql::scalar;

    let db = TestDb::migrated().await;
    let c = db.conn();
    let stop = book_with_a_stop(c).await;
    place(
        c,
        NewOrder::limit(user(4), BTC, Side::Buy, dec("1"), dec("104")),
    )
    .await;
    if in_transaction {
        tests::sql::exec(
            c,
            &format!(
                "UPDATE orders SET created_at = created_at - interval '40 days' \
                 WHERE order_id = '{}'",
                stop.order.order_id
            ),
        )
        .await;
    }

    // The trigger runs in a transaction held open on a pool of its own.
    let other = db.connect().await;
    let trigger = other.begin().await.expect("begin");
    let placed = place_in(
        &trigger,
        NewOrder::limit(user(5), BTC, Side::Sell, dec("1"), dec("103")),
    )
    .await;
    assert_eq!(
        placed.triggered.len(),
        1,
        "the stop triggered (uncommitted)"
    );

    // The cancel reads the committed stop, then waits on its row lock.
    let pool = c.clone();
    let stop_id = stop.order.order_id;
    let cancel = tokio::spawn(async move {
        if !in_transaction {
            return svc::cancel(&pool, user(3), stop_id).await;
        }
        let txn = pool.begin().await?;
        let cancelled = svc::cancel(&txn, user(3), stop_id).await?;
        txn.commit().await?;
        Ok(cancelled)
    });
    let watcher = db.connect().await;
    let mut waited = 0;
    loop {
        let waiting: i64 = scalar(
            &watcher,
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        waited += 1;
        assert!(waited < 500, "the cancel never waited for the trigger");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    trigger.commit().await.expect("commit the trigger");

    let outcome = cancel.await.expect("the cancel task");
    let now = svc::get(c, user(3), stop_id).await.expect("the order");
    assert!(
        matches!(&outcome, Ok(row) if row.status == service::OrderStatus::Cancelled),
        "cancel answered {outcome:?} while the order is {:?} {:?}",
        now.order_type,
        now.status
    );
}

async fn place_in(db: &sea_orm::DatabaseTransaction, order: NewOrder) -> Placement {
    svc::place(db, order.clone())
        .await
        .unwrap_or_else(|err| panic!("placing {order:?}: {err}"))
}
