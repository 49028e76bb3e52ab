//! Configuration from the environment (and `.env`), with the names of the
//! README's table: clap reads and parses each variable ([`Variables`]: also
//! a flag of the same name, with its default and help), then
//! [`Config::from_variables`] checks what settings require of each other.
//! Every bad value is one error that names the variable ([`ConfigError`]).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use service::archive::Location;
use service::orders::PlacementLimits;
use service::pooling::{PoolMode, Settings};

/// How callers prove who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: Bearer <JWT>`, HS256 with the configured secret.
    Jwt,
    /// `X-User-ID: <uuid>`, set by a gateway that authenticated the user.
    TrustedHeader,
}

/// `TRUSTED_PROXIES`: the networks (CIDRs, or single addresses) whose
/// requests may carry `X-User-ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 form) is
    /// inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// `10.0.0.0/8, 192.168.1.7, ::1`: comma-separated, at least one.
    fn from_str(text: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a CIDR such as 10.0.0.0/8 or an address"))?;
            nets.push(net);
        }
        if nets.is_empty() {
            return Err("expected comma-separated CIDRs such as 10.0.0.0/8".to_owned());
        }
        Ok(TrustedProxies(nets))
    }
}

/// Request rate limits: a token bucket per user (and per client address for
/// anonymous calls). `None` turns one off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once on top of the sustained rate.
    pub burst: u32,
}

/// The shortest JWT secret accepted: 32 bytes, HS256's key size.
pub const MIN_JWT_SECRET: usize = 32;

/// The api's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`; `None` runs the embedded local PostgreSQL.
    pub database_url: Option<String>,
    /// `DATABASE_READ_URL`: a streaming replica of `DATABASE_URL` for public
    /// market data and order and trade history; `None` reads on the primary.
    pub database_read_url: Option<String>,
    /// `REPLICA_MAX_LAG_MS`, default 1000: a replica further behind than this
    /// is bypassed (the primary serves).
    pub replica_max_lag: Duration,
    /// `BIND_ADDR`, default `127.0.0.1:8080`.
    pub bind_addr: SocketAddr,
    /// `AUTH_MODE`: `jwt` (default) or `trusted-header`.
    pub auth_mode: AuthMode,
    /// `JWT_SECRET`; `None` makes the server generate one for its lifetime.
    pub jwt_secret: Option<String>,
    /// `MIGRATE_ON_START`, default true.
    pub migrate_on_start: bool,
    /// `DB_MAX_CONNECTIONS`, default 10.
    pub db_max_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS`, default 3000: a request waits at most this long
    /// for a connection, then gets 503.
    pub db_acquire_timeout: Duration,
    /// `BACKGROUND_JOBS`, default true: partition maintenance and order expiry.
    pub background_jobs: bool,
    /// `DB_POOL_MODE`: `direct` (default; also right for a session-mode
    /// pooler) or `transaction` (PgBouncer `pool_mode = transaction`: every
    /// request is one transaction, no statement cache).
    pub db_pool_mode: PoolMode,
    /// `DB_STATEMENT_TIMEOUT_MS`, default 10000; 0 turns it off. A statement
    /// that runs longer (e.g. waiting on someone's lock) is cancelled and the
    /// request answered 503.
    pub db_statement_timeout: Option<Duration>,
    /// `TRUSTED_PROXIES`; required in trusted-header mode on a non-loopback
    /// `BIND_ADDR`.
    pub trusted_proxies: Option<TrustedProxies>,
    /// `HEADER_READ_TIMEOUT_MS`, default 10000: a client that has not sent
    /// its whole request head by then is disconnected.
    pub header_read_timeout: Duration,
    /// `REQUEST_TIMEOUT_MS`, default 30000: a request still running then is
    /// answered 503.
    pub request_timeout: Duration,
    /// `MAX_CONCURRENT_REQUESTS`, default 256: more in flight are answered
    /// 503 with `Retry-After` at once.
    pub max_concurrent_requests: usize,
    /// `RATE_LIMIT_PER_SECOND` / `RATE_LIMIT_BURST` (defaults 20 / 40) for each
    /// authenticated user; `RATE_LIMIT_PER_SECOND=0` turns it off.
    pub user_rate_limit: Option<RateLimit>,
    /// `ANONYMOUS_RATE_LIMIT_PER_SECOND` / `ANONYMOUS_RATE_LIMIT_BURST`
    /// (defaults 10 / 20) for each client address without credentials; 0 off.
    pub anonymous_rate_limit: Option<RateLimit>,
    /// `MAX_RESTING_ORDERS_PER_USER`, default the service's (1000): open
    /// LIMIT orders and waiting stop orders of one user, over all symbols.
    pub max_resting_orders_per_user: u64,
    /// `JOB_LOCK_TIMEOUT_MS`, default 5000: the background jobs give up a lock
    /// wait after this long and try again at their next tick.
    pub job_lock_timeout: Duration,
    /// `PLACEMENT_BATCH_MAX`, default 64: the most placements (or cancels)
    /// of one symbol the sequencer writes in one transaction (1: no batching).
    pub placement_batch_max: usize,
    /// `PLACEMENT_LOCK_AHEAD`, default true: a symbol's next batch opens its
    /// transaction and asks for the book lock while the previous one
    /// commits (one more pool connection per symbol with a queue).
    pub placement_lock_ahead: bool,
    /// `ARCHIVE_DIR` (a folder) or `ARCHIVE_URL` (`s3://bucket/prefix`,
    /// `file:///path`): where partitions past retention are archived before
    /// they are dropped. `None`: no archive store (the `archive` commands say
    /// how to set one, and the hourly job archives nothing).
    pub archive: Option<Location>,
    /// `ARCHIVE_ON_SCHEDULE`, default false: the hourly maintenance job
    /// archives, verifies and drops what retention makes due. Needs a store.
    pub archive_on_schedule: bool,
    /// The event relay and the WebSocket streams.
    pub events: EventsConfig,
}

