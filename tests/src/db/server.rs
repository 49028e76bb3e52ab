//! The PostgreSQL server the tests run against: where it is, how to connect,
//! and the database-level commands (create, drop) run on its admin database.
//!
//! The admin database is the one `DATABASE_URL` names; every other database's
//! URL is that URL with the database swapped.

use std::sync::OnceLock;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

const URL_VARIABLE: &str = "DATABASE_URL";
const EXAMPLE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections per test pool: enough for a test's concurrent queries, few
/// enough that many parallel tests stay under the server's `max_connections`.
const POOL_SIZE: u32 = 5;

/// The server's URL, from `DATABASE_URL` in the environment or else in `.env`.
/// Panics with a one-line hint when it is missing or not a PostgreSQL URL.
pub(crate) fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match configured_url() {
        None => panic!(
            "{URL_VARIABLE} is not set: set {URL_VARIABLE}={EXAMPLE_URL} (in the environment or in .env)"
        ),
        Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
            panic!("{URL_VARIABLE} must be a postgres:// URL, such as {EXAMPLE_URL}")
        }
        Some(url) => url,
    })
}

/// The URL of `database` on the same server as [`admin_url`].
pub(crate) fn database_url(database: &str) -> String {
    with_database(admin_url(), database)
}

/// Reads `.env` without loading it into the process environment: tests run on
/// many threads, and setting variables while others read them is unsound.
fn configured_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VARIABLE)
        && !url.is_empty()
    {
        return Some(url);
    }
    dotenvy::dotenv_iter()
        .ok()?
        .filter_map(Result::ok)
        .find(|(key, value)| key == URL_VARIABLE && !value.is_empty())
        .map(|(_, value)| value)
}

/// `url` with its path (the database name) replaced by `database`; scheme,
/// user, password, host, port and query string are kept as they are.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    let path_start = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| authority_start + at);
    let path_end = url[path_start..]
        .find(['?', '#'])
        .map_or(url.len(), |at| path_start + at);
    format!("{}/{database}{}", &url[..path_start], &url[path_end..])
}

/// `name` as a PostgreSQL identifier, for the DDL that cannot take binds.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A small pool on `url`, as every test connection is opened.
pub(crate) async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(POOL_SIZE)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// One session on the admin database (see [`session`]).
pub(crate) async fn admin_session() -> Result<DatabaseConnection, DbErr> {
    session(admin_url()).await
}

/// One session on `url`: a single-connection pool that never recycles its
/// connection, so session state (an advisory lock, `SET`) holds until the
/// pool is closed.
pub(crate) async fn session(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None::<Duration>)
        .max_lifetime(None::<Duration>)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Runs one admin command (`CREATE DATABASE` and the like cannot run inside a
/// transaction, so each gets its own short session).
pub(crate) async fn run_admin(sql: &str) -> Result<(), DbErr> {
    let admin = admin_session().await?;
    let outcome = admin.execute_unprepared(sql).await;
    // The command's outcome matters; a failed goodbye does not.
    let _ = admin.close().await;
    outcome.map(|_| ())
}

/// Creates `database` as a copy of `template`.
pub(crate) async fn create_database(database: &str, template: &str) -> Result<(), DbErr> {
    run_admin(&format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(database),
        quote_ident(template)
    ))
    .await
}

/// Drops `database`, disconnecting whoever is still connected (a test's own
/// pools included), from a private runtime on the calling thread. Meant for
/// `Drop`, which may run on a runtime that is unwinding or cannot be re-entered.
pub(crate) fn drop_database_blocking(database: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start a runtime: {err}"))?;
    runtime
        .block_on(run_admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(database)
        )))
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_and_keeps_everything_else() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "te_x"),
            "postgres://postgres@127.0.0.1:5432/te_x"
        );
        assert_eq!(
            with_database(
                "postgresql://u:p%2Fw@db.example:6543/trade?sslmode=disable&application_name=t",
                "te_x"
            ),
            "postgresql://u:p%2Fw@db.example:6543/te_x?sslmode=disable&application_name=t"
        );
    }

    #[test]
    fn adds_a_database_to_a_url_without_one() {
        assert_eq!(
            with_database("postgres://127.0.0.1:5432", "te_x"),
            "postgres://127.0.0.1:5432/te_x"
        );
        assert_eq!(
            with_database("postgres://127.0.0.1/", "te_x"),
            "postgres://127.0.0.1/te_x"
        );
        assert_eq!(
            with_database("postgres://[::1]:5432?sslmode=require", "te_x"),
            "postgres://[::1]:5432/te_x?sslmode=require"
        );
    }

    #[test]
    fn keeps_a_socket_directory_in_the_query() {
        assert_eq!(
            with_database("postgres:///postgres?host=/var/run/postgresql", "te_x"),
            "postgres:///te_x?host=/var/run/postgresql"
        );
    }

    #[test]
    fn keeps_a_fragment() {
        assert_eq!(
            with_database("postgres://h/old#frag", "te_x"),
            "postgres://h/te_x#frag"
        );
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("te_test_1"), "\"te_test_1\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
