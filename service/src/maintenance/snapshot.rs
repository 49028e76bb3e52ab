//! Order-book snapshots into `order_book_snapshots`, one per ACTIVE symbol,
//! each taken under the symbol's book lock.

use entity::{order_book_snapshots, symbols};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use super::statement;
use crate::SymbolStatus;
use crate::error::{Result, ServiceError};
use crate::market::check_depth;

#[derive(FromQueryResult)]
struct SnapshotLevel {
    side: String,
    price: Decimal,
    quantity: Decimal,
    orders: Vec<Uuid>,
}

/// The depth walk of `market::depth`, with each level's order ids in time
/// priority (created_at, order_id).
const LEVELS: &str = concat!(
    "
(SELECT 'BUY'::text AS side, o.price, sum(o.quantity - o.filled_quantity) AS quantity,
        array_agg(o.order_id ORDER BY o.created_at, o.order_id) AS orders
 FROM orders o
 WHERE o.symbol = $1 AND o.side = 'BUY' AND ",
    crate::sql::resting!("o"),
    "
 GROUP BY o.price
 ORDER BY o.price DESC
 LIMIT $2)
UNION ALL
(SELECT 'SELL'::text, o.price, sum(o.quantity - o.filled_quantity),
        array_agg(o.order_id ORDER BY o.created_at, o.order_id)
 FROM orders o
 WHERE o.symbol = $1 AND o.side = 'SELL' AND ",
    crate::sql::resting!("o"),
    "
 GROUP BY o.price
 ORDER BY o.price ASC
 LIMIT $2)"
);

/// The next sequence number is read in the insert itself (one step down
/// `UQ_symbol_sequence`), after the lock, so it sees every earlier snapshot of
/// the symbol.
const INSERT: &str = r#"
INSERT INTO order_book_snapshots (symbol, bids, asks, sequence_number)
SELECT $1, $2::jsonb, $3::jsonb, coalesce(max(s.sequence_number), 0) + 1
FROM order_book_snapshots s
WHERE s.symbol = $1
RETURNING snapshot_id, symbol, bids, asks, sequence_number, created_at"#;

/// Writes one snapshot of the best `depth` levels (1..=1000) of each side for
/// every ACTIVE symbol, in symbol order, and returns the rows written.
///
/// Each symbol's snapshot is its own transaction (a savepoint inside a
/// caller's transaction; tried again on contention) holding the symbol's book lock, so the book cannot
/// change under a placement while it is read, and `sequence_number` is the
/// symbol's previous maximum + 1: strictly increasing, and unique when two
/// snapshotters race (under READ COMMITTED; a caller's REPEATABLE READ
/// transaction would read a stale maximum and hit `UQ_symbol_sequence`).
///
/// `bids` and `asks` are `[{"price": "…", "quantity": "…", "orders": ["<id>", …]}]`,
/// best level first, decimals as strings without trailing zeros.
///
/// Errors: [`ServiceError::InvalidArgument`] (`depth`).
pub async fn snapshot_order_books<C>(db: &C, depth: u64) -> Result<Vec<order_book_snapshots::Model>>
where
    C: ConnectionTrait + TransactionTrait,
{
    check_depth(depth)?;
    let active = symbols::Entity::find()
        .filter(symbols::Column::Status.eq(SymbolStatus::Active))
        .order_by_asc(symbols::Column::Symbol)
        .all(db)
        .await?;
    let mut snapshots = Vec::with_capacity(active.len());
    for symbol in active {
        let snapshot = crate::retry::in_transaction!(db, |txn| {
            snapshot_symbol(&txn, &symbol.symbol, depth).await
        })?;
        tracing::info!(
            symbol = %symbol.symbol,
            sequence_number = snapshot.sequence_number,
            "order book snapshot written"
        );
        snapshots.push(snapshot);
    }
    tracing::info!(symbols = snapshots.len(), depth, "order books snapshotted");
    Ok(snapshots)
}

/// One symbol's snapshot, in `txn` (see [`snapshot_order_books`]).
async fn snapshot_symbol<C: ConnectionTrait>(
    txn: &C,
    symbol: &str,
    depth: u64,
) -> Result<order_book_snapshots::Model> {
    // The placements' book lock: while a snapshot holds it, no placement on the
    // symbol runs, and two snapshotters of one symbol take turns.
    crate::orders::store::lock_book(txn, symbol).await?;
    let levels =
        SnapshotLevel::find_by_statement(statement(LEVELS, [symbol.into(), (depth as i64).into()]))
            .all(txn)
            .await?;
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for level in levels {
        let entry = json!({
            "price": level.price.normalize().to_string(),
            "quantity": level.quantity.normalize().to_string(),
            "orders": level.orders,
        });
        if level.side == "BUY" {
            bids.push(entry);
        } else {
            asks.push(entry);
        }
    }
    order_book_snapshots::Entity::find()
        .from_raw_sql(statement(
            INSERT,
            [
                symbol.into(),
                serde_json::Value::Array(bids).into(),
                serde_json::Value::Array(asks).into(),
            ],
        ))
        .one(txn)
        .await?
        .ok_or_else(|| ServiceError::Database(sea_orm::DbErr::RecordNotInserted))
}
