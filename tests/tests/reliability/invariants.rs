//! The invariant queries the fault tests end with catch what they name: a
//! check that never fails would prove nothing.

use tests::db::TestDb;
use tests::faults::Invariants;
use tests::sql::{exec, insert_order};
use tests::user;

#[tokio::test]
async fn each_query_counts_what_it_names() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    assert_eq!(Invariants::check(c).await, Invariants::default());

    // An order that rests, fills a little and is cancelled: its history
    // ends in a terminal status and stays there.
    let kept = insert_order(c, user(1), "BTC/USDT BUY LIMIT OPEN 2 100", "").await;
    exec(
        c,
        &format!(
            "UPDATE orders SET status = 'CANCELLED', cancelled_at = now() WHERE order_id = '{kept}'"
        ),
    )
    .await;
    let clean = Invariants::check(c).await;
    assert_eq!(clean.terminal_orders_changed, 0, "{clean:?}");
    clean.assert_hold();

    // A fill written to a cancelled order (the schema's status guard does not
    // see it: the status stays): a terminal order changed, and its fills no
    // longer match its trades.
    let refilled = insert_order(c, user(2), "BTC/USDT SELL LIMIT OPEN 1 200", "").await;
    exec(
        c,
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{refilled}'"),
    )
    .await;
    exec(
        c,
        &format!("UPDATE orders SET filled_quantity = 1 WHERE order_id = '{refilled}'"),
    )
    .await;
    // A resting bid at or above a resting ask: a crossed book.
    insert_order(c, user(3), "BTC/USDT SELL LIMIT OPEN 1 200", "").await;
    insert_order(c, user(4), "BTC/USDT BUY LIMIT OPEN 1 250", "").await;
    let broken = Invariants::check(c).await;
    assert_eq!(broken.terminal_orders_changed, 1, "{broken:?}");
    assert_eq!(broken.fills_not_matching_trades, 1, "{broken:?}");
    assert_eq!(broken.crossed_books, 1, "{broken:?}");
    let panicked = std::panic::catch_unwind(|| broken.assert_hold());
    assert!(panicked.is_err(), "assert_hold let a broken state pass");
}
