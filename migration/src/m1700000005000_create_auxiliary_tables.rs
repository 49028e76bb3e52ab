//! Migration 5 (`CreateAuxiliaryTables1700000005000`): the stop-order watchlist
//! and its triggers, order-book snapshots, the views and the materialized book.

use sea_orm_migration::prelude::*;

use crate::data_loss::{GuardedTable, refuse_if_holding_rows};
use crate::m1700000001000_create_enums::OrderSide;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What `down` would destroy.
pub(crate) const GUARDED: &[GuardedTable] = &[
    GuardedTable::All("stop_orders_watchlist"),
    GuardedTable::All("order_book_snapshots"),
];

#[derive(DeriveIden)]
enum StopOrdersWatchlist {
    Table,
    OrderId,
    UserId,
    Symbol,
    Side,
    StopPrice,
    Quantity,
    AddedAt,
}

#[derive(DeriveIden)]
enum OrderBookSnapshots {
    Table,
    SnapshotId,
    Symbol,
    Bids,
    Asks,
    SequenceNumber,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MvOrderBookSnapshot {
    #[sea_orm(iden = "mv_order_book_snapshot")]
    View,
    Symbol,
    Side,
    Price,
}

const WATCHLIST_TRIGGERS: &str = r#"
-- D8: a stop order enters the watchlist when it becomes OPEN, by insert or by update.
CREATE OR REPLACE FUNCTION add_stop_order_to_watchlist() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    IF NEW.order_type IN ('STOP', 'STOP_LIMIT') AND NEW.status = 'OPEN'
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        INSERT INTO stop_orders_watchlist (order_id, user_id, symbol, side, stop_price, quantity)
        VALUES (NEW.order_id, NEW.user_id, NEW.symbol, NEW.side, NEW.stop_price, NEW.quantity)
        ON CONFLICT (order_id) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$fn$;

COMMENT ON FUNCTION add_stop_order_to_watchlist() IS 'Automatically adds STOP/STOP_LIMIT orders to watchlist when created';

CREATE OR REPLACE FUNCTION remove_stop_order_from_watchlist() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    IF NEW.status IN ('FILLED', 'CANCELLED', 'REJECTED', 'EXPIRED') THEN
        DELETE FROM stop_orders_watchlist WHERE order_id = NEW.order_id;
    END IF;
    RETURN NULL;
END;
$fn$;

COMMENT ON FUNCTION remove_stop_order_from_watchlist() IS 'Automatically removes stop orders from watchlist when completed/cancelled';

CREATE TRIGGER trg_add_stop_order_to_watchlist
    AFTER INSERT OR UPDATE OF status ON orders
    FOR EACH ROW EXECUTE FUNCTION add_stop_order_to_watchlist();

CREATE TRIGGER trg_remove_stop_order_from_watchlist
    AFTER UPDATE ON orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION remove_stop_order_from_watchlist();
"#;

/// "Active" is OPEN or PARTIALLY_FILLED. D9: untriggered stop orders
/// (STOP, STOP_LIMIT, and TRAILING_STOP alike) are not book liquidity, so the
/// book objects leave them out.
/// The query of `v_symbol_stats_24h` as this migration creates it; migration 10
/// puts it back when it is rolled back.
macro_rules! symbol_stats_24h_query {
    () => {
        r#"SELECT t.symbol,
       count(*) AS trade_count,
       sum(t.quantity) AS volume,
       sum(t.quantity * t.price) AS quote_volume,
       min(t.price) AS low_price,
       max(t.price) AS high_price,
       (array_agg(t.price ORDER BY t.executed_at DESC, t.trade_id DESC))[1] AS last_price
FROM trades t
WHERE t.executed_at >= now() - interval '24 hours'
GROUP BY t.symbol"#
    };
}
pub(crate) use symbol_stats_24h_query;

const VIEWS: &str = concat!(
    r#"
CREATE VIEW v_active_orders AS
SELECT o.order_id, o.user_id, o.symbol, o.side, o.order_type, o.quantity, o.filled_quantity,
       o.quantity - o.filled_quantity AS remaining_quantity,
       o.price, o.created_at, o.updated_at
FROM orders o
WHERE o.status IN ('OPEN', 'PARTIALLY_FILLED')
  AND o.price IS NOT NULL
  AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')
ORDER BY o.symbol, o.side,
         CASE WHEN o.side = 'BUY' THEN o.price END DESC,
         CASE WHEN o.side = 'SELL' THEN o.price END ASC,
         o.created_at;

COMMENT ON VIEW v_active_orders IS 'Active orders sorted by Price-Time Priority for matching engine';

CREATE VIEW v_user_order_summary AS
SELECT o.user_id, o.symbol,
       count(*) FILTER (WHERE o.status IN ('OPEN', 'PARTIALLY_FILLED')) AS open_orders,
       count(*) FILTER (WHERE o.status = 'FILLED') AS filled_orders,
       count(*) FILTER (WHERE o.status = 'CANCELLED') AS cancelled_orders,
       coalesce(sum(o.quantity * o.price) FILTER (WHERE o.status = 'FILLED'), 0) AS total_volume
FROM orders o
GROUP BY o.user_id, o.symbol;

COMMENT ON VIEW v_user_order_summary IS 'Summary statistics of user orders per symbol';

CREATE VIEW v_symbol_stats_24h AS
"#,
    symbol_stats_24h_query!(),
    r#";

COMMENT ON VIEW v_symbol_stats_24h IS '24-hour trading statistics per symbol';

CREATE VIEW v_monitoring_active_orders AS
SELECT o.symbol,
       count(*) FILTER (WHERE o.side = 'BUY') AS buy_orders,
       count(*) FILTER (WHERE o.side = 'SELL') AS sell_orders,
       count(*) AS total_orders,
       sum(o.quantity - o.filled_quantity) AS total_quantity
FROM orders o
WHERE o.status IN ('OPEN', 'PARTIALLY_FILLED')
GROUP BY o.symbol;

COMMENT ON VIEW v_monitoring_active_orders IS 'Monitoring view: active order counts by symbol';

CREATE VIEW v_monitoring_trade_volume_24h AS
SELECT t.symbol,
       count(*) AS trade_count,
       sum(t.quantity) AS volume,
       sum(t.quantity * t.price) AS quote_volume,
       avg(t.price) AS avg_price
FROM trades t
WHERE t.executed_at >= now() - interval '24 hours'
GROUP BY t.symbol;

COMMENT ON VIEW v_monitoring_trade_volume_24h IS 'Monitoring view: 24-hour trade volume by symbol';

CREATE VIEW v_monitoring_order_status AS
SELECT o.status,
       count(*) AS count,
       round(count(*) * 100.0 / sum(count(*)) OVER (), 2) AS percentage
FROM orders o
WHERE o.created_at >= now() - interval '24 hours'
GROUP BY o.status
ORDER BY count(*) DESC;

COMMENT ON VIEW v_monitoring_order_status IS 'Monitoring view: order status distribution (24h)';

CREATE MATERIALIZED VIEW mv_order_book_snapshot AS
SELECT o.symbol, o.side, o.price,
       sum(o.quantity - o.filled_quantity) AS total_quantity,
       count(*) AS order_count,
       now() AS last_refresh
FROM orders o
WHERE o.status IN ('OPEN', 'PARTIALLY_FILLED')
  AND o.price IS NOT NULL
  AND o.order_type NOT IN ('STOP', 'STOP_LIMIT', 'TRAILING_STOP')
GROUP BY o.symbol, o.side, o.price;

COMMENT ON MATERIALIZED VIEW mv_order_book_snapshot IS 'Materialized view of order book - refresh periodically for performance';
"#
);

const REFRESH_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION refresh_order_book_snapshot() RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT AS $fn$
BEGIN
    -- D10: CONCURRENTLY works because IDX_mv_order_book is unique.
    REFRESH MATERIALIZED VIEW CONCURRENTLY mv_order_book_snapshot;
END;
$fn$;

COMMENT ON FUNCTION refresh_order_book_snapshot() IS 'Refresh order book materialized view - call periodically or on-demand';
"#;

const COMMENTS: &str = r#"
COMMENT ON TABLE stop_orders_watchlist IS 'Active stop orders being monitored for trigger conditions';
COMMENT ON COLUMN stop_orders_watchlist.stop_price IS 'Price threshold at which stop order should be triggered';
COMMENT ON TABLE order_book_snapshots IS 'Periodic order book snapshots for recovery and auditing';
COMMENT ON COLUMN order_book_snapshots.bids IS 'JSON array of bid orders: [{price, quantity, orders: [order_ids]}]';
COMMENT ON COLUMN order_book_snapshots.asks IS 'JSON array of ask orders: [{price, quantity, orders: [order_ids]}]';
COMMENT ON COLUMN order_book_snapshots.sequence_number IS 'Monotonically increasing sequence for snapshot ordering';
"#;

const DOWN: &str = r#"
DROP TRIGGER trg_remove_stop_order_from_watchlist ON orders;
DROP TRIGGER trg_add_stop_order_to_watchlist ON orders;
DROP FUNCTION refresh_order_book_snapshot();
DROP MATERIALIZED VIEW mv_order_book_snapshot;
DROP VIEW v_monitoring_order_status;
DROP VIEW v_monitoring_trade_volume_24h;
DROP VIEW v_monitoring_active_orders;
DROP VIEW v_symbol_stats_24h;
DROP VIEW v_user_order_summary;
DROP VIEW v_active_orders;
DROP FUNCTION remove_stop_order_from_watchlist();
DROP FUNCTION add_stop_order_to_watchlist();
"#;

fn create_watchlist() -> TableCreateStatement {
    use StopOrdersWatchlist as W;
    Table::create()
        .table(W::Table)
        .col(ColumnDef::new(W::OrderId).uuid().not_null().primary_key())
        .col(ColumnDef::new(W::UserId).uuid().not_null())
        .col(ColumnDef::new(W::Symbol).string_len(20).not_null())
        .col(ColumnDef::new(W::Side).custom(OrderSide::Enum).not_null())
        .col(ColumnDef::new(W::StopPrice).decimal_len(20, 8).not_null())
        .col(ColumnDef::new(W::Quantity).decimal_len(20, 8).not_null())
        .col(
            ColumnDef::new(W::AddedAt)
                .timestamp_with_time_zone()
                .not_null()
                .default(Expr::current_timestamp()),
        )
        .to_owned()
}

fn create_snapshots() -> TableCreateStatement {
    use OrderBookSnapshots as S;
    Table::create()
        .table(S::Table)
        .col(
            ColumnDef::new(S::SnapshotId)
                .custom(Alias::new("bigserial"))
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(S::Symbol).string_len(20).not_null())
        .col(ColumnDef::new(S::Bids).json_binary().not_null())
        .col(ColumnDef::new(S::Asks).json_binary().not_null())
        .col(ColumnDef::new(S::SequenceNumber).big_integer().not_null())
        .col(
            ColumnDef::new(S::CreatedAt)
                .timestamp_with_time_zone()
                .not_null()
                .default(Expr::current_timestamp()),
        )
        .index(
            Index::create()
                .name("UQ_symbol_sequence")
                .unique()
                .col(S::Symbol)
                .col(S::SequenceNumber),
        )
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    use OrderBookSnapshots as S;
    use StopOrdersWatchlist as W;
    vec![
        Index::create()
            .name("IDX_stop_watchlist_symbol_price")
            .table(W::Table)
            .col(W::Symbol)
            .col(W::StopPrice)
            .to_owned(),
        Index::create()
            .name("IDX_stop_watchlist_user")
            .table(W::Table)
            .col(W::UserId)
            .to_owned(),
        Index::create()
            .name("IDX_snapshots_symbol_time")
            .table(S::Table)
            .col(S::Symbol)
            .col((S::CreatedAt, IndexOrder::Desc))
            .to_owned(),
        // D10: unique, so the view can be refreshed concurrently.
        Index::create()
            .name("IDX_mv_order_book")
            .table(MvOrderBookSnapshot::View)
            .unique()
            .col(MvOrderBookSnapshot::Symbol)
            .col(MvOrderBookSnapshot::Side)
            .col(MvOrderBookSnapshot::Price)
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        manager.create_table(create_watchlist()).await?;
        manager.create_table(create_snapshots()).await?;
        db.execute_unprepared(WATCHLIST_TRIGGERS).await?;
        db.execute_unprepared(VIEWS).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        db.execute_unprepared(REFRESH_FUNCTION).await?;
        db.execute_unprepared(COMMENTS).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_if_holding_rows(manager.get_connection(), GUARDED).await?;
        manager.get_connection().execute_unprepared(DOWN).await?;
        manager
            .drop_table(Table::drop().table(OrderBookSnapshots::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(StopOrdersWatchlist::Table).to_owned())
            .await?;
        Ok(())
    }
}
