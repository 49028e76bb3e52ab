//! Migration 10 (`m1700000010000_market_functions`, no TypeORM original): the
//! original market-data functions and `v_symbol_stats_24h` read the market
//! state of migration 9 instead of every resting order and every trade of the
//! window. Signatures, column names and types, comments and results stay
//! those of migrations 5 and 6; `down` puts their original definitions back.
//!
//! - `get_order_book_depth` and `get_best_bid_ask` read `market_levels`.
//! - `calculate_vwap`, `get_trading_volume` and `v_symbol_stats_24h` add up
//!   `trade_window_totals`: the window's whole hours and minutes from
//!   `trade_candles`, its partial minutes at the edges from `trades`, so the
//!   figures are those of a computation over the window's trades (sums of
//!   `numeric` are exact) at a cost that follows the window's length, not its
//!   trades. The function plans its statement with the bounds as constants,
//!   so the planner prunes `trades` to the edge minutes' partitions (a
//!   statement bound by `now()` plans every partition).
//! - `v_symbol_stats_24h.last_price` is the symbol's `market_last_trade`: the
//!   newest trade of the symbol is in the window whenever any trade is.
//! - `market_levels_add` (the levels triggers' upsert) deletes the levels
//!   it emptied by primary key instead of joining the whole table.

use sea_orm_migration::prelude::*;

use crate::m1700000005000_create_auxiliary_tables::symbol_stats_24h_query;
use crate::m1700000006000_create_utility_functions::{
    calculate_vwap, get_best_bid_ask, get_order_book_depth, get_trading_volume,
    get_trading_volume_start,
};
use crate::m1700000009000_market_state::market_levels_add;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// This migration's `market_levels_add`, with `$more` (further steps on the
/// same change) before its end: migration 11 adds the side totals, and its
/// `down` puts this text back.
macro_rules! market_levels_add_by_key {
    ($more:literal) => {
        concat!(
            r#"CREATE OR REPLACE FUNCTION market_levels_add(p_delta jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_empty record;
BEGIN
    IF p_delta IS NULL THEN
        RETURN;
    END IF;
    FOR v_empty IN
        WITH changed AS ("#,
            $crate::m1700000009000_market_state::market_levels_upsert!(),
            r#"
    RETURNING l.symbol, l.side, l.price, l.order_count
        )
        SELECT c.symbol, c.side, c.price FROM changed c WHERE c.order_count = 0
    LOOP
        DELETE FROM market_levels l
        WHERE l.symbol = v_empty.symbol AND l.side = v_empty.side AND l.price = v_empty.price
          AND l.order_count = 0;
    END LOOP;
"#,
            $more,
            r#"END;
$fn$;
"#
        )
    };
}
pub(crate) use market_levels_add_by_key;

