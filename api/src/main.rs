//! `api`: serve the trade engine's HTTP API (the default), mint a token, or
//! archive partitions past retention (`api archive`, `api archive list`,
//! `api archive restore`).
//!
//! With no `DATABASE_URL`, it starts a project-local PostgreSQL cluster in
//! `.pgdata/` from the server binaries installed on the machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use api::archiving::{self, Archiving};
use api::auth::Auth;
use api::config::{AuthMode, Config, ConfigError, Variables};
use api::embedded::EmbeddedPostgres;
use api::server::{DEMO_TOKEN_TTL, DEMO_USER, Server, authenticator, connect, shutdown_signal};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(version, about = "The trade engine's HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Variables,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print a JWT for a user, signed with JWT_SECRET.
    Token {
        /// The user's id (a UUID), the token's `sub`.
        user_id: Uuid,
        /// How long the token is valid, in hours.
        #[arg(long, default_value_t = 24)]
        hours: u64,
    },
    /// Archive the partitions past retention to Parquet in the archive store
    /// (ARCHIVE_DIR or ARCHIVE_URL), then drop them; a dry run unless
    /// --execute. Also lists and restores archives.
    Archive(ArchiveArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ArchiveArgs {
    #[command(subcommand)]
    command: Option<ArchiveCommand>,
    /// Export, verify and drop the partitions past retention (without it:
    /// list them and whether each is archived, change nothing).
    #[arg(long)]
    execute: bool,
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    /// List every archive in the store (partitions dropped long ago included).
    List,
    /// Load an archived partition back: into its original partition
    /// (re-created if gone), or with --into into a new side table.
    Restore {
        /// The partition's name, e.g. trades_2021_06_01 or orders_2021_06.
        partition: String,
        /// Load into this new table (same columns, attached to nothing)
        /// instead of the original partition.
        #[arg(long, value_name = "SIDE_TABLE")]
        into: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    // Built after `.env` is loaded: clap reads each setting's variable then.
    let parser = Variables::unset_blank(Cli::command());
    let parsed = parser
        .clone()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => match ConfigError::from_clap(&err, &parser) {
            Some(invalid) => return invalid_setting(&invalid),
            None => err.exit(),
        },
    };
    let config = match Config::from_variables(cli.settings) {
        Ok(config) => config,
        Err(invalid) => return invalid_setting(&invalid),
    };
    let logs = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
    );
    // The archive commands print their summary on stdout; their log goes to stderr.
    if matches!(cli.command, Some(Command::Archive(_))) {
        logs.with_writer(std::io::stderr).init();
    } else {
        logs.init();
    }
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&config).await,
        Command::Token { user_id, hours } => token(&config, user_id, hours),
        Command::Archive(args) => archive(&config, args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": ").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// A setting that cannot be used: one line naming it, and a failure.
fn invalid_setting(invalid: &ConfigError) -> ExitCode {
    eprintln!("error: {invalid}");
    ExitCode::FAILURE
}

fn token(config: &Config, user_id: Uuid, hours: u64) -> anyhow::Result<()> {
    let Some(secret) = &config.jwt_secret else {
        bail!(
            "JWT_SECRET is not set: set the same secret the server uses (in the environment or .env)"
        );
    };
    let token = Auth::new(AuthMode::Jwt, secret)
        .mint(user_id, Duration::from_secs(hours.saturating_mul(3600)))
        .context("cannot sign the token")?;
    println!("{token}");
    Ok(())
}

/// The embedded cluster's folder: `EMBEDDED_PGDATA`, else `.pgdata` at the
/// repository root (git-ignored).
fn embedded_dir() -> PathBuf {
    std::env::var_os("EMBEDDED_PGDATA").map_or_else(
        || {
            // The repository root without `api/..`: the socket path inside the
            // folder must stay under the OS limit (about 100 bytes).
            let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join(".pgdata")
        },
        PathBuf::from,
    )
}

/// The database to use: `DATABASE_URL`, else the embedded cluster (started,
/// or attached to when running), which the caller stops.
async fn database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    Ok(match &config.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let dir = embedded_dir();
            tracing::info!(dir = %dir.display(), "DATABASE_URL is not set: starting the embedded PostgreSQL");
            let cluster = EmbeddedPostgres::start(&dir).await?;
            (cluster.database_url().to_owned(), Some(cluster))
        }
    })
}

