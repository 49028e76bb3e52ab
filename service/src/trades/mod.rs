//! Trades: one by id, a symbol's recent trades, a user's history seen from
//! their side, and the fills of one order.
//!
//! `trades` is partitioned by day on `executed_at`, and its primary key is
//! `(trade_id, executed_at)`. Reads that know a time bound say so in SQL, so
//! PostgreSQL skips the partitions outside it; reads that do not (a trade by id
//! alone) probe every partition's index once.
//!
//! ```no_run
//! use service::trades;
//! use service::{Page, ServiceError};
//! use uuid::Uuid;
//!
//! # async fn example(db: &sea_orm::DatabaseConnection, user: Uuid) -> Result<(), ServiceError> {
//! let tape = trades::recent(db, "BTC/USDT", 50).await?;
//! let first = trades::user_history(db, user, None, Page::first(50)).await?;
//! if let Some(cursor) = first.next {
//!     // The next page starts below the last row read, whatever the page number.
//!     let _second = trades::user_history(db, user, None, Page::After { limit: 50, cursor }).await?;
//! }
//! # let _ = tape; Ok(()) }
//! ```

pub(crate) mod history;

pub use history::{UserTrade, user_history};

use entity::trades;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::Side;
use crate::error::{Result, ServiceError};
use crate::market::ensure_symbol;
use crate::pagination::MAX_LIMIT;

/// One trade. Errors: [`ServiceError::NotFound`].
///
/// The id's time bounds ([`crate::ids::find_by_id`]) name the partition, so
/// one partition is planned and probed, not every day's `trades_pkey` copy.
pub async fn get<C: ConnectionTrait>(db: &C, trade_id: Uuid) -> Result<trades::Model> {
    crate::ids::find_by_id::<trades::Entity, _>(
        db,
        trades::Column::TradeId,
        trades::Column::ExecutedAt,
        trade_id,
        false,
    )
    .await?
    .ok_or_else(|| ServiceError::NotFound {
        entity: "trade",
        id: trade_id.to_string(),
    })
}

/// The symbol's newest `limit` trades (1..=[`MAX_LIMIT`]), newest first
/// (`executed_at DESC, trade_id DESC`).
///
/// Walks `IDX_trades_symbol_time (symbol, executed_at DESC)` of each day and
/// merges the days in order, so it reads `limit` rows, not the symbol's history.
/// It looks at the trades since yesterday's UTC midnight first (a constant
/// bound: two or three daily partitions planned and locked, in a generic plan
/// too), and only when they are fewer than `limit` at older spans of time, newest
/// first ([`crate::ids::older_spans`]), until it has `limit` trades: never the
/// whole table in one statement (D15).
///
/// Errors: [`ServiceError::UnknownSymbol`], [`ServiceError::InvalidArgument`]
/// (`limit`).
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    limit: u64,
) -> Result<Vec<trades::Model>> {
    check_limit(limit)?;
    let now = chrono::Utc::now();
    let since = recent_since(now);
    let mut found = trades::Entity::find()
        .from_raw_sql(recent_statement(symbol, limit, now))
        .all(db)
        .await?;
    for (from, to) in crate::ids::older_spans(now, since) {
        let missing = limit - found.len() as u64;
        if missing == 0 {
            break;
        }
        let mut older = tape(symbol, missing);
        if let Some(from) = from {
            older = older.filter(
                Expr::col(trades::Column::ExecutedAt).gte(Expr::cust(crate::ids::day_text(from))),
            );
        }
        older = older
            .filter(Expr::col(trades::Column::ExecutedAt).lt(Expr::cust(crate::ids::day_text(to))));
        found.extend(older.all(db).await?);
    }
    let tape = found;
    // An empty tape is the one case where the symbol may not exist; asking
    // only then keeps the common case at one round trip.
    if tape.is_empty() {
        ensure_symbol(db, symbol).await?;
    }
    Ok(tape)
}

/// The tape of `symbol`, newest first, `limit` trades.
fn tape(symbol: &str, limit: u64) -> sea_orm::Select<trades::Entity> {
    trades::Entity::find()
        .filter(trades::Column::Symbol.eq(symbol))
        .order_by_desc(trades::Column::ExecutedAt)
        .order_by_desc(trades::Column::TradeId)
        .limit(limit)
}

/// Yesterday's UTC midnight at `now`: where [`recent`] looks first.
fn recent_since(now: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
    (now - chrono::TimeDelta::days(1)).date_naive()
}

/// The first statement [`recent`] sends at `now` (the trades since
/// yesterday's UTC midnight); the benchmark's raw-SQL floor sends the same.
pub fn recent_statement(
    symbol: &str,
    limit: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> sea_orm::Statement {
    let since = crate::ids::day_text(recent_since(now));
    tape(symbol, limit)
        .filter(Expr::col(trades::Column::ExecutedAt).gte(Expr::cust(since)))
        .build(sea_orm::DbBackend::Postgres)
}

/// The fills of the user's order, in execution order (`executed_at`, then
/// `trade_id`).
///
/// Errors: [`ServiceError::NotFound`], [`ServiceError::Forbidden`] (another
/// user's order).
pub async fn for_order<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<Vec<trades::Model>> {
    let order = crate::orders::get(db, user_id, order_id).await?;
    let column = match order.side {
        Side::Buy => trades::Column::BuyerOrderId,
        Side::Sell => trades::Column::SellerOrderId,
    };
    Ok(trades::Entity::find()
        .filter(column.eq(order_id))
        // A fill never precedes its order: this bound skips the older days.
        .filter(trades::Column::ExecutedAt.gte(order.created_at))
        .order_by_asc(trades::Column::ExecutedAt)
        .order_by_asc(trades::Column::TradeId)
        .all(db)
        .await?)
}

fn check_limit(limit: u64) -> Result<()> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(ServiceError::argument(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        ))
    }
}
