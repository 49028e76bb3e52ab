//! Migration 9 (`m1700000009000_market_state`, no TypeORM original): the
//! market state kept up to date by the database itself, so the book reads and
//! the last price cost the same at any book size and trade count.
//!
//! - `market_levels`: per symbol, side and price, the remaining quantity and
//!   the number of resting LIMIT orders (OPEN or PARTIALLY_FILLED with a
//!   price): what depth, best bid/ask and the ticker's side totals read.
//! - `market_last_trade`: per symbol, the newest trade (by execution time,
//!   then trade id): what the ticker and the placement's price band read.
//! - `trade_candles`: per symbol and UTC minute and hour, OHLCV with the
//!   first and last trade of the bucket: what the candles read.
//!
//! All three are maintained in the transaction of the write that changes them, by
//! statement-level triggers with transition tables on `orders` and `trades`
//! (one upsert per statement, however many rows it wrote), whoever writes:
//! the service, the schema's functions, an operator in psql.
//! The trigger functions run as their owner (`SECURITY DEFINER`, with the
//! search path pinned), so a role that writes orders needs no write access
//! to the derived tables: only the schema keeps them.
//! `rebuild_market_state(symbol)` recomputes them from `orders` and `trades`
//! (after a bulk load, or for repair) and `market_state_differences(symbol)`
//! lists every difference between the maintained state and a recomputation
//! (no row when they agree). Everything here can be rebuilt, so `down` drops
//! it without a data-loss guard.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The resting-book predicate of `IDX_orders_matching`, for a row alias.
macro_rules! resting {
    ($row:literal) => {
        concat!(
            $row,
            ".status IN ('OPEN', 'PARTIALLY_FILLED') AND ",
            $row,
            ".price IS NOT NULL AND ",
            $row,
            ".order_type = 'LIMIT'"
        )
    };
}
pub(crate) use resting;

/// The upsert of a change (`p_delta`) into `market_levels`, without its `;`:
/// migration 10's `market_levels_add` adds a `RETURNING` to it.
macro_rules! market_levels_upsert {
    () => {
        r#"
    INSERT INTO market_levels AS l (symbol, side, price, quantity, order_count)
    SELECT d.symbol, d.side, d.price, d.quantity, d.order_count
    FROM jsonb_to_recordset(p_delta)
         AS d(symbol varchar, side order_side_enum, price numeric, quantity numeric, order_count bigint)
    ORDER BY d.symbol, d.side, d.price
    ON CONFLICT (symbol, side, price) DO UPDATE
        SET quantity = l.quantity + excluded.quantity,
            order_count = l.order_count + excluded.order_count"#
    };
}
pub(crate) use market_levels_upsert;

/// `market_levels_add` as this migration creates it; migration 10 replaces it
/// and puts this back when it is rolled back.
macro_rules! market_levels_add {
    () => {
        concat!(
            r#"CREATE OR REPLACE FUNCTION market_levels_add(p_delta jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    IF p_delta IS NULL THEN
        RETURN;
    END IF;"#,
            $crate::m1700000009000_market_state::market_levels_upsert!(),
            r#";
    DELETE FROM market_levels l
    USING jsonb_to_recordset(p_delta) AS d(symbol varchar, side order_side_enum, price numeric)
    WHERE l.symbol = d.symbol AND l.side = d.side AND l.price = d.price AND l.order_count = 0;
END;
$fn$;
"#,
            $crate::m1700000009000_market_state::market_levels_add_comment!()
        )
    };
}
pub(crate) use market_levels_add;

/// The comment of this migration's `market_levels_add`, as a statement
/// (migration 11 changes it and puts it back when rolled back).
macro_rules! market_levels_add_comment {
    () => {
        "COMMENT ON FUNCTION market_levels_add(jsonb) IS 'Applies a change of resting quantity and count per (symbol, side, price) to market_levels; NULL: no change';\n"
    };
}
pub(crate) use market_levels_add_comment;

