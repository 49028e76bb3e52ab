//! Migration 3 (`CreateOrdersTable1700000003000`): `orders`, range-partitioned by
//! `created_at` with one partition a month, its indexes, lifecycle triggers and
//! partition function.

use sea_orm_migration::prelude::*;

use crate::data_loss::{GuardedTable, refuse_if_holding_rows};
use crate::m1700000001000_create_enums::{OrderSide, OrderStatus, OrderType, TimeInForce};
use crate::m1700000002000_create_symbols_table::Symbols;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What `down` would destroy.
pub(crate) const GUARDED: &[GuardedTable] = &[GuardedTable::All("orders")];

#[derive(DeriveIden)]
pub(crate) enum Orders {
    Table,
    OrderId,
    UserId,
    InstitutionId,
    Symbol,
    Side,
    OrderType,
    Status,
    Quantity,
    FilledQuantity,
    Price,
    AveragePrice,
    StopPrice,
    TimeInForce,
    ClientOrderId,
    OrderSource,
    FeeProfileId,
    CreatedAt,
    UpdatedAt,
    FilledAt,
    CancelledAt,
    ExpiresAt,
}

/// The statuses of an order resting in the book.
pub(crate) const ACTIVE_STATUSES: [&str; 2] = ["OPEN", "PARTIALLY_FILLED"];

/// Partition plumbing shared with `trades` (migration 4), then the orders
/// partition function.
///
/// `create_range_partition` is the one place that creates a partition:
/// - D4: bounds are UTC midnights written out with `+00`, so no session
///   `TimeZone` or `DateStyle` shifts them, and every lookup is qualified with
///   the current schema;
/// - D5: rows of the new range waiting in the `<parent>_default` partition are
///   moved into the new partition before it is attached, so nothing is refused
///   and nothing is lost;
/// - concurrent creators are serialized per parent table, and a same-named
///   relation that is not a partition of the parent is an error, not a silent
///   "already exists".
const PARTITION_FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION create_range_partition(
    p_parent text, p_key text, p_partition text, p_from date, p_to date
) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema   text := current_schema();
    v_default  text := p_parent || '_default';
    v_from     text := to_char(p_from::timestamp, 'YYYY-MM-DD') || ' 00:00:00+00';
    v_to       text := to_char(p_to::timestamp, 'YYYY-MM-DD') || ' 00:00:00+00';
    v_existing regclass;
    v_has_rows boolean := false;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(v_schema || '.' || p_parent || ' partitions'));

    v_existing := to_regclass(format('%I.%I', v_schema, p_partition));
    IF v_existing IS NOT NULL THEN
        IF NOT EXISTS (
            SELECT 1 FROM pg_inherits
            WHERE inhrelid = v_existing
              AND inhparent = to_regclass(format('%I.%I', v_schema, p_parent))
        ) THEN
            RAISE EXCEPTION 'relation %.% exists but is not a partition of %',
                v_schema, p_partition, p_parent
                USING ERRCODE = 'duplicate_table';
        END IF;
        RETURN format('Partition %s already exists', p_partition);
    END IF;

    IF to_regclass(format('%I.%I', v_schema, v_default)) IS NOT NULL THEN
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM %I.%I WHERE %I >= $1::timestamptz AND %I < $2::timestamptz)',
            v_schema, v_default, p_key, p_key)
            INTO v_has_rows USING v_from, v_to;
    END IF;

    IF v_has_rows THEN
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
            v_schema, p_partition, v_schema, p_parent);
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I.%I WHERE %I >= $1::timestamptz AND %I < $2::timestamptz RETURNING *) '
            'INSERT INTO %I.%I SELECT * FROM moved',
            v_schema, v_default, p_key, p_key, v_schema, p_partition)
            USING v_from, v_to;
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
            v_schema, p_parent, v_schema, p_partition, v_from, v_to);
    ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
            v_schema, p_partition, v_schema, p_parent, v_from, v_to);
    END IF;
    RETURN format('Created partition: %s', p_partition);
END;
$fn$;

COMMENT ON FUNCTION create_range_partition(text, text, text, date, date) IS
    'Creates one range partition [p_from, p_to) in UTC, moving the rows it covers out of the default partition first';

CREATE OR REPLACE FUNCTION create_orders_partition(partition_date date) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    -- D3: dates stay dates; the casts to timestamp keep the session time zone out (D4).
    v_start date := date_trunc('month', partition_date::timestamp)::date;
    v_end   date := (date_trunc('month', partition_date::timestamp) + interval '1 month')::date;
BEGIN
    RETURN create_range_partition('orders', 'created_at',
        'orders_' || to_char(v_start::timestamp, 'YYYY_MM'), v_start, v_end);
END;
$fn$;

