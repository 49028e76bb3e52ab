//! Migration 12 (`m1700000012000_market_triggers`, no TypeORM original): the
//! market-state triggers of migrations 9 to 11 do the same work in fewer
//! steps, because every matched order and every trade pays for them.
//!
//! - The level triggers on `orders` (`market_levels_on_insert`, `_update`,
//!   `_delete`) apply their change to `market_levels` and `market_sides` in
//!   one statement straight from the transition tables, instead of turning it
//!   into `jsonb` and calling `market_levels_add`, which goes (nothing else
//!   calls it). Same order of work: the levels in key order, then the sides in
//!   key order, then the deletes of what was left without an order.
//! - The two insert triggers on `trades` (`trg_market_last_trade_insert`,
//!   `trg_trade_candles_insert`) become one, `trg_market_trades_insert`
//!   (`market_trades_on_insert`): one call, one statement for the last trade
//!   and the minute and hour candles.
//!
//! Nothing it holds changes: the state tables stay as they are (no rebuild),
//! and the triggers compute what the old ones computed. `down` puts the
//! functions and triggers of migrations 9 and 11 back.

use sea_orm_migration::prelude::*;

use crate::m1700000009000_market_state::{
    market_last_trade_on_insert_of_9, market_levels_triggers_of_9, trade_candles_on_insert_of_9,
};
use crate::m1700000011000_market_sides::market_levels_add_of_11;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A level trigger function `$name` that adds `$delta` (rows of symbol, side,
/// price, quantity, order count: a statement's change of the resting book)
/// to the levels and the sides in one statement, then deletes the levels and
/// sides it left without an order.
///
/// `$returning` (more columns of the changed levels, `l.`) and `$more` (more
/// common table expressions after `sides`, each starting with `, `) are empty
/// here; migration 13 writes the statement's events with them.
macro_rules! levels_trigger {
    ($name:literal, $returning:expr, $more:expr, $($delta:expr),+ $(,)?) => {
        concat!(
            "CREATE OR REPLACE FUNCTION ",
            $name,
            r#"() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_empty record;
BEGIN
    -- The levels first, in key order, then the sides, in key order (the
    -- outer query reads them in that order), so two writers meet their rows
    -- in the same order; what they left without an order comes back to be
    -- deleted (a statement cannot update and delete one row).
    FOR v_empty IN
        WITH delta AS ("#,
            $($delta,)+
            r#"
        ), levels AS (
            INSERT INTO market_levels AS l (symbol, side, price, quantity, order_count)
            SELECT d.symbol, d.side, d.price, d.quantity, d.order_count
            FROM delta d
            ORDER BY d.symbol, d.side, d.price
            ON CONFLICT (symbol, side, price) DO UPDATE
                SET quantity = l.quantity + excluded.quantity,
                    order_count = l.order_count + excluded.order_count
            RETURNING l.symbol, l.side, l.price, l.order_count"#,
            $returning,
            r#"
        ), sides AS (
            INSERT INTO market_sides AS s (symbol, side, quantity, order_count)
            SELECT d.symbol, d.side, sum(d.quantity), sum(d.order_count)
            FROM delta d
            GROUP BY d.symbol, d.side
            HAVING sum(d.quantity) <> 0 OR sum(d.order_count) <> 0
            ORDER BY d.symbol, d.side
            ON CONFLICT (symbol, side) DO UPDATE
                SET quantity = s.quantity + excluded.quantity,
                    order_count = s.order_count + excluded.order_count
            RETURNING s.symbol, s.side, s.order_count
        )"#,
            $more,
            r#"
        SELECT l.symbol, l.side, l.price FROM levels l WHERE l.order_count = 0
        UNION ALL
        SELECT s.symbol, s.side, NULL FROM sides s WHERE s.order_count = 0
    LOOP
        IF v_empty.price IS NULL THEN
            DELETE FROM market_sides s
            WHERE s.symbol = v_empty.symbol AND s.side = v_empty.side AND s.order_count = 0;
        ELSE
            DELETE FROM market_levels l
            WHERE l.symbol = v_empty.symbol AND l.side = v_empty.side
              AND l.price = v_empty.price AND l.order_count = 0;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$fn$;

"#
        )
    };
}

pub(crate) use levels_trigger;

/// The three level trigger functions of this migration, with `$returning`
/// and the `$more_*` expressions of [`levels_trigger`] (empty here).
macro_rules! level_trigger_functions {
    ($returning:expr, $more_insert:expr, $more_update:expr, $more_delete:expr) => {
        concat!(
        $crate::m1700000012000_market_triggers::levels_trigger!(
            "market_levels_on_insert",
            $returning,
            $more_insert,
            r#"
                SELECT n.symbol, n.side, n.price, sum(n.quantity - n.filled_quantity) AS quantity,
                       count(*) AS order_count
                FROM new_rows n WHERE "#,
            $crate::m1700000009000_market_state::resting!("n"),
            "
                GROUP BY 1, 2, 3"
        ),
        $crate::m1700000012000_market_triggers::levels_trigger!(
            "market_levels_on_update",
            $returning,
            $more_update,
            r#"
                SELECT c.symbol, c.side, c.price, sum(c.quantity) AS quantity,
                       sum(c.order_count) AS order_count
                FROM (
                    SELECT n.symbol, n.side, n.price, n.quantity - n.filled_quantity AS quantity,
                           1 AS order_count
                    FROM new_rows n WHERE "#,
            $crate::m1700000009000_market_state::resting!("n"),
            r#"
                    UNION ALL
                    SELECT o.symbol, o.side, o.price, o.filled_quantity - o.quantity, -1
                    FROM old_rows o WHERE "#,
            $crate::m1700000009000_market_state::resting!("o"),
            r#"
                ) c
                GROUP BY 1, 2, 3
                HAVING sum(c.quantity) <> 0 OR sum(c.order_count) <> 0"#
        ),
        $crate::m1700000012000_market_triggers::levels_trigger!(
            "market_levels_on_delete",
            $returning,
            $more_delete,
            r#"
                SELECT o.symbol, o.side, o.price, -sum(o.quantity - o.filled_quantity) AS quantity,
                       -count(*) AS order_count
                FROM old_rows o WHERE "#,
            $crate::m1700000009000_market_state::resting!("o"),
            "
                GROUP BY 1, 2, 3"
        )
        )
    };
}
pub(crate) use level_trigger_functions;

/// This migration's trades insert trigger function, with `$more` (common
/// table expressions before `last_trade`, each ending with `, `; empty here).
macro_rules! market_trades_on_insert {
    ($more:expr) => {
        concat!(
            r#"-- The newest trade of each symbol a statement inserted (if newer than the one
-- kept) and its minute and hour candles, merged into the stored ones.
CREATE OR REPLACE FUNCTION market_trades_on_insert() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    WITH "#,
            $more,
            r#"last_trade AS (
        INSERT INTO market_last_trade AS m (symbol, price, executed_at, trade_id)
        SELECT DISTINCT ON (n.symbol) n.symbol, n.price, n.executed_at, n.trade_id
        FROM new_rows n
        ORDER BY n.symbol, n.executed_at DESC, n.trade_id DESC
        ON CONFLICT (symbol) DO UPDATE
            SET price = excluded.price, executed_at = excluded.executed_at,
                trade_id = excluded.trade_id
            WHERE (excluded.executed_at, excluded.trade_id) > (m.executed_at, m.trade_id)
    )
"#,
            $crate::m1700000009000_market_state::trade_candles_upsert!(),
            r#";
    RETURN NULL;
END;
$fn$;

"#
        )
    };
}
pub(crate) use market_trades_on_insert;

const UP: &str = concat!(
    level_trigger_functions!("", "", "", ""),
    r#"DROP FUNCTION market_levels_add(jsonb);

"#,
    market_trades_on_insert!(""),
    r#"CREATE TRIGGER trg_market_trades_insert AFTER INSERT ON trades
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_trades_on_insert();
DROP TRIGGER trg_market_last_trade_insert ON trades;
DROP TRIGGER trg_trade_candles_insert ON trades;
DROP FUNCTION market_last_trade_on_insert();
DROP FUNCTION trade_candles_on_insert();
"#
);

const DOWN: &str = concat!(
    market_last_trade_on_insert_of_9!(),
    trade_candles_on_insert_of_9!(),
    r#"CREATE TRIGGER trg_market_last_trade_insert AFTER INSERT ON trades
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_last_trade_on_insert();
CREATE TRIGGER trg_trade_candles_insert AFTER INSERT ON trades
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION trade_candles_on_insert();
DROP TRIGGER trg_market_trades_insert ON trades;
DROP FUNCTION market_trades_on_insert();
"#,
    market_levels_add_of_11!(),
    market_levels_triggers_of_9!(),
);

sql_migration!(UP, DOWN);
