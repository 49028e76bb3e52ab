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
//! [`PoolMode::Transaction`] makes that safe: [`Settings::connect_options`] turns sqlx's
//! statement cache off (no name is reused across transactions), and
//! [`Pool::run`] runs each unit of work in one transaction that starts with
//! `DEALLOCATE ALL`, so the work stays on one server connection and finds no
//! names left there by other clients. The cost is a few round trips per unit
//! of work (`BEGIN`, `DEALLOCATE ALL`, a prepare per statement, `COMMIT`).
//! Migrations are not for this mode: run them on a direct or session-mode
//! connection.
//!
//! Every setting of a pool is in [`Settings`], and [`Settings::connect`] opens
//! one. Its statement timeout holds in either mode (a `SET` per connection in
//! direct mode, a `SET LOCAL` per unit of work in transaction mode);
//! [`Pool::run_unbounded`] runs long maintenance without it, but with a
//! `lock_timeout` ([`Settings::job_lock_timeout`], 5 s by default), so a job
//! stuck behind a lock gives up with
//! [`ServiceError::Timeout`](crate::ServiceError::Timeout) and tries again at
//! its next run instead of queueing every later writer behind itself.
//!
//! ```no_run
//! use service::pooling::{PoolMode, Settings};
//!
//! # async fn example() -> Result<(), service::ServiceError> {
//! let settings = Settings {
//!     mode: "transaction".parse::<PoolMode>().expect("a pool mode"),
//!     ..Settings::default()
//! };
//! let pool = settings.connect("postgres://app@127.0.0.1:6432/trade").await?;
//! let book = pool
//!     .run(async |db| service::market::depth(db, "BTC/USDT", 20).await)
//!     .await?;
//! # let _ = book;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseExecutor, DatabaseTransaction,
    DbErr, TransactionTrait,
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

/// Everything a [`Pool`] is opened with. [`Settings::default`] is a direct
/// pool of 10 connections, a 3 s wait for one, no statement timeout and
/// [`DEFAULT_JOB_LOCK_TIMEOUT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How the connections reach PostgreSQL.
    pub mode: PoolMode,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a unit of work waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// The longest a statement may run (PostgreSQL's `statement_timeout`; it
    /// then fails with SQLSTATE 57014); `None`: no limit.
    pub statement_timeout: Option<Duration>,
    /// How long [`Pool::run_unbounded`]'s work waits for each lock (`SET
    /// LOCAL lock_timeout`), then fails with SQLSTATE 55P03, which the service
    /// reports as [`ServiceError::Timeout`](crate::ServiceError::Timeout). Zero
    /// waits forever, as PostgreSQL's 0 does; below a millisecond counts as
    /// one.
    pub job_lock_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: PoolMode::Direct,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: None,
            job_lock_timeout: DEFAULT_JOB_LOCK_TIMEOUT,
        }
    }
}

impl Settings {
    /// The options of a pool on `url` with these settings. It connects
    /// lazily (on first use, within 5 s), keeps no idle connection past
    /// 5 minutes, and logs no statement. In transaction mode sqlx's statement
    /// cache is off (capacity 0), so no statement name is used again after the
    /// transaction that prepared it; in direct mode each new connection runs
    /// `SET statement_timeout` (sqlx's `after_connect` hook), where a
    /// session setting through a transaction-mode pooler would reach other
    /// clients ([`Settings::pool`] sets it per unit of work there).
    pub fn connect_options(&self, url: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(self.max_connections)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .sqlx_logging(false)
            .connect_lazy(true);
        if self.mode == PoolMode::Transaction {
            options.map_sqlx_postgres_opts(|pg| pg.statement_cache_capacity(0));
        }
        if let (Some(timeout), PoolMode::Direct) = (self.statement_timeout, self.mode) {
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
        options
    }

    /// A pool on `url` with these settings (lazy: nothing is connected yet).
    pub async fn connect(&self, url: &str) -> Result<Pool, DbErr> {
        Ok(self.pool(sea_orm::Database::connect(self.connect_options(url)).await?))
    }

    /// `conn` as a [`Pool`] with these settings; open it with
    /// [`Settings::connect_options`] (or sqlx options derived from them).
    pub fn pool(&self, conn: DatabaseConnection) -> Pool {
        let begin_unit = match (self.statement_timeout, self.mode) {
            (Some(timeout), PoolMode::Transaction) => format!(
                "{CLEAR_STATEMENTS}; SET LOCAL statement_timeout = {}",
                timeout.as_millis()
            ),
            _ => CLEAR_STATEMENTS.to_owned(),
        };
        Pool {
            conn,
            mode: self.mode,
            begin_unit,
            job_lock_timeout: self.job_lock_timeout,
        }
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
    /// `conn` used in `mode`, with the other [`Settings`] at their defaults
    /// (open it with [`Settings::connect_options`] of the same mode).
    pub fn new(conn: DatabaseConnection, mode: PoolMode) -> Pool {
        Settings {
            mode,
            ..Settings::default()
        }
        .pool(conn)
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
            PoolMode::Direct => work(&DatabaseExecutor::Connection(&self.conn)).await,
            PoolMode::Transaction => self.in_transaction(&self.begin_unit, work).await,
        }
    }

    /// Runs `work` without a statement timeout, for maintenance that may take
    /// long (partition upkeep, expiring a large backlog): always in one
    /// transaction that sets `statement_timeout = 0` and the job lock timeout
    /// ([`Settings::job_lock_timeout`]) for itself, in the same statement (and,
    /// in transaction mode, begins with `DEALLOCATE ALL`); committed on `Ok`,
    /// rolled back on `Err`.
    pub async fn run_unbounded<T, E>(
        &self,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbErr>,
    {
        self.run_unbounded_with(&[], work).await
    }

    /// [`run_unbounded`](Self::run_unbounded) with `more` statements (`SET
    /// LOCAL …`) run in the same round trip as its own settings, before
    /// `work`.
    pub async fn run_unbounded_with<T, E>(
        &self,
        more: &[&str],
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbErr>,
    {
        let mut settings = format!(
            "{NO_TIMEOUT}; SET LOCAL lock_timeout = {}",
            lock_timeout_ms(self.job_lock_timeout)
        );
        for statement in more {
            settings.push_str("; ");
            settings.push_str(statement);
        }
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
        let scope = DatabaseExecutor::OwnedTransaction(txn);
        let outcome = work(&scope).await;
        finish(scope, outcome).await
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
        self.is_transaction()
    }
}

/// What a unit of work of [`Pool::run`] runs on: the pool
/// (`DatabaseExecutor::Connection`) in direct mode, or the unit's own
/// transaction (`DatabaseExecutor::OwnedTransaction`). Every operation of
/// this crate takes it like a connection.
pub type Scope<'a> = DatabaseExecutor<'a>;

/// Ends a unit's scope as `outcome` says: a transaction it owns is committed
/// on `Ok` (a failing commit becomes the error) and rolled back on `Err`.
async fn finish<T, E: From<DbErr>>(scope: Scope<'_>, outcome: Result<T, E>) -> Result<T, E> {
    match scope {
        DatabaseExecutor::OwnedTransaction(txn) => crate::retry::finish(txn, outcome).await,
        _ => outcome,
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
