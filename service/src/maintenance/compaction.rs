//! Merging the daily `trades` partitions of old months into monthly ones, and
//! the monthly `orders` partitions of old years into yearly ones (D15):
//! the partition count stays bounded at any age.
//!
//! Each step of a month's merge is its own transaction ([`Pool::run_unbounded`]:
//! no statement timeout, and safe behind a transaction-mode PgBouncer), so
//! readers and writers go on meanwhile and a stopped merge resumes at the next
//! run. The steps are the schema's `merge_trades_*` functions (migration 7) and,
//! for the yearly `orders` partitions, `merge_orders_*` (migration 8).

use chrono::NaiveDate;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use serde::Serialize;

use super::statement;
use crate::error::{Result, ServiceError};
use crate::pooling::Pool;

/// One month merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergedMonth {
    /// The first day of the month.
    pub month: NaiveDate,
    /// Daily partitions copied (0 when the month was already merged).
    pub days: usize,
    /// Rows copied from them (rows written during the merge reach the monthly
    /// partition through the schema's mirror trigger and are not counted).
    pub rows_copied: i64,
    /// What `merge_trades_switch` reported.
    pub outcome: String,
}

#[derive(FromQueryResult)]
struct Month {
    month: NaiveDate,
}

#[derive(FromQueryResult)]
struct Name {
    name: String,
}

#[derive(FromQueryResult)]
struct Copied {
    rows: i64,
}

#[derive(FromQueryResult)]
struct Outcome {
    outcome: String,
}

/// `$1`: days kept daily, NULL for the database's setting
/// (`trade_engine.trades_daily_days`, 90 unset).
pub const CANDIDATES: &str = "SELECT month FROM merge_trades_candidates($1::integer) AS month";
const PREPARE: &str = "SELECT name FROM merge_trades_prepare($1) AS name";
const COPY: &str = "SELECT merge_trades_copy($1, $2) AS rows";
const VALIDATE: &str = "SELECT merge_trades_validate($1)";
const SWITCH: &str = "SELECT merge_trades_switch($1) AS outcome";

/// How often the switch tries for its lock before leaving the month to the
/// next run (the switch waits at most its `lock_timeout` each time, so a
/// long-running reader does not hold every other reader behind the switch).
const SWITCH_ATTEMPTS: usize = 3;

/// Merges every month whose days all lie before the daily window (`daily_days`,
/// `None`: the database's setting), oldest first.
pub async fn compact_trades(pool: &Pool, daily_days: Option<i32>) -> Result<Vec<MergedMonth>> {
    let months = pool
        .run_unbounded(async |db| {
            Month::find_by_statement(statement(CANDIDATES, [daily_days.into()]))
                .all(db)
                .await
        })
        .await?;
    let mut merged = Vec::with_capacity(months.len());
    for Month { month } in months {
        merged.push(merge_trades_month(pool, month).await?);
    }
    tracing::info!(months = merged.len(), "trades partitions compacted");
    Ok(merged)
}

/// Merges the daily `trades` partitions of the month containing `month` into
/// `trades_YYYY_MM`. Resumes a merge that was stopped; a month already merged
/// is left as it is.
///
/// Errors: [`ServiceError::Database`], e.g. when the switch did not get its
/// lock in [`SWITCH_ATTEMPTS`] tries (the month is then merged by a later run).
pub async fn merge_trades_month(pool: &Pool, month: NaiveDate) -> Result<MergedMonth> {
    let month_value = || Value::from(month);
    let days = pool
        .run_unbounded(async |db| {
            Name::find_by_statement(statement(PREPARE, [month_value()]))
                .all(db)
                .await
        })
        .await?;
    let mut rows_copied = 0;
    for Name { name } in &days {
        let copied = pool
            .run_unbounded(async |db| {
                Copied::find_by_statement(statement(COPY, [month_value(), name.as_str().into()]))
                    .one(db)
                    .await
            })
            .await?;
        rows_copied += copied.map_or(0, |c| c.rows);
    }
    pool.run_unbounded(async |db| {
        db.execute_raw(statement(VALIDATE, [month_value()]))
            .await
            .map(|_| ())
    })
    .await?;
    let outcome = switch_with(pool, SWITCH, month).await?;
    tracing::info!(%month, days = days.len(), rows_copied, %outcome, "trades month merged");
    Ok(MergedMonth {
        month,
        days: days.len(),
        rows_copied,
        outcome,
    })
}

