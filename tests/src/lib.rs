//! Test support for the trade engine's cross-crate tests.
//!
//! Every test gets its own PostgreSQL database, so tests run in parallel and
//! never see each other's rows:
//!
//! * [`db::TestDb::migrated`] clones a database that was migrated once per
//!   `cargo test` run (a template, shared by every test binary and process),
//!   which costs a file copy instead of a full migration;
//! * [`db::TestDb::empty`] gives an empty database, for tests that run the
//!   migrations themselves.
//!
//! The database is dropped when the [`db::TestDb`] is, even when the test
//! panicked. [`catalog::snapshot`] captures a schema object by object, so a test
//! can assert that two databases (say, one migrated up, down and up again, and
//! one migrated once) are the same.
//!
//! [`sql`] has terse raw-SQL helpers that panic with the failing statement.
//!
//! The server comes from `DATABASE_URL` (the environment, else `.env`), for
//! example `postgres://postgres@127.0.0.1:5432/postgres`; its role must be
//! allowed to create databases.
//!
//! ```no_run
//! use tests::{catalog, db::TestDb};
//!
//! # async fn example() {
//! let once = TestDb::migrated().await;
//! let by_hand = TestDb::empty().await;
//! migration::run(by_hand.conn(), migration::Operation::Up(None), migration::DataLoss::Refuse)
//!     .await
//!     .expect("migrations apply to an empty database");
//! let (left, right) = (catalog::snapshot(once.conn()).await, catalog::snapshot(by_hand.conn()).await);
//! assert!(left == right, "schemas differ:\n{}", left.diff(&right));
//! # }
//! ```

pub mod app;
pub mod bench;
pub mod catalog;
pub mod db;
pub mod faults;
pub mod history;
pub mod readme;
pub mod sql;

/// A decimal from its text, for test data (`dec("0.5")`); panics with the
/// text when it is not one.
pub fn dec(text: &str) -> rust_decimal::Decimal {
    text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
}

/// The user with id `n` (`00000000-…-000000000001` for 1): test users by number.
pub fn user(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}