const UP: &str = concat!(
    r#"
-- Migration 9's version deletes emptied levels with a join of the whole
-- market_levels table against the change (a sequential scan of every level
-- of every symbol: 5-6 ms per statement at 45,000 levels); this one deletes
-- by primary key only the levels the upsert left without an order.
"#,
    market_levels_add_by_key!(""),
    r#"
-- The trades of [p_from, p_to] (p_to NULL: no upper bound) per symbol
-- (p_symbol NULL: every symbol with a trade in the window).
CREATE OR REPLACE FUNCTION trade_window_totals(p_symbol varchar, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (symbol varchar, trade_count bigint, volume numeric, quote_volume numeric,
               low_price numeric, high_price numeric)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT AS $fn$
DECLARE
    -- Whole minutes: [v_m0, v_h0) and [v_h1, v_mf); whole hours: [v_h0, v_h1);
    -- from trades: [p_from, v_m0) and [v_mf, p_to].
    v_m0 timestamptz := date_bin('1 minute', p_from, 'epoch'::timestamptz);
    v_mf timestamptz := 'infinity';
    v_h0 timestamptz;
    v_h1 timestamptz := 'infinity';
BEGIN
    IF v_m0 < p_from THEN
        v_m0 := v_m0 + interval '1 minute';
    END IF;
    IF p_to IS NOT NULL THEN
        v_mf := greatest(v_m0, date_bin('1 minute', p_to, 'epoch'::timestamptz));
        v_h1 := date_bin('1 hour', v_mf, 'epoch'::timestamptz);
    END IF;
    v_h0 := date_bin('1 hour', v_m0, 'epoch'::timestamptz);
    IF v_h0 < v_m0 THEN
        v_h0 := v_h0 + interval '1 hour';
    END IF;
    IF v_h1 <= v_h0 THEN
        -- No whole hour: every whole minute is in [v_m0, v_mf).
        v_h0 := v_mf;
        v_h1 := v_mf;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT p.symbol, sum(p.n)::bigint, sum(p.base), sum(p.quote), min(p.low), max(p.high)
        FROM (
            SELECT t.symbol::varchar AS symbol, count(*) AS n, sum(t.quantity) AS base,
                   sum(t.price * t.quantity) AS quote,
                   min(t.price)::numeric AS low, max(t.price)::numeric AS high
            FROM trades t
            WHERE ($1 IS NULL OR t.symbol = $1)
              AND t.executed_at >= $2 AND t.executed_at <= $3
              AND (t.executed_at < $4 OR t.executed_at >= $5)
            GROUP BY t.symbol
            UNION ALL
            SELECT c.symbol::varchar, sum(c.trade_count), sum(c.volume), sum(c.quote_volume),
                   min(c.low)::numeric, max(c.high)::numeric
            FROM symbols s
            JOIN trade_candles c ON c.symbol = s.symbol
            WHERE ($1 IS NULL OR s.symbol = $1)
              AND ((c.bucket_seconds = 60
                    AND ((c.open_time >= $4 AND c.open_time < $6)
                         OR (c.open_time >= $7 AND c.open_time < $5)))
                   OR (c.bucket_seconds = 3600 AND c.open_time >= $6 AND c.open_time < $7))
            GROUP BY c.symbol
        ) p
        GROUP BY p.symbol$q$
    USING p_symbol, p_from, coalesce(p_to, 'infinity'::timestamptz), v_m0, v_mf, v_h0, v_h1;
END;
$fn$;
COMMENT ON FUNCTION trade_window_totals(varchar, timestamptz, timestamptz) IS 'Trade count, base and quote volume, low and high of the trades in [p_from, p_to] (p_to NULL: unbounded) per symbol (NULL: all), from trade_candles and the partial edge minutes of trades';

CREATE OR REPLACE FUNCTION get_order_book_depth(p_symbol varchar(20), p_depth int DEFAULT 20)
RETURNS TABLE (side varchar(4), price numeric(20,8), quantity numeric(20,8), order_count int)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT levels.side, levels.price, levels.quantity, levels.order_count
    FROM (
        (SELECT 'BID'::varchar(4) AS side, l.price, l.quantity, l.order_count::int AS order_count
         FROM market_levels l
         WHERE l.symbol = p_symbol AND l.side = 'BUY'
         ORDER BY l.price DESC
         LIMIT p_depth)
        UNION ALL
        (SELECT 'ASK'::varchar(4), l.price, l.quantity, l.order_count::int
         FROM market_levels l
         WHERE l.symbol = p_symbol AND l.side = 'SELL'
         ORDER BY l.price ASC
         LIMIT p_depth)
    ) levels
    ORDER BY levels.side = 'ASK',
             CASE WHEN levels.side = 'BID' THEN levels.price END DESC,
             CASE WHEN levels.side = 'ASK' THEN levels.price END ASC;
$fn$;

CREATE OR REPLACE FUNCTION get_best_bid_ask(p_symbol varchar(20))
RETURNS TABLE (best_bid numeric(20,8), best_ask numeric(20,8), spread numeric(20,8),
               spread_percentage numeric(10,4))
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT book.bid, book.ask, book.ask - book.bid,
           round((book.ask - book.bid) / nullif(book.bid, 0) * 100, 4)
    FROM (
        SELECT
            (SELECT max(l.price) FROM market_levels l
             WHERE l.symbol = p_symbol AND l.side = 'BUY') AS bid,
            (SELECT min(l.price) FROM market_levels l
             WHERE l.symbol = p_symbol AND l.side = 'SELL') AS ask
    ) book;
$fn$;

CREATE OR REPLACE FUNCTION calculate_vwap(p_symbol varchar(20), p_interval_hours int DEFAULT 24)
RETURNS numeric(20,8)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT round(w.quote_volume / nullif(w.volume, 0), 8)
    FROM trade_window_totals(p_symbol, now() - make_interval(hours => p_interval_hours), NULL) w
    WHERE w.symbol = p_symbol;
$fn$;

"#,
    get_trading_volume_start!(),
    r#"    RETURN QUERY
    SELECT p_symbol,
           coalesce(w.trade_count, 0),
           coalesce(w.volume, 0),
           coalesce(round(w.quote_volume, 8), 0),
           v_end - v_interval,
           v_end
    FROM (SELECT 1) one
    LEFT JOIN trade_window_totals(p_symbol, v_end - v_interval, v_end) w ON w.symbol = p_symbol;
END;
$fn$;

CREATE OR REPLACE VIEW v_symbol_stats_24h AS
SELECT w.symbol::varchar(20) AS symbol,
       w.trade_count,
       w.volume,
       w.quote_volume,
       w.low_price,
       w.high_price,
       m.price::numeric AS last_price
FROM trade_window_totals(NULL, now() - interval '24 hours', NULL) w
LEFT JOIN market_last_trade m ON m.symbol = w.symbol;
"#
);

const DOWN: &str = concat!(
    market_levels_add!(),
    "CREATE OR REPLACE VIEW v_symbol_stats_24h AS\n",
    symbol_stats_24h_query!(),
    ";\n",
    get_order_book_depth!(),
    get_best_bid_ask!(),
    calculate_vwap!(),
    get_trading_volume!(),
    "DROP FUNCTION trade_window_totals(varchar, timestamptz, timestamptz);\n",
);

sql_migration!(UP, DOWN);
