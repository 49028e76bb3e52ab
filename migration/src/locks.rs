//! The `max_locks_per_transaction` the schema needs.
//!
//! A statement that cannot prune a partitioned table at plan time locks every
//! partition of it and every index of each partition (PostgreSQL 15 also does so
//! for a cached generic plan, whatever it prunes at run time). All sessions share
//! one lock table of `max_locks_per_transaction × (max_connections +
//! max_prepared_transactions)` entries; when a statement finds it full it fails
//! with "out of shared memory". The schema asks for room for
//! [`CONCURRENT_UNPRUNED`] such statements on the larger of `orders` and
//! `trades` at once; with the bounded layout (D15) the default 64 is enough.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr, Statement};

/// How many statements that cannot prune the sizing leaves room for at once.
pub const CONCURRENT_UNPRUNED: i64 = 3;

/// PostgreSQL's default `max_locks_per_transaction`; the schema never asks for less.
pub const DEFAULT_MAX_LOCKS_PER_TRANSACTION: i64 = 64;

/// The server's lock table against what the schema's partitions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockCapacity {
    /// The server's setting.
    pub max_locks_per_transaction: i64,
    /// `max_connections + max_prepared_transactions`: the lock table's size is
    /// this many times the setting.
    pub backends: i64,
    /// Locks a statement that cannot prune the larger partitioned table takes
    /// (its partitions and their indexes); 0 before migration 7.
    pub worst_statement_locks: i64,
}

impl LockCapacity {
    /// The setting that leaves room for [`CONCURRENT_UNPRUNED`] unpruned
    /// statements at once, and never less than the default.
    pub fn required(&self) -> i64 {
        let need = self.worst_statement_locks * CONCURRENT_UNPRUNED;
        let per_backend = (need + self.backends.max(1) - 1) / self.backends.max(1);
        per_backend.max(DEFAULT_MAX_LOCKS_PER_TRANSACTION)
    }

    /// A warning when the server's setting is below [`Self::required`].
    pub fn warning(&self) -> Option<String> {
        let required = self.required();
        (self.max_locks_per_transaction < required).then(|| {
            format!(
                "max_locks_per_transaction is {} but the schema's partitions need {required}: a statement \
                 that cannot prune them takes {} locks and the lock table holds {} × {} backends; set \
                 max_locks_per_transaction = {required} (restart needed) or let maintenance merge old \
                 trades partitions into monthly ones",
                self.max_locks_per_transaction,
                self.worst_statement_locks,
                self.max_locks_per_transaction,
                self.backends
            )
        })
    }
}

const SETTINGS: &str = "SELECT current_setting('max_locks_per_transaction')::bigint
        AS max_locks_per_transaction,
    current_setting('max_connections')::bigint
        + current_setting('max_prepared_transactions')::bigint AS backends,
    to_regprocedure('partition_lock_demand()') IS NOT NULL AS has_demand";

/// `partition_lock_demand()` exists from migration 7 on; before, the demand is 0.
const DEMAND: &str = "SELECT coalesce(max(locks), 0)::bigint AS locks FROM partition_lock_demand()";

/// Reads the server's lock table size and the schema's demand.
pub async fn lock_capacity<C: ConnectionTrait>(db: &C) -> Result<LockCapacity, DbErr> {
    let backend = db.get_database_backend();
    let settings = db
        .query_one_raw(Statement::from_string(backend, SETTINGS))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("server settings".into()))?;
    let worst_statement_locks = if settings.try_get::<bool>("", "has_demand")? {
        match db
            .query_one_raw(Statement::from_string(backend, DEMAND))
            .await?
        {
            Some(row) => row.try_get::<i64>("", "locks")?,
            None => 0,
        }
    } else {
        0
    };
    Ok(LockCapacity {
        max_locks_per_transaction: settings.try_get("", "max_locks_per_transaction")?,
        backends: settings.try_get("", "backends")?,
        worst_statement_locks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(setting: i64, worst: i64) -> LockCapacity {
        LockCapacity {
            max_locks_per_transaction: setting,
            backends: 100,
            worst_statement_locks: worst,
        }
    }

    #[test]
    fn the_default_is_enough_for_a_bounded_layout_and_not_for_five_years_of_days() {
        // At most 213 trades partitions of 8 relations each.
        assert_eq!(capacity(64, 1_704).warning(), None);
        // 1,831 daily partitions of 8 relations each.
        let five_years = capacity(64, 14_648);
        assert_eq!(five_years.required(), 440);
        assert!(five_years.warning().is_some_and(|w| w.contains("440")));
        assert_eq!(capacity(600, 14_648).warning(), None);
    }
}
