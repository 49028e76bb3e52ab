//! Operations for a scheduler: partition maintenance, retention, order expiry,
//! the materialized book, book snapshots, and health figures.
//!
//! Each entry point is safe to run at any rate and from several processes at
//! once (the schema's partition functions and the book lock serialize what
//! must not interleave), and logs one `tracing` event with what it did. The
//! ones that write run in a transaction of their own (a savepoint inside a
//! caller's) and are tried again on a serialization failure or deadlock, up to
//! [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS) times in total.
//!
//! | entry point | suggested schedule |
//! |---|---|
//! | [`maintain_partitions`] | daily |
//! | [`compact_trades`], [`compact_orders`] | daily (after [`maintain_partitions`]) |
//! | [`enforce_retention`] | daily or monthly, `dry_run = true` until the list is reviewed |
//! | [`expire_orders`] | every minute, and just after UTC midnight |
//! | [`trigger_reached_stops`] | every minute |
//! | [`refresh_order_book`] | every few seconds, for readers of `mv_order_book_snapshot` |
//! | [`snapshot_order_books`] | as recovery and audit need |
//! | [`health`] | for dashboards and readiness checks |
//! | [`gauges`] | on every metrics scrape |
//!
//! ```no_run
//! use service::{maintenance, ServiceError};
//!
//! # async fn nightly(db: &sea_orm::DatabaseConnection) -> Result<(), ServiceError> {
//! let partitions = maintenance::maintain_partitions(db).await?;
//! let due = maintenance::enforce_retention(db, true).await?; // a dry run lists, never drops
//! let expired = maintenance::expire_orders(db).await?;
//! let snapshots = maintenance::snapshot_order_books(db, 100).await?;
//! # let _ = (partitions, due, expired, snapshots); Ok(()) }
//! ```

mod compaction;
mod gauges;
mod snapshot;

pub use compaction::{
    MergedMonth, MergedYear, ORDER_COPY_BATCH, compact_orders, compact_trades, merge_orders_year,
    merge_trades_month,
};
pub use gauges::{DEFAULT_ROWS_CAP, Gauges, TableGauges, gauges};
pub use snapshot::snapshot_order_books;

use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Result, ServiceError};
use crate::orders::PlacementLimits;
use crate::retry;

pub(crate) use crate::sql::statement;

/// One partitioned table's ranged partitions, as `check_partition_health()`
/// reports them (the default partition is not counted, D5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct PartitionHealth {
    /// `orders` or `trades`.
    pub parent_table: String,
    pub partition_count: i64,
    /// By name, which sorts by date (`orders_2026_11`, `trades_2026_11_25`).
    pub oldest_partition: Option<String>,
    pub newest_partition: Option<String>,
}

const PARTITION_HEALTH: &str = "SELECT parent_table, partition_count, oldest_partition,
        newest_partition
    FROM check_partition_health()";

async fn partition_health<C: ConnectionTrait>(db: &C) -> Result<Vec<PartitionHealth>> {
    Ok(
        PartitionHealth::find_by_statement(statement(PARTITION_HEALTH, []))
            .all(db)
            .await?,
    )
}

/// Makes sure the partitions ahead exist (`maintain_partitions()`: orders for
/// this month and the next 3, trades for today and the next 7 days; it never
/// drops anything), then returns the partition health.
pub async fn maintain_partitions<C>(db: &C) -> Result<Vec<PartitionHealth>>
where
    C: ConnectionTrait + TransactionTrait,
{
    retry::in_transaction!(db, |txn| {
        txn.execute_raw(statement("SELECT maintain_partitions()", []))
            .await
            .map_err(ServiceError::from)
    })?;
    let health = partition_health(db).await?;
    for table in &health {
        tracing::info!(
            parent_table = %table.parent_table,
            partitions = table.partition_count,
            oldest = table.oldest_partition.as_deref().unwrap_or(""),
            newest = table.newest_partition.as_deref().unwrap_or(""),
            "partitions maintained"
        );
    }
    Ok(health)
}

/// A partition wholly older than its table's retention
/// (`partition_retention_config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct RetiredPartition {
    pub partition_name: String,
    pub parent_table: String,
    /// The partition's upper bound: every row in it is older.
    pub range_end: DateTime<FixedOffset>,
    /// False on a dry run.
    pub dropped: bool,
}

const RETENTION: &str = "SELECT partition_name, parent_table, range_end, dropped
    FROM enforce_partition_retention($1)";

#[derive(FromQueryResult)]
struct Pruned {
    pruned: i64,
}

/// Deletes the stored candles (`trade_candles`, migration 9) wholly older than
/// the oldest trade `trades` can still hold, once retention dropped the
/// partitions they summed; returns how many. [`enforce_retention`] runs it
/// after a drop, the api's hourly job too (for retention run from cron).
pub async fn prune_trade_candles<C: ConnectionTrait>(db: &C) -> Result<i64> {
    let pruned = Pruned::find_by_statement(statement("SELECT prune_trade_candles() AS pruned", []))
        .one(db)
        .await?
        .map_or(0, |p| p.pruned);
    if pruned > 0 {
        tracing::info!(pruned, "candles past retention deleted");
    }
    Ok(pruned)
}

