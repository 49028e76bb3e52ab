//! The migration CLI (feature `cli`, on by default): what `sea-orm-cli migrate
//! <command>` runs from the repository root, and what `cargo run -p migration --
//! <command>` runs directly. The `migration` binary is [`main`] and nothing else.
//!
//! It speaks the same arguments as SeaORM's own migrator CLI (`-u`, `-s`, `-v`,
//! `up -n`, `down -n`, `fresh`, `refresh`, `reset`, `status`), adds
//! `--allow-data-loss`, and reports every failure as one line on stderr with
//! exit code 1 instead of a panic.

use std::process::ExitCode;
use std::time::Duration;

use crate::sea_orm::sqlx::{Connection, PgConnection};
use crate::sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use crate::{DataLoss, Operation, connect_problem, redact};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(version, about = "Trade-engine schema migrations")]
struct Cli {
    /// Show debug messages, including every SQL statement.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    /// PostgreSQL schema to migrate (the connection's search_path).
    #[arg(
        short = 's',
        long,
        global = true,
        env = "DATABASE_SCHEMA",
        default_value = "public"
    )]
    database_schema: String,

    /// Database URL, e.g. postgres://postgres@127.0.0.1:5432/trade.
    #[arg(
        short = 'u',
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Let `down`, `reset`, `refresh` and `fresh` drop tables that still hold rows
    /// (same as MIGRATION_ALLOW_DATA_LOSS=1).
    #[arg(long, global = true)]
    allow_data_loss: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations (the default).
    Up {
        /// Apply at most this many.
        #[arg(short = 'n', long)]
        num: Option<u32>,
    },
    /// Roll back applied migrations, newest first.
    Down {
        /// How many to roll back.
        #[arg(short = 'n', long, default_value_t = 1)]
        num: u32,
    },
    /// Drop every table and enum type of the schema, then apply all migrations.
    Fresh,
    /// Roll back all applied migrations, then apply them again.
    Refresh,
    /// Roll back all applied migrations.
    Reset,
    /// Show which migrations are applied and which are pending.
    Status,
}

impl Command {
    fn operation(&self) -> Operation {
        match *self {
            Command::Up { num } => Operation::Up(num),
            Command::Down { num } => Operation::Down(Some(num)),
            Command::Fresh => Operation::Fresh,
            Command::Refresh => Operation::Refresh,
            Command::Reset => Operation::Reset,
            Command::Status => Operation::Status,
        }
    }
}

/// Parses the process's arguments (and `.env`), runs the command and returns
/// the exit code: 0, or 1 after one `error: …` line on stderr.
pub async fn main() -> ExitCode {
    // A missing .env is fine; a broken one is reported by the URL check below.
    dotenvy::dotenv().ok();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let operation = cli
        .command
        .as_ref()
        .map_or(Operation::Up(None), Command::operation);
    let data_loss = if cli.allow_data_loss {
        DataLoss::Allow
    } else {
        DataLoss::from_env()
    };
    let Some(url) = cli.database_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        bail!(
            "DATABASE_URL is not set: export DATABASE_URL=postgres://USER[:PASSWORD]@HOST:5432/DB, \
             put it in .env, or pass -u URL"
        );
    };
    let db = connect(url, &cli.database_schema).await?;
    let outcome = crate::run(&db, operation, data_loss).await;
    if outcome.is_ok() && matches!(operation, Operation::Up(_) | Operation::Status) {
        warn_about_lock_capacity(&db).await;
    }
    db.close().await.ok();
    outcome.map_err(|err| {
        let reason = match err {
            DbErr::Migration(reason) => reason,
            other => other.to_string(),
        };
        // The progress lines above may say "has been applied": the run is one
        // transaction, so say plainly that none of it stayed.
        if reason.contains("nothing was changed") {
            anyhow::anyhow!(reason)
        } else {
            anyhow::anyhow!("{reason} (the whole run was rolled back; nothing was changed)")
        }
    })?;
    Ok(())
}

/// After `up` and `status`: a warning on stderr when the server's lock table is
/// too small for the schema's partitions (see [`crate::LockCapacity`]). Not an
/// error: the run itself succeeded.
async fn warn_about_lock_capacity(db: &DatabaseConnection) {
    match crate::lock_capacity(db).await {
        Ok(capacity) => {
            if let Some(warning) = capacity.warning() {
                eprintln!("warning: {warning}");
            }
        }
        Err(err) => eprintln!("warning: cannot read max_locks_per_transaction: {err}"),
    }
}

async fn connect(url: &str, schema: &str) -> anyhow::Result<DatabaseConnection> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "DATABASE_URL must be a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST:5432/DB), got {}",
            redact(url)
        );
    }
    // One plain connection first: its error says why (refused, unknown
    // database, bad password), where a pool only reports a timeout.
    let probe = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
        .await
        .map_err(|_| anyhow::anyhow!("timed out after 10 s"))
        .with_context(|| format!("cannot connect to {} (check DATABASE_URL)", redact(url)))?
        .map_err(|err| anyhow::anyhow!(connect_problem(url, &err)))?;
    probe.close().await.ok();

    let mut options = ConnectOptions::new(with_application_name(url));
    options
        .set_schema_search_path(schema)
        .max_connections(2)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .with_context(|| format!("cannot connect to {} (check DATABASE_URL)", redact(url)))?;
    Ok(db)
}

/// `url` with `application_name=trade-engine-migration` unless it names one, so
/// operators can tell the migrator apart in `pg_stat_activity` and `pg_locks`.
fn with_application_name(url: &str) -> String {
    let mut url = url.to_owned();
    for (name, parameter) in [
        (
            "application_name=",
            "application_name=trade-engine-migration",
        ),
        // The server's INFO messages (a long migration's progress) are
        // printed; its routine notices ("… already exists, skipping") are not.
        ("options=", "options=-c%20client_min_messages%3Dwarning"),
    ] {
        if !url.contains(name) {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{parameter}");
        }
    }
    url
}

/// The chain of causes on one line, each said once (driver errors often
/// repeat their source in their own message), without a backtrace.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_tracing(verbose: bool) {
    let filter = if verbose {
        "debug"
    } else {
        // The server's INFO messages (progress of a long migration) too; sqlx
        // logs them at trace.
        "sea_orm_migration=info,migration=info,sqlx::postgres::notice=trace"
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_target(verbose)
        .with_level(verbose)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::with_application_name;

    #[test]
    fn application_name_is_added_unless_given() {
        let quiet = "options=-c%20client_min_messages%3Dwarning";
        assert_eq!(
            with_application_name("postgres://h/db"),
            format!("postgres://h/db?application_name=trade-engine-migration&{quiet}")
        );
        assert_eq!(
            with_application_name("postgres://h/db?sslmode=require"),
            format!(
                "postgres://h/db?sslmode=require&application_name=trade-engine-migration&{quiet}"
            )
        );
        assert_eq!(
            with_application_name("postgres://h/db?application_name=deploy&options=-c%20x%3D1"),
            "postgres://h/db?application_name=deploy&options=-c%20x%3D1"
        );
    }
}
