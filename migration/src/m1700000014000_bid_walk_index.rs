//! Migration 14 (`m1700000014000_bid_walk_index`, no TypeORM original): an
//! index that reads the resting bids in the order a seller matches them.
//!
//! A taker walks the opposite side best price first and, within a price,
//! oldest first. For the asks that is `IDX_orders_matching`'s own order
//! (symbol, side, price, created_at ascending). For the bids it is price
//! *descending* with created_at *ascending*, which that index cannot give in
//! either direction: PostgreSQL read every resting bid at the best price and
//! sorted them before it could return the first, so a sell's walk cost grew
//! with the number of orders at the best bid (4,670 bids at one price: 3,468
//! buffers and 4.3 ms for four rows; with this index 39 buffers and 0.3 ms).
//!
//! - `IDX_orders_matching_bids`: (symbol, price DESC, created_at, order_id)
//!   over the resting LIMIT bids (`side = 'BUY'`, status OPEN or
//!   PARTIALLY_FILLED, a price) — the walk's predicate, so it holds only
//!   what the walk reads. Created on the parent, so every partition has it,
//!   also those created later.
//!
//! Building it reads every `orders` partition while writes of `orders` wait
//! (seconds at ten million orders; the index holds only the resting bids).
//! `down` drops it; nothing but the index is lost.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX "IDX_orders_matching_bids" ON orders
    USING btree (symbol, price DESC, created_at, order_id)
    WHERE side = 'BUY' AND status IN ('OPEN', 'PARTIALLY_FILLED')
      AND price IS NOT NULL AND order_type = 'LIMIT';
COMMENT ON INDEX "IDX_orders_matching_bids" IS 'Resting LIMIT bids in matching order: best (highest) price first, oldest first within a price';
"#;

const DOWN: &str = r#"
DROP INDEX "IDX_orders_matching_bids";
"#;

sql_migration!(UP, DOWN);
