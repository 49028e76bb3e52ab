//! Migration 6 (`CreateUtilityFunctions1700000006000`): market-data, history and
//! monitoring functions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

// The four market-data functions as this migration creates them, each a
// literal of its own: migration 10 redefines them over the market state and
// puts these back when it is rolled back. D9 holds here too: the depth and
// the best bid/ask count resting LIMIT liquidity only, never untriggered stop
// orders.
macro_rules! get_order_book_depth {
    () => {
        r#"CREATE OR REPLACE FUNCTION get_order_book_depth(p_symbol varchar(20), p_depth int DEFAULT 20)
RETURNS TABLE (side varchar(4), price numeric(20,8), quantity numeric(20,8), order_count int)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT levels.side, levels.price, levels.quantity, levels.order_count
    FROM (
        (SELECT 'BID'::varchar(4) AS side, o.price,
                sum(o.quantity - o.filled_quantity) AS quantity,
                count(*)::int AS order_count
         FROM orders o
         WHERE o.symbol = p_symbol AND o.side = 'BUY'
           AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price IS NOT NULL
           AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')
         GROUP BY o.price
         ORDER BY o.price DESC
         LIMIT p_depth)
        UNION ALL
        (SELECT 'ASK'::varchar(4), o.price,
                sum(o.quantity - o.filled_quantity),
                count(*)::int
         FROM orders o
         WHERE o.symbol = p_symbol AND o.side = 'SELL'
           AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price IS NOT NULL
           AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')
         GROUP BY o.price
         ORDER BY o.price ASC
         LIMIT p_depth)
    ) levels
    ORDER BY levels.side = 'ASK',
             CASE WHEN levels.side = 'BID' THEN levels.price END DESC,
             CASE WHEN levels.side = 'ASK' THEN levels.price END ASC;
$fn$;

COMMENT ON FUNCTION get_order_book_depth(varchar, int) IS 'Returns order book depth for a symbol (bids and asks up to specified depth)';
"#
    };
}
pub(crate) use get_order_book_depth;

