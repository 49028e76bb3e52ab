//! Running the service behind a transaction-pooling PgBouncer.
//!
//! Through a direct connection, or a pooler in session mode, a service calls
//! the operations of this crate with its `DatabaseConnection` and nothing here
//! is needed. PgBouncer in **transaction** mode (1.18, Debian's, does not track
//! prepared statements) hands each transaction to whichever server connection
//! is free, and that breaks how sqlx talks to PostgreSQL:
//!
//! - sqlx prepares every statement SeaORM sends as a *named* statement
//!   (`sqlx_s_1`, `sqlx_s_2`, … counted per client connection) and executes
//!   it in a second exchange. Outside a transaction those two exchanges can
//!   land on different server connections ("prepared statement … does not
//!   exist"), and a name left on a server connection by one client collides
//!   with the same name from another ("prepared statement \"sqlx_s_1\" already
//!   exists").
//!
//! [`PoolMode::Transaction`] makes that safe: [`configure`] turns sqlx's
//! statement cache off (no name is reused across transactions), and
//! [`Pool::run`] runs each unit of work in one transaction that starts with
//! `DEALLOCATE ALL`, so the work stays on one server connection and finds no
//! names left there by other clients. The cost is a few round trips per unit
//! of work (`BEGIN`, `DEALLOCATE ALL`, a prepare per statement, `COMMIT`).
//! Migrations are not for this mode: run them on a direct or session-mode
//! connection.
//!
//! A statement timeout, in either mode: [`set_statement_timeout`] on the
//! connect options (a `SET` per connection, direct mode) and
//! [`Pool::with_statement_timeout`] (a `SET LOCAL` per unit of work,
//! transaction mode); [`Pool::run_unbounded`] runs long maintenance without
//! it, but with a `lock_timeout` ([`Pool::with_job_lock_timeout`], 5 s by
//! default), so a job stuck behind a lock gives up with
//! [`ServiceError::Timeout`](crate::ServiceError::Timeout) and tries again at
//! its next run instead of queueing every later writer behind itself.
//!
//! ```no_run
//! use sea_orm::{ConnectOptions, Database};
//! use service::pooling::{Pool, PoolMode, configure};
//!
//! # async fn example() -> Result<(), service::ServiceError> {
//! let mode: PoolMode = "transaction".parse().expect("a pool mode");
//! let mut options = ConnectOptions::new("postgres://app@127.0.0.1:6432/trade");
//! configure(&mut options, mode);
//! let pool = Pool::new(Database::connect(options).await?, mode);
//! let book = pool
//!     .run(async |db| service::market::depth(db, "BTC/USDT", 20).await)
//!     .await?;
//! # let _ = book;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::prelude::async_trait::async_trait;
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult, Statement, TransactionError,
    TransactionOptions, TransactionTrait,
};

/// How the pool's connections reach PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolMode {
    /// Straight to the server, or through a pooler in session mode: each
    /// client connection keeps its server connection, prepared statements are
    /// cached. The default.
    #[default]
    Direct,
    /// Through a pooler in transaction mode (PgBouncer `pool_mode =
    /// transaction`): every unit of work is one transaction, no statement is
    /// cached (see the module documentation).
    Transaction,
}

impl PoolMode {
    /// The name [`FromStr`] reads: `direct` or `transaction`.
    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Direct => "direct",
            PoolMode::Transaction => "transaction",
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pool mode name that is none of `direct`, `session`, `transaction`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown pool mode {0:?}: expected direct, session (the same as direct) or transaction")]
pub struct UnknownPoolMode(pub String);

impl FromStr for PoolMode {
    type Err = UnknownPoolMode;

    /// `direct`, `session` (a session-mode pooler needs nothing more than a
    /// direct connection) or `transaction`, in any case.
    fn from_str(text: &str) -> Result<PoolMode, UnknownPoolMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "direct" | "session" => Ok(PoolMode::Direct),
            "transaction" => Ok(PoolMode::Transaction),
            _ => Err(UnknownPoolMode(text.to_owned())),
        }
    }
}

/// Sets what `mode` needs on the options a pool is opened with: in
/// transaction mode, sqlx's statement cache off (capacity 0), so no statement
/// name is used again after the transaction that prepared it.
pub fn configure(options: &mut ConnectOptions, mode: PoolMode) {
    if mode == PoolMode::Transaction {
        options.map_sqlx_postgres_opts(|pg| pg.statement_cache_capacity(0));
    }
}