/// `rebuild_market_state` and `market_state_differences` over the state
/// tables: `$tables` (locked by the rebuild, in this order), `$rebuild` (more
/// steps after the levels' rebuild), `$names` (the tables in its comment) and
/// `$differences` (more `UNION ALL` branches after the levels'). Migration 11
/// adds its side totals; its `down` puts this migration's text back.
macro_rules! market_state_functions {
    ($tables:literal, $rebuild:literal, $names:literal, $differences:literal) => {
        concat!(
            r#"CREATE OR REPLACE FUNCTION rebuild_market_state(p_symbol varchar DEFAULT NULL) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    -- Writers of orders and trades wait at their trigger until this commits;
    -- the lock waits for those that already wrote, so the recomputation below
    -- (a statement of its own, a snapshot taken after the lock) sees them.
    LOCK TABLE "#,
            $tables,
            r#" IN EXCLUSIVE MODE;
    DELETE FROM market_levels l WHERE p_symbol IS NULL OR l.symbol = p_symbol;
    INSERT INTO market_levels (symbol, side, price, quantity, order_count)
    SELECT * FROM market_levels_recomputed(p_symbol);
"#,
            $rebuild,
            r#"    DELETE FROM market_last_trade m WHERE p_symbol IS NULL OR m.symbol = p_symbol;
    INSERT INTO market_last_trade (symbol, price, executed_at, trade_id)
    SELECT * FROM market_last_trade_recomputed(p_symbol);
    DELETE FROM trade_candles c WHERE p_symbol IS NULL OR c.symbol = p_symbol;
    INSERT INTO trade_candles SELECT * FROM trade_candles_recomputed(p_symbol);
END;
$fn$;
COMMENT ON FUNCTION rebuild_market_state(varchar) IS 'Recomputes "#,
            $names,
            r#" from orders and trades (one symbol, or all): after a bulk load, or for repair';

CREATE OR REPLACE FUNCTION market_state_differences(p_symbol varchar DEFAULT NULL)
RETURNS TABLE (state text, symbol varchar, key text, maintained text, recomputed text)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT 'market_levels', coalesce(m.symbol, r.symbol),
           coalesce(m.side, r.side)::text || ' ' || coalesce(m.price, r.price)::text,
           m.quantity::text || ' × ' || m.order_count::text,
           r.quantity::text || ' × ' || r.order_count::text
    FROM (SELECT * FROM market_levels l WHERE p_symbol IS NULL OR l.symbol = p_symbol) m
    FULL JOIN market_levels_recomputed(p_symbol) r
      ON r.symbol = m.symbol AND r.side = m.side AND r.price = m.price
    WHERE m.quantity IS DISTINCT FROM r.quantity OR m.order_count IS DISTINCT FROM r.order_count
    UNION ALL
"#,
            $differences,
            r#"    SELECT 'market_last_trade', coalesce(m.symbol, r.symbol), '',
           m.trade_id::text || ' ' || m.price::text || ' ' || m.executed_at::text,
           r.trade_id::text || ' ' || r.price::text || ' ' || r.executed_at::text
    FROM (SELECT * FROM market_last_trade t WHERE p_symbol IS NULL OR t.symbol = p_symbol) m
    FULL JOIN market_last_trade_recomputed(p_symbol) r ON r.symbol = m.symbol
    WHERE (m.trade_id, m.price, m.executed_at) IS DISTINCT FROM (r.trade_id, r.price, r.executed_at)
    UNION ALL
    SELECT 'trade_candles', coalesce(m.symbol, r.symbol),
           coalesce(m.bucket_seconds, r.bucket_seconds)::text || 's ' || coalesce(m.open_time, r.open_time)::text,
           row(m.open, m.high, m.low, m.close, m.volume, m.quote_volume, m.trade_count,
               m.first_at, m.first_id, m.last_at, m.last_id)::text,
           row(r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
               r.first_at, r.first_id, r.last_at, r.last_id)::text
    FROM (SELECT * FROM trade_candles c WHERE p_symbol IS NULL OR c.symbol = p_symbol) m
    FULL JOIN trade_candles_recomputed(p_symbol) r
      ON r.symbol = m.symbol AND r.bucket_seconds = m.bucket_seconds AND r.open_time = m.open_time
    WHERE (m.open, m.high, m.low, m.close, m.volume, m.quote_volume, m.trade_count,
           m.first_at, m.first_id, m.last_at, m.last_id)
          IS DISTINCT FROM
          (r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
           r.first_at, r.first_id, r.last_at, r.last_id)
    ORDER BY 1, 2, 3;
$fn$;
COMMENT ON FUNCTION market_state_differences(varchar) IS 'Every difference between the maintained market state and a recomputation from orders and trades; no row when they agree';

"#
        )
    };
}
pub(crate) use market_state_functions;

