//! The exchange-scale benchmark: a bulk [`loader`] and a benchmark of the hot
//! operations through the service against the same statements as raw SQL
//! ([`latency`]), of placement throughput against the single-row insert
//! floor ([`throughput`]), and of the events (the outbox's cost, the publish
//! lag, WebSocket delivery: [`events`]). `src/bin/bench.rs` is the command;
//! docs/performance.md has the results.
//!
//! ```no_run
//! use tests::bench::{self, Scale};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let server = "postgres://postgres@127.0.0.1:5432/postgres";
//! let settings = Scale::Small.settings();
//! let outcome = bench::run(server, "te_bench_small", &settings).await?;
//! println!("{}", bench::report::table(&outcome.measurements));
//! # Ok(()) }
//! ```

pub mod events;
pub mod generate;
pub mod latency;
pub mod loader;
pub mod market;
pub mod plans;
pub mod raw;
pub mod report;
pub mod throughput;
pub mod upkeep;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use api::config::{AuthMode, Config};
use migration::MigratorTrait;
use sea_orm::sqlx::{self, Connection, PgConnection};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use self::events::EventSettings;
use self::generate::Plan;
use self::latency::Fixture;
use self::loader::Loaded;
use self::report::Measurement;
use self::throughput::{Http, Kind, Prices};

/// How big a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// 200 k orders and 200 k trades, short measurements: under two minutes.
    Small,
    /// 10 M orders and 10 M trades, the issue's exchange scale.
    Full,
}

impl std::str::FromStr for Scale {
    type Err = String;

    fn from_str(text: &str) -> Result<Scale, String> {
        match text {
            "small" => Ok(Scale::Small),
            "full" => Ok(Scale::Full),
            other => Err(format!("unknown scale {other:?}: small or full")),
        }
    }
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Full => "full",
        }
    }

    /// The data and measurement sizes of the scale.
    pub fn settings(self) -> Settings {
        let now_micros = chrono::Utc::now().timestamp_micros() - 60_000_000;
        match self {
            Scale::Small => Settings {
                plan: Plan {
                    orders: 200_000,
                    trades: 200_000,
                    users: 2_000,
                    order_days: 60,
                    trade_days: 7,
                    now_micros,
                    seed: 6,
                },
                rounds: 150,
                throughput: Duration::from_millis(1500),
                concurrency: vec![1, 8, 32, 64],
                progress: true,
                events: Some(EventSettings::standard()),
            },
            Scale::Full => Settings {
                plan: Plan {
                    orders: 10_000_000,
                    trades: 10_000_000,
                    users: 200_000,
                    order_days: 180,
                    trade_days: 30,
                    now_micros,
                    seed: 6,
                },
                // A round (every read and placement, both sides) takes tens of
                // milliseconds here; 300 rounds give a p99 from 3 samples.
                rounds: 300,
                throughput: Duration::from_secs(10),
                concurrency: vec![1, 8, 32, 64],
                progress: true,
                events: Some(EventSettings::standard()),
            },
        }
    }
}

/// What to load and how long to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    pub plan: Plan,
    /// Rounds of the interleaved latency benchmark (each runs every operation
    /// once through the service and once as raw SQL).
    pub rounds: usize,
    /// How long each throughput line runs.
    pub throughput: Duration,
    pub concurrency: Vec<usize>,
    pub progress: bool,
    /// The event lines ([`events::run`]), after the others; `None` leaves
    /// them out.
    pub events: Option<EventSettings>,
}

/// A run's load figures and report lines.
#[derive(Debug)]
pub struct Outcome {
    pub loaded: Loaded,
    pub measurements: Vec<Measurement>,
    pub bench_seconds: f64,
}