/// The event relay and the WebSocket streams (`/api/v1/ws`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// `RABBITMQ_URL` (`amqp://user:password@host:5672/vhost`): the relay
    /// publishes to the broker and each api process feeds its streams from
    /// it. `None`: the streams are fed in-process (one api process).
    pub rabbitmq_url: Option<String>,
    /// `RABBITMQ_EXCHANGE`, default `trade_engine.events`: the topic exchange
    /// (declared durable if missing).
    pub exchange: String,
    /// `EVENTS_POLL_MS`, default 20: how often the relay looks for events
    /// written by other processes (its own placements wake it at once).
    pub poll: Duration,
    /// `EVENTS_RETENTION_MINUTES`, default 60: published events are deleted
    /// from the outbox after this long.
    pub retention: Duration,
    /// `WS_MAX_CONNECTIONS_PER_USER`, default 10.
    pub max_connections_per_user: usize,
    /// `WS_MAX_CONNECTIONS_PER_ADDRESS`, default 100.
    pub max_connections_per_address: usize,
    /// `WS_MAX_SUBSCRIPTIONS`, default 50: channels one connection may hold.
    pub max_subscriptions: usize,
    /// `WS_SEND_BUFFER`, default 1024: messages queued for one connection;
    /// a client that lets it fill is disconnected.
    pub send_buffer: usize,
    /// `WS_HEARTBEAT_SECS`, default 20: a heartbeat message and a ping this
    /// often; a client silent for three of them is disconnected.
    pub heartbeat: Duration,
}

impl Config {
    /// The database pool's settings: `DB_POOL_MODE`, `DB_MAX_CONNECTIONS`,
    /// `DB_ACQUIRE_TIMEOUT_MS`, `DB_STATEMENT_TIMEOUT_MS`, `JOB_LOCK_TIMEOUT_MS`.
    pub fn pool_settings(&self) -> Settings {
        Settings {
            mode: self.db_pool_mode,
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: self.db_statement_timeout,
            job_lock_timeout: self.job_lock_timeout,
        }
    }

    /// The placement bounds: the per-user cap from the configuration, the
    /// service's defaults for the rest.
    pub fn placement_limits(&self) -> PlacementLimits {
        PlacementLimits {
            max_resting_orders_per_user: self.max_resting_orders_per_user,
            ..PlacementLimits::default()
        }
    }
}