COMMENT ON FUNCTION create_orders_partition(date) IS 'Creates a monthly partition for the orders table';
"#;

/// D5: rows outside every monthly range land here instead of being refused.
const DEFAULT_PARTITION: &str = "CREATE TABLE orders_default PARTITION OF orders DEFAULT";

/// D3, D4: the current UTC month and the 11 after it.
const INITIAL_PARTITIONS: &str = r#"
DO $do$
DECLARE
    v_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..11 LOOP
        PERFORM create_orders_partition((v_month + make_interval(months => i))::date);
    END LOOP;
END;
$do$;
"#;

const LIFECYCLE_TRIGGERS: &str = r#"
CREATE OR REPLACE FUNCTION set_filled_at_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status = 'FILLED' AND OLD.status IS DISTINCT FROM NEW.status THEN
        NEW.filled_at = CURRENT_TIMESTAMP;
    END IF;
    RETURN NEW;
END;
$fn$;

CREATE OR REPLACE FUNCTION set_cancelled_at_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status = 'CANCELLED' AND OLD.status IS DISTINCT FROM NEW.status THEN
        NEW.cancelled_at = CURRENT_TIMESTAMP;
    END IF;
    RETURN NEW;
END;
$fn$;

-- D7: EXPIRED is terminal like FILLED, CANCELLED and REJECTED. The error carries
-- the trigger's name as its constraint, so callers can map it like a constraint.
CREATE OR REPLACE FUNCTION validate_order_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF OLD.status IN ('FILLED', 'CANCELLED', 'REJECTED', 'EXPIRED') THEN
        RAISE EXCEPTION 'Cannot change status of %',
            CASE OLD.status
                WHEN 'FILLED' THEN 'a filled order'
                WHEN 'CANCELLED' THEN 'a cancelled order'
                WHEN 'REJECTED' THEN 'a rejected order'
                ELSE 'an expired order'
            END
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'trg_validate_order_status_transition',
                  TABLE = 'orders';
    END IF;
    RETURN NEW;
END;
$fn$;

CREATE TRIGGER trg_orders_updated_at
    BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
CREATE TRIGGER trg_set_filled_at
    BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_filled_at_timestamp();
CREATE TRIGGER trg_set_cancelled_at
    BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_cancelled_at_timestamp();
CREATE TRIGGER trg_validate_order_status_transition
    BEFORE UPDATE ON orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION validate_order_status_transition();
"#;

const COMMENTS: &str = r#"
COMMENT ON TABLE orders IS 'Main orders table - partitioned by created_at (monthly). Stores all order lifecycle data.';
COMMENT ON COLUMN orders.average_price IS 'Average fill price for partially filled orders';
COMMENT ON COLUMN orders.client_order_id IS 'Client-provided unique ID for idempotency (24h TTL)';
COMMENT ON COLUMN orders.order_source IS 'Order origin: WEB | MOBILE | API | BOT';
COMMENT ON COLUMN orders.fee_profile_id IS 'Reference to user fee tier (VIP, etc.)';
"#;

const DOWN_FUNCTIONS: &str = r#"
DROP FUNCTION create_orders_partition(date);
DROP FUNCTION create_range_partition(text, text, text, date, date);
DROP FUNCTION validate_order_status_transition();
DROP FUNCTION set_cancelled_at_timestamp();
DROP FUNCTION set_filled_at_timestamp();
"#;

fn decimal(column: Orders) -> ColumnDef {
    ColumnDef::new(column).decimal_len(20, 8).to_owned()
}

fn timestamp(column: Orders) -> ColumnDef {
    ColumnDef::new(column).timestamp_with_time_zone().to_owned()
}

