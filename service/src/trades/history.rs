//! A user's trades seen from their side, as `get_user_trade_history` shows
//! them, with offset and keyset pages.

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};
use serde::Serialize;
use uuid::Uuid;

use crate::Side;
use crate::error::Result;
use crate::market::ensure_symbol;
use crate::pagination::{Cursor, Page, Paged};

/// One trade from one participant's side.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct UserTrade {
    pub trade_id: Uuid,
    pub symbol: String,
    /// BUY when the user bought.
    pub side: Side,
    pub price: Decimal,
    pub quantity: Decimal,
    /// The user's fee, in `fee_asset`.
    pub fee: Decimal,
    pub fee_asset: String,
    /// True when the user's order was resting (the maker).
    pub is_maker: bool,
    pub executed_at: DateTime<FixedOffset>,
    /// The user's order that this trade filled.
    pub order_id: Uuid,
}

impl UserTrade {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.executed_at,
            id: self.trade_id,
        }
    }
}

// Why two branches instead of `buyer_user_id = $1 OR seller_user_id = $1` (the
// SQL function's filter): an OR cannot be served by one ordered index walk, so
// PostgreSQL either sorts every trade of the user before LIMIT, or walks
// IDX_trades_executed_at past everyone else's trades (208 ms against 0.7 ms for
// a user with 50,000 older trades, docs/query-plans.md). Each branch below walks
// one index (IDX_trades_buyer, IDX_trades_seller) in executed_at order across
// the daily partitions and stops after `$3` rows; the outer query merges the two
// short lists. No trade appears in both branches: chk_self_trade_prevention
// keeps buyer and seller apart.

/// Both pages: `$cursor` (more conditions of each branch), `$limit` (each
/// branch's row bound) and `$tail` (the outer query's bound).
macro_rules! history {
    ($cursor:literal, $limit:literal, $tail:literal) => {
        concat!(
            "
SELECT u.trade_id, u.symbol, u.side, u.price, u.quantity, u.fee, u.fee_asset, u.is_maker,
       u.executed_at, u.order_id
FROM (
    (SELECT t.trade_id, t.symbol, 'BUY'::text AS side, t.price, t.quantity,
            t.buyer_fee AS fee, t.buyer_fee_asset AS fee_asset, t.is_buyer_maker AS is_maker,
            t.executed_at, t.buyer_order_id AS order_id
     FROM trades t
     WHERE t.buyer_user_id = $1 AND ($2::varchar IS NULL OR t.symbol = $2)",
            $cursor,
            "
     ORDER BY t.executed_at DESC, t.trade_id DESC
     LIMIT ",
            $limit,
            ")
    UNION ALL
    (SELECT t.trade_id, t.symbol, 'SELL'::text, t.price, t.quantity,
            t.seller_fee, t.seller_fee_asset, NOT t.is_buyer_maker,
            t.executed_at, t.seller_order_id
     FROM trades t
     WHERE t.seller_user_id = $1 AND ($2::varchar IS NULL OR t.symbol = $2)",
            $cursor,
            "
     ORDER BY t.executed_at DESC, t.trade_id DESC
     LIMIT ",
            $limit,
            ")
) u
ORDER BY u.executed_at DESC, u.trade_id DESC
",
            $tail
        )
    };
}

/// Offset page: `$1` user, `$2` symbol or NULL, `$3` rows per branch (offset +
/// limit), `$4` limit, `$5` offset.
pub const HISTORY_PAGE: &str = history!("", "$3", "LIMIT $4 OFFSET $5");

/// Keyset page: rows strictly older than the cursor `($3 executed_at, $4
/// trade_id)`, `$5` rows. `executed_at <= $3` is redundant with the row
/// comparison but is what the index and partition pruning can use (the index
/// holds no trade_id).
const HISTORY_AFTER: &str = history!(
    "
       AND t.executed_at <= $3 AND (t.executed_at, t.trade_id) < ($3, $4)",
    "$5",
    "LIMIT $5"
);

/// The user's trades seen from their side, newest first (`executed_at DESC,
/// trade_id DESC`), optionally of one symbol.
///
/// [`Page::After`] continues below the cursor of the previous page and costs
/// the same on every page; [`Page::Offset`] reads and skips `offset` rows.
///
/// Errors: [`InvalidArgument`](crate::ServiceError::InvalidArgument) (`limit`, `offset`),
/// [`UnknownSymbol`](crate::ServiceError::UnknownSymbol).
pub async fn user_history<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    symbol: Option<&str>,
    page: Page,
) -> Result<Paged<UserTrade>> {
    let limit = page.check()?;
    let symbol_value: Value = symbol.map(str::to_owned).into();
    let now = chrono::Utc::now();
    // The last week first: when it fills the page, the page is the same as
    // over the whole table (every older trade sorts after it). Then older spans
    // of time, newest first, until the page is full: each statement is bounded
    // by constants and plans a bounded number of partitions (D15).
    let week = (now - RECENT_HISTORY).date_naive();
    let spans = std::iter::once((Some(week), None)).chain(
        crate::ids::older_spans(now, week)
            .into_iter()
            .map(|(from, to)| (from, Some(to))),
    );
    let (mut skip, cursor) = match page {
        Page::Offset { offset, .. } => (offset, None),
        Page::After { cursor, .. } => (0, Some(cursor)),
    };
    let mut items: Vec<UserTrade> = Vec::new();
    for (from, to) in spans {
        let need = limit - items.len() as u64;
        if need == 0 {
            break;
        }
        // Spans wholly newer than the cursor hold nothing the page wants.
        if let (Some(cursor), Some(from)) = (cursor, from)
            && crate::ids::day_start(from) > cursor.at
        {
            continue;
        }
        let bounds = span_bounds(from, to);
        let per_branch = i64::try_from(skip.saturating_add(need)).unwrap_or(i64::MAX);
        if skip > 0 {
            // Offset pages: a span with no more rows than are still to be
            // skipped is skipped whole, counted rather than read.
            let count = Count::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Postgres,
                with_bounds(HISTORY_COUNT, &bounds),
                [user_id.into(), symbol_value.clone(), per_branch.into()],
            ))
            .one(db)
            .await?
            .map_or(0, |c| c.n);
            let count = u64::try_from(count).unwrap_or(0);
            if count <= skip {
                skip -= count;
                continue;
            }
        }
        let (sql, values): (&str, Vec<Value>) = match cursor {
            None => (
                HISTORY_PAGE,
                vec![
                    user_id.into(),
                    symbol_value.clone(),
                    per_branch.into(),
                    (need as i64).into(),
                    i64::try_from(skip).unwrap_or(i64::MAX).into(),
                ],
            ),
            Some(cursor) => (
                HISTORY_AFTER,
                vec![
                    user_id.into(),
                    symbol_value.clone(),
                    cursor.at.into(),
                    cursor.id.into(),
                    (need as i64).into(),
                ],
            ),
        };
        let rows = UserTrade::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            with_bounds(sql, &bounds),
            values,
        ))
        .all(db)
        .await?;
        skip = 0;
        items.extend(rows);
    }
    if let (true, Some(symbol)) = (items.is_empty(), symbol) {
        ensure_symbol(db, symbol).await?;
    }
    Ok(Paged::new(items, limit, UserTrade::cursor))
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

