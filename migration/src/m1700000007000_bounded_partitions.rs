//! Migration 7 (`m1700000007000_bounded_partitions`, no TypeORM original): a
//! bounded number of `trades` partitions at any age (D15).
//!
//! `trades` keeps one partition a day for the recent window only (90 days
//! unless the database setting `trade_engine.trades_daily_days` says
//! otherwise); the days of an older month are merged into one monthly
//! partition `trades_YYYY_MM`. Five years of history are then about 60 monthly
//! partitions plus the window, instead of 1,800 daily ones that every statement
//! which cannot prune at plan time would lock (with their indexes) and plan.
//!
//! A merge is four steps, each its own transaction, so readers and writers go
//! on while it runs and an interrupted merge resumes where it stopped:
//!
//! 1. `merge_trades_prepare(month)`: creates the monthly table, not yet
//!    attached, with the parent's columns, checks and indexes, a `NOT VALID`
//!    check of its bounds and foreign key, and a trigger on each daily partition
//!    that mirrors every later insert, update and delete into it. Returns the
//!    daily partitions to copy.
//! 2. `merge_trades_copy(month, daily)` once per daily partition: copies it,
//!    holding a SHARE lock on that one day (writers of that day wait, readers
//!    do not), so no write of the day can slip between copy and mirror.
//! 3. `merge_trades_validate(month)`: validates the bounds check and the
//!    foreign key (no lock that blocks readers or writers of `trades`).
//! 4. `merge_trades_switch(month)`: one short transaction: moves the month's
//!    rows out of `trades_default` (D5), detaches and drops the daily
//!    partitions, attaches the monthly one (the validated check spares
//!    the scan), drops the bounds check. Readers see either the days or the month.
//!
//! `partition_lock_demand()` reports the locks a statement that cannot prune
//! takes on each parent, which the migration CLI compares with the server's
//! lock table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION trades_partition_ranges()
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(format('%I.trades', current_schema()))
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    ORDER BY 2;
$fn$;

COMMENT ON FUNCTION trades_partition_ranges() IS 'The ranged partitions of trades with their bounds, oldest first';

CREATE OR REPLACE FUNCTION trades_daily_days() RETURNS integer
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(nullif(current_setting('trade_engine.trades_daily_days', true), '')::integer, 90);
$fn$;

COMMENT ON FUNCTION trades_daily_days() IS 'Days of trades kept in daily partitions: the setting trade_engine.trades_daily_days, 90 when unset';

CREATE OR REPLACE FUNCTION merge_trades_candidates(p_daily_days integer DEFAULT NULL)
RETURNS SETOF date
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT DISTINCT date_trunc('month', r.range_start AT TIME ZONE 'UTC')::date AS month
    FROM trades_partition_ranges() r
    WHERE r.range_end - r.range_start <= interval '1 day'
      AND date_trunc('month', r.range_start AT TIME ZONE 'UTC') + interval '1 month'
          <= (now() AT TIME ZONE 'UTC')::date - coalesce(p_daily_days, trades_daily_days())
    ORDER BY 1;
$fn$;

COMMENT ON FUNCTION merge_trades_candidates(integer) IS 'Months whose daily trades partitions all lie before the daily window, oldest first';

CREATE OR REPLACE FUNCTION merge_trades_mirror() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- TG_ARGV[0]: the monthly table a merge is filling from this day.
    IF TG_OP <> 'INSERT' THEN
        EXECUTE format('DELETE FROM %I.%I WHERE trade_id = $1 AND executed_at = $2',
            TG_TABLE_SCHEMA, TG_ARGV[0]) USING OLD.trade_id, OLD.executed_at;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        EXECUTE format('INSERT INTO %I.%I SELECT ($1).* ON CONFLICT (trade_id, executed_at) DO NOTHING',
            TG_TABLE_SCHEMA, TG_ARGV[0]) USING NEW;
    END IF;
    RETURN NULL;
END;
$fn$;

COMMENT ON FUNCTION merge_trades_mirror() IS 'During a merge, copies each write of a daily trades partition into the monthly table being filled';

