//! Migration 4 (`CreateTradesTable1700000004000`): `trades`, range-partitioned by
//! `executed_at` with one partition a day, the retention configuration, partition
//! maintenance and retention enforcement.

use sea_orm_migration::prelude::*;

use crate::data_loss::{GuardedTable, refuse_if_holding_rows};
use crate::m1700000002000_create_symbols_table::Symbols;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What `down` would destroy.
pub(crate) const GUARDED: &[GuardedTable] = &[GuardedTable::All("trades")];

#[derive(DeriveIden)]
enum Trades {
    Table,
    TradeId,
    Symbol,
    BuyerOrderId,
    SellerOrderId,
    BuyerUserId,
    SellerUserId,
    BuyerInstitutionId,
    SellerInstitutionId,
    Price,
    Quantity,
    BuyerFee,
    SellerFee,
    BuyerFeeAsset,
    SellerFeeAsset,
    IsBuyerMaker,
    TradeSource,
    ExecutionVenue,
    ExecutedAt,
    SettledAt,
}

#[derive(DeriveIden)]
enum PartitionRetentionConfig {
    Table,
    TableName,
    RetentionMonths,
    Description,
    UpdatedAt,
}

/// D5: rows outside every daily range land here instead of being refused.
const DEFAULT_PARTITION: &str = "CREATE TABLE trades_default PARTITION OF trades DEFAULT";

const FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION create_trades_partition(partition_date date) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    -- D3, D4, D5: see create_range_partition.
    RETURN create_range_partition('trades', 'executed_at',
        'trades_' || to_char(partition_date::timestamp, 'YYYY_MM_DD'),
        partition_date, partition_date + 1);
END;
$fn$;

COMMENT ON FUNCTION create_trades_partition(date) IS 'Creates a daily partition for the trades table';

-- D3: works (dates, not timestamps); D4: "today" is the UTC day. Never drops anything.
CREATE OR REPLACE FUNCTION maintain_partitions() RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
    v_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    v_orders_retention integer;
    v_trades_retention integer;
BEGIN
    FOR i IN 0..3 LOOP
        PERFORM create_orders_partition((v_month + make_interval(months => i))::date);
    END LOOP;
    FOR i IN 0..7 LOOP
        PERFORM create_trades_partition(v_today + i);
    END LOOP;

    SELECT retention_months INTO v_orders_retention
        FROM partition_retention_config WHERE table_name = 'orders';
    SELECT retention_months INTO v_trades_retention
        FROM partition_retention_config WHERE table_name = 'trades';
    RAISE NOTICE 'Partition maintenance done. Retention: orders % months, trades % months (applied only by enforce_partition_retention)',
        coalesce(v_orders_retention::text, 'unset'), coalesce(v_trades_retention::text, 'unset');
END;
$fn$;

COMMENT ON FUNCTION maintain_partitions() IS 'Automated partition maintenance - creates future partitions. Run daily via cron.';