/// The partitions past retention (D14). With `dry_run` they are only listed;
/// without, they are dropped, with their rows, in this call's transaction.
pub async fn enforce_retention<C>(db: &C, dry_run: bool) -> Result<Vec<RetiredPartition>>
where
    C: ConnectionTrait + TransactionTrait,
{
    let retired = retry::in_transaction!(db, |txn| {
        let retired = RetiredPartition::find_by_statement(statement(RETENTION, [dry_run.into()]))
            .all(&txn)
            .await
            .map_err(ServiceError::from)?;
        // The candles of the dropped trades go in the same transaction.
        if !dry_run {
            prune_trade_candles(&txn).await?;
        }
        Ok::<_, ServiceError>(retired)
    })?;
    for partition in &retired {
        tracing::info!(
            partition = %partition.partition_name,
            parent_table = %partition.parent_table,
            range_end = %partition.range_end,
            dropped = partition.dropped,
            "partition past retention"
        );
    }
    tracing::info!(dry_run, partitions = retired.len(), "retention enforced");
    Ok(retired)
}

/// Expires the orders that are due (DAY orders from before today's UTC
/// midnight, any order past `expires_at`) through [`crate::orders::expire_due`],
/// and returns their ids.
pub async fn expire_orders<C>(db: &C) -> Result<Vec<Uuid>>
where
    C: ConnectionTrait + TransactionTrait,
{
    let expired = crate::orders::expire_due(db).await?;
    tracing::info!(expired = expired.len(), "order expiry run");
    Ok(expired)
}

/// The ACTIVE symbols with stop orders waiting PENDING: reached by the price,
/// left untriggered by a placement's `max_triggered_stops`.
const SYMBOLS_WITH_PENDING_STOPS: &str = "SELECT s.symbol FROM symbols s
    WHERE s.status = 'ACTIVE' AND EXISTS (
        SELECT 1 FROM orders o
        WHERE o.symbol = s.symbol AND o.status = 'PENDING'
          AND o.order_type IN ('STOP', 'STOP_LIMIT'))
    ORDER BY s.symbol";

#[derive(FromQueryResult)]
struct SymbolName {
    symbol: String,
}

/// Triggers the stop orders a placement left PENDING past its
/// `max_triggered_stops` (see [`crate::orders`]), so a quiet market does not
/// strand them, within the default [`PlacementLimits`]; see
/// [`trigger_reached_stops_with`].
pub async fn trigger_reached_stops<C>(db: &C) -> Result<usize>
where
    C: ConnectionTrait + TransactionTrait,
{
    trigger_reached_stops_with(db, &PlacementLimits::default()).await
}

/// For each ACTIVE symbol with PENDING stop orders, in a transaction of its
/// own holding the symbol's book lock: triggers them in rule 7's order and
/// matches each, continuing the cascade as a placement would, at most
/// `limits.max_triggered_stops` per symbol per call (the rest wait for the next
/// call). Returns how many triggered. A HALTED symbol's stops wait until it
/// trades again.
pub async fn trigger_reached_stops_with<C>(db: &C, limits: &PlacementLimits) -> Result<usize>
where
    C: ConnectionTrait + TransactionTrait,
{
    let symbols = SymbolName::find_by_statement(statement(SYMBOLS_WITH_PENDING_STOPS, []))
        .all(db)
        .await?;
    let mut triggered = 0;
    for SymbolName { symbol } in &symbols {
        let count = retry::in_transaction!(db, |txn| {
            crate::orders::continue_stops(&txn, symbol, limits).await
        })?;
        tracing::info!(symbol, triggered = count, "pending stop orders triggered");
        triggered += count;
    }
    tracing::info!(symbols = symbols.len(), triggered, "pending stop run");
    Ok(triggered)
}

/// Refreshes `mv_order_book_snapshot` concurrently (D10): its readers are not
/// blocked while it is rebuilt.
pub async fn refresh_order_book<C>(db: &C) -> Result<()>
where
    C: ConnectionTrait + TransactionTrait,
{
    let started = Instant::now();
    retry::in_transaction!(db, |txn| {
        txn.execute_raw(statement("SELECT refresh_order_book_snapshot()", []))
            .await
            .map_err(ServiceError::from)
    })?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "materialized order book refreshed"
    );
    Ok(())
}

/// Sessions on the current database, as `check_db_connections()` counts them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Connections {
    pub active_connections: i32,
    pub idle_connections: i32,
    /// The server's `max_connections`, shared by all its databases.
    pub max_connections: i32,
}

/// One table of the schema; a partitioned table with the totals of its
/// partitions (D11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct TableSize {
    pub table_name: String,
    /// Live rows as the statistics collector last counted them (an estimate).
    pub row_count: i64,
    /// Table, indexes and TOAST, as `pg_size_pretty` writes it (`8192 bytes`, `12 MB`).
    pub total_size: String,
}

/// The database's health figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub connections: Connections,
    /// Largest first.
    pub tables: Vec<TableSize>,
    pub partitions: Vec<PartitionHealth>,
}

const CONNECTIONS: &str =
    "SELECT active_connections, idle_connections, max_connections FROM check_db_connections()";

const TABLE_SIZES: &str = "SELECT table_name, row_count, total_size FROM check_table_sizes()";

/// Connections, table sizes and partition health.
pub async fn health<C: ConnectionTrait>(db: &C) -> Result<Health> {
    let connections = Connections::find_by_statement(statement(CONNECTIONS, []))
        .one(db)
        .await?
        .ok_or_else(|| {
            ServiceError::Database(sea_orm::DbErr::RecordNotFound(
                "check_db_connections() returned no row".into(),
            ))
        })?;
    let tables = TableSize::find_by_statement(statement(TABLE_SIZES, []))
        .all(db)
        .await?;
    let partitions = partition_health(db).await?;
    tracing::info!(
        active_connections = connections.active_connections,
        idle_connections = connections.idle_connections,
        max_connections = connections.max_connections,
        tables = tables.len(),
        "health checked"
    );
    Ok(Health {
        connections,
        tables,
        partitions,
    })
}