macro_rules! get_best_bid_ask {
    () => {
        r#"CREATE OR REPLACE FUNCTION get_best_bid_ask(p_symbol varchar(20))
RETURNS TABLE (best_bid numeric(20,8), best_ask numeric(20,8), spread numeric(20,8),
               spread_percentage numeric(10,4))
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT book.bid, book.ask, book.ask - book.bid,
           round((book.ask - book.bid) / nullif(book.bid, 0) * 100, 4)
    FROM (
        SELECT
            (SELECT max(o.price) FROM orders o
             WHERE o.symbol = p_symbol AND o.side = 'BUY'
               AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price IS NOT NULL
               AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')) AS bid,
            (SELECT min(o.price) FROM orders o
             WHERE o.symbol = p_symbol AND o.side = 'SELL'
               AND o.status IN ('OPEN', 'PARTIALLY_FILLED') AND o.price IS NOT NULL
               AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')) AS ask
    ) book;
$fn$;

COMMENT ON FUNCTION get_best_bid_ask(varchar) IS 'Returns best bid/ask prices and spread for a symbol';
"#
    };
}
pub(crate) use get_best_bid_ask;

macro_rules! calculate_vwap {
    () => {
        r#"CREATE OR REPLACE FUNCTION calculate_vwap(p_symbol varchar(20), p_interval_hours int DEFAULT 24)
RETURNS numeric(20,8)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT round(sum(t.price * t.quantity) / nullif(sum(t.quantity), 0), 8)
    FROM trades t
    WHERE t.symbol = p_symbol
      AND t.executed_at >= now() - make_interval(hours => p_interval_hours);
$fn$;

COMMENT ON FUNCTION calculate_vwap(varchar, int) IS 'Calculates Volume Weighted Average Price for a symbol over specified hours';
"#
    };
}
pub(crate) use calculate_vwap;

/// `get_trading_volume` up to its query: the signature and the periods it
/// accepts (D12), which migration 10's version keeps.
macro_rules! get_trading_volume_start {
    () => {
        r#"CREATE OR REPLACE FUNCTION get_trading_volume(p_symbol varchar(20), p_period varchar(10) DEFAULT '24h')
RETURNS TABLE (symbol varchar(20), trade_count bigint, base_volume numeric(20,8),
               quote_volume numeric(20,8), period_start timestamptz, period_end timestamptz)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_end timestamptz := now();
    v_interval interval;
BEGIN
    v_interval := CASE p_period
        WHEN '1h' THEN interval '1 hour'
        WHEN '4h' THEN interval '4 hours'
        WHEN '24h' THEN interval '24 hours'
        WHEN '7d' THEN interval '7 days'
        WHEN '30d' THEN interval '30 days'
    END;
    IF v_interval IS NULL THEN
        RAISE EXCEPTION 'invalid period %: accepted periods are 1h, 4h, 24h, 7d, 30d',
            coalesce(quote_literal(p_period), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
"#
    };
}
pub(crate) use get_trading_volume_start;

macro_rules! get_trading_volume {
    () => {
        concat!(
            $crate::m1700000006000_create_utility_functions::get_trading_volume_start!(),
            r#"    RETURN QUERY
    SELECT p_symbol,
           count(*),
           coalesce(sum(t.quantity), 0),
           coalesce(round(sum(t.quantity * t.price), 8), 0),
           v_end - v_interval,
           v_end
    FROM trades t
    WHERE t.symbol = p_symbol
      AND t.executed_at >= v_end - v_interval
      AND t.executed_at <= v_end;
END;
$fn$;

COMMENT ON FUNCTION get_trading_volume(varchar, varchar) IS 'Returns trading volume for a symbol over specified period (1h, 4h, 24h, 7d, 30d)';
"#
        )
    };
}
pub(crate) use get_trading_volume;

const FUNCTIONS: &str = concat!(
    r#"
"#,
    get_order_book_depth!(),
    r#"
CREATE OR REPLACE FUNCTION get_user_trade_history(
    p_user_id uuid, p_symbol varchar(20) DEFAULT NULL, p_limit int DEFAULT 50, p_offset int DEFAULT 0
)
RETURNS TABLE (trade_id uuid, symbol varchar(20), side varchar(4), price numeric(20,8),
               quantity numeric(20,8), fee numeric(20,8), is_maker boolean, executed_at timestamptz)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT t.trade_id, t.symbol,
           (CASE WHEN t.buyer_user_id = p_user_id THEN 'BUY' ELSE 'SELL' END)::varchar(4),
           t.price, t.quantity,
           CASE WHEN t.buyer_user_id = p_user_id THEN t.buyer_fee ELSE t.seller_fee END,
           CASE WHEN t.buyer_user_id = p_user_id THEN t.is_buyer_maker ELSE NOT t.is_buyer_maker END,
           t.executed_at
    FROM trades t
    WHERE (t.buyer_user_id = p_user_id OR t.seller_user_id = p_user_id)
      AND (p_symbol IS NULL OR t.symbol = p_symbol)
    ORDER BY t.executed_at DESC, t.trade_id DESC
    LIMIT p_limit OFFSET p_offset;
$fn$;

COMMENT ON FUNCTION get_user_trade_history(uuid, varchar, int, int) IS 'Returns trade history for a user with pagination';

CREATE OR REPLACE FUNCTION check_db_connections()
RETURNS TABLE (active_connections int, idle_connections int, max_connections int)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT count(*) FILTER (WHERE a.state = 'active')::int,
           count(*) FILTER (WHERE a.state = 'idle')::int,
           current_setting('max_connections')::int
    FROM pg_stat_activity a
    WHERE a.datname = current_database();
$fn$;

COMMENT ON FUNCTION check_db_connections() IS 'Health check: returns database connection statistics';

-- D11: reads columns pg_stat_user_tables has, and reports a partitioned parent
-- with the totals of its partitions (its partitions are not listed on their own).
-- pg_partition_tree() is empty for a plain table, hence the UNION with the table itself.
CREATE OR REPLACE FUNCTION check_table_sizes()
RETURNS TABLE (table_name text, row_count bigint, total_size text)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT c.relname::text,
           totals.live_rows,
           pg_size_pretty(totals.bytes)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(s.n_live_tup), 0)::bigint AS live_rows,
               coalesce(sum(pg_total_relation_size(tree.relid)), 0)::bigint AS bytes
        FROM (SELECT c.oid AS relid UNION SELECT pt.relid FROM pg_partition_tree(c.oid) pt) tree
        LEFT JOIN pg_stat_user_tables s ON s.relid = tree.relid
    ) totals
    WHERE n.nspname = current_schema()
      AND c.relkind IN ('r', 'p')
      AND NOT c.relispartition
    ORDER BY totals.bytes DESC, c.relname;
$fn$;

COMMENT ON FUNCTION check_table_sizes() IS 'Monitoring: returns table sizes and row counts';

"#,
    get_best_bid_ask!(),
    r#"
"#,
    calculate_vwap!(),
    r#"
CREATE OR REPLACE FUNCTION get_order_fill_rate(p_user_id uuid, p_days int DEFAULT 30)
RETURNS TABLE (total_orders bigint, filled_orders bigint, partially_filled_orders bigint,
               cancelled_orders bigint, fill_rate numeric(5,2))
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT count(*),
           count(*) FILTER (WHERE o.status = 'FILLED'),
           count(*) FILTER (WHERE o.status = 'PARTIALLY_FILLED'),
           count(*) FILTER (WHERE o.status = 'CANCELLED'),
           round(count(*) FILTER (WHERE o.status = 'FILLED') * 100.0 / nullif(count(*), 0), 2)
    FROM orders o
    WHERE o.user_id = p_user_id
      AND o.created_at >= now() - make_interval(days => p_days);
$fn$;

COMMENT ON FUNCTION get_order_fill_rate(uuid, int) IS 'Returns order fill rate statistics for a user over specified days';

-- D5: counts and names the ranged partitions only, not orders_default/trades_default.
CREATE OR REPLACE FUNCTION check_partition_health()
RETURNS TABLE (parent_table text, partition_count bigint, oldest_partition text, newest_partition text)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT p.relname::text,
           count(c.oid),
           min(c.relname)::text,
           max(c.relname)::text
    FROM pg_class p
    JOIN pg_namespace n ON n.oid = p.relnamespace
    LEFT JOIN pg_inherits i ON i.inhparent = p.oid
    LEFT JOIN pg_class c ON c.oid = i.inhrelid
                        AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    WHERE n.nspname = current_schema()
      AND p.relname IN ('orders', 'trades')
      AND p.relkind = 'p'
    GROUP BY p.relname
    ORDER BY p.relname;
$fn$;

COMMENT ON FUNCTION check_partition_health() IS 'Monitoring: returns partition statistics for orders and trades tables';

-- D12: an unknown period is an error naming the accepted ones, not a silent 24h.
"#,
    get_trading_volume!(),
);

const DOWN: &str = r#"
DROP FUNCTION get_trading_volume(varchar, varchar);
DROP FUNCTION check_partition_health();
DROP FUNCTION get_order_fill_rate(uuid, int);
DROP FUNCTION calculate_vwap(varchar, int);
DROP FUNCTION get_best_bid_ask(varchar);
DROP FUNCTION check_table_sizes();
DROP FUNCTION check_db_connections();
DROP FUNCTION get_user_trade_history(uuid, varchar, int, int);
DROP FUNCTION get_order_book_depth(varchar, int);
"#;

sql_migration!(FUNCTIONS, DOWN);
