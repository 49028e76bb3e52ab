//! Migration 8 (`m1700000008000_yearly_order_partitions`, no TypeORM original):
//! a bounded number of `orders` partitions at any age (D15, continued).
//!
//! `orders` is partitioned by month and kept 60 months, and unlike a trade an
//! order is not written once: a resting order is filled, cancelled or expired
//! long after the month it was placed in, and the book walk of every placement
//! reads the resting orders of every partition (an order rests for as long as
//! it is good). So the number of `orders` partitions is what every placement
//! plans over. This migration keeps monthly partitions for the recent months
//! only (3 full months unless the database setting
//! `trade_engine.orders_monthly_months` says otherwise); the months of an older
//! year are merged into one yearly partition `orders_YYYY`. Five years are then
//! about 5 yearly partitions plus at most 15 past months, the months ahead and
//! the default partition.
//!
//! The merge has the steps of the `trades` merge (migration 7), written once
//! for any range-partitioned parent (`merge_range_*`), each its own
//! transaction so readers and writers go on and an interrupted merge resumes:
//!
//! 1. `merge_orders_prepare(year)`: the unattached yearly table (the parent's
//!    columns, checks and indexes, a `NOT VALID` bounds check and foreign key)
//!    and a trigger on each monthly partition of the year that mirrors every
//!    later insert, update and delete into it. Returns the monthly partitions.
//! 2. `merge_orders_copy(year, month, after, batch)`, repeated: copies the
//!    month in batches of `batch` rows in `order_id` order, each batch holding
//!    a SHARE lock on that month only for as long as the batch takes, so a
//!    fill or cancel of an old resting order waits for one batch, never for
//!    the month. Returns the batch's last `order_id` (NULL when done) and the
//!    rows it inserted.
//! 3. `merge_orders_validate(year)`: validates the bounds check and the
//!    foreign key.
//! 4. `merge_orders_switch(year)`: one short transaction: moves the year's
//!    rows out of `orders_default` (D5), detaches and drops the monthly
//!    partitions, attaches the yearly one. Readers see either the months or
//!    the year.
//!
//! Retention (`enforce_partition_retention`) drops a partition once its upper
//! bound is past the retention, so a yearly partition goes when its December
//! does.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION range_partitions(p_parent text)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT c.relname::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(format('%I.%I', current_schema(), p_parent))
      AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    ORDER BY 2;
$fn$;

COMMENT ON FUNCTION range_partitions(text) IS 'The ranged partitions of a partitioned table of the current schema with their bounds, oldest first';

CREATE OR REPLACE FUNCTION merge_range_mirror() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- TG_ARGV: the table a merge is filling from this partition, then the
    -- columns of the primary key (the row id, the partition key).
    IF TG_OP <> 'INSERT' THEN
        EXECUTE format('DELETE FROM %I.%I WHERE %I = ($1).%I AND %I = ($1).%I',
            TG_TABLE_SCHEMA, TG_ARGV[0], TG_ARGV[1], TG_ARGV[1], TG_ARGV[2], TG_ARGV[2])
            USING OLD;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        EXECUTE format('INSERT INTO %I.%I SELECT ($1).* ON CONFLICT (%I, %I) DO NOTHING',
            TG_TABLE_SCHEMA, TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]) USING NEW;
    END IF;
    RETURN NULL;
END;
$fn$;

COMMENT ON FUNCTION merge_range_mirror() IS 'During a merge, copies each write of a partition being merged into the table being filled';

CREATE OR REPLACE FUNCTION merge_range_prepare(
    p_parent text, p_id text, p_key text, p_target text, p_from timestamptz, p_to timestamptz
) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
    v_table regclass;
    r record;