/// A variable with a value the api cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: variable.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// The error for a value clap refused, named by its variable (a flag
    /// given on the command line is named by the variable it stands for);
    /// `None` for other clap errors (`--help`, an unknown flag, …).
    pub fn from_clap(error: &clap::Error, command: &clap::Command) -> Option<ConfigError> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        use std::error::Error as _;
        if error.kind() != ErrorKind::ValueValidation {
            return None;
        }
        let text = |kind| match error.get(kind) {
            Some(ContextValue::String(text)) => Some(text.as_str()),
            _ => None,
        };
        // `--db-max-connections <DB_MAX_CONNECTIONS>`
        let long = text(ContextKind::InvalidArg)?
            .strip_prefix("--")?
            .split([' ', '='])
            .next()?;
        let variable = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))?
            .get_env()?
            .to_str()?;
        let value = text(ContextKind::InvalidValue).unwrap_or_default();
        let reason = error.source().map(ToString::to_string).unwrap_or_default();
        Some(ConfigError::new(variable, &shown(variable, value), reason))
    }
}

/// A value as an error may show it: never a secret, nor a URL with credentials.
fn shown(variable: &str, value: &str) -> String {
    if variable == "JWT_SECRET" || value.contains('@') {
        "(hidden)".to_owned()
    } else {
        value.to_owned()
    }
}

/// A value parser for a whole number in `lo..=hi`.
fn whole(lo: u64, hi: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("expected a whole number from {lo} to {hi}"))
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
fn flag(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected HOST:PORT, e.g. 127.0.0.1:8080".to_owned())
}

fn auth_mode(text: &str) -> Result<AuthMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "jwt" => Ok(AuthMode::Jwt),
        "trusted-header" => Ok(AuthMode::TrustedHeader),
        _ => Err("expected jwt or trusted-header".to_owned()),
    }
}

fn pool_mode(text: &str) -> Result<PoolMode, String> {
    text.parse()
        .map_err(|_| "expected direct, session or transaction".to_owned())
}

fn text(text: &str) -> Result<String, String> {
    Ok(text.trim().to_owned())
}

fn secret(text: &str) -> Result<String, String> {
    if text.len() < MIN_JWT_SECRET {
        return Err(format!(
            "must be at least {MIN_JWT_SECRET} bytes, e.g. the output of `openssl rand -hex 32`"
        ));
    }
    Ok(text.to_owned())
}

fn amqp_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    if !url.starts_with("amqp://") {
        return Err(
            "expected amqp://user:password@host:5672/vhost (amqps:// is not built in: \
                    terminate TLS in front of the broker, e.g. with a sidecar)"
                .to_owned(),
        );
    }
    Ok(url.to_owned())
}

fn exchange(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(
            "expected an exchange name of letters, digits, '-', '_', '.', ':' (at most 255)"
                .to_owned(),
        );
    }
    Ok(name.to_owned())
}