fn create_orders() -> TableCreateStatement {
    use Orders as O;
    Table::create()
        .table(O::Table)
        .col(
            ColumnDef::new(O::OrderId)
                .uuid()
                .not_null()
                .default(Expr::cust("gen_random_uuid()")),
        )
        .col(ColumnDef::new(O::UserId).uuid().not_null())
        .col(ColumnDef::new(O::InstitutionId).uuid())
        .col(ColumnDef::new(O::Symbol).string_len(20).not_null())
        .col(ColumnDef::new(O::Side).custom(OrderSide::Enum).not_null())
        .col(
            ColumnDef::new(O::OrderType)
                .custom(OrderType::Enum)
                .not_null(),
        )
        .col(
            ColumnDef::new(O::Status)
                .custom(OrderStatus::Enum)
                .not_null()
                .default(Expr::cust("'PENDING'")),
        )
        .col(decimal(O::Quantity).not_null())
        .col(
            decimal(O::FilledQuantity)
                .not_null()
                .default(Expr::cust("0")),
        )
        .col(decimal(O::Price))
        .col(decimal(O::AveragePrice))
        .col(decimal(O::StopPrice))
        .col(
            ColumnDef::new(O::TimeInForce)
                .custom(TimeInForce::Enum)
                .not_null()
                .default(Expr::cust("'GTC'")),
        )
        .col(ColumnDef::new(O::ClientOrderId).string_len(100))
        .col(ColumnDef::new(O::OrderSource).string_len(50))
        .col(ColumnDef::new(O::FeeProfileId).uuid())
        .col(
            timestamp(O::CreatedAt)
                .not_null()
                .default(Expr::current_timestamp()),
        )
        .col(
            timestamp(O::UpdatedAt)
                .not_null()
                .default(Expr::current_timestamp()),
        )
        .col(timestamp(O::FilledAt))
        .col(timestamp(O::CancelledAt))
        .col(timestamp(O::ExpiresAt))
        // D1: the partition key belongs to the primary key.
        .primary_key(Index::create().col(O::OrderId).col(O::CreatedAt))
        .check(Check::named(
            "chk_quantity_positive",
            Expr::col(O::Quantity).gt(0),
        ))
        .check(Check::named(
            "chk_filled_lte_quantity",
            Expr::col(O::FilledQuantity).lte(Expr::col(O::Quantity)),
        ))
        .check(Check::named(
            "chk_market_no_price",
            Expr::col(O::OrderType)
                .ne("MARKET")
                .or(Expr::col(O::Price).is_null()),
        ))
        .check(Check::named(
            "chk_limit_has_price",
            Expr::col(O::OrderType)
                .ne("LIMIT")
                .or(Expr::col(O::Price).is_not_null()),
        ))
        .check(Check::named(
            "chk_stop_has_stop_price",
            Expr::col(O::OrderType)
                .is_not_in(["STOP", "STOP_LIMIT"])
                .or(Expr::col(O::StopPrice).is_not_null()),
        ))
        // D6: orders reference a known symbol.
        .foreign_key(
            ForeignKey::create()
                .name("FK_orders_symbol")
                .from(O::Table, O::Symbol)
                .to(Symbols::Table, Symbols::Symbol),
        )
        .partition_by_range([O::CreatedAt])
        .to_owned()
}

fn active() -> Expr {
    Expr::col(Orders::Status).is_in(ACTIVE_STATUSES)
}

fn indexes() -> Vec<IndexCreateStatement> {
    use Orders as O;
    let index = |name: &str| Index::create().name(name).table(O::Table).to_owned();
    vec![
        index("IDX_orders_user_symbol_status")
            .col(O::UserId)
            .col(O::Symbol)
            .col(O::Status)
            .and_where(active())
            .to_owned(),
        index("IDX_orders_symbol_status_price")
            .col(O::Symbol)
            .col(O::Status)
            .col(O::Price)
            .and_where(active())
            .and_where(Expr::col(O::Price).is_not_null())
            .to_owned(),
        index("IDX_orders_status_created")
            .col(O::Status)
            .col((O::CreatedAt, IndexOrder::Desc))
            .to_owned(),
        index("IDX_orders_client_order_id")
            .col(O::ClientOrderId)
            .col(O::UserId)
            .and_where(Expr::col(O::ClientOrderId).is_not_null())
            .to_owned(),
        index("IDX_orders_stop_monitoring")
            .col(O::Symbol)
            .col(O::StopPrice)
            .and_where(Expr::col(O::OrderType).is_in(["STOP", "STOP_LIMIT"]))
            .and_where(Expr::col(O::Status).eq("OPEN"))
            .to_owned(),
        index("IDX_orders_matching")
            .col(O::Symbol)
            .col(O::Side)
            .col(O::Price)
            .col(O::CreatedAt)
            .and_where(active())
            .and_where(Expr::col(O::Price).is_not_null())
            .to_owned(),
        index("IDX_orders_user_created")
            .col(O::UserId)
            .col((O::CreatedAt, IndexOrder::Desc))
            .to_owned(),
        index("IDX_orders_active")
            .col(O::Symbol)
            .col(O::Side)
            .col(O::Price)
            .and_where(active())
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        manager.create_table(create_orders()).await?;
        db.execute_unprepared(DEFAULT_PARTITION).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        db.execute_unprepared(LIFECYCLE_TRIGGERS).await?;
        db.execute_unprepared(PARTITION_FUNCTIONS).await?;
        db.execute_unprepared(COMMENTS).await?;
        db.execute_unprepared(INITIAL_PARTITIONS).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_if_holding_rows(manager.get_connection(), GUARDED).await?;
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await?;
        manager
            .get_connection()
            .execute_unprepared(DOWN_FUNCTIONS)
            .await?;
        Ok(())
    }
}
