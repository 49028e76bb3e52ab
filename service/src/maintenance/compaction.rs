//! Merging the daily `trades` partitions of old months into monthly ones (D15):
//! the partition count stays bounded at any age.
//!
//! Each step of a month's merge is its own transaction ([`Pool::run_unbounded`]:
//! no statement timeout, and safe behind a transaction-mode PgBouncer), so
//! readers and writers go on meanwhile and a stopped merge resumes at the next
//! run. The steps are the schema's `merge_trades_*` functions (migration 7).

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
    let outcome = switch(pool, month).await?;
    tracing::info!(%month, days = days.len(), rows_copied, %outcome, "trades month merged");
    Ok(MergedMonth {
        month,
        days: days.len(),
        rows_copied,
        outcome,
    })
}

async fn switch(pool: &Pool, month: NaiveDate) -> Result<String> {
    let mut last = None;
    for _ in 0..SWITCH_ATTEMPTS {
        let attempt = pool
            .run_unbounded(async |db| {
                Outcome::find_by_statement(statement(SWITCH, [Value::from(month)]))
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