/// Every setting as clap reads it: an environment variable (the api loads
/// `.env` first), or the flag of the same name before a subcommand
/// (`api --bind-addr 0.0.0.0:8080`). A variable set to an empty value counts
/// as unset. [`Config::from_variables`] checks how they go together.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Settings (environment variables; also read from .env)")]
pub struct Variables {
    /// The PostgreSQL database; unset: the embedded local cluster.
    #[arg(long, env = "DATABASE_URL", value_parser = text, hide_env_values = true)]
    pub database_url: Option<String>,
    /// A streaming replica of DATABASE_URL for market data and history.
    #[arg(long, env = "DATABASE_READ_URL", value_parser = text, hide_env_values = true)]
    pub database_read_url: Option<String>,
    /// A replica further behind than this (ms) is bypassed.
    #[arg(long, env = "REPLICA_MAX_LAG_MS", default_value_t = 1_000, value_parser = whole(10, 3_600_000))]
    pub replica_max_lag_ms: u64,
    /// Where the API listens.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080", value_parser = socket_addr)]
    pub bind_addr: SocketAddr,
    /// jwt or trusted-header.
    #[arg(long, env = "AUTH_MODE", default_value = "jwt", value_parser = auth_mode)]
    pub auth_mode: AuthMode,
    /// The HS256 secret (at least 32 bytes); unset: a random one per run.
    #[arg(long, env = "JWT_SECRET", value_parser = secret, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The networks (CIDRs) whose requests may carry X-User-ID.
    #[arg(long, env = "TRUSTED_PROXIES", value_parser = TrustedProxies::from_str)]
    pub trusted_proxies: Option<TrustedProxies>,
    /// Apply pending migrations at start.
    #[arg(long, env = "MIGRATE_ON_START", default_value = "true", value_parser = flag, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// direct (or a session-mode pooler) or transaction (PgBouncer).
    #[arg(long, env = "DB_POOL_MODE", default_value = "direct", value_parser = pool_mode)]
    pub db_pool_mode: PoolMode,
    /// The pool's connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = whole(1, 1_000))]
    pub db_max_connections: u64,
    /// How long (ms) a request waits for a connection before 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3_000, value_parser = whole(1, 600_000))]
    pub db_acquire_timeout_ms: u64,
    /// A statement running longer (ms) is cancelled; 0: no limit.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 10_000, value_parser = whole(0, 3_600_000))]
    pub db_statement_timeout_ms: u64,
    /// Partition maintenance, archiving, order expiry and stop triggers.
    #[arg(long, env = "BACKGROUND_JOBS", default_value = "true", value_parser = flag, action = clap::ArgAction::Set)]
    pub background_jobs: bool,
    /// The background jobs give up a lock wait after this long (ms).
    #[arg(long, env = "JOB_LOCK_TIMEOUT_MS", default_value_t = 5_000, value_parser = whole(1, 600_000))]
    pub job_lock_timeout_ms: u64,
    /// A client that has not sent its request head by then (ms) is dropped.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = whole(100, 600_000))]
    pub header_read_timeout_ms: u64,
    /// A request still running then (ms) is answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = whole(100, 3_600_000))]
    pub request_timeout_ms: u64,
    /// More requests in flight are answered 503 at once.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 256, value_parser = whole(1, 100_000))]
    pub max_concurrent_requests: u64,
    /// Requests per second of each user; 0: no limit.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 20, value_parser = whole(0, 1_000_000))]
    pub rate_limit_per_second: u64,
    /// Requests a user may send at once above the rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 40, value_parser = whole(1, 1_000_000))]
    pub rate_limit_burst: u64,
    /// Requests per second of each address without credentials; 0: no limit.
    #[arg(long, env = "ANONYMOUS_RATE_LIMIT_PER_SECOND", default_value_t = 10, value_parser = whole(0, 1_000_000))]
    pub anonymous_rate_limit_per_second: u64,
    /// Requests an address may send at once above the rate.
    #[arg(long, env = "ANONYMOUS_RATE_LIMIT_BURST", default_value_t = 20, value_parser = whole(1, 1_000_000))]
    pub anonymous_rate_limit_burst: u64,
    /// Open LIMIT and waiting stop orders of one user, over all symbols.
    #[arg(long, env = "MAX_RESTING_ORDERS_PER_USER", default_value_t = PlacementLimits::default().max_resting_orders_per_user, value_parser = whole(1, 10_000_000))]
    pub max_resting_orders_per_user: u64,
    /// The most placements (or cancels) of one symbol written in one transaction.
    #[arg(long, env = "PLACEMENT_BATCH_MAX", default_value_t = 64, value_parser = whole(1, 1_000))]
    pub placement_batch_max: u64,
    /// A symbol's next batch asks for the book lock while the previous one commits.
    #[arg(long, env = "PLACEMENT_LOCK_AHEAD", default_value = "true", value_parser = flag, action = clap::ArgAction::Set)]
    pub placement_lock_ahead: bool,
    /// A folder for archives of partitions past retention.
    #[arg(long, env = "ARCHIVE_DIR", value_parser = text)]
    pub archive_dir: Option<String>,
    /// An object store for the archives (s3://bucket/prefix, file:///path).
    #[arg(long, env = "ARCHIVE_URL", value_parser = text)]
    pub archive_url: Option<String>,
    /// The hourly job archives, verifies and drops what retention makes due.
    #[arg(long, env = "ARCHIVE_ON_SCHEDULE", default_value = "false", value_parser = flag, action = clap::ArgAction::Set)]
    pub archive_on_schedule: bool,
    /// The broker the relay publishes to; unset: streams fed in-process.
    #[arg(long, env = "RABBITMQ_URL", value_parser = amqp_url, hide_env_values = true)]
    pub rabbitmq_url: Option<String>,
    /// The topic exchange of the events.
    #[arg(long, env = "RABBITMQ_EXCHANGE", default_value = crate::events::EXCHANGE, value_parser = exchange)]
    pub rabbitmq_exchange: String,
    /// How often (ms) the relay looks for other processes' events.
    #[arg(long, env = "EVENTS_POLL_MS", default_value_t = 20, value_parser = whole(1, 10_000))]
    pub events_poll_ms: u64,
    /// Published events are deleted after this long (minutes).
    #[arg(long, env = "EVENTS_RETENTION_MINUTES", default_value_t = 60, value_parser = whole(1, 7 * 24 * 60))]
    pub events_retention_minutes: u64,
    /// WebSocket connections of one user.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_USER", default_value_t = 10, value_parser = whole(1, 10_000))]
    pub ws_max_connections_per_user: u64,
    /// WebSocket connections of one client address.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 100, value_parser = whole(1, 100_000))]
    pub ws_max_connections_per_address: u64,
    /// Channels one WebSocket connection may hold.
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS", default_value_t = 50, value_parser = whole(1, 10_000))]
    pub ws_max_subscriptions: u64,
    /// Messages queued for one connection; a client that lets it fill is dropped.
    #[arg(long, env = "WS_SEND_BUFFER", default_value_t = 1_024, value_parser = whole(1, 1_000_000))]
    pub ws_send_buffer: u64,
    /// Seconds between heartbeats; a client silent for three is dropped.
    #[arg(long, env = "WS_HEARTBEAT_SECS", default_value_t = 20, value_parser = whole(1, 3_600))]
    pub ws_heartbeat_secs: u64,
}

