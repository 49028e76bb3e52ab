//! Configuration from the environment (and `.env`), with the names of the
//! README's table. Every bad value is an error that names the variable.

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
    /// `PLACEMENT_BATCH_MAX`, default 64: the most placements of one symbol
    /// the sequencer writes in one transaction (1: no batching).
    pub placement_batch_max: usize,
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

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            rabbitmq_url: None,
            exchange: crate::events::EXCHANGE.to_owned(),
            poll: Duration::from_millis(20),
            retention: Duration::from_secs(3600),
            max_connections_per_user: 10,
            max_connections_per_address: 100,
            max_subscriptions: 50,
            send_buffer: 1024,
            heartbeat: Duration::from_secs(20),
        }
    }
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
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment (after `.env`, which the binary loads).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let invalid = |variable: &'static str, value: &str, reason: &str| ConfigError {
            variable,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let bind_addr = match get("BIND_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v
                .parse()
                .map_err(|_| invalid("BIND_ADDR", &v, "expected HOST:PORT, e.g. 127.0.0.1:8080"))?,
        };
        let auth_mode = match get("AUTH_MODE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("jwt") => AuthMode::Jwt,
            Some("trusted-header") => AuthMode::TrustedHeader,
            Some(other) => {
                return Err(invalid(
                    "AUTH_MODE",
                    other,
                    "expected jwt or trusted-header",
                ));
            }
        };
        let flag = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(name).map(|v| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(invalid(name, &v, "expected true or false")),
            }
        };
        let number = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        invalid(
                            name,
                            &v,
                            &format!(
                                "expected a whole number from {} to {}",
                                range.start(),
                                range.end()
                            ),
                        )
                    }),
            }
        };
        let jwt_secret = get("JWT_SECRET");
        if let Some(secret) = &jwt_secret
            && secret.len() < MIN_JWT_SECRET
        {
            return Err(invalid(
                "JWT_SECRET",
                "(hidden)",
                &format!(
                    "must be at least {MIN_JWT_SECRET} bytes, e.g. the output of `openssl rand -hex 32`"
                ),
            ));
        }
        if jwt_secret.is_none() && auth_mode == AuthMode::Jwt && !bind_addr.ip().is_loopback() {
            return Err(invalid(
                "JWT_SECRET",
                "",
                &format!(
                    "must be set when BIND_ADDR ({bind_addr}) is not a loopback address: tokens \
                     signed with a per-run random secret cannot be minted by anyone else"
                ),
            ));
        }
        let trusted_proxies = match get("TRUSTED_PROXIES") {
            None => None,
            Some(v) => Some(
                v.parse::<TrustedProxies>()
                    .map_err(|reason| invalid("TRUSTED_PROXIES", &v, &reason))?,
            ),
        };
        if auth_mode == AuthMode::TrustedHeader
            && trusted_proxies.is_none()
            && !bind_addr.ip().is_loopback()
        {
            return Err(invalid(
                "TRUSTED_PROXIES",
                "",
                &format!(
                    "must be set in trusted-header mode when BIND_ADDR ({bind_addr}) is not a \
                     loopback address: name the gateway's addresses (CIDRs), or anyone who can \
                     reach the port could claim to be any user"
                ),
            ));
        }
        let db_pool_mode = match get("DB_POOL_MODE") {
            None => PoolMode::Direct,
            Some(v) => v.parse::<PoolMode>().map_err(|_| {
                invalid(
                    "DB_POOL_MODE",
                    &v,
                    "expected direct, session or transaction",
                )
            })?,
        };
        let migrate_on_start = flag("MIGRATE_ON_START", true)?;
        if migrate_on_start && db_pool_mode == PoolMode::Transaction {
            return Err(invalid(
                "MIGRATE_ON_START",
                "true",
                "migrations need a direct or session-mode connection, not a transaction-mode \
                 pooler (DB_POOL_MODE=transaction): set MIGRATE_ON_START=false and run \
                 `cargo run -p migration -- up` against the server or a session-mode pool",
            ));
        }
        let database_url = get("DATABASE_URL");
        let database_read_url = get("DATABASE_READ_URL");
        if database_read_url.is_some() && database_url.is_none() {
            return Err(invalid(
                "DATABASE_READ_URL",
                "(hidden)",
                "needs DATABASE_URL: the embedded PostgreSQL has no replica; set DATABASE_URL \
                 to the primary the replica streams from",
            ));
        }
        let archive = match (get("ARCHIVE_DIR"), get("ARCHIVE_URL")) {
            (Some(_), Some(url)) => {
                return Err(invalid(
                    "ARCHIVE_URL",
                    &url,
                    "ARCHIVE_DIR is set too: set one of them (a folder in ARCHIVE_DIR, or an \
                     object store URL in ARCHIVE_URL)",
                ));
            }
            (Some(dir), None) => Some(Location::Dir(dir.trim().into())),
            (None, Some(url)) => {
                let location = Location::parse_url(&url).map_err(|err| {
                    let reason = match err {
                        service::archive::ArchiveError::Invalid { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    invalid("ARCHIVE_URL", &url, &reason)
                })?;
                if location.is_memory() {
                    return Err(invalid(
                        "ARCHIVE_URL",
                        &url,
                        "a memory:// store loses its archives when the process exits, after \
                         their partitions were dropped: use a folder (ARCHIVE_DIR) or \
                         s3://bucket/prefix",
                    ));
                }
                Some(location)
            }
            (None, None) => None,
        };
        let archive_on_schedule = flag("ARCHIVE_ON_SCHEDULE", false)?;
        if archive_on_schedule && archive.is_none() {
            return Err(invalid(
                "ARCHIVE_ON_SCHEDULE",
                "true",
                "needs an archive store: set ARCHIVE_DIR=/path/to/folder or \
                 ARCHIVE_URL=s3://bucket/prefix",
            ));
        }
        let rabbitmq_url = match get("RABBITMQ_URL") {
            None => None,
            Some(url) if url.trim().starts_with("amqp://") => Some(url.trim().to_owned()),
            Some(url) => {
                let shown = if url.contains('@') {
                    "(hidden)"
                } else {
                    url.as_str()
                };
                return Err(invalid(
                    "RABBITMQ_URL",
                    shown,
                    "expected amqp://user:password@host:5672/vhost (amqps:// is not built in: \
                     terminate TLS in front of the broker, e.g. with a sidecar)",
                ));
            }
        };
        let defaults = EventsConfig::default();
        let exchange = match get("RABBITMQ_EXCHANGE") {
            None => defaults.exchange.clone(),
            Some(name)
                if name.len() <= 255
                    && name.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
                    }) =>
            {
                name
            }
            Some(name) => {
                return Err(invalid(
                    "RABBITMQ_EXCHANGE",
                    &name,
                    "expected an exchange name of letters, digits, '-', '_', '.', ':' (at most 255)",
                ));
            }
        };
        let events = EventsConfig {
            rabbitmq_url,
            exchange,
            poll: Duration::from_millis(number("EVENTS_POLL_MS", 20, 1..=10_000)?),
            retention: Duration::from_secs(
                60 * number("EVENTS_RETENTION_MINUTES", 60, 1..=7 * 24 * 60)?,
            ),
            max_connections_per_user: number(
                "WS_MAX_CONNECTIONS_PER_USER",
                defaults.max_connections_per_user as u64,
                1..=10_000,
            )? as usize,
            max_connections_per_address: number(
                "WS_MAX_CONNECTIONS_PER_ADDRESS",
                defaults.max_connections_per_address as u64,
                1..=100_000,
            )? as usize,
            max_subscriptions: number(
                "WS_MAX_SUBSCRIPTIONS",
                defaults.max_subscriptions as u64,
                1..=10_000,
            )? as usize,
            send_buffer: number("WS_SEND_BUFFER", defaults.send_buffer as u64, 1..=1_000_000)?
                as usize,
            heartbeat: Duration::from_secs(number("WS_HEARTBEAT_SECS", 20, 1..=3600)?),
        };
        let rate_limit = |rate: &'static str, burst: &'static str, defaults: (u64, u64)| {
            let per_second = number(rate, defaults.0, 0..=1_000_000)? as u32;
            let burst = number(burst, defaults.1.max(1), 1..=1_000_000)? as u32;
            Ok::<_, ConfigError>((per_second > 0).then_some(RateLimit { per_second, burst }))
        };
        Ok(Config {
            trusted_proxies,
            header_read_timeout: Duration::from_millis(number(
                "HEADER_READ_TIMEOUT_MS",
                10_000,
                100..=600_000,
            )?),
            request_timeout: Duration::from_millis(number(
                "REQUEST_TIMEOUT_MS",
                30_000,
                100..=3_600_000,
            )?),
            max_concurrent_requests: number("MAX_CONCURRENT_REQUESTS", 256, 1..=100_000)? as usize,
            user_rate_limit: rate_limit("RATE_LIMIT_PER_SECOND", "RATE_LIMIT_BURST", (20, 40))?,
            anonymous_rate_limit: rate_limit(
                "ANONYMOUS_RATE_LIMIT_PER_SECOND",
                "ANONYMOUS_RATE_LIMIT_BURST",
                (10, 20),
            )?,
            max_resting_orders_per_user: number(
                "MAX_RESTING_ORDERS_PER_USER",
                PlacementLimits::default().max_resting_orders_per_user,
                1..=10_000_000,
            )?,
            job_lock_timeout: Duration::from_millis(number(
                "JOB_LOCK_TIMEOUT_MS",
                5_000,
                1..=600_000,
            )?),
            placement_batch_max: number("PLACEMENT_BATCH_MAX", 64, 1..=1_000)? as usize,
            archive,
            archive_on_schedule,
            events,
            database_url,
            database_read_url,
            replica_max_lag: Duration::from_millis(number(
                "REPLICA_MAX_LAG_MS",
                1_000,
                10..=3_600_000,
            )?),
            bind_addr,
            auth_mode,
            jwt_secret,
            migrate_on_start,
            db_max_connections: number("DB_MAX_CONNECTIONS", 10, 1..=1000)? as u32,
            db_acquire_timeout: Duration::from_millis(number(
                "DB_ACQUIRE_TIMEOUT_MS",
                3000,
                1..=600_000,
            )?),
            background_jobs: flag("BACKGROUND_JOBS", true)?,
            db_pool_mode,
            db_statement_timeout: match number("DB_STATEMENT_TIMEOUT_MS", 10_000, 0..=3_600_000)? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
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