CREATE OR REPLACE FUNCTION merge_trades_prepare(p_month date) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
    v_from timestamptz := date_trunc('month', p_month::timestamp) AT TIME ZONE 'UTC';
    v_to timestamptz := (date_trunc('month', p_month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    v_month text := 'trades_' || to_char(p_month::timestamp, 'YYYY_MM');
    v_table regclass;
    r record;
BEGIN
    -- The lock create_range_partition takes: no partition appears meanwhile.
    PERFORM pg_advisory_xact_lock(hashtext(v_schema || '.trades partitions'));
    IF EXISTS (SELECT 1 FROM trades_partition_ranges() WHERE partition_name = v_month) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM trades_partition_ranges()
               WHERE range_start < v_to AND range_end > v_from
                 AND (range_start < v_from OR range_end > v_to)) THEN
        RAISE EXCEPTION 'a trades partition straddles the bounds of %', v_month
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_table := to_regclass(format('%I.%I', v_schema, v_month));
    IF v_table IS NULL THEN
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.trades INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)',
            v_schema, v_month, v_schema);
        -- Enforced for every row from now on; validated in step 3, so ATTACH
        -- can skip its scan under the switch's lock.
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (executed_at >= %L AND executed_at < %L) NOT VALID',
            v_schema, v_month, v_month || '_bounds', v_from, v_to);
        -- The parent's foreign key, so ATTACH adopts it instead of validating it.
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT "FK_trades_symbol" FOREIGN KEY (symbol) REFERENCES %I.symbols (symbol) NOT VALID',
            v_schema, v_month, v_schema);
    ELSIF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = v_table) THEN
        RAISE EXCEPTION 'relation %.% exists and is a partition', v_schema, v_month
            USING ERRCODE = 'duplicate_table';
    END IF;
    FOR r IN
        SELECT partition_name FROM trades_partition_ranges()
        WHERE range_start >= v_from AND range_end <= v_to
    LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER trg_merge_trades_mirror AFTER INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH ROW EXECUTE FUNCTION merge_trades_mirror(%L)',
            v_schema, r.partition_name, v_month);
        RETURN NEXT r.partition_name;
    END LOOP;
END;
$fn$;

COMMENT ON FUNCTION merge_trades_prepare(date) IS 'Merge step 1: creates the unattached monthly trades table and mirrors writes of the month''s daily partitions into it; returns those partitions';

CREATE OR REPLACE FUNCTION merge_trades_copy(p_month date, p_partition text) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
    v_month text := 'trades_' || to_char(p_month::timestamp, 'YYYY_MM');
    v_rows bigint;
BEGIN
    -- SHARE: the day's writers wait until the copy commits (their mirror
    -- writes then see the copied rows), readers do not.
    EXECUTE format('LOCK TABLE %I.%I IN SHARE MODE', v_schema, p_partition);
    EXECUTE format('INSERT INTO %I.%I SELECT * FROM %I.%I ON CONFLICT (trade_id, executed_at) DO NOTHING',
        v_schema, v_month, v_schema, p_partition);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END;
$fn$;

COMMENT ON FUNCTION merge_trades_copy(date, text) IS 'Merge step 2: copies one daily trades partition into the month''s table';

CREATE OR REPLACE FUNCTION merge_trades_validate(p_month date) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
    v_month text := 'trades_' || to_char(p_month::timestamp, 'YYYY_MM');
BEGIN
    EXECUTE format('ALTER TABLE %I.%I VALIDATE CONSTRAINT %I', v_schema, v_month, v_month || '_bounds');
    EXECUTE format('ALTER TABLE %I.%I VALIDATE CONSTRAINT "FK_trades_symbol"', v_schema, v_month);
END;
$fn$;

COMMENT ON FUNCTION merge_trades_validate(date) IS 'Merge step 3: validates the monthly trades table''s bounds and foreign key';