/// Gives every statement on the pool's connections at most `timeout`
/// (PostgreSQL's `statement_timeout`; it then fails with SQLSTATE 57014).
///
/// In direct mode each new connection runs `SET statement_timeout`; in
/// transaction mode a session setting would reach other clients, so this does
/// nothing here and [`Pool::with_statement_timeout`] sets it for each unit of
/// work (`SET LOCAL`). Set both. This takes sqlx's `after_connect` hook.
pub fn set_statement_timeout(options: &mut ConnectOptions, mode: PoolMode, timeout: Duration) {
    if mode == PoolMode::Direct {
        let sql = format!("SET statement_timeout = {}", timeout.as_millis());
        options.map_sqlx_postgres_pool_opts(move |pool| {
            let sql = sql.clone();
            pool.after_connect(move |conn, _| {
                let sql = sql.clone();
                Box::pin(async move {
                    use sea_orm::sqlx::Executor;
                    conn.execute(sea_orm::sqlx::AssertSqlSafe(sql))
                        .await
                        .map(|_| ())
                })
            })
        });
    }
}

/// The server-side statements a transaction-mode unit of work clears first:
/// names other clients prepared on this server connection and left there.
const CLEAR_STATEMENTS: &str = "DEALLOCATE ALL";

/// A pool and its [`PoolMode`]: [`Pool::run`] gives each unit of work the
/// connection it needs.
#[derive(Clone, Debug)]
pub struct Pool {
    conn: DatabaseConnection,
    mode: PoolMode,
    /// Opens each transaction-mode unit of work.
    begin_unit: String,
    /// `lock_timeout` of [`Pool::run_unbounded`]'s transactions.
    job_lock_timeout: Duration,
}

/// [`Pool::run_unbounded`]'s default `lock_timeout`.
pub const DEFAULT_JOB_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

impl Pool {
    /// `conn` used in `mode` (open it with options passed through
    /// [`configure`]).
    pub fn new(conn: DatabaseConnection, mode: PoolMode) -> Pool {
        Pool {
            conn,
            mode,
            begin_unit: CLEAR_STATEMENTS.to_owned(),
            job_lock_timeout: DEFAULT_JOB_LOCK_TIMEOUT,
        }
    }

    /// [`Pool::run_unbounded`]'s work waits at most `timeout` for each lock
    /// (`SET LOCAL lock_timeout`; default [`DEFAULT_JOB_LOCK_TIMEOUT`]), then
    /// fails with SQLSTATE 55P03, which the service reports as
    /// [`ServiceError::Timeout`](crate::ServiceError::Timeout). A zero
    /// duration waits forever, as PostgreSQL's 0 does; below a millisecond
    /// counts as one.
    pub fn with_job_lock_timeout(mut self, timeout: Duration) -> Pool {
        self.job_lock_timeout = timeout;
        self
    }

    /// In transaction mode, each unit of work's statements get at most
    /// `timeout` (`SET LOCAL statement_timeout`, sent with `DEALLOCATE ALL`,
    /// no extra round trip). In direct mode this changes nothing: use
    /// [`set_statement_timeout`] on the connect options.
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Pool {
        self.begin_unit = format!(
            "{CLEAR_STATEMENTS}; SET LOCAL statement_timeout = {}",
            timeout.as_millis()
        );
        self
    }