/// Runs a merge's switch (`sql`, `$1` = `date`), again on a lock timeout.
async fn switch_with(pool: &Pool, sql: &str, date: NaiveDate) -> Result<String> {
    let mut last = None;
    for _ in 0..SWITCH_ATTEMPTS {
        let attempt = pool
            .run_unbounded(async |db| {
                Outcome::find_by_statement(statement(sql, [Value::from(date)]))
                    .one(db)
                    .await
            })
            .await;
        match attempt {
            Ok(outcome) => return Ok(outcome.map_or_else(String::new, |o| o.outcome)),
            // lock_not_available: readers held trades past the lock timeout.
            Err(err) if crate::error::sqlstate(&err).as_deref() == Some("55P03") => {
                last = Some(err);
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(last.map_or_else(
        || ServiceError::Database(sea_orm::DbErr::Custom("no switch attempt".into())),
        ServiceError::Database,
    ))
}

/// One year of `orders` merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergedYear {
    /// January 1st of the year.
    pub year: NaiveDate,
    /// Monthly partitions copied (0 when the year was already merged).
    pub months: usize,
    /// Rows copied from them (rows written during the merge reach the yearly
    /// partition through the schema's mirror trigger and are not counted).
    pub rows_copied: i64,
    /// What `merge_orders_switch` reported.
    pub outcome: String,
}

#[derive(FromQueryResult)]
struct Year {
    year: NaiveDate,
}

#[derive(FromQueryResult)]
struct Batch {
    last_id: Option<uuid::Uuid>,
    copied: Option<i64>,
}

/// `$1`: full months kept monthly, NULL for the database's setting
/// (`trade_engine.orders_monthly_months`, 3 unset).
pub const ORDER_CANDIDATES: &str = "SELECT year FROM merge_orders_candidates($1::integer) AS year";
const ORDER_PREPARE: &str = "SELECT name FROM merge_orders_prepare($1) AS name";
const ORDER_COPY: &str = "SELECT last_id, copied FROM merge_orders_copy($1, $2, $3, $4)";
const ORDER_VALIDATE: &str = "SELECT merge_orders_validate($1)";
const ORDER_SWITCH: &str = "SELECT merge_orders_switch($1) AS outcome";

/// Rows of a monthly `orders` partition copied per transaction: a fill or
/// cancel of an old resting order waits for one batch at most.
pub const ORDER_COPY_BATCH: i32 = 10_000;

/// Merges the monthly `orders` partitions of every year that ended before the
/// monthly window (`monthly_months` full months, `None`: the database's
/// setting) into one yearly partition each, oldest first.
pub async fn compact_orders(pool: &Pool, monthly_months: Option<i32>) -> Result<Vec<MergedYear>> {
    let years = pool
        .run_unbounded(async |db| {
            Year::find_by_statement(statement(ORDER_CANDIDATES, [monthly_months.into()]))
                .all(db)
                .await
        })
        .await?;
    let mut merged = Vec::with_capacity(years.len());
    for Year { year } in years {
        merged.push(merge_orders_year(pool, year).await?);
    }
    tracing::info!(years = merged.len(), "orders partitions compacted");
    Ok(merged)
}

/// Merges the monthly `orders` partitions of the year containing `year` into
/// `orders_YYYY`. Resumes a merge that was stopped; a year already merged is
/// left as it is.
///
/// Errors: [`ServiceError::Database`], e.g. when the switch did not get its
/// lock in [`SWITCH_ATTEMPTS`] tries (the year is then merged by a later run).
pub async fn merge_orders_year(pool: &Pool, year: NaiveDate) -> Result<MergedYear> {
    let year_value = || Value::from(year);
    let months = pool
        .run_unbounded(async |db| {
            Name::find_by_statement(statement(ORDER_PREPARE, [year_value()]))
                .all(db)
                .await
        })
        .await?;
    let mut rows_copied = 0;
    for Name { name } in &months {
        let mut after: Option<uuid::Uuid> = None;
        loop {
            let batch = pool
                .run_unbounded(async |db| {
                    Batch::find_by_statement(statement(
                        ORDER_COPY,
                        [
                            year_value(),
                            name.as_str().into(),
                            after.into(),
                            ORDER_COPY_BATCH.into(),
                        ],
                    ))
                    .one(db)
                    .await
                })
                .await?;
            let Some(Batch {
                last_id: Some(last),
                copied,
            }) = batch
            else {
                break;
            };
            rows_copied += copied.unwrap_or(0);
            after = Some(last);
        }
    }
    pool.run_unbounded(async |db| {
        db.execute_raw(statement(ORDER_VALIDATE, [year_value()]))
            .await
            .map(|_| ())
    })
    .await?;
    let outcome = switch_with(pool, ORDER_SWITCH, year).await?;
    tracing::info!(%year, months = months.len(), rows_copied, %outcome, "orders year merged");
    Ok(MergedYear {
        year,
        months: months.len(),
        rows_copied,
        outcome,
    })
}
