//! Migration 11 (`m1700000011000_market_sides`, no TypeORM original): the
//! resting quantity and order count of each side of each symbol, kept with
//! the price levels, so the ticker's side totals are one row each instead of
//! a sum over every level of the book (45,000 levels at full scale: 8 ms).
//!
//! - `market_sides`: per symbol and side, the sums of `market_levels`.
//! - `market_levels_add` (the levels triggers' upsert) adds each change's
//!   per-side sums to it in the same call, and deletes a side left without
//!   an order, as it does for a level.
//! - `rebuild_market_state` and `market_state_differences` cover it.
//!
//! The first build sums `market_levels` while writes of `orders` wait (a
//! `SHARE` lock on `orders`, held until the migration commits: milliseconds,
//! the levels are already summed per price). Like migration 9 it holds only
//! what can be rebuilt: `down` drops it without a data-loss guard and puts
//! migrations 9's and 10's functions back.

use sea_orm_migration::prelude::*;

use crate::m1700000009000_market_state::{
    market_levels_add_comment, market_state_functions, market_state_functions_of_9,
};
use crate::m1700000010000_market_functions::market_levels_add_by_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// This migration's `market_levels_add` and its comment: migration 12 drops
/// the function and puts it back when rolled back.
macro_rules! market_levels_add_of_11 {
    () => {
        concat!(
            $crate::m1700000010000_market_functions::market_levels_add_by_key!(
        r#"    -- The same change summed per side, in key order like the levels.
    FOR v_empty IN
        WITH changed AS (
    INSERT INTO market_sides AS s (symbol, side, quantity, order_count)
    SELECT d.symbol, d.side, sum(d.quantity), sum(d.order_count)
    FROM jsonb_to_recordset(p_delta)
         AS d(symbol varchar, side order_side_enum, quantity numeric, order_count bigint)
    GROUP BY d.symbol, d.side
    HAVING sum(d.quantity) <> 0 OR sum(d.order_count) <> 0
    ORDER BY d.symbol, d.side
    ON CONFLICT (symbol, side) DO UPDATE
        SET quantity = s.quantity + excluded.quantity,
            order_count = s.order_count + excluded.order_count
    RETURNING s.symbol, s.side, s.order_count
        )
        SELECT c.symbol, c.side FROM changed c WHERE c.order_count = 0
    LOOP
        DELETE FROM market_sides s
        WHERE s.symbol = v_empty.symbol AND s.side = v_empty.side AND s.order_count = 0;
    END LOOP;
"#
    ),
            "COMMENT ON FUNCTION market_levels_add(jsonb) IS 'Applies a change of resting quantity and count per (symbol, side, price) to market_levels, and its sums per (symbol, side) to market_sides; NULL: no change';\n"
        )
    };
}
pub(crate) use market_levels_add_of_11;

const UP: &str = concat!(
    r#"
-- Writers of orders wait from here until the migration commits, so the first
-- build below and every later change meet: a write that ran before is in
-- market_levels, a write that runs after calls the new market_levels_add.
LOCK TABLE orders IN SHARE MODE;

CREATE TABLE market_sides (
    symbol varchar(20) NOT NULL,
    side order_side_enum NOT NULL,
    quantity numeric NOT NULL,
    order_count bigint NOT NULL,
    CONSTRAINT market_sides_pkey PRIMARY KEY (symbol, side)
);
COMMENT ON TABLE market_sides IS 'Resting LIMIT orders per symbol and side: remaining quantity and count (the sums of market_levels); maintained with market_levels';

"#,
    market_levels_add_of_11!(),
    r#"
CREATE OR REPLACE FUNCTION market_sides_recomputed(p_symbol varchar DEFAULT NULL)
RETURNS TABLE (symbol varchar, side order_side_enum, quantity numeric, order_count bigint)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT r.symbol, r.side, sum(r.quantity), sum(r.order_count)::bigint
    FROM market_levels_recomputed(p_symbol) r
    GROUP BY 1, 2;
$fn$;
COMMENT ON FUNCTION market_sides_recomputed(varchar) IS 'market_sides as computed from orders (one symbol, or all)';

"#,
    market_state_functions!(
        "market_levels, market_sides, market_last_trade, trade_candles",
        "    DELETE FROM market_sides m WHERE p_symbol IS NULL OR m.symbol = p_symbol;
    INSERT INTO market_sides (symbol, side, quantity, order_count)
    SELECT * FROM market_sides_recomputed(p_symbol);
",
        "market_levels, market_sides, market_last_trade and trade_candles",
        "    SELECT 'market_sides', coalesce(m.symbol, r.symbol), coalesce(m.side, r.side)::text,
           m.quantity::text || ' × ' || m.order_count::text,
           r.quantity::text || ' × ' || r.order_count::text
    FROM (SELECT * FROM market_sides t WHERE p_symbol IS NULL OR t.symbol = p_symbol) m
    FULL JOIN market_sides_recomputed(p_symbol) r ON r.symbol = m.symbol AND r.side = m.side
    WHERE m.quantity IS DISTINCT FROM r.quantity OR m.order_count IS DISTINCT FROM r.order_count
    UNION ALL
"
    ),
    r#"
-- The first build: the levels' sums (the levels are exact: the lock above
-- waited for every write that was changing them).
INSERT INTO market_sides (symbol, side, quantity, order_count)
SELECT l.symbol, l.side, sum(l.quantity), sum(l.order_count)
FROM market_levels l
GROUP BY 1, 2
HAVING sum(l.order_count) <> 0;
"#
);

const DOWN: &str = concat!(
    market_state_functions_of_9!(),
    market_levels_add_by_key!(""),
    market_levels_add_comment!(),
    "DROP FUNCTION market_sides_recomputed(varchar);\nDROP TABLE market_sides;\n"
);

sql_migration!(UP, DOWN);