/// Stops the embedded cluster [`database`] started, if it did.
async fn stop_embedded(embedded: Option<EmbeddedPostgres>) -> anyhow::Result<()> {
    if let Some(cluster) = embedded {
        cluster
            .stop()
            .await
            .context("stopping the embedded PostgreSQL")?;
    }
    Ok(())
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let (url, embedded) = database(config).await?;
    let outcome = serve_on(&url, config).await;
    stop_embedded(embedded).await?;
    outcome
}

/// `api archive …`: one command against the database and the archive store
/// of the settings, its summary on stdout.
async fn archive(config: &Config, args: ArchiveArgs) -> anyhow::Result<()> {
    let command = match args.command {
        None => archiving::Command::Due {
            execute: args.execute,
        },
        Some(ArchiveCommand::List) => archiving::Command::List,
        Some(ArchiveCommand::Restore { partition, into }) => {
            archiving::Command::Restore { partition, into }
        }
    };
    let store = Archiving::open(config)
        .context("cannot open the archive store (check ARCHIVE_DIR / ARCHIVE_URL)")?;
    if store.is_none() && command != (archiving::Command::Due { execute: false }) {
        bail!(archiving::NO_STORE);
    }
    let (url, embedded) = database(config).await?;
    let outcome = async {
        probe(&url).await?;
        let db = connect(&url, config)
            .await
            .context("cannot connect to the database (check DATABASE_URL)")?;
        // Not locked for the run: log lines may come from other threads.
        let mut stdout = std::io::stdout();
        let outcome = archiving::run_command(&command, &db, store.as_deref(), &mut stdout).await;
        db.close().await.ok();
        outcome
    }
    .await;
    stop_embedded(embedded).await?;
    outcome
}

/// One plain connection first: its error says why in one line (refused, a
/// database that does not exist and how to create it, a bad password), where
/// the pool would only fail later, deep in the first statement.
async fn probe(url: &str) -> anyhow::Result<()> {
    use sea_orm::sqlx::{Connection, PgConnection};
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Err(_) => bail!(
            "cannot connect to {} (check DATABASE_URL): no answer within 10 s",
            migration::redact(url)
        ),
        Ok(Err(error)) => bail!(migration::connect_problem(url, &error)),
        Ok(Ok(connection)) => {
            connection.close().await.ok();
            Ok(())
        }
    }
}

async fn serve_on(url: &str, config: &Config) -> anyhow::Result<()> {
    probe(url).await?;
    tracing::info!(database = %migration::redact(url), "using the database");
    let db = connect(url, config)
        .await
        .context("cannot open the database pool (check DATABASE_URL)")?;
    if config.migrate_on_start {
        Migrator::up(&db, None)
            .await
            .context("applying pending migrations (set MIGRATE_ON_START=false to skip)")?;
        tracing::info!("migrations are up to date");
    }
    // A store that cannot be opened is named as such, before the listener.
    Archiving::open(config)
        .context("cannot open the archive store (check ARCHIVE_DIR / ARCHIVE_URL)")?;
    let (auth, demo) = authenticator(config).context("cannot sign the demo token")?;
    let server = Server::start(db.clone(), auth, config)
        .await
        .with_context(|| format!("cannot listen on {} (set BIND_ADDR)", config.bind_addr))?;
    tracing::info!(
        addr = %server.addr(),
        auth = ?config.auth_mode,
        pool_mode = %config.db_pool_mode,
        "trade engine API ready"
    );
    if let Some(token) = demo {
        println!(
            "JWT_SECRET is not set: this run signs tokens with a random secret that is never \
             shown. A token for the demo user {DEMO_USER}, valid {} hours:\n{token}",
            DEMO_TOKEN_TTL.as_secs() / 3600
        );
    }
    shutdown_signal().await;
    server.shutdown().await.context("shutting down")?;
    db.close().await.ok();
    Ok(())
}