CREATE OR REPLACE FUNCTION merge_trades_switch(p_month date) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- Waiting for the lock queues every new reader of trades behind the switch:
-- give up soon (55P03) and let the caller try again.
SET lock_timeout = '2s' AS $fn$
DECLARE
    v_schema text := current_schema();
    v_from timestamptz := date_trunc('month', p_month::timestamp) AT TIME ZONE 'UTC';
    v_to timestamptz := (date_trunc('month', p_month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    v_month text := 'trades_' || to_char(p_month::timestamp, 'YYYY_MM');
    v_days integer := 0;
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(v_schema || '.trades partitions'));
    IF EXISTS (SELECT 1 FROM trades_partition_ranges() WHERE partition_name = v_month) THEN
        RETURN format('Partition %s already exists', v_month);
    END IF;
    -- DETACH needs it anyway; taken first so the switch waits once, not per day.
    EXECUTE format('LOCK TABLE %I.trades IN ACCESS EXCLUSIVE MODE', v_schema);
    -- D5: rows of the month waiting in the default partition join it.
    IF to_regclass(format('%I.trades_default', v_schema)) IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM %I.trades_default WHERE executed_at >= $1 AND executed_at < $2 RETURNING *) '
                       'INSERT INTO %I.%I SELECT * FROM moved', v_schema, v_schema, v_month)
            USING v_from, v_to;
    END IF;
    FOR r IN
        SELECT partition_name FROM trades_partition_ranges()
        WHERE range_start >= v_from AND range_end <= v_to
    LOOP
        EXECUTE format('ALTER TABLE %I.trades DETACH PARTITION %I.%I', v_schema, v_schema, r.partition_name);
        EXECUTE format('DROP TABLE %I.%I', v_schema, r.partition_name);
        v_days := v_days + 1;
    END LOOP;
    EXECUTE format('ALTER TABLE %I.trades ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
        v_schema, v_schema, v_month,
        to_char(v_from AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' 00:00:00+00',
        to_char(v_to AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' 00:00:00+00');
    -- The partition bound says the same now.
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', v_schema, v_month, v_month || '_bounds');
    RETURN format('Merged %s daily partitions into %s', v_days, v_month);
END;
$fn$;

COMMENT ON FUNCTION merge_trades_switch(date) IS 'Merge step 4: in one short transaction, replaces the month''s daily trades partitions by the monthly one';

CREATE OR REPLACE FUNCTION partition_lock_demand()
RETURNS TABLE (parent_table text, partitions integer, locks integer)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT p.relname::text,
           count(*)::integer,
           (count(*) + sum((SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid)))::integer
    FROM pg_class p
    JOIN pg_namespace n ON n.oid = p.relnamespace
    JOIN pg_inherits i ON i.inhparent = p.oid
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE n.nspname = current_schema()
      AND p.relname IN ('orders', 'trades')
      AND p.relkind = 'p'
    GROUP BY p.relname
    ORDER BY p.relname;
$fn$;

COMMENT ON FUNCTION partition_lock_demand() IS 'Partitions of orders and trades and the locks (partitions and their indexes) a statement that cannot prune them takes';
"#;

const DOWN: &str = r#"
DROP FUNCTION partition_lock_demand();
DROP FUNCTION merge_trades_switch(date);
DROP FUNCTION merge_trades_validate(date);
DROP FUNCTION merge_trades_copy(date, text);
DROP FUNCTION merge_trades_prepare(date);
DROP FUNCTION merge_trades_mirror();
DROP FUNCTION merge_trades_candidates(integer);
DROP FUNCTION trades_daily_days();
DROP FUNCTION trades_partition_ranges();
"#;

/// Merged months or a merge in progress, which the six earlier migrations
/// cannot represent.
const MERGED: &str = r#"
SELECT string_agg(name, ', ' ORDER BY name) AS names FROM (
    SELECT partition_name AS name FROM trades_partition_ranges()
    WHERE range_end - range_start > interval '1 day'
    UNION
    SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'trg_merge_trades_mirror'
) merged
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(FUNCTIONS)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        down_unless_merged(manager, MERGED, DOWN, |names| {
            format!(
                "refusing to roll back m1700000007000_bounded_partitions: trades has merged or merging months ({names}) that daily partitions cannot hold; nothing was changed"
            )
        })
        .await
    }
}

/// Runs `down` unless `merged` (a query answering `names`, NULL when there
/// is none) names merged partitions or a merge in progress, which the earlier
/// layout cannot represent: then refuses with `refusal(names)`, changing
/// nothing.
pub(crate) async fn down_unless_merged(
    manager: &SchemaManager<'_>,
    merged: &str,
    down: &str,
    refusal: impl FnOnce(&str) -> String,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let names = db
        .query_one_raw(sea_orm::Statement::from_string(
            manager.get_database_backend(),
            merged,
        ))
        .await?
        .and_then(|row| row.try_get::<Option<String>>("", "names").ok())
        .flatten();
    if let Some(names) = names {
        return Err(DbErr::Migration(refusal(&names)));
    }
    db.execute_unprepared(down).await?;
    Ok(())
}