    /// The pool itself, for what runs outside a unit of work (pool statistics,
    /// `ping`, closing).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// Runs `work` on a [`Scope`]: the pool itself in direct mode; in
    /// transaction mode one transaction, begun with `DEALLOCATE ALL`,
    /// committed when `work` returns `Ok` and rolled back when it returns
    /// `Err`. A failing commit is `work`'s error too, so an `Ok` from here
    /// means the work is durable.
    pub async fn run<T, E>(
        &self,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbErr>,
    {
        match self.mode {
            PoolMode::Direct => work(&Scope::Pool(&self.conn)).await,
            PoolMode::Transaction => self.in_transaction(&self.begin_unit, work).await,
        }
    }

    /// Runs `work` without a statement timeout, for maintenance that may take
    /// long (partition upkeep, expiring a large backlog): always in one
    /// transaction that sets `statement_timeout = 0` and the job lock timeout
    /// ([`Pool::with_job_lock_timeout`]) for itself, in the same statement (and,
    /// in transaction mode, begins with `DEALLOCATE ALL`); committed on `Ok`,
    /// rolled back on `Err`.
    pub async fn run_unbounded<T, E>(
        &self,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbErr>,
    {
        let settings = format!(
            "{NO_TIMEOUT}; SET LOCAL lock_timeout = {}",
            lock_timeout_ms(self.job_lock_timeout)
        );
        let begin = match self.mode {
            PoolMode::Direct => settings,
            PoolMode::Transaction => format!("{CLEAR_STATEMENTS}; {settings}"),
        };
        self.in_transaction(&begin, work).await
    }

    /// `work` in a transaction that first runs `begin` (simple protocol).
    async fn in_transaction<T, E>(
        &self,
        begin: &str,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbErr>,
    {
        let txn = self.conn.begin().await?;
        txn.execute_unprepared(begin).await?;
        let scope = Scope::Transaction(txn);
        let outcome = work(&scope).await;
        scope.finish(outcome).await
    }
}

/// Lifts the statement timeout for the rest of a transaction.
const NO_TIMEOUT: &str = "SET LOCAL statement_timeout = 0";

/// `timeout` in the whole milliseconds `lock_timeout` takes: a nonzero
/// duration below 1 ms rounds up (0 would mean no timeout at all), and a
/// huge one is capped at PostgreSQL's largest (`INT_MAX` ms).
fn lock_timeout_ms(timeout: Duration) -> u128 {
    let ms = timeout.as_millis();
    if ms == 0 && !timeout.is_zero() {
        1
    } else {
        ms.min(i32::MAX as u128)
    }
}

/// A connection that knows whether it is inside a transaction (where a failed
/// statement aborts everything after it until a rollback). Operations that
/// retry a statement, such as [`crate::orders::cancel`], wrap each attempt in
/// a savepoint there, and spare the round trips on a plain pool.
pub trait TransactionAware: ConnectionTrait + TransactionTrait {
    fn in_transaction(&self) -> bool;
}

impl TransactionAware for DatabaseConnection {
    fn in_transaction(&self) -> bool {
        false
    }
}

impl TransactionAware for DatabaseTransaction {
    fn in_transaction(&self) -> bool {
        true
    }
}

impl TransactionAware for Scope<'_> {
    fn in_transaction(&self) -> bool {
        matches!(self, Scope::Transaction(_))
    }
}

/// What a unit of work of [`Pool::run`] runs on: the pool, or the unit's
/// transaction. Every operation of this crate takes it like a connection.
#[derive(Debug)]
pub enum Scope<'a> {
    Pool(&'a DatabaseConnection),
    Transaction(DatabaseTransaction),
}

impl Scope<'_> {
    /// Ends a transaction scope as `outcome` says: commit on `Ok` (a failing
    /// commit becomes the error), rollback on `Err`.
    async fn finish<T, E: From<DbErr>>(self, outcome: Result<T, E>) -> Result<T, E> {
        let Scope::Transaction(txn) = self else {
            return outcome;
        };
        crate::retry::finish(txn, outcome).await
    }
}

#[async_trait]
impl ConnectionTrait for Scope<'_> {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Scope::Pool(conn) => conn.get_database_backend(),
            Scope::Transaction(txn) => txn.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Scope::Pool(conn) => conn.execute_raw(stmt).await,
            Scope::Transaction(txn) => txn.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Scope::Pool(conn) => conn.execute_unprepared(sql).await,
            Scope::Transaction(txn) => txn.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Scope::Pool(conn) => conn.query_one_raw(stmt).await,
            Scope::Transaction(txn) => txn.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Scope::Pool(conn) => conn.query_all_raw(stmt).await,
            Scope::Transaction(txn) => txn.query_all_raw(stmt).await,
        }
    }

    fn support_returning(&self) -> bool {
        match self {
            Scope::Pool(conn) => conn.support_returning(),
            Scope::Transaction(txn) => txn.support_returning(),
        }
    }
}

#[async_trait]
impl TransactionTrait for Scope<'_> {
    type Transaction = DatabaseTransaction;

    /// A transaction on the pool, or a savepoint in the unit's transaction.
    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Scope::Pool(conn) => conn.begin().await,
            Scope::Transaction(txn) => txn.begin().await,
        }
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Scope::Pool(conn) => conn.begin_with_config(isolation_level, access_mode).await,
            Scope::Transaction(txn) => txn.begin_with_config(isolation_level, access_mode).await,
        }
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Scope::Pool(conn) => conn.begin_with_options(options).await,
            Scope::Transaction(txn) => txn.begin_with_options(options).await,
        }
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: fmt::Display + fmt::Debug + Send,
    {
        match self {
            Scope::Pool(conn) => conn.transaction(callback).await,
            Scope::Transaction(txn) => txn.transaction(callback).await,
        }
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: fmt::Display + fmt::Debug + Send,
    {
        match self {
            Scope::Pool(conn) => {
                conn.transaction_with_config(callback, isolation_level, access_mode)
                    .await
            }
            Scope::Transaction(txn) => {
                txn.transaction_with_config(callback, isolation_level, access_mode)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeouts_are_whole_milliseconds_postgres_accepts() {
        assert_eq!(lock_timeout_ms(DEFAULT_JOB_LOCK_TIMEOUT), 5000);
        assert_eq!(lock_timeout_ms(Duration::from_micros(10)), 1);
        assert_eq!(lock_timeout_ms(Duration::ZERO), 0);
        assert_eq!(lock_timeout_ms(Duration::MAX), i32::MAX as u128);
    }
}