/// [`market_state_functions`] as this migration creates them: over the
/// levels, the last trade and the candles (migration 11 puts them back).
macro_rules! market_state_functions_of_9 {
    () => {
        $crate::m1700000009000_market_state::market_state_functions!(
            "market_levels, market_last_trade, trade_candles",
            "",
            "market_levels, market_last_trade and trade_candles",
            ""
        )
    };
}
pub(crate) use market_state_functions_of_9;

/// The levels' trigger functions as this migration creates them (through
/// `market_levels_add`); migration 12 replaces them and puts these back when
/// rolled back.
macro_rules! market_levels_triggers_of_9 {
    () => {
        concat!(
            r#"CREATE OR REPLACE FUNCTION market_levels_on_insert() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM market_levels_add((SELECT jsonb_agg(d) FROM (
        SELECT n.symbol, n.side, n.price, sum(n.quantity - n.filled_quantity) AS quantity,
               count(*) AS order_count
        FROM new_rows n WHERE "#,
            $crate::m1700000009000_market_state::resting!("n"),
            r#"
        GROUP BY 1, 2, 3
    ) d));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION market_levels_on_update() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM market_levels_add((SELECT jsonb_agg(d) FROM (
        SELECT symbol, side, price, sum(quantity) AS quantity, sum(order_count) AS order_count
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
        HAVING sum(quantity) <> 0 OR sum(order_count) <> 0
    ) d));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION market_levels_on_delete() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM market_levels_add((SELECT jsonb_agg(d) FROM (
        SELECT o.symbol, o.side, o.price, -sum(o.quantity - o.filled_quantity) AS quantity,
               -count(*) AS order_count
        FROM old_rows o WHERE "#,
            $crate::m1700000009000_market_state::resting!("o"),
            r#"
        GROUP BY 1, 2, 3
    ) d));
    RETURN NULL;
END;
$fn$;
"#
        )
    };
}
pub(crate) use market_levels_triggers_of_9;

/// The last trade's insert trigger function of this migration (migration 12
/// merges it with the candles' one and puts it back when rolled back).
macro_rules! market_last_trade_on_insert_of_9 {
    () => {
        concat!(
            r#"CREATE OR REPLACE FUNCTION market_last_trade_on_insert() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    INSERT INTO market_last_trade AS m (symbol, price, executed_at, trade_id)
    SELECT DISTINCT ON (n.symbol) n.symbol, n.price, n.executed_at, n.trade_id
    FROM new_rows n
    ORDER BY n.symbol, n.executed_at DESC, n.trade_id DESC
    ON CONFLICT (symbol) DO UPDATE
        SET price = excluded.price, executed_at = excluded.executed_at, trade_id = excluded.trade_id
        WHERE (excluded.executed_at, excluded.trade_id) > (m.executed_at, m.trade_id);
    RETURN NULL;
END;
$fn$;
"#
        )
    };
}
pub(crate) use market_last_trade_on_insert_of_9;

/// The merge of a statement's new trades (`new_rows`) into their minute and
/// hour candles, without its `;` (migration 12's trigger runs it too).
macro_rules! trade_candles_upsert {
    () => {
        r#"    INSERT INTO trade_candles AS c
    SELECT r.symbol, w.s,
           date_bin(make_interval(secs => w.s), r.executed_at, '1970-01-01 00:00:00+00'::timestamptz),
           (array_agg(r.price ORDER BY r.executed_at, r.trade_id))[1],
           max(r.price), min(r.price),
           (array_agg(r.price ORDER BY r.executed_at DESC, r.trade_id DESC))[1],
           sum(r.quantity), sum(r.price * r.quantity), count(*),
           min(r.executed_at),
           (array_agg(r.trade_id ORDER BY r.executed_at, r.trade_id))[1],
           max(r.executed_at),
           (array_agg(r.trade_id ORDER BY r.executed_at DESC, r.trade_id DESC))[1]
    FROM new_rows r CROSS JOIN (VALUES (60), (3600)) AS w(s)
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (symbol, bucket_seconds, open_time) DO UPDATE SET
        open = CASE WHEN (excluded.first_at, excluded.first_id) < (c.first_at, c.first_id)
                    THEN excluded.open ELSE c.open END,
        first_id = CASE WHEN (excluded.first_at, excluded.first_id) < (c.first_at, c.first_id)
                        THEN excluded.first_id ELSE c.first_id END,
        first_at = least(c.first_at, excluded.first_at),
        close = CASE WHEN (excluded.last_at, excluded.last_id) > (c.last_at, c.last_id)
                     THEN excluded.close ELSE c.close END,
        last_id = CASE WHEN (excluded.last_at, excluded.last_id) > (c.last_at, c.last_id)
                       THEN excluded.last_id ELSE c.last_id END,
        last_at = greatest(c.last_at, excluded.last_at),
        high = greatest(c.high, excluded.high),
        low = least(c.low, excluded.low),
        volume = c.volume + excluded.volume,
        quote_volume = c.quote_volume + excluded.quote_volume,
        trade_count = c.trade_count + excluded.trade_count"#
    };
}
pub(crate) use trade_candles_upsert;