-- D14: retention is applied here, explicitly, and only when p_dry_run is false.
CREATE OR REPLACE FUNCTION enforce_partition_retention(p_dry_run boolean DEFAULT true)
RETURNS TABLE (partition_name text, parent_table text, range_end timestamptz, dropped boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
DECLARE
    v_schema text := current_schema();
    r record;
BEGIN
    FOR r IN
        SELECT c.relname::text AS part, p.relname::text AS parent, b.upper_bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        JOIN partition_retention_config rc ON rc.table_name = p.relname
        CROSS JOIN LATERAL (
            SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
                AS upper_bound
        ) b
        WHERE n.nspname = v_schema
          AND p.relname IN ('orders', 'trades')
          AND b.upper_bound IS NOT NULL
          AND b.upper_bound <= now() - make_interval(months => rc.retention_months)
        ORDER BY p.relname, b.upper_bound
    LOOP
        IF NOT p_dry_run THEN
            EXECUTE format('DROP TABLE %I.%I', v_schema, r.part);
        END IF;
        partition_name := r.part;
        parent_table := r.parent;
        range_end := r.upper_bound;
        dropped := NOT p_dry_run;
        RETURN NEXT;
    END LOOP;
END;
$fn$;

COMMENT ON FUNCTION enforce_partition_retention(boolean) IS 'Lists the partitions wholly older than their table''s retention; drops them only when p_dry_run is false';
"#;

/// D3, D4: today (UTC) and the 29 days after it.
const INITIAL_PARTITIONS: &str = r#"
DO $do$
DECLARE
    v_today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..29 LOOP
        PERFORM create_trades_partition(v_today + i);
    END LOOP;
END;
$do$;
"#;

const COMMENTS: &str = r#"
COMMENT ON TABLE trades IS 'Trade execution records - partitioned by executed_at (daily). Stores all matched and executed trades.';
COMMENT ON COLUMN trades.is_buyer_maker IS 'TRUE if buyer is maker (passive order), FALSE if buyer is taker (aggressive order)';
COMMENT ON COLUMN trades.trade_source IS 'Execution source: INTERNAL (matching engine), BROKER (external), SIMULATION (paper trading)';
COMMENT ON COLUMN trades.execution_venue IS 'For multi-venue routing (Phase 3) - identifies where trade was executed';
COMMENT ON COLUMN trades.settled_at IS 'Settlement timestamp for real broker trades (null for internal trades)';
COMMENT ON TABLE partition_retention_config IS 'Retention policy configuration for partitioned tables';
"#;

const DOWN_FUNCTIONS: &str = r#"
DROP FUNCTION enforce_partition_retention(boolean);
DROP FUNCTION maintain_partitions();
DROP FUNCTION create_trades_partition(date);
"#;

fn decimal(column: Trades) -> ColumnDef {
    ColumnDef::new(column)
        .decimal_len(20, 8)
        .not_null()
        .to_owned()
}

fn create_trades() -> TableCreateStatement {
    use Trades as T;
    Table::create()
        .table(T::Table)
        .col(
            ColumnDef::new(T::TradeId)
                .uuid()
                .not_null()
                .default(Expr::cust("gen_random_uuid()")),
        )
        .col(ColumnDef::new(T::Symbol).string_len(20).not_null())
        .col(ColumnDef::new(T::BuyerOrderId).uuid().not_null())
        .col(ColumnDef::new(T::SellerOrderId).uuid().not_null())
        .col(ColumnDef::new(T::BuyerUserId).uuid().not_null())
        .col(ColumnDef::new(T::SellerUserId).uuid().not_null())
        .col(ColumnDef::new(T::BuyerInstitutionId).uuid())
        .col(ColumnDef::new(T::SellerInstitutionId).uuid())
        .col(decimal(T::Price))
        .col(decimal(T::Quantity))
        .col(decimal(T::BuyerFee))
        .col(decimal(T::SellerFee))
        .col(ColumnDef::new(T::BuyerFeeAsset).string_len(10).not_null())
        .col(ColumnDef::new(T::SellerFeeAsset).string_len(10).not_null())
        .col(ColumnDef::new(T::IsBuyerMaker).boolean().not_null())
        .col(ColumnDef::new(T::TradeSource).string_len(50))
        .col(ColumnDef::new(T::ExecutionVenue).string_len(50))
        .col(
            ColumnDef::new(T::ExecutedAt)
                .timestamp_with_time_zone()
                .not_null()
                .default(Expr::current_timestamp()),
        )
        .col(ColumnDef::new(T::SettledAt).timestamp_with_time_zone())
        // D2: the partition key belongs to the primary key.
        .primary_key(Index::create().col(T::TradeId).col(T::ExecutedAt))
        .check(Check::named(
            "chk_price_positive",
            Expr::col(T::Price).gt(0),
        ))
        .check(Check::named(
            "chk_quantity_positive",
            Expr::col(T::Quantity).gt(0),
        ))
        .check(Check::named(
            "chk_self_trade_prevention",
            Expr::col(T::BuyerUserId).ne(Expr::col(T::SellerUserId)),
        ))
        // D6: trades reference a known symbol.
        .foreign_key(
            ForeignKey::create()
                .name("FK_trades_symbol")
                .from(T::Table, T::Symbol)
                .to(Symbols::Table, Symbols::Symbol),
        )
        .partition_by_range([T::ExecutedAt])
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    use Trades as T;
    let index = |name: &str| Index::create().name(name).table(T::Table).to_owned();
    vec![
        index("IDX_trades_buyer")
            .col(T::BuyerUserId)
            .col((T::ExecutedAt, IndexOrder::Desc))
            .to_owned(),
        index("IDX_trades_seller")
            .col(T::SellerUserId)
            .col((T::ExecutedAt, IndexOrder::Desc))
            .to_owned(),
        index("IDX_trades_symbol_time")
            .col(T::Symbol)
            .col((T::ExecutedAt, IndexOrder::Desc))
            .to_owned(),
        index("IDX_trades_executed_at")
            .col((T::ExecutedAt, IndexOrder::Desc))
            .to_owned(),
        index("IDX_trades_buyer_order")
            .col(T::BuyerOrderId)
            .to_owned(),
        index("IDX_trades_seller_order")
            .col(T::SellerOrderId)
            .to_owned(),
    ]
}

fn create_retention_config() -> TableCreateStatement {
    use PartitionRetentionConfig as R;
    Table::create()
        .table(R::Table)
        .col(
            ColumnDef::new(R::TableName)
                .string_len(50)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(R::RetentionMonths).integer().not_null())
        .col(ColumnDef::new(R::Description).text())
        .col(
            ColumnDef::new(R::UpdatedAt)
                .timestamp_with_time_zone()
                .default(Expr::current_timestamp()),
        )
        .to_owned()
}

fn insert_retention_rows() -> InsertStatement {
    use PartitionRetentionConfig as R;
    Query::insert()
        .into_table(R::Table)
        .columns([R::TableName, R::RetentionMonths, R::Description])
        .values_panic([
            "orders".into(),
            60.into(),
            "Keep orders for 5 years (regulatory compliance)".into(),
        ])
        .values_panic([
            "trades".into(),
            60.into(),
            "Keep trades for 5 years (regulatory requirement)".into(),
        ])
        .on_conflict(OnConflict::column(R::TableName).do_nothing().to_owned())
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        manager.create_table(create_trades()).await?;
        db.execute_unprepared(DEFAULT_PARTITION).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        manager.create_table(create_retention_config()).await?;
        db.execute(&insert_retention_rows()).await?;
        db.execute_unprepared(FUNCTIONS).await?;
        db.execute_unprepared(COMMENTS).await?;
        db.execute_unprepared(INITIAL_PARTITIONS).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_if_holding_rows(manager.get_connection(), GUARDED).await?;
        manager
            .get_connection()
            .execute_unprepared(DOWN_FUNCTIONS)
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(PartitionRetentionConfig::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Trades::Table).to_owned())
            .await?;
        Ok(())
    }
}