BEGIN
    -- The lock create_range_partition takes: no partition appears meanwhile.
    PERFORM pg_advisory_xact_lock(hashtext(v_schema || '.' || p_parent || ' partitions'));
    IF EXISTS (SELECT 1 FROM range_partitions(p_parent) WHERE partition_name = p_target) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM range_partitions(p_parent)
               WHERE range_start < p_to AND range_end > p_from
                 AND (range_start < p_from OR range_end > p_to)) THEN
        RAISE EXCEPTION 'a % partition straddles the bounds of %', p_parent, p_target
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_table := to_regclass(format('%I.%I', v_schema, p_target));
    IF v_table IS NULL THEN
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)',
            v_schema, p_target, v_schema, p_parent);
        -- Enforced for every row from now on, validated in step 3, so ATTACH
        -- skips its scan under the switch's lock.
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (%I >= %L AND %I < %L) NOT VALID',
            v_schema, p_target, p_target || '_bounds', p_key, p_from, p_key, p_to);
        -- The parent's foreign keys, so ATTACH adopts them instead of validating.
        FOR r IN
            SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
            WHERE conrelid = to_regclass(format('%I.%I', v_schema, p_parent)) AND contype = 'f'
        LOOP
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s NOT VALID',
                v_schema, p_target, r.conname, r.def);
        END LOOP;
    ELSIF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = v_table) THEN
        RAISE EXCEPTION 'relation %.% exists and is a partition', v_schema, p_target
            USING ERRCODE = 'duplicate_table';
    END IF;
    FOR r IN
        SELECT partition_name FROM range_partitions(p_parent)
        WHERE range_start >= p_from AND range_end <= p_to
    LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER trg_merge_range_mirror AFTER INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH ROW EXECUTE FUNCTION merge_range_mirror(%L, %L, %L)',
            v_schema, r.partition_name, p_target, p_id, p_key);
        RETURN NEXT r.partition_name;
    END LOOP;
END;
$fn$;

COMMENT ON FUNCTION merge_range_prepare(text, text, text, text, timestamptz, timestamptz) IS 'Merge step 1: creates the unattached table for [p_from, p_to) and mirrors writes of the partitions it replaces into it; returns those partitions';

CREATE OR REPLACE FUNCTION merge_range_copy(
    p_target text, p_partition text, p_id text, p_after uuid, p_batch integer,
    OUT last_id uuid, OUT copied bigint
)
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
BEGIN
    IF p_batch IS NULL OR p_batch < 1 THEN
        RAISE EXCEPTION 'batch must be at least 1, got %', p_batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- SHARE: the partition's writers wait until this batch commits (their
    -- mirror writes then see the copied rows), readers do not.
    EXECUTE format('LOCK TABLE %I.%I IN SHARE MODE', v_schema, p_partition);
    EXECUTE format(
        'WITH batch AS (SELECT * FROM %I.%I WHERE $1 IS NULL OR %I > $1 ORDER BY %I LIMIT $2), '
        'copied AS (INSERT INTO %I.%I SELECT * FROM batch ON CONFLICT DO NOTHING RETURNING 1) '
        'SELECT (SELECT %I FROM batch ORDER BY %I DESC LIMIT 1), (SELECT count(*) FROM copied)',
        v_schema, p_partition, p_id, p_id, v_schema, p_target, p_id, p_id)
        INTO last_id, copied USING p_after, p_batch;
END;
$fn$;

COMMENT ON FUNCTION merge_range_copy(text, text, text, uuid, integer) IS 'Merge step 2: copies the next p_batch rows of a partition (by p_id, after p_after) into the table being filled; returns the last id of the batch (NULL when none was left) and the rows inserted';

