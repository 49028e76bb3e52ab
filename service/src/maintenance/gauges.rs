//! What an operator watches of the partitioned tables, for a metrics scrape:
//! how far ahead partitions exist, rows that fell into a default partition,
//! partitions due for retention, sizes, and the oldest resting order.
//!
//! Everything is read from the catalog and the schema's own functions, plus
//! two bounded counts (the default partitions, capped) and one walk of the
//! resting orders' status index; a scrape costs a few milliseconds.

use chrono::{DateTime, FixedOffset};
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde::Serialize;

use super::statement;
use crate::error::Result;

/// One partitioned table (`orders` or `trades`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct TableGauges {
    pub table_name: String,
    /// Ranged partitions (the default one not counted).
    pub partitions: i64,
    /// Of those, the ones that start after now.
    pub ahead: i64,
    /// The upper bound of the newest partition: rows up to here have a
    /// partition of their own. `None` without any ranged partition.
    pub covered_until: Option<DateTime<FixedOffset>>,
    /// Rows in `<table>_default`, counted up to [`DEFAULT_ROWS_CAP`].
    pub default_rows: i64,
    /// Partitions `enforce_partition_retention()` would drop now.
    pub due_for_retention: i64,
    /// Heap (with TOAST) of every partition, in bytes.
    pub table_bytes: i64,
    /// Indexes of every partition, in bytes.
    pub index_bytes: i64,
}

/// Everything a scrape reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gauges {
    pub tables: Vec<TableGauges>,
    /// `created_at` of the oldest OPEN or PARTIALLY_FILLED order.
    pub oldest_resting_order: Option<DateTime<FixedOffset>>,
}

/// The most rows of a default partition counted: enough to alert on, without
/// reading a default partition that has grown large.
pub const DEFAULT_ROWS_CAP: i64 = 1_000_000;

const TABLES: &str = r#"
WITH due AS (SELECT parent_table, count(*) AS n FROM enforce_partition_retention(true) GROUP BY 1)
SELECT p.table_name,
       (SELECT count(*) FROM range_partitions(p.table_name)) AS partitions,
       (SELECT count(*) FROM range_partitions(p.table_name) WHERE range_start > now()) AS ahead,
       (SELECT max(range_end) FROM range_partitions(p.table_name)) AS covered_until,
       CASE p.table_name
           WHEN 'orders' THEN (SELECT count(*) FROM (SELECT 1 FROM orders_default LIMIT $1) d)
           ELSE (SELECT count(*) FROM (SELECT 1 FROM trades_default LIMIT $1) d)
       END AS default_rows,
       coalesce((SELECT n FROM due WHERE due.parent_table = p.table_name), 0) AS due_for_retention,
       (SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint
        FROM pg_partition_tree(to_regclass(format('%I.%I', current_schema(), p.table_name))) t) AS table_bytes,
       (SELECT coalesce(sum(pg_indexes_size(t.relid)), 0)::bigint
        FROM pg_partition_tree(to_regclass(format('%I.%I', current_schema(), p.table_name))) t) AS index_bytes
FROM (VALUES ('orders'), ('trades')) AS p(table_name)
ORDER BY p.table_name"#;

#[derive(FromQueryResult)]
struct Oldest {
    oldest: Option<DateTime<FixedOffset>>,
}

/// Walks `IDX_orders_status_created` of each partition from its oldest end.
const OLDEST_RESTING: &str = "SELECT min(created_at) AS oldest FROM orders
    WHERE status IN ('OPEN', 'PARTIALLY_FILLED')";

/// The partition and book figures a metrics scrape reports.
pub async fn gauges<C: ConnectionTrait>(db: &C) -> Result<Gauges> {
    let tables = TableGauges::find_by_statement(statement(TABLES, [DEFAULT_ROWS_CAP.into()]))
        .all(db)
        .await?;
    let oldest_resting_order = Oldest::find_by_statement(statement(OLDEST_RESTING, []))
        .one(db)
        .await?
        .and_then(|row| row.oldest);
    Ok(Gauges {
        tables,
        oldest_resting_order,
    })
}
