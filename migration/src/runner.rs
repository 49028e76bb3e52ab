//! Runs a migrator operation under the migration lock, in one transaction.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement, TransactionTrait};

use crate::Unguarded;
use crate::data_loss::{self, DataLoss};

/// Key of the transaction-scoped advisory lock every migrator operation holds
/// (`pg_advisory_xact_lock`): the ASCII bytes of `tradmigr`. A second runner
/// waits on it, then finds nothing left to do.
pub const MIGRATION_LOCK_KEY: i64 = 0x7472_6164_6d69_6772;

/// A migrator operation, as the `sea-orm-cli migrate` subcommands name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Apply pending migrations: all of them, or at most this many.
    Up(Option<u32>),
    /// Roll back applied migrations, newest first: all of them, or this many.
    Down(Option<u32>),
    /// Drop every table and enum type of the schema, then apply all migrations.
    Fresh,
    /// Roll back every applied migration, then apply all migrations.
    Refresh,
    /// Roll back every applied migration and drop the migrations table.
    Reset,
    /// Log each migration with its status.
    Status,
}

/// Runs `operation` on `db` holding the migration lock, inside one transaction
/// (a savepoint when `db` is already a transaction): either all of it happens
/// or none of it does.
///
/// With [`DataLoss::Refuse`], an operation that would drop a table holding rows
/// fails with [`DbErr::Migration`] naming the table and its row count, before
/// anything is changed.
pub async fn run<'c, C>(db: C, operation: Operation, data_loss: DataLoss) -> Result<(), DbErr>
where
    C: IntoSchemaManagerConnection<'c>,
{
    let db = db.into_database_executor();
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await?;
    data_loss::set_policy(&txn, data_loss).await?;

    // A run that rolls back several migrations checks all of them first, so the
    // refusal names every table at stake (each `down` checks again, locked).
    let rolled_back = match operation {
        Operation::Down(steps) => steps,
        Operation::Reset | Operation::Refresh => None,
        _ => Some(0),
    };
    if rolled_back != Some(0) {
        let applied = Unguarded::get_applied_migrations(&txn).await?;
        let tables: Vec<_> = applied
            .iter()
            .rev()
            .take(rolled_back.map_or(applied.len(), |n| n as usize))
            .flat_map(|migration| crate::guarded_tables(migration.name()).iter().copied())
            .collect();
        data_loss::refuse_if_holding_rows(&txn, &tables).await?;
    }

    match operation {
        Operation::Up(steps) => Unguarded::up(&txn, steps).await?,
        Operation::Down(steps) => Unguarded::down(&txn, steps).await?,
        Operation::Refresh => Unguarded::refresh(&txn).await?,
        Operation::Reset => Unguarded::reset(&txn).await?,
        Operation::Status => Unguarded::status(&txn).await?,
        Operation::Fresh => {
            // SeaORM's fresh drops tables without calling any `down`, so the
            // guard looks at every data table first.
            data_loss::refuse_if_holding_rows(&txn, data_loss::ALL_DATA_TABLES).await?;
            Unguarded::fresh(&txn).await?
        }
    }

    // The policy is transaction-local; reset it in case `db` was the caller's
    // own transaction, which goes on after this savepoint.
    data_loss::set_policy(&txn, DataLoss::Refuse).await?;
    txn.commit().await
}
