//! The trade engine's PostgreSQL schema as sixteen `sea-orm-migration` migrations.
//!
//! The first six are ported from the TypeORM migrations `1700000001000-CreateEnums`
//! … `1700000006000-CreateUtilityFunctions`; every object keeps its original name
//! and every defect of the originals that we fix is cited by its id (D1–D14, see
//! `docs/schema.md`). The seventh and eighth bound the number of `trades` and `orders`
//! partitions (D15); the ninth keeps the market state (price levels, last trade,
//! candles) that the book reads, the ticker and the candles use, the tenth
//! redefines the original market-data functions and `v_symbol_stats_24h` over it,
//! the eleventh keeps the resting totals per side, the twelfth makes the
//! market-state triggers cheaper (the same results in fewer steps), and the
//! thirteenth has those triggers write every committed change's events (orders,
//! trades, book levels with a gapless per-symbol sequence) to an outbox that
//! the api relays to the broker and to its WebSocket streams; the fourteenth
//! adds an index that reads the resting bids in matching order, the
//! fifteenth has autovacuum keep the outbox as the queue it is, and the
//! sixteenth has the triggers write the same events for less server time.
//!
//! [`Migrator`] behaves like any SeaORM migrator, with two guarantees on top:
//!
//! * **One migrator at a time.** Every operation holds a PostgreSQL advisory lock
//!   ([`MIGRATION_LOCK_KEY`]) and runs in one transaction, so two `up` runs started
//!   together both succeed and each migration is applied once; an operation that
//!   fails leaves nothing behind.
//! * **No silent data loss.** A `down` (also through `reset` and `refresh`) or a
//!   `fresh` that would drop a table still holding rows refuses, names the table
//!   and its row count, and changes nothing — unless data loss is allowed
//!   ([`DataLoss::Allow`], the `MIGRATION_ALLOW_DATA_LOSS` variable, or the CLI's
//!   `--allow-data-loss`).
//!
//! ```no_run
//! use migration::{Migrator, MigratorTrait};
//! # async fn example() -> Result<(), migration::DbErr> {
//! let db = sea_orm_migration::sea_orm::Database::connect("postgres://postgres@127.0.0.1/trade").await?;
//! Migrator::up(&db, None).await?; // apply everything pending, under the migration lock
//! Migrator::down(&db, Some(1)).await?; // roll back the newest migration
//! # Ok(()) }
//! ```

pub use sea_orm_migration::prelude::*;

/// `impl MigrationTrait for Migration` of a migration that is two SQL
/// scripts: `$up` for `up`, `$down` for `down` (in scope in the modules
/// declared below).
macro_rules! sql_migration {
    ($up:expr, $down:expr) => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                manager.get_connection().execute_unprepared($up).await?;
                Ok(())
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                manager.get_connection().execute_unprepared($down).await?;
                Ok(())
            }
        }
    };
}

#[cfg(feature = "cli")]
pub mod cli;
mod connection;
mod data_loss;
mod locks;
mod runner;

mod m1700000001000_create_enums;
mod m1700000002000_create_symbols_table;
mod m1700000003000_create_orders_table;
mod m1700000004000_create_trades_table;
mod m1700000005000_create_auxiliary_tables;
mod m1700000006000_create_utility_functions;
mod m1700000007000_bounded_partitions;
mod m1700000008000_yearly_order_partitions;
mod m1700000009000_market_state;
mod m1700000010000_market_functions;
mod m1700000011000_market_sides;
mod m1700000012000_market_triggers;
mod m1700000013000_event_outbox;
mod m1700000014000_bid_walk_index;
mod m1700000015000_outbox_autovacuum;
mod m1700000016000_event_writes;

pub use connection::{connect_problem, redact};
pub use data_loss::{ALLOW_DATA_LOSS_ENV, DataLoss};
pub use locks::{
    CONCURRENT_UNPRUNED, DEFAULT_MAX_LOCKS_PER_TRANSACTION, LockCapacity, lock_capacity,
};
pub use runner::{MIGRATION_LOCK_KEY, Operation, run};

/// The trade-engine migrator. Use it like any SeaORM migrator; every operation
/// takes the migration lock and refuses silent data loss (see the crate docs).
pub struct Migrator;

/// SeaORM's stock behaviour over the same migrations, without lock or guard.
/// [`run`] calls it inside the locked transaction.
pub(crate) struct Unguarded;

/// The tables whose rows rolling back the migration named `name` would drop.
pub(crate) fn guarded_tables(name: &str) -> &'static [data_loss::GuardedTable] {
    let guards: [(&dyn MigrationName, &'static [data_loss::GuardedTable]); 5] = [
        (
            &m1700000002000_create_symbols_table::Migration,
            m1700000002000_create_symbols_table::GUARDED,
        ),
        (
            &m1700000003000_create_orders_table::Migration,
            m1700000003000_create_orders_table::GUARDED,
        ),
        (
            &m1700000004000_create_trades_table::Migration,
            m1700000004000_create_trades_table::GUARDED,
        ),
        (
            &m1700000005000_create_auxiliary_tables::Migration,
            m1700000005000_create_auxiliary_tables::GUARDED,
        ),
        (
            &m1700000013000_event_outbox::Migration,
            m1700000013000_event_outbox::GUARDED,
        ),
    ];
    guards
        .into_iter()
        .find(|(migration, _)| migration.name() == name)
        .map_or(&[], |(_, tables)| tables)
}

fn all_migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m1700000001000_create_enums::Migration),
        Box::new(m1700000002000_create_symbols_table::Migration),
        Box::new(m1700000003000_create_orders_table::Migration),
        Box::new(m1700000004000_create_trades_table::Migration),
        Box::new(m1700000005000_create_auxiliary_tables::Migration),
        Box::new(m1700000006000_create_utility_functions::Migration),
        Box::new(m1700000007000_bounded_partitions::Migration),
        Box::new(m1700000008000_yearly_order_partitions::Migration),
        Box::new(m1700000009000_market_state::Migration),
        Box::new(m1700000010000_market_functions::Migration),
        Box::new(m1700000011000_market_sides::Migration),
        Box::new(m1700000012000_market_triggers::Migration),
        Box::new(m1700000013000_event_outbox::Migration),
        Box::new(m1700000014000_bid_walk_index::Migration),
        Box::new(m1700000015000_outbox_autovacuum::Migration),
        Box::new(m1700000016000_event_writes::Migration),
    ]
}

#[async_trait::async_trait]
impl MigratorTrait for Unguarded {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        all_migrations()
    }
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        all_migrations()
    }

    async fn status<C>(db: &C) -> Result<(), DbErr>
    where
        C: ConnectionTrait,
    {
        Unguarded::status(db).await
    }

    async fn fresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        run(db, Operation::Fresh, DataLoss::from_env()).await
    }

    async fn refresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        run(db, Operation::Refresh, DataLoss::from_env()).await
    }

    async fn reset<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        run(db, Operation::Reset, DataLoss::from_env()).await
    }

    async fn up<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        run(db, Operation::Up(steps), DataLoss::from_env()).await
    }

    async fn down<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        run(db, Operation::Down(steps), DataLoss::from_env()).await
    }
}
