//! A PostgreSQL database per test: [`TestDb`].
//!
//! Zero To Production's `spawn_app()` habit, for databases: each test asks for
//! its own database, uses it through [`TestDb::conn`], and the database is
//! dropped with the value, so tests run in parallel and leave nothing behind.
//!
//! ```no_run
//! use sea_orm::{ConnectionTrait, DbBackend, Statement};
//! use tests::db::TestDb;
//!
//! # async fn example() {
//! // In a `#[tokio::test]`:
//! let db = TestDb::migrated().await;
//! let symbols = db
//!     .conn()
//!     .query_all_raw(Statement::from_string(DbBackend::Postgres, "SELECT symbol FROM symbols"))
//!     .await
//!     .expect("the migrated schema has symbols");
//! assert!(!symbols.is_empty());
//! # }
//! ```

mod server;
mod template;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::DatabaseConnection;

/// A fresh database of its own for one test, dropped (`DROP DATABASE … WITH
/// (FORCE)`) when this value is, even if the test panicked.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    conn: DatabaseConnection,
}

/// The folder of PostgreSQL's binaries (`pg_ctl`, `psql`, …), found where
/// the api's embedded cluster looks for them (`PG_BIN_DIR`, `PATH`, the usual
/// folders); panics naming what it searched.
pub fn server_binaries() -> std::path::PathBuf {
    api::embedded::find_server_binaries(&api::embedded::SearchPaths::from_environment())
        .unwrap_or_else(|err| panic!("PostgreSQL's binaries are needed: {err}"))
}

impl TestDb {
    /// A database with every migration applied, copied from a template that is
    /// migrated once per `cargo test` run (per UTC day and migration source),
    /// shared by all test binaries and processes.
    ///
    /// Panics with the reason when the server is unreachable or the migrations fail.
    pub async fn migrated() -> TestDb {
        let template = template::template().await;
        TestDb::create_from(&template).await
    }

    /// An empty database, for tests that run the migrations themselves.
    ///
    /// Panics with the reason when the server is unreachable.
    pub async fn empty() -> TestDb {
        // template0 accepts no connections, so copying it never fails because
        // someone is connected, as copying template1 can.
        TestDb::create_from("template0").await
    }

    async fn create_from(template: &str) -> TestDb {
        let name = unique_name();
        if let Err(err) = server::create_database(&name, template).await {
            panic!("cannot create test database {name} from {template}: {err}");
        }
        // From here on the database exists, so the value owns it: if connecting
        // panics, dropping the value drops the database.
        let mut db = TestDb {
            url: server::database_url(&name),
            name,
            conn: DatabaseConnection::default(),
        };
        db.conn = db.connect().await;
        db
    }

    /// The test's pool on its database (at most 5 connections).
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The database's URL: the `DATABASE_URL` server with this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name, unique to this test (`te_test_<pid>_<n>_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second, independent pool on the same database, for tests that need
    /// sessions apart from [`conn`](Self::conn) (concurrent transactions, locks).
    /// Dropping the [`TestDb`] disconnects it too.
    pub async fn connect(&self) -> DatabaseConnection {
        match server::connect(&self.url).await {
            Ok(conn) => conn,
            Err(err) => panic!("cannot connect to test database {}: {err}", self.name),
        }
    }

    /// One session on the database, as a single-connection pool that keeps its
    /// connection: session state (`SET search_path`, temporary tables, an open
    /// `BEGIN`) carries from one statement to the next, which a pool of several
    /// connections does not promise. Dropping the [`TestDb`] disconnects it too.
    pub async fn connect_single(&self) -> DatabaseConnection {
        match server::session(&self.url).await {
            Ok(conn) => conn,
            Err(err) => panic!("cannot connect to test database {}: {err}", self.name),
        }
    }
}

impl Drop for TestDb {
    /// Drops the database from a thread of its own with its own runtime: this
    /// may run inside the test's runtime (which cannot be blocked on from
    /// within) or while the test unwinds. Never panics; failures are printed.
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropper = std::thread::Builder::new()
            .name(format!("drop {name}"))
            .spawn(move || server::drop_database_blocking(&name));
        let failure = match dropper.map(std::thread::JoinHandle::join) {
            Ok(Ok(Ok(()))) => return,
            Ok(Ok(Err(err))) => err,
            Ok(Err(_)) => "the dropping thread panicked".to_owned(),
            Err(err) => format!("cannot start the dropping thread: {err}"),
        };
        // `eprintln!` panics when stderr is gone; a panic here would abort.
        let _ = writeln!(
            std::io::stderr(),
            "warning: test database {} was not dropped: {failure}",
            self.name
        );
    }
}

/// A database name no other test, process or earlier run uses: the pid and a
/// counter separate live tests; the random part avoids a database left behind
/// by a crashed run whose pid is reused.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS, differently in every process.
    let random = RandomState::new().hash_one(n) as u32;
    format!("te_test_{}_{n}_{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lower_case_identifiers() {
        let (first, second) = (unique_name(), unique_name());
        assert_ne!(first, second);
        for name in [&first, &second] {
            assert!(name.starts_with("te_test_"), "{name}");
            assert!(
                name.len() <= 63,
                "{name} is longer than a PostgreSQL identifier"
            );
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }
}
