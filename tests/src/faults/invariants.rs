//! The service's invariants (its crate docs and the README's matching rules), each counted as violations by one query,
//! so a failing test names the rule and the count.

use sea_orm::ConnectionTrait;

use crate::sql::{lines, scalar};

/// Violations of one invariant, by rule.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invariants {
    /// Orders whose filled_quantity exceeds their quantity.
    pub overfilled: i64,
    /// Orders whose trades do not sum to their filled_quantity.
    pub fills_not_matching_trades: i64,
    /// Trades with the same user on both sides.
    pub self_trades: i64,
    /// Symbols whose best resting bid is at or above their best resting ask.
    pub crossed_books: i64,
    /// Orders changed after they reached a terminal status (FILLED,
    /// CANCELLED, REJECTED, EXPIRED), from their history in the event outbox.
    pub terminal_orders_changed: i64,
    /// Differences between the maintained market state (price levels, last
    /// trade) and a recomputation from orders and trades.
    pub market_state_differences: i64,
    /// Orders checked.
    pub orders: i64,
    /// Trades checked.
    pub trades: i64,
}

const OVERFILLED: &str = "SELECT count(*) FROM orders WHERE filled_quantity > quantity";

const FILLS_NOT_MATCHING_TRADES: &str = "\
    SELECT count(*) FROM orders o \
    LEFT JOIN (SELECT order_id, sum(quantity) AS traded FROM ( \
        SELECT buyer_order_id AS order_id, quantity FROM trades \
        UNION ALL SELECT seller_order_id, quantity FROM trades) legs \
      GROUP BY order_id) t ON t.order_id = o.order_id \
    WHERE coalesce(t.traded, 0) <> o.filled_quantity";

const SELF_TRADES: &str = "SELECT count(*) FROM trades WHERE buyer_user_id = seller_user_id";

const CROSSED_BOOKS: &str = "\
    SELECT count(*) FROM ( \
      SELECT symbol, \
        max(price) FILTER (WHERE side = 'BUY') AS best_bid, \
        min(price) FILTER (WHERE side = 'SELL') AS best_ask \
      FROM orders \
      WHERE status IN ('OPEN', 'PARTIALLY_FILLED') AND order_type = 'LIMIT' \
        AND price IS NOT NULL \
      GROUP BY symbol) book \
    WHERE best_bid >= best_ask";

/// Every write of an order leaves its row in the event outbox (migration 13),
/// and writes of one order follow each other's commits (the row lock), so
/// their events are in `event_id` order: an order event after the order's
/// first terminal one is a change of a terminal order.
const TERMINAL_ORDERS_CHANGED: &str = "\
    SELECT count(DISTINCT order_id) FROM ( \
      SELECT payload->>'order_id' AS order_id, event_id, \
        min(event_id) FILTER (WHERE payload->>'status' IN ('FILLED', 'CANCELLED', 'REJECTED', 'EXPIRED')) \
          OVER (PARTITION BY payload->>'order_id') AS terminal_at \
      FROM event_outbox WHERE kind = 'order') history \
    WHERE event_id > terminal_at";

/// Every difference between the maintained market state (price levels, last
/// trade, candles) and a recomputation from orders and trades, one line each
/// (`state symbol key: maintained vs recomputed`); empty when they agree.
pub async fn market_state_drift(db: &impl ConnectionTrait) -> Vec<String> {
    lines(
        db,
        "SELECT state || ' ' || symbol || ' ' || key || ': ' || coalesce(maintained, '-')
                || ' vs ' || coalesce(recomputed, '-')
         FROM market_state_differences()",
    )
    .await
}

impl Invariants {
    /// Counts the violations of every invariant in the database.
    pub async fn check(db: &impl ConnectionTrait) -> Invariants {
        Invariants {
            overfilled: scalar(db, OVERFILLED).await,
            fills_not_matching_trades: scalar(db, FILLS_NOT_MATCHING_TRADES).await,
            self_trades: scalar(db, SELF_TRADES).await,
            crossed_books: scalar(db, CROSSED_BOOKS).await,
            terminal_orders_changed: scalar(db, TERMINAL_ORDERS_CHANGED).await,
            market_state_differences: market_state_drift(db).await.len() as i64,
            orders: scalar(db, "SELECT count(*) FROM orders").await,
            trades: scalar(db, "SELECT count(*) FROM trades").await,
        }
    }

    /// Panics, naming every broken rule, unless all hold.
    pub fn assert_hold(&self) {
        assert!(
            self.overfilled == 0
                && self.fills_not_matching_trades == 0
                && self.self_trades == 0
                && self.crossed_books == 0
                && self.terminal_orders_changed == 0
                && self.market_state_differences == 0,
            "service invariants broken: {self:?}"
        );
    }
}
