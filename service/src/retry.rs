//! Bounded retries of serialization failures and deadlocks (40001, 40P01).
//!
//! Under READ COMMITTED these come from rows a concurrent transaction moved
//! (a triggered stop order changes partition) and from lock cycles; trying
//! the same work again in a fresh transaction usually succeeds. The crate
//! picks no async runtime, so attempts follow each other at once, without a
//! sleep in between.

use std::ops::ControlFlow;

use sea_orm::{DbErr, TransactionSession};

use crate::error::{Result, ServiceError};

/// Tries in total before an operation gives up with
/// [`ServiceError::Contention`].
pub const CONTENTION_ATTEMPTS: u32 = 3;

/// `in_transaction!(db, |txn| work)`: evaluates `work` (an expression that
/// awaits, using `txn`) in a transaction of its own on `db` (a savepoint inside
/// a caller's transaction), commits on `Ok`, rolls back on `Err`; a
/// serialization failure or deadlock, in `work` or at the commit, runs it again
/// in a fresh transaction, up to [`CONTENTION_ATTEMPTS`] times in total. The
/// value is the last attempt's `Result`.
///
/// A macro rather than a function taking an async closure: a future that
/// holds such a closure's borrow of the transaction is not provably `Send` for
/// every lifetime, which axum handlers require.
macro_rules! in_transaction {
    ($db:expr, |$txn:ident| $work:expr) => {{
        let mut attempts = 1;
        loop {
            let outcome = match sea_orm::TransactionTrait::begin($db).await {
                Ok($txn) => {
                    let outcome = $work;
                    $crate::retry::finish($txn, outcome).await
                }
                Err(err) => Err($crate::ServiceError::from(err)),
            };
            match $crate::retry::again(outcome, &mut attempts) {
                std::ops::ControlFlow::Break(result) => break result,
                std::ops::ControlFlow::Continue(()) => {}
            }
        }
    }};
}
pub(crate) use in_transaction;

/// Ends a transaction as `outcome` says: commit on `Ok` (a failing commit
/// becomes the outcome), rollback on `Err`.
pub(crate) async fn finish<X, T, E>(txn: X, outcome: Result<T, E>) -> Result<T, E>
where
    X: TransactionSession,
    E: From<DbErr>,
{
    match outcome {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            // The work's error is what the caller needs; a failed rollback
            // means the connection is gone, which the next use reports.
            if let Err(rollback) = txn.rollback().await {
                tracing::debug!(error = %rollback, "rollback after a failed transaction");
            }
            Err(err)
        }
    }
}

/// Whether to try again after `outcome`, the `attempts`-th try: only on
/// contention, and only while attempts remain; the last contention reports
/// how many tries it took.
pub(crate) fn again<T>(outcome: Result<T>, attempts: &mut u32) -> ControlFlow<Result<T>> {
    match outcome {
        Err(ServiceError::Contention { source, .. }) if *attempts < CONTENTION_ATTEMPTS => {
            tracing::debug!(attempts = *attempts, error = %source, "contention; trying again");
            *attempts += 1;
            ControlFlow::Continue(())
        }
        Err(ServiceError::Contention { source, .. }) => {
            ControlFlow::Break(Err(ServiceError::Contention {
                attempts: *attempts,
                source,
            }))
        }
        other => ControlFlow::Break(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contention() -> Result<()> {
        Err(ServiceError::Contention {
            attempts: 1,
            source: sea_orm::DbErr::Custom("forced".into()),
        })
    }

    #[test]
    fn contention_is_tried_again_until_the_attempts_run_out() {
        let mut attempts = 1;
        for _ in 1..CONTENTION_ATTEMPTS {
            assert!(again(contention(), &mut attempts).is_continue());
        }
        match again(contention(), &mut attempts) {
            ControlFlow::Break(Err(ServiceError::Contention { attempts, .. })) => {
                assert_eq!(attempts, CONTENTION_ATTEMPTS);
            }
            other => panic!("expected the last contention, got {other:?}"),
        }
        // Anything else ends at once.
        let mut attempts = 1;
        let refused = Err::<(), _>(ServiceError::argument("limit", "0"));
        assert!(again(refused, &mut attempts).is_break());
        assert!(again(Ok(()), &mut attempts).is_break());
        assert_eq!(attempts, 1);
    }
}
