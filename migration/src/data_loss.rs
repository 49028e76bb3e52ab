//! The rollback guard: no `down` or `fresh` silently drops rows.
//!
//! The policy travels with the transaction as the setting
//! `trade_engine.allow_data_loss` (set with `set_config(..., true)`, so it ends
//! with the transaction), which lets each migration's `down` check it right
//! before its `DROP`, with the tables locked, so no row can slip in between.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, FromQueryResult, Statement, Value};

use crate::m1700000002000_create_symbols_table::SEED_SYMBOLS;

/// Environment variable that allows data loss for the [`Migrator`](crate::Migrator)
/// trait methods and the CLI: `1`, `true`, `yes` or `on`.
pub const ALLOW_DATA_LOSS_ENV: &str = "MIGRATION_ALLOW_DATA_LOSS";

const POLICY_SETTING: &str = "trade_engine.allow_data_loss";

/// Whether an operation may drop tables that still hold rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataLoss {
    /// Refuse, naming each table and its row count (the default).
    #[default]
    Refuse,
    /// Drop the tables and their rows.
    Allow,
}

impl DataLoss {
    /// [`DataLoss::Allow`] when `MIGRATION_ALLOW_DATA_LOSS` is `1`, `true`,
    /// `yes` or `on` (any case), otherwise [`DataLoss::Refuse`].
    pub fn from_env() -> Self {
        match std::env::var(ALLOW_DATA_LOSS_ENV) {
            Ok(value) if is_truthy(&value) => DataLoss::Allow,
            _ => DataLoss::Refuse,
        }
    }
}

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// A table a `down` drops, and which of its rows count as data.
#[derive(Clone, Copy, Debug)]
pub(crate) enum GuardedTable {
    /// Every row is data.
    All(&'static str),
    /// `symbols`: the seed rows are the migration's own; others are data.
    SymbolsBeyondSeed,
    /// `event_outbox`: the events not yet published are data; published
    /// ones are kept only for a while anyway.
    Unpublished(&'static str),
}

impl GuardedTable {
    fn name(self) -> &'static str {
        match self {
            GuardedTable::All(name) | GuardedTable::Unpublished(name) => name,
            GuardedTable::SymbolsBeyondSeed => "symbols",
        }
    }
}

/// Every table whose rows a `fresh` would destroy.
pub(crate) const ALL_DATA_TABLES: &[GuardedTable] = &[
    GuardedTable::All("order_book_snapshots"),
    GuardedTable::All("stop_orders_watchlist"),
    GuardedTable::All("trades"),
    GuardedTable::All("orders"),
    GuardedTable::SymbolsBeyondSeed,
    GuardedTable::Unpublished("event_outbox"),
];

pub(crate) async fn set_policy<C: ConnectionTrait>(db: &C, policy: DataLoss) -> Result<(), DbErr> {
    let value = match policy {
        DataLoss::Allow => "on",
        DataLoss::Refuse => "off",
    };
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config($1, $2, true)",
        [POLICY_SETTING.into(), value.into()],
    ))
    .await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct Setting {
    value: Option<String>,
}

async fn data_loss_allowed<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    let setting = Setting::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT current_setting($1, true) AS value",
        [POLICY_SETTING.into()],
    ))
    .one(db)
    .await?;
    Ok(setting.and_then(|s| s.value).as_deref() == Some("on"))
}

#[derive(FromQueryResult)]
struct RowCount {
    rows: i64,
}

/// Fails with [`DbErr::Migration`] when any of `tables` that exists holds rows,
/// unless the transaction allows data loss. The tables are locked first
/// (ACCESS EXCLUSIVE, which the following `DROP` takes anyway), so the count
/// stays true until the transaction ends.
pub(crate) async fn refuse_if_holding_rows<C: ConnectionTrait>(
    db: &C,
    tables: &[GuardedTable],
) -> Result<(), DbErr> {
    if data_loss_allowed(db).await? {
        return Ok(());
    }
    let mut holding = Vec::new();
    for &table in tables {
        if let Some(rows) = count_data_rows(db, table).await?
            && rows > 0
        {
            let noun = if rows == 1 { "row" } else { "rows" };
            holding.push(format!("table \"{}\" holds {rows} {noun}", table.name()));
        }
    }
    if holding.is_empty() {
        return Ok(());
    }
    Err(DbErr::Migration(format!(
        "refusing to drop data: {}; nothing was changed. Set {ALLOW_DATA_LOSS_ENV}=1 \
         (or pass --allow-data-loss to the migration CLI) to drop them anyway",
        holding.join(", ")
    )))
}

/// The number of data rows in `table`, or `None` when it does not exist.
async fn count_data_rows<C: ConnectionTrait>(
    db: &C,
    table: GuardedTable,
) -> Result<Option<i64>, DbErr> {
    let exists = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_class WHERE oid = to_regclass(quote_ident(current_schema()) \
             || '.' || quote_ident($1))",
            [table.name().into()],
        ))
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    // The names are this crate's own constants, never user input.
    db.execute_unprepared(&format!(
        "LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
        table.name()
    ))
    .await?;
    let mut count = Query::select();
    count
        .expr_as(Expr::cust("count(*)"), Alias::new("rows"))
        .from(Alias::new(table.name()));
    if let GuardedTable::SymbolsBeyondSeed = table {
        let seed: Vec<Value> = SEED_SYMBOLS.iter().map(|s| s.symbol.into()).collect();
        count.and_where(Expr::col(Alias::new("symbol")).is_not_in(seed));
    }
    if let GuardedTable::Unpublished(_) = table {
        count.and_where(Expr::col(Alias::new("published_at")).is_null());
    }
    let row = RowCount::find_by_statement(db.get_database_backend().build(&count))
        .one(db)
        .await?;
    Ok(Some(row.map_or(0, |r| r.rows)))
}