/// The candles' insert trigger function of this migration (migration 12
/// merges it with the last trade's one and puts it back when rolled back).
macro_rules! trade_candles_on_insert_of_9 {
    () => {
        concat!(
            r#"CREATE OR REPLACE FUNCTION trade_candles_on_insert() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    -- The query of trade_candles_of, written out: a static statement is
    -- planned once per session, not at every placement.
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
pub(crate) use trade_candles_on_insert_of_9;

/// Where the first build splits the candles: the start of the hour before
/// the one the migration's transaction began in (`now()` is the same in both
/// parts of the build).
macro_rules! build_cutoff {
    () => {
        "date_bin('1 hour', now() - interval '1 hour', '1970-01-01 00:00:00+00')"
    };
}

const UP: &str = concat!(
    r#"
CREATE TABLE market_levels (
    symbol varchar(20) NOT NULL,
    side order_side_enum NOT NULL,
    price numeric(20,8) NOT NULL,
    quantity numeric NOT NULL,
    order_count bigint NOT NULL,
    CONSTRAINT market_levels_pkey PRIMARY KEY (symbol, side, price)
);
COMMENT ON TABLE market_levels IS 'Resting LIMIT orders per symbol, side and price: remaining quantity and count; maintained by triggers on orders';

CREATE TABLE market_last_trade (
    symbol varchar(20) NOT NULL,
    price numeric(20,8) NOT NULL,
    executed_at timestamptz NOT NULL,
    trade_id uuid NOT NULL,
    CONSTRAINT market_last_trade_pkey PRIMARY KEY (symbol)
);
COMMENT ON TABLE market_last_trade IS 'The newest trade per symbol (by executed_at, then trade_id); maintained by triggers on trades';

-- Adds the change of one statement (rows leaving, rows entering the book) to
-- the levels, in key order so two writers meet their rows in the same order.
"#,
    market_levels_add!(),
    r#"
"#,
    market_levels_triggers_of_9!(),
    r#"
-- The newest trade of each symbol a statement inserted, if newer than the one kept.
"#,
    market_last_trade_on_insert_of_9!(),
    r#"
-- An update or delete of trades (an operator's correction): the symbols it
-- touched get their newest trade again from the table.
CREATE OR REPLACE FUNCTION market_last_trade_recompute(p_symbols varchar[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    DELETE FROM market_last_trade WHERE symbol = ANY (p_symbols);
    INSERT INTO market_last_trade (symbol, price, executed_at, trade_id)
    SELECT r.* FROM unnest(p_symbols) AS s(symbol)
    CROSS JOIN LATERAL market_last_trade_recomputed(s.symbol) r;
END;
$fn$;
COMMENT ON FUNCTION market_last_trade_recompute(varchar[]) IS 'Recomputes market_last_trade for the given symbols from trades';

CREATE OR REPLACE FUNCTION market_last_trade_on_update() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM market_last_trade_recompute(ARRAY(
        SELECT symbol FROM old_rows UNION SELECT symbol FROM new_rows));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION market_last_trade_on_delete() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM market_last_trade_recompute(ARRAY(SELECT DISTINCT symbol FROM old_rows));
    RETURN NULL;
END;
$fn$;

CREATE TABLE trade_candles (
    symbol varchar(20) NOT NULL,
    bucket_seconds integer NOT NULL,
    open_time timestamptz NOT NULL,
    open numeric(20,8) NOT NULL,
    high numeric(20,8) NOT NULL,
    low numeric(20,8) NOT NULL,
    close numeric(20,8) NOT NULL,
    volume numeric NOT NULL,
    quote_volume numeric NOT NULL,
    trade_count bigint NOT NULL,
    first_at timestamptz NOT NULL,
    first_id uuid NOT NULL,
    last_at timestamptz NOT NULL,
    last_id uuid NOT NULL,
    CONSTRAINT trade_candles_pkey PRIMARY KEY (symbol, bucket_seconds, open_time),
    CONSTRAINT chk_trade_candles_bucket CHECK (bucket_seconds IN (60, 3600))
);
COMMENT ON TABLE trade_candles IS 'OHLCV per symbol and UTC minute (bucket_seconds 60) and hour (3600), with the first and last trade of each bucket; maintained by triggers on trades';

-- The candles of a set of trades (`$1`: a query over trades rows), per
-- symbol, width and bucket.
CREATE OR REPLACE FUNCTION trade_candles_of(p_rows text)
RETURNS SETOF trade_candles
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT AS $fn$
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT r.symbol, w.s,
               date_bin(make_interval(secs => w.s), r.executed_at, '1970-01-01 00:00:00+00'::timestamptz),
               ((array_agg(r.price ORDER BY r.executed_at, r.trade_id))[1])::numeric(20,8),
               max(r.price)::numeric(20,8), min(r.price)::numeric(20,8),
               ((array_agg(r.price ORDER BY r.executed_at DESC, r.trade_id DESC))[1])::numeric(20,8),
               sum(r.quantity), sum(r.price * r.quantity), count(*),
               min(r.executed_at),
               (array_agg(r.trade_id ORDER BY r.executed_at, r.trade_id))[1],
               max(r.executed_at),
               (array_agg(r.trade_id ORDER BY r.executed_at DESC, r.trade_id DESC))[1]
        FROM (%s) r CROSS JOIN (VALUES (60), (3600)) AS w(s)
        GROUP BY 1, 2, 3$q$, p_rows);
END;
$fn$;
COMMENT ON FUNCTION trade_candles_of(text) IS 'The 1-minute and 1-hour candles of the trades a query returns';

"#,
    trade_candles_on_insert_of_9!(),
    r#"
-- An update or delete of trades: the buckets it touched are recomputed
-- from the table.
CREATE OR REPLACE FUNCTION trade_candles_recompute(p_keys jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    DELETE FROM trade_candles c
    USING jsonb_to_recordset(p_keys) AS k(symbol varchar, open_time timestamptz)
    WHERE c.symbol = k.symbol AND c.bucket_seconds = 3600 AND c.open_time = k.open_time;
    DELETE FROM trade_candles c
    USING jsonb_to_recordset(p_keys) AS k(symbol varchar, open_time timestamptz)
    WHERE c.symbol = k.symbol AND c.bucket_seconds = 60
      AND c.open_time >= k.open_time AND c.open_time < k.open_time + interval '1 hour';
    INSERT INTO trade_candles
    SELECT * FROM trade_candles_of(format(
        'SELECT t.* FROM trades t JOIN jsonb_to_recordset(%L::jsonb) AS k(symbol varchar, open_time timestamptz)
           ON t.symbol = k.symbol AND t.executed_at >= k.open_time
          AND t.executed_at < k.open_time + interval ''1 hour''', p_keys));
END;
$fn$;
COMMENT ON FUNCTION trade_candles_recompute(jsonb) IS 'Recomputes the candles of the given (symbol, hour) buckets from trades';

CREATE OR REPLACE FUNCTION trade_candles_on_update() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM trade_candles_recompute((SELECT jsonb_agg(k) FROM (
        SELECT DISTINCT symbol, date_bin('1 hour', executed_at, '1970-01-01 00:00:00+00'::timestamptz) AS open_time
        FROM (SELECT symbol, executed_at FROM old_rows UNION ALL SELECT symbol, executed_at FROM new_rows) r
    ) k));
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION trade_candles_on_delete() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT AS $fn$
BEGIN
    PERFORM trade_candles_recompute((SELECT jsonb_agg(k) FROM (
        SELECT DISTINCT symbol, date_bin('1 hour', executed_at, '1970-01-01 00:00:00+00'::timestamptz) AS open_time
        FROM old_rows
    ) k));
    RETURN NULL;
END;
$fn$;

-- Retention: candles older than every trades partition go with them.
CREATE OR REPLACE FUNCTION prune_trade_candles() RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_oldest timestamptz;
    v_default_oldest timestamptz;
    v_rows bigint;
BEGIN
    SELECT min(range_start) INTO v_oldest FROM range_partitions('trades');
    SELECT min(executed_at) INTO v_default_oldest FROM trades_default;
    v_oldest := least(v_oldest, v_default_oldest);
    IF v_oldest IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM trade_candles WHERE open_time + make_interval(secs => bucket_seconds) <= v_oldest;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END;
$fn$;
COMMENT ON FUNCTION prune_trade_candles() IS 'Deletes the candles wholly older than the oldest trade the table can hold (after retention dropped partitions); returns how many';

-- What the state should hold, from the base tables.
CREATE OR REPLACE FUNCTION market_levels_recomputed(p_symbol varchar DEFAULT NULL)
RETURNS TABLE (symbol varchar, side order_side_enum, price numeric, quantity numeric, order_count bigint)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT o.symbol, o.side, o.price, sum(o.quantity - o.filled_quantity), count(*)
    FROM orders o
    WHERE "#,
    resting!("o"),
    r#" AND (p_symbol IS NULL OR o.symbol = p_symbol)
    GROUP BY 1, 2, 3;
$fn$;
COMMENT ON FUNCTION market_levels_recomputed(varchar) IS 'market_levels as computed from orders (one symbol, or all)';

CREATE OR REPLACE FUNCTION market_last_trade_recomputed(p_symbol varchar DEFAULT NULL)
RETURNS TABLE (symbol varchar, price numeric, executed_at timestamptz, trade_id uuid)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    -- One step down IDX_trades_symbol_time per symbol (trades.symbol
    -- references symbols), not a sort of every trade.
    SELECT s.symbol, t.price, t.executed_at, t.trade_id
    FROM symbols s
    CROSS JOIN LATERAL (
        SELECT t.price, t.executed_at, t.trade_id FROM trades t
        WHERE t.symbol = s.symbol
        ORDER BY t.executed_at DESC, t.trade_id DESC LIMIT 1
    ) t
    WHERE p_symbol IS NULL OR s.symbol = p_symbol;
$fn$;
COMMENT ON FUNCTION market_last_trade_recomputed(varchar) IS 'market_last_trade as computed from trades (one symbol, or all)';

CREATE OR REPLACE FUNCTION trade_candles_recomputed(p_symbol varchar DEFAULT NULL)
RETURNS SETOF trade_candles
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT * FROM trade_candles_of(
        'SELECT * FROM trades' || CASE WHEN p_symbol IS NULL THEN ''
                                       ELSE format(' WHERE symbol = %L', p_symbol) END);
$fn$;
COMMENT ON FUNCTION trade_candles_recomputed(varchar) IS 'trade_candles as computed from trades (one symbol, or all)';

"#,
    market_state_functions_of_9!(),
    r#"-- The first build, in two parts, each step reported (INFO reaches the
-- client whatever client_min_messages says; the CLI prints it), so an upgrade
-- of a loaded database shows what it is doing.
--
-- Part one, before any trigger exists: the candles of every hour before the
-- previous one (`v_cutoff`; now() is the transaction's start, the same in
-- both parts). It only reads trades, so writes to orders and trades go on
-- meanwhile; the trades they insert are newer than the cutoff.
DO $prebuild$
DECLARE
    v_step timestamptz := clock_timestamp();
    v_cutoff timestamptz := "#,
    build_cutoff!(),
    r#";
    v_rows bigint;
BEGIN
    RAISE INFO 'market state: minute and hour candles of the trades before % (writes go on) ...', v_cutoff;
    INSERT INTO trade_candles
    SELECT * FROM trade_candles_of(format('SELECT * FROM trades WHERE executed_at < %L', v_cutoff));
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RAISE INFO 'market state: % candles in % s', v_rows,
        round(extract(epoch FROM clock_timestamp() - v_step)::numeric, 1);
END
$prebuild$;
-- Statistics for the reads that follow the upgrade (without them the planner
-- guesses, and the candle reads of the first minutes take ten times longer).
ANALYZE trade_candles;

-- From the first CREATE TRIGGER on, writes to orders and trades wait until
-- the migration commits: part two below is what they wait for.
CREATE TRIGGER trg_market_levels_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_levels_on_insert();
CREATE TRIGGER trg_market_levels_update AFTER UPDATE ON orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_levels_on_update();
CREATE TRIGGER trg_market_levels_delete AFTER DELETE ON orders
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market_levels_on_delete();
CREATE TRIGGER trg_market_last_trade_insert AFTER INSERT ON trades
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_last_trade_on_insert();
CREATE TRIGGER trg_market_last_trade_update AFTER UPDATE ON trades
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_last_trade_on_update();
CREATE TRIGGER trg_market_last_trade_delete AFTER DELETE ON trades
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market_last_trade_on_delete();
CREATE TRIGGER trg_trade_candles_insert AFTER INSERT ON trades
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION trade_candles_on_insert();
CREATE TRIGGER trg_trade_candles_update AFTER UPDATE ON trades
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION trade_candles_on_update();
CREATE TRIGGER trg_trade_candles_delete AFTER DELETE ON trades
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION trade_candles_on_delete();

-- Part two: the price levels, the last trades and the candles from the
-- cutoff on.
DO $build$
DECLARE
    v_step timestamptz := clock_timestamp();
    v_cutoff timestamptz := "#,
    build_cutoff!(),
    r#";
    v_rows bigint;
BEGIN
    RAISE INFO 'market state: writes to orders and trades wait from here until the commit';
    RAISE INFO 'market state: price levels from the resting orders ...';
    INSERT INTO market_levels (symbol, side, price, quantity, order_count)
    SELECT * FROM market_levels_recomputed();
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RAISE INFO 'market state: % price levels in % s', v_rows,
        round(extract(epoch FROM clock_timestamp() - v_step)::numeric, 1);
    v_step := clock_timestamp();
    INSERT INTO market_last_trade (symbol, price, executed_at, trade_id)
    SELECT * FROM market_last_trade_recomputed();
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RAISE INFO 'market state: the last trade of % symbols in % s', v_rows,
        round(extract(epoch FROM clock_timestamp() - v_step)::numeric, 1);
    v_step := clock_timestamp();
    INSERT INTO trade_candles
    SELECT * FROM trade_candles_of(format('SELECT * FROM trades WHERE executed_at >= %L', v_cutoff));
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RAISE INFO 'market state: % candles from % on in % s', v_rows, v_cutoff,
        round(extract(epoch FROM clock_timestamp() - v_step)::numeric, 1);
END
$build$;
ANALYZE market_levels, market_last_trade;
"#
);

const DOWN: &str = r#"
DROP FUNCTION market_state_differences(varchar);
DROP FUNCTION rebuild_market_state(varchar);
DROP FUNCTION trade_candles_recomputed(varchar);
DROP FUNCTION prune_trade_candles();
DROP TRIGGER trg_trade_candles_delete ON trades;
DROP TRIGGER trg_trade_candles_update ON trades;
DROP TRIGGER trg_trade_candles_insert ON trades;
DROP FUNCTION trade_candles_on_delete();
DROP FUNCTION trade_candles_on_update();
DROP FUNCTION trade_candles_recompute(jsonb);
DROP FUNCTION trade_candles_on_insert();
DROP FUNCTION trade_candles_of(text);
DROP TABLE trade_candles;
DROP FUNCTION market_last_trade_recomputed(varchar);
DROP FUNCTION market_levels_recomputed(varchar);
DROP TRIGGER trg_market_last_trade_delete ON trades;
DROP TRIGGER trg_market_last_trade_update ON trades;
DROP TRIGGER trg_market_last_trade_insert ON trades;
DROP FUNCTION market_last_trade_on_delete();
DROP FUNCTION market_last_trade_on_update();
DROP FUNCTION market_last_trade_recompute(varchar[]);
DROP FUNCTION market_last_trade_on_insert();
DROP TRIGGER trg_market_levels_delete ON orders;
DROP TRIGGER trg_market_levels_update ON orders;
DROP TRIGGER trg_market_levels_insert ON orders;
DROP FUNCTION market_levels_on_delete();
DROP FUNCTION market_levels_on_update();
DROP FUNCTION market_levels_on_insert();
DROP FUNCTION market_levels_add(jsonb);
DROP TABLE market_last_trade;
DROP TABLE market_levels;
"#;

sql_migration!(UP, DOWN);