/// `url` with its database name replaced by `database`.
pub fn database_url(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Drops `database` (if it exists) on the server of `server_url`.
pub async fn drop_database(server_url: &str, database: &str) -> Result<()> {
    let mut admin = PgConnection::connect(server_url)
        .await
        .with_context(|| format!("connecting to {server_url}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

/// Drops and creates `database`, migrates it, and connects with room for 32
/// clients.
pub async fn fresh_database(server_url: &str, database: &str) -> Result<DatabaseConnection> {
    drop_database(server_url, database).await?;
    let mut admin = PgConnection::connect(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{database}\""
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("creating database {database}"))?;
    admin.close().await?;
    let url = database_url(server_url, database);
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(40)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    migration::Migrator::up(&db, None)
        .await
        .context("migrating the bench database")?;
    Ok(db)
}

/// Creates `database` on the server of `server_url`, loads it, benchmarks it.
/// The database is left in place for inspection (the next run drops it).
pub async fn run(server_url: &str, database: &str, settings: &Settings) -> Result<Outcome> {
    let db = fresh_database(server_url, database).await?;
    let pool = db.get_postgres_connection_pool().clone();
    let loaded = loader::load(&pool, settings.plan, settings.progress).await?;
    if settings.progress {
        eprintln!("{}", loaded.summary());
    }
    let started = Instant::now();
    let mut measurements = benchmark(&db, server_url, database, settings).await?;
    if let Some(events) = &settings.events {
        let lines = events::run(&db, server_url, database, events, settings.progress)
            .await
            .context("the event lines")?;
        measurements.extend(lines);
    }
    db.close().await?;
    Ok(Outcome {
        loaded,
        measurements,
        bench_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Blocks per setting of [`upkeep::run`].
const UPKEEP_BLOCKS: usize = 10;

/// How long each kind of placement runs unmeasured before the throughput
/// lines (at most a line's own time).
const WARM_UP: Duration = Duration::from_secs(1);

/// Benchmarks a loaded `database` (behind `db`): the interleaved latency
/// rounds, what the market state costs a placement ([`upkeep`]), then
/// throughput at each concurrency (floor, service resting, service crossing,
/// HTTP).
pub async fn benchmark(
    db: &DatabaseConnection,
    server_url: &str,
    database: &str,
    settings: &Settings,
) -> Result<Vec<Measurement>> {
    let pool = db.get_postgres_connection_pool().clone();
    let fixture = Fixture::read(&pool, "BTC/USDT", generate::user_id(0)).await?;
    let mut measurements = latency::run(db, &fixture, settings.rounds).await?;
    measurements.extend(upkeep::run(db, &fixture, UPKEEP_BLOCKS).await?);

    let prices = Prices::read(&pool).await?;
    let (http, server) = start_api(server_url, database, &[]).await?;
    // Unmeasured, at the highest concurrency: every pooled connection (the
    // bench's and the api's) sends each kind's statements before a line is
    // timed, as the latency rounds warm up first. PostgreSQL plans a prepared
    // statement afresh for its first five executions on a connection before it
    // keeps a generic plan, and a placement's statements plan over every
    // `orders` partition.
    let most = settings.concurrency.iter().copied().max().unwrap_or(1);
    let warm_up = settings.throughput.min(WARM_UP);
    for kind in [
        Kind::Floor,
        Kind::Resting,
        Kind::Crossing,
        Kind::SequencedResting,
        Kind::SequencedCrossing,
        Kind::Http,
        Kind::HttpCrossing,
        Kind::Cancel,
        Kind::SequencedCancel,
    ] {
        throughput::run(kind, most, warm_up, db, &prices, Some(&http)).await?;
    }
    for &clients in &settings.concurrency {
        let floor =
            throughput::run(Kind::Floor, clients, settings.throughput, db, &prices, None).await?;
        measurements.push(throughput::line(Kind::Floor, clients, &floor, None));
        for kind in [
            Kind::Resting,
            Kind::Crossing,
            Kind::SequencedResting,
            Kind::SequencedCrossing,
            Kind::Http,
            Kind::HttpCrossing,
            Kind::Cancel,
            Kind::SequencedCancel,
        ] {
            let run = throughput::run(kind, clients, settings.throughput, db, &prices, Some(&http))
                .await?;
            measurements.push(throughput::line(kind, clients, &run, Some(&floor.samples)));
        }
    }
    server.shutdown().await.context("stopping the api")?;
    Ok(measurements)
}

/// The api on a free loopback port, trusted-header auth, no background jobs;
/// `extra` settings (by their README names) over these.
async fn start_api(
    server_url: &str,
    database: &str,
    extra: &[(&'static str, String)],
) -> Result<(Http, api::server::Server)> {
    let url = database_url(server_url, database);
    let secret = api::server::random_secret();
    let settings = [
        ("DATABASE_URL", url.clone()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_MODE", "trusted-header".to_owned()),
        ("JWT_SECRET", secret.clone()),
        ("MIGRATE_ON_START", "false".to_owned()),
        ("DB_MAX_CONNECTIONS", "34".to_owned()),
        ("BACKGROUND_JOBS", "false".to_owned()),
        // The benchmark measures the engine, not the limiter: its few users
        // send far more than a client's rate.
        ("RATE_LIMIT_PER_SECOND", "0".to_owned()),
        ("ANONYMOUS_RATE_LIMIT_PER_SECOND", "0".to_owned()),
    ];
    let config = Config::from_lookup(|name| {
        extra
            .iter()
            .chain(settings.iter())
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })?;
    let pool = api::server::connect(&url, &config).await?;
    let server = api::server::Server::start(
        pool,
        api::auth::Auth::new(AuthMode::TrustedHeader, &secret),
        &config,
    )
    .await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok((
        Http {
            base: format!("http://{}", server.addr()),
            client,
            sequencer: server.sequencer().clone(),
        },
        server,
    ))
}