impl Variables {
    /// `command` with the settings' arguments, each reading its variable as
    /// the process has it now (a variable set to an empty value: unset).
    pub fn augment(command: clap::Command) -> clap::Command {
        use clap::Args as _;
        Variables::unset_blank(Variables::augment_args(command))
    }

    /// `command` with every argument whose variable is set to an empty (or
    /// blank) value reading no variable: such a variable counts as unset.
    pub fn unset_blank(command: clap::Command) -> clap::Command {
        command.mut_args(|arg| {
            let blank = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.to_string_lossy().trim().is_empty());
            if blank { arg.env(None) } else { arg }
        })
    }
}

impl Config {
    /// Reads the process environment (after `.env`, which the binary loads).
    pub fn from_env() -> Result<Config, ConfigError> {
        let command = Variables::augment(clap::Command::new("api"));
        Config::from_matches(command.clone().try_get_matches_from(["api"]), &command)
    }

    /// Reads the settings through `lookup` instead of the process environment
    /// (tests): each variable `lookup` knows is given as its flag, through
    /// the same parsers and checks.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        use clap::Args as _;
        let command = Variables::augment_args(clap::Command::new("api"));
        let mut args = vec!["api".to_owned()];
        for arg in command.get_arguments() {
            if let (Some(long), Some(variable)) =
                (arg.get_long(), arg.get_env().and_then(|v| v.to_str()))
                && let Some(value) = lookup(variable).filter(|v| !v.trim().is_empty())
            {
                args.push(format!("--{long}={value}"));
            }
        }
        let variables = command
            .clone()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(args);
        Config::from_matches(variables, &command)
    }

    /// The configuration from clap's matches of [`Variables`]' arguments
    /// (`command` names their variables).
    pub fn from_matches(
        matches: Result<clap::ArgMatches, clap::Error>,
        command: &clap::Command,
    ) -> Result<Config, ConfigError> {
        use clap::FromArgMatches as _;
        let variables = matches
            .and_then(|m| Variables::from_arg_matches(&m))
            .map_err(|err| {
                ConfigError::from_clap(&err, command)
                    .unwrap_or_else(|| ConfigError::new("(arguments)", "", err.to_string()))
            })?;
        Config::from_variables(variables)
    }

    /// The settings, checked together: what one setting requires of another.
    pub fn from_variables(v: Variables) -> Result<Config, ConfigError> {
        let bind_addr = v.bind_addr;
        if v.jwt_secret.is_none() && v.auth_mode == AuthMode::Jwt && !bind_addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "JWT_SECRET",
                "",
                format!(
                    "must be set when BIND_ADDR ({bind_addr}) is not a loopback address: tokens \
                     signed with a per-run random secret cannot be minted by anyone else"
                ),
            ));
        }
        if v.auth_mode == AuthMode::TrustedHeader
            && v.trusted_proxies.is_none()
            && !bind_addr.ip().is_loopback()
        {
            return Err(ConfigError::new(
                "TRUSTED_PROXIES",
                "",
                format!(
                    "must be set in trusted-header mode when BIND_ADDR ({bind_addr}) is not a \
                     loopback address: name the gateway's addresses (CIDRs), or anyone who can \
                     reach the port could claim to be any user"
                ),
            ));
        }
        if v.migrate_on_start && v.db_pool_mode == PoolMode::Transaction {
            return Err(ConfigError::new(
                "MIGRATE_ON_START",
                "true",
                "migrations need a direct or session-mode connection, not a transaction-mode \
                 pooler (DB_POOL_MODE=transaction): set MIGRATE_ON_START=false and run \
                 `cargo run -p migration -- up` against the server or a session-mode pool",
            ));
        }
        if v.database_read_url.is_some() && v.database_url.is_none() {
            return Err(ConfigError::new(
                "DATABASE_READ_URL",
                "(hidden)",
                "needs DATABASE_URL: the embedded PostgreSQL has no replica; set DATABASE_URL \
                 to the primary the replica streams from",
            ));
        }
        let archive = match (v.archive_dir, v.archive_url) {
            (Some(_), Some(url)) => {
                return Err(ConfigError::new(
                    "ARCHIVE_URL",
                    &shown("ARCHIVE_URL", &url),
                    "ARCHIVE_DIR is set too: set one of them (a folder in ARCHIVE_DIR, or an \
                     object store URL in ARCHIVE_URL)",
                ));
            }
            (Some(dir), None) => Some(Location::Dir(dir.into())),
            (None, Some(url)) => {
                let invalid = |reason: String| {
                    ConfigError::new("ARCHIVE_URL", &shown("ARCHIVE_URL", &url), reason)
                };
                let location = Location::parse_url(&url).map_err(|err| match err {
                    service::archive::ArchiveError::Invalid { reason, .. } => invalid(reason),
                    other => invalid(other.to_string()),
                })?;
                if location.is_memory() {
                    return Err(invalid(
                        "a memory:// store loses its archives when the process exits, after \
                         their partitions were dropped: use a folder (ARCHIVE_DIR) or \
                         s3://bucket/prefix"
                            .to_owned(),
                    ));
                }
                Some(location)
            }
            (None, None) => None,
        };
        if v.archive_on_schedule && archive.is_none() {
            return Err(ConfigError::new(
                "ARCHIVE_ON_SCHEDULE",
                "true",
                "needs an archive store: set ARCHIVE_DIR=/path/to/folder or \
                 ARCHIVE_URL=s3://bucket/prefix",
            ));
        }
        let rate_limit = |per_second: u64, burst: u64| {
            (per_second > 0).then_some(RateLimit {
                per_second: per_second as u32,
                burst: burst as u32,
            })
        };
        let ms = Duration::from_millis;
        Ok(Config {
            database_url: v.database_url,
            database_read_url: v.database_read_url,
            replica_max_lag: ms(v.replica_max_lag_ms),
            bind_addr,
            auth_mode: v.auth_mode,
            jwt_secret: v.jwt_secret,
            migrate_on_start: v.migrate_on_start,
            db_max_connections: v.db_max_connections as u32,
            db_acquire_timeout: ms(v.db_acquire_timeout_ms),
            background_jobs: v.background_jobs,
            db_pool_mode: v.db_pool_mode,
            db_statement_timeout: (v.db_statement_timeout_ms > 0)
                .then(|| ms(v.db_statement_timeout_ms)),
            trusted_proxies: v.trusted_proxies,
            header_read_timeout: ms(v.header_read_timeout_ms),
            request_timeout: ms(v.request_timeout_ms),
            max_concurrent_requests: v.max_concurrent_requests as usize,
            user_rate_limit: rate_limit(v.rate_limit_per_second, v.rate_limit_burst),
            anonymous_rate_limit: rate_limit(
                v.anonymous_rate_limit_per_second,
                v.anonymous_rate_limit_burst,
            ),
            max_resting_orders_per_user: v.max_resting_orders_per_user,
            job_lock_timeout: ms(v.job_lock_timeout_ms),
            placement_batch_max: v.placement_batch_max as usize,
            placement_lock_ahead: v.placement_lock_ahead,
            archive,
            archive_on_schedule: v.archive_on_schedule,
            events: EventsConfig {
                rabbitmq_url: v.rabbitmq_url,
                exchange: v.rabbitmq_exchange,
                poll: ms(v.events_poll_ms),
                retention: Duration::from_secs(60 * v.events_retention_minutes),
                max_connections_per_user: v.ws_max_connections_per_user as usize,
                max_connections_per_address: v.ws_max_connections_per_address as usize,
                max_subscriptions: v.ws_max_subscriptions as usize,
                send_buffer: v.ws_send_buffer as usize,
                heartbeat: Duration::from_secs(v.ws_heartbeat_secs),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_follow_the_readme() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.auth_mode, AuthMode::Jwt);
        assert!(c.migrate_on_start && c.background_jobs);
        assert_eq!(c.database_url, None);
        assert_eq!(c.database_read_url, None);
        assert_eq!(c.replica_max_lag, Duration::from_secs(1));
        assert_eq!(c.db_max_connections, 10);
        assert_eq!(c.db_pool_mode, PoolMode::Direct);
        assert_eq!(c.db_statement_timeout, Some(Duration::from_secs(10)));
        let off = config(&[("DB_STATEMENT_TIMEOUT_MS", "0")]).expect("valid");
        assert_eq!(off.db_statement_timeout, None);
        assert_eq!(c.archive, None);
        assert!(!c.archive_on_schedule);
    }

    #[test]
    fn an_archive_store_is_a_folder_or_a_url_and_the_schedule_needs_one() {
        let c = config(&[
            ("ARCHIVE_DIR", "/var/lib/archive"),
            ("ARCHIVE_ON_SCHEDULE", "on"),
        ])
        .expect("valid");
        assert_eq!(c.archive, Some(Location::Dir("/var/lib/archive".into())));
        assert!(c.archive_on_schedule);
        let c = config(&[("ARCHIVE_URL", "s3://bucket/trade/archive")]).expect("valid");
        assert_eq!(
            c.archive.as_ref().map(ToString::to_string).as_deref(),
            Some("s3://bucket/trade/archive")
        );
        assert!(!c.archive_on_schedule);
        let c = config(&[("ARCHIVE_URL", "file:///var/lib/archive")]).expect("valid");
        assert!(matches!(c.archive, Some(Location::Url(_))));
        for (pairs, variable, says) in [
            (
                vec![("ARCHIVE_DIR", "/a"), ("ARCHIVE_URL", "s3://bucket/x")],
                "ARCHIVE_URL",
                "ARCHIVE_DIR is set too",
            ),
            (
                vec![("ARCHIVE_URL", "bucket/x")],
                "ARCHIVE_URL",
                "s3://bucket/prefix",
            ),
            (
                vec![("ARCHIVE_URL", "gs://bucket/x")],
                "ARCHIVE_URL",
                "built in",
            ),
            (
                vec![("ARCHIVE_URL", "ftp://host/x")],
                "ARCHIVE_URL",
                "s3://bucket/prefix",
            ),
            (
                vec![("ARCHIVE_URL", "memory://")],
                "ARCHIVE_URL",
                "loses its archives",
            ),
            (
                vec![("ARCHIVE_ON_SCHEDULE", "true")],
                "ARCHIVE_ON_SCHEDULE",
                "needs an archive store",
            ),
            (
                vec![("ARCHIVE_DIR", "/a"), ("ARCHIVE_ON_SCHEDULE", "hourly")],
                "ARCHIVE_ON_SCHEDULE",
                "expected true or false",
            ),
        ] {
            let err = config(&pairs).expect_err(says);
            assert_eq!(err.variable, variable, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn non_loopback_addresses_need_a_secret_and_trusted_proxies() {
        let secret = "0123456789abcdef0123456789abcdef";
        let c = config(&[("BIND_ADDR", "0.0.0.0:8080"), ("JWT_SECRET", secret)]).expect("valid");
        assert!(!c.bind_addr.ip().is_loopback());
        let c = config(&[
            ("BIND_ADDR", "0.0.0.0:8080"),
            ("AUTH_MODE", "trusted-header"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7, ::1"),
        ])
        .expect("valid");
        let proxies = c.trusted_proxies.expect("set");
        assert!(proxies.contains("10.1.2.3".parse().expect("ip")));
        assert!(proxies.contains("::ffff:10.1.2.3".parse().expect("mapped ip")));
        assert!(proxies.contains("192.168.1.7".parse().expect("ip")));
        assert!(!proxies.contains("192.168.1.8".parse().expect("ip")));
        assert!(!proxies.contains("11.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn limits_have_the_readmes_defaults_and_zero_turns_a_rate_limit_off() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_concurrent_requests, 256);
        assert_eq!(
            c.user_rate_limit,
            Some(RateLimit {
                per_second: 20,
                burst: 40
            })
        );
        assert_eq!(
            c.anonymous_rate_limit,
            Some(RateLimit {
                per_second: 10,
                burst: 20
            })
        );
        assert_eq!(c.max_resting_orders_per_user, 1000);
        assert_eq!(c.placement_batch_max, 64);
        assert!(c.placement_lock_ahead);
        assert_eq!(c.job_lock_timeout, Duration::from_secs(5));
        let off = config(&[("RATE_LIMIT_PER_SECOND", "0")]).expect("valid");
        assert_eq!(off.user_rate_limit, None);
    }

    #[test]
    fn transaction_pooling_is_chosen_explicitly_and_refuses_migrating() {
        let c = config(&[
            ("DB_POOL_MODE", "Transaction"),
            ("MIGRATE_ON_START", "false"),
        ])
        .expect("valid");
        assert_eq!(c.db_pool_mode, PoolMode::Transaction);
        let c = config(&[("DB_POOL_MODE", "session")]).expect("valid");
        assert_eq!(c.db_pool_mode, PoolMode::Direct);
        let err = config(&[("DB_POOL_MODE", "transaction")]).expect_err("migrating refused");
        assert_eq!(err.variable, "MIGRATE_ON_START");
        assert!(
            err.to_string().contains("DB_POOL_MODE=transaction"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, variable) in [
            (vec![("BIND_ADDR", "localhost")], "BIND_ADDR"),
            (vec![("AUTH_MODE", "basic")], "AUTH_MODE"),
            (vec![("MIGRATE_ON_START", "maybe")], "MIGRATE_ON_START"),
            (vec![("DB_MAX_CONNECTIONS", "0")], "DB_MAX_CONNECTIONS"),
            (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
            (vec![("JWT_SECRET", &"x".repeat(31))], "JWT_SECRET"),
            (vec![("BIND_ADDR", "0.0.0.0:8080")], "JWT_SECRET"),
            (
                vec![
                    ("BIND_ADDR", "0.0.0.0:8080"),
                    ("AUTH_MODE", "trusted-header"),
                ],
                "TRUSTED_PROXIES",
            ),
            (vec![("TRUSTED_PROXIES", "10.0.0.0/33")], "TRUSTED_PROXIES"),
            (vec![("TRUSTED_PROXIES", " , ")], "TRUSTED_PROXIES"),
            (
                vec![("HEADER_READ_TIMEOUT_MS", "0")],
                "HEADER_READ_TIMEOUT_MS",
            ),
            (
                vec![("MAX_CONCURRENT_REQUESTS", "0")],
                "MAX_CONCURRENT_REQUESTS",
            ),
            (vec![("RATE_LIMIT_BURST", "0")], "RATE_LIMIT_BURST"),
            (vec![("DB_POOL_MODE", "statement")], "DB_POOL_MODE"),
            (
                vec![("DATABASE_READ_URL", "postgres://replica/trade")],
                "DATABASE_READ_URL",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://primary/trade"),
                    ("REPLICA_MAX_LAG_MS", "5"),
                ],
                "REPLICA_MAX_LAG_MS",
            ),
            (
                vec![("DB_STATEMENT_TIMEOUT_MS", "-1")],
                "DB_STATEMENT_TIMEOUT_MS",
            ),
        ] {
            let err = config(&pairs).expect_err(variable);
            assert_eq!(err.variable, variable);
            assert!(err.to_string().starts_with(variable), "{err}");
        }
        let c = config(&[
            ("AUTH_MODE", "Trusted-Header"),
            ("MIGRATE_ON_START", "false"),
        ])
        .expect("valid");
        assert_eq!(c.auth_mode, AuthMode::TrustedHeader);
        assert!(!c.migrate_on_start);
    }
}