CREATE OR REPLACE FUNCTION merge_range_validate(p_target text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
    r record;
BEGIN
    FOR r IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = to_regclass(format('%I.%I', v_schema, p_target)) AND NOT convalidated
    LOOP
        EXECUTE format('ALTER TABLE %I.%I VALIDATE CONSTRAINT %I', v_schema, p_target, r.conname);
    END LOOP;
END;
$fn$;

COMMENT ON FUNCTION merge_range_validate(text) IS 'Merge step 3: validates the bounds check and foreign keys of the table being filled';

CREATE OR REPLACE FUNCTION merge_range_switch(
    p_parent text, p_key text, p_target text, p_from timestamptz, p_to timestamptz
) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- Waiting for the lock queues every new reader of the parent behind the
-- switch: give up soon (55P03) and let the caller try again.
SET lock_timeout = '2s' AS $fn$
DECLARE
    v_schema text := current_schema();
    v_default text := p_parent || '_default';
    v_parts integer := 0;
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(v_schema || '.' || p_parent || ' partitions'));
    IF EXISTS (SELECT 1 FROM range_partitions(p_parent) WHERE partition_name = p_target) THEN
        RETURN format('Partition %s already exists', p_target);
    END IF;
    IF to_regclass(format('%I.%I', v_schema, p_target)) IS NULL THEN
        RAISE EXCEPTION 'no merge of % is prepared', p_target
            USING ERRCODE = 'undefined_table';
    END IF;
    -- DETACH needs it anyway; taken first so the switch waits once.
    EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', v_schema, p_parent);
    -- D5: rows of the range waiting in the default partition join it.
    IF to_regclass(format('%I.%I', v_schema, v_default)) IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM %I.%I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                       'INSERT INTO %I.%I SELECT * FROM moved',
                       v_schema, v_default, p_key, p_key, v_schema, p_target)
            USING p_from, p_to;
    END IF;
    FOR r IN
        SELECT partition_name FROM range_partitions(p_parent)
        WHERE range_start >= p_from AND range_end <= p_to
    LOOP
        EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I', v_schema, p_parent, v_schema, r.partition_name);
        EXECUTE format('DROP TABLE %I.%I', v_schema, r.partition_name);
        v_parts := v_parts + 1;
    END LOOP;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
        v_schema, p_parent, v_schema, p_target,
        to_char(p_from AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' 00:00:00+00',
        to_char(p_to AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' 00:00:00+00');
    -- The partition bound says the same now.
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', v_schema, p_target, p_target || '_bounds');
    RETURN format('Merged %s partitions into %s', v_parts, p_target);
END;
$fn$;

COMMENT ON FUNCTION merge_range_switch(text, text, text, timestamptz, timestamptz) IS 'Merge step 4: in one short transaction, replaces the partitions of [p_from, p_to) by the filled table';

CREATE OR REPLACE FUNCTION orders_monthly_months() RETURNS integer
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(nullif(current_setting('trade_engine.orders_monthly_months', true), '')::integer, 3);
$fn$;

COMMENT ON FUNCTION orders_monthly_months() IS 'Full months of orders kept in monthly partitions before their year is merged: the setting trade_engine.orders_monthly_months, 3 when unset';

CREATE OR REPLACE FUNCTION merge_orders_candidates(p_monthly_months integer DEFAULT NULL)
RETURNS SETOF date
LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $fn$
    SELECT DISTINCT date_trunc('year', r.range_start AT TIME ZONE 'UTC')::date AS year
    FROM range_partitions('orders') r
    WHERE r.range_end - r.range_start <= interval '31 days'
      AND date_trunc('year', r.range_start AT TIME ZONE 'UTC') + interval '1 year'
          <= date_trunc('month', now() AT TIME ZONE 'UTC')
             - make_interval(months => coalesce(p_monthly_months, orders_monthly_months()))
    ORDER BY 1;
$fn$;

COMMENT ON FUNCTION merge_orders_candidates(integer) IS 'Years whose monthly orders partitions all lie before the monthly window, oldest first';

CREATE OR REPLACE FUNCTION merge_orders_bounds(p_year date, OUT target text, OUT range_from timestamptz, OUT range_to timestamptz)
LANGUAGE sql STABLE AS $fn$
    SELECT 'orders_' || to_char(p_year, 'YYYY'),
           date_trunc('year', p_year::timestamp) AT TIME ZONE 'UTC',
           (date_trunc('year', p_year::timestamp) + interval '1 year') AT TIME ZONE 'UTC';
$fn$;

COMMENT ON FUNCTION merge_orders_bounds(date) IS 'The yearly orders partition of the year containing p_year: its name and UTC bounds';

CREATE OR REPLACE FUNCTION merge_orders_prepare(p_year date) RETURNS SETOF text
LANGUAGE sql
SET search_path FROM CURRENT AS $fn$
    SELECT merge_range_prepare('orders', 'order_id', 'created_at', b.target, b.range_from, b.range_to)
    FROM merge_orders_bounds(p_year) b;
$fn$;

COMMENT ON FUNCTION merge_orders_prepare(date) IS 'Merge step 1 for orders: creates the unattached orders_YYYY and mirrors writes of the year''s monthly partitions into it; returns those partitions';

CREATE OR REPLACE FUNCTION merge_orders_copy(
    p_year date, p_partition text, p_after uuid DEFAULT NULL, p_batch integer DEFAULT 10000,
    OUT last_id uuid, OUT copied bigint
)
LANGUAGE sql
SET search_path FROM CURRENT AS $fn$
    SELECT c.last_id, c.copied
    FROM merge_orders_bounds(p_year) b,
         merge_range_copy(b.target, p_partition, 'order_id', p_after, p_batch) c;
$fn$;

COMMENT ON FUNCTION merge_orders_copy(date, text, uuid, integer) IS 'Merge step 2 for orders: copies the next batch of a monthly partition (order_id after p_after) into orders_YYYY; returns the last order_id of the batch (NULL when done) and the rows inserted';

CREATE OR REPLACE FUNCTION merge_orders_validate(p_year date) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT AS $fn$
    SELECT merge_range_validate(b.target) FROM merge_orders_bounds(p_year) b;
$fn$;

COMMENT ON FUNCTION merge_orders_validate(date) IS 'Merge step 3 for orders: validates the bounds check and foreign key of orders_YYYY';

CREATE OR REPLACE FUNCTION merge_orders_switch(p_year date) RETURNS text
LANGUAGE sql
SET search_path FROM CURRENT AS $fn$
    SELECT merge_range_switch('orders', 'created_at', b.target, b.range_from, b.range_to)
    FROM merge_orders_bounds(p_year) b;
$fn$;

COMMENT ON FUNCTION merge_orders_switch(date) IS 'Merge step 4 for orders: in one short transaction, replaces the year''s monthly partitions by orders_YYYY';
"#;

const DOWN: &str = r#"
DROP FUNCTION merge_orders_switch(date);
DROP FUNCTION merge_orders_validate(date);
DROP FUNCTION merge_orders_copy(date, text, uuid, integer);
DROP FUNCTION merge_orders_prepare(date);
DROP FUNCTION merge_orders_bounds(date);
DROP FUNCTION merge_orders_candidates(integer);
DROP FUNCTION orders_monthly_months();
DROP FUNCTION merge_range_switch(text, text, text, timestamptz, timestamptz);
DROP FUNCTION merge_range_validate(text);
DROP FUNCTION merge_range_copy(text, text, text, uuid, integer);
DROP FUNCTION merge_range_prepare(text, text, text, text, timestamptz, timestamptz);
DROP FUNCTION merge_range_mirror();
DROP FUNCTION range_partitions(text);
"#;

/// Merged years or a merge in progress, which monthly partitions cannot
/// represent.
const MERGED: &str = r#"
SELECT string_agg(name, ', ' ORDER BY name) AS names FROM (
    SELECT partition_name AS name FROM range_partitions('orders')
    WHERE range_end - range_start > interval '31 days'
    UNION
    SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'trg_merge_range_mirror'
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
        crate::m1700000007000_bounded_partitions::down_unless_merged(manager, MERGED, DOWN, |names| {
            format!(
                "refusing to roll back m1700000008000_yearly_order_partitions: orders has merged or merging years ({names}) that monthly partitions cannot hold; nothing was changed"
            )
        })
        .await
    }
}