/// How many of the user's trades a span holds, each branch capped at `$3`
/// (enough to know whether the span is wholly skipped by an offset).
const HISTORY_COUNT: &str = r#"
SELECT count(*) AS n FROM (
    (SELECT 1 FROM trades t
     WHERE t.buyer_user_id = $1 AND ($2::varchar IS NULL OR t.symbol = $2)
     ORDER BY t.executed_at DESC, t.trade_id DESC
     LIMIT $3)
    UNION ALL
    (SELECT 1 FROM trades t
     WHERE t.seller_user_id = $1 AND ($2::varchar IS NULL OR t.symbol = $2)
     ORDER BY t.executed_at DESC, t.trade_id DESC
     LIMIT $3)
) u"#;

/// The predicate a span adds to each branch, as SQL constants.
fn span_bounds(from: Option<chrono::NaiveDate>, to: Option<chrono::NaiveDate>) -> String {
    let lower = from.map_or_else(String::new, |from| {
        format!(
            "\n       AND t.executed_at >= {}",
            crate::ids::day_text(from)
        )
    });
    let upper = to.map_or_else(String::new, |to| {
        format!("\n       AND t.executed_at < {}", crate::ids::day_text(to))
    });
    format!("{lower}{upper}")
}

/// `sql` (a history statement) bounded to the last week at `now`: the first
/// span [`user_history`] reads (the benchmark's raw-SQL floor sends the same).
pub fn last_week(sql: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    with_bounds(
        sql,
        &span_bounds(Some((now - RECENT_HISTORY).date_naive()), None),
    )
}

/// How far back [`user_history`] looks before the older spans.
const RECENT_HISTORY: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Where each branch of [`HISTORY_PAGE`] and [`HISTORY_AFTER`] orders its rows.
const BRANCH_ORDER: &str = "\n     ORDER BY t.executed_at DESC, t.trade_id DESC";

/// `sql` with `predicate` (`\n       AND …`) added to both branches.
pub fn with_bounds(sql: &str, predicate: &str) -> String {
    sql.replace(BRANCH_ORDER, &format!("{predicate}{BRANCH_ORDER}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_bounds_both_branches_and_only_them() {
        for sql in [HISTORY_PAGE, HISTORY_AFTER, HISTORY_COUNT] {
            assert_eq!(sql.matches(BRANCH_ORDER).count(), 2, "{sql}");
            let now = "2026-01-08T12:00:00Z".parse().expect("an instant");
            let bounded = last_week(sql, now);
            assert_eq!(
                bounded
                    .matches("t.executed_at >= '2026-01-01 00:00:00+00'::timestamptz")
                    .count(),
                2
            );
        }
    }
}
