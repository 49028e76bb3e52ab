//! Starting and stopping the api: the pool, the listener, the background jobs,
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sea_orm::{Database, DatabaseConnection, DbErr};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use service::orders::{Sequencer, SequencerSettings};
use service::pooling::Pool;

use crate::auth::Auth;
use crate::config::Config;
use crate::events::Hub;
use crate::events::broker::Publisher;
use crate::events::relay::Sink;
use crate::replica::Reads;
use crate::routes::router_with;
use crate::state::AppState;
use crate::throttle::Throttle;

/// Opens the bounded pool the api uses ([`Config::pool_settings`]): at most
/// `db_max_connections`, and a request waits at most `db_acquire_timeout` for
/// one (then gets 503); set up for `db_pool_mode` (no statement cache behind
/// a transaction-mode pooler) and the statement timeout.
pub async fn connect(url: &str, config: &Config) -> Result<DatabaseConnection, DbErr> {
    Database::connect(config.pool_settings().connect_options(url)).await
}

/// How to open a pool of the relay's own, on the server and with the
/// connect options of `db`'s: one connection (a session is one transaction),
/// besides `DB_MAX_CONNECTIONS`, so placements that hold every connection of
/// the request pool never keep the events waiting. Called on the relay's
/// thread, where its connection lives.
fn relay_pool(db: &DatabaseConnection, config: &Config) -> impl FnOnce() -> Pool + Send + 'static {
    let options = db
        .get_postgres_connection_pool()
        .connect_options()
        .as_ref()
        .clone();
    let config = config.clone();
    move || {
        let own = sea_orm::sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(config.db_acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options);
        config
            .pool_settings()
            .pool(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(own))
    }
}

/// A random secret for this process's lifetime, for JWT without `JWT_SECRET`.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The user of the token printed when no `JWT_SECRET` is set.
pub const DEMO_USER: uuid::Uuid = uuid::Uuid::from_u128(0xde30);
/// How long that token is valid.
pub const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The run's authenticator. Without `JWT_SECRET` (which [`Config`] allows on
/// a loopback address only) it signs with a random secret that is never
/// shown anywhere, and in JWT mode also returns a token for [`DEMO_USER`] to
/// print, so the api can be tried at once.
pub fn authenticator(
    config: &Config,
) -> Result<(Auth, Option<String>), jsonwebtoken::errors::Error> {
    let Some(secret) = &config.jwt_secret else {
        let auth = Auth::new(config.auth_mode, &random_secret());
        let demo = match config.auth_mode {
            crate::config::AuthMode::Jwt => Some(auth.mint(DEMO_USER, DEMO_TOKEN_TTL)?),
            crate::config::AuthMode::TrustedHeader => None,
        };
        return Ok((auth, demo));
    };
    Ok((Auth::new(config.auth_mode, secret), None))
}

/// The relay, the broker consumer (with `RABBITMQ_URL`) and the ticker task.
fn spawn_events(
    relay: impl FnOnce() -> Pool + Send + 'static,
    reads: &Reads,
    hub: &Arc<Hub>,
    config: &Config,
    stopped: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let sink = match &config.events.rabbitmq_url {
        Some(url) => {
            tasks.push(crate::events::broker::spawn_consumer(
                url.clone(),
                config.events.exchange.clone(),
                hub.clone(),
                stopped.clone(),
            ));
            Sink::Broker(Box::new(Publisher::new(
                url.clone(),
                config.events.exchange.clone(),
            )))
        }
        None => Sink::Local(hub.clone()),
    };
    tasks.push(crate::events::relay::spawn(
        relay,
        hub.clone(),
        sink,
        stopped.clone(),
    ));
    tasks.push(crate::events::ws::spawn_tickers(
        hub.clone(),
        reads.clone(),
        stopped.clone(),
    ));
    tasks
}

/// A running api.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    jobs: Vec<JoinHandle<()>>,
    sequencer: Sequencer,
    reads: Reads,
    events: Arc<Hub>,
}

impl Server {
    /// Binds `config.bind_addr` (port 0 picks a free one), serves, and starts
    /// the background jobs when `config.background_jobs`.
    pub async fn start(
        db: DatabaseConnection,
        auth: Auth,
        config: &Config,
    ) -> std::io::Result<Server> {
        Server::start_with_routes(db, auth, config, Router::new()).await
    }

    /// [`start`](Self::start) with `extra` routes served beside the
    /// contract's, under the same layers (timeouts, limits, panic guard,
    /// metrics): for embedding the api in a larger service, and for tests.
    pub async fn start_with_routes(
        db: DatabaseConnection,
        auth: Auth,
        config: &Config,
        extra: Router<AppState>,
    ) -> std::io::Result<Server> {
        let db = config.pool_settings().pool(db);
        let placement = config.placement_limits();
        let sequencer = Sequencer::new(
            db.clone(),
            placement,
            SequencerSettings {
                max_batch: config.placement_batch_max,
                lock_ahead: config.placement_lock_ahead,
            },
        );
        let reads = match &config.database_read_url {
            None => Reads::primary_only(db.clone()),
            Some(url) => {
                let replica = connect(url, config).await.map_err(std::io::Error::other)?;
                Reads::with_replica(
                    db.clone(),
                    config.pool_settings().pool(replica),
                    config.replica_max_lag,
                )
            }
        };
        let archiving = crate::archiving::Archiving::open(config).map_err(std::io::Error::other)?;
        let (stop, stopped) = watch::channel(false);
        let events = Arc::new(Hub::new(config.events.clone()));
        let state = AppState {
            db: db.clone(),
            reads: reads.clone(),
            auth: Arc::new(auth.with_trusted_proxies(config.trusted_proxies.clone())),
            metrics: crate::metrics::handle(),
            throttle: Arc::new(Throttle::new(config)),
            placement,
            sequencer: sequencer.clone(),
            archiving: archiving.clone(),
            events: events.clone(),
            stop: stopped.clone(),
        };
        let app = router_with(state, extra, config);
        let listener = TcpListener::bind(config.bind_addr).await?;
        let addr = listener.local_addr()?;
        let http = tokio::spawn(accept_loop(
            listener,
            app,
            config.header_read_timeout,
            stopped.clone(),
        ));
        let mut jobs = match reads.spawn_checker(stopped.clone()) {
            Some(checker) => vec![checker],
            None => Vec::new(),
        };
        let relay = relay_pool(db.connection(), config);
        jobs.extend(spawn_events(relay, &reads, &events, config, &stopped));
        jobs.push(crate::events::relay::spawn_backlog_gauges(
            db.clone(),
            stopped.clone(),
        ));
        if config.background_jobs {
            jobs.extend(crate::jobs::spawn(db, placement, archiving, stopped));
        }
        tracing::info!(%addr, "serving");
        Ok(Server {
            addr,
            stop,
            http,
            jobs,
            sequencer,
            reads,
            events,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the api's reads go (the replica's freshness, [`Reads::check_now`]).
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// The WebSocket streams' hub (e.g. [`Hub::consuming`]).
    pub fn events(&self) -> &Arc<Hub> {
        &self.events
    }

    /// The sequencer that places `POST /api/v1/orders` (its batch sizes).
    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    /// Stops accepting, finishes in-flight requests, stops the jobs, and
    /// places every order still queued in the sequencer.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        for job in self.jobs {
            let _ = job.await;
        }
        let served = match self.http.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        };
        self.sequencer.shutdown().await;
        served
    }
}

/// Accepts connections until `stop` turns true, then lets every open
/// connection finish its request in flight and closes it.
///
/// hyper's HTTP/1 server directly rather than `axum::serve`, for what that
/// does not expose: a header-read timeout (a client that sends half a request
/// head and waits is cut off) and the peer address for `TRUSTED_PROXIES` and
/// the per-address rate limit.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors, a connection reset before accept, …:
                    // this connection is lost, the server goes on after a pause
                    // (an fd shortage would otherwise spin the loop).
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                };
                // Responses are written whole; no need to wait for more to send.
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request)
                });
                let connection = http
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                let mut stop = stop.clone();
                connections.spawn(async move {
                    tokio::pin!(connection);
                    let outcome = tokio::select! {
                        outcome = connection.as_mut() => outcome,
                        () = stopped(&mut stop) => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(error) = outcome {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// How long the accept loop pauses after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutting down"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::auth::Caller;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
        .expect("a valid configuration")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
        headers.insert("authorization", value);
        headers
    }

    #[test]
    fn without_a_secret_a_demo_token_is_made_and_the_secret_stays_hidden() {
        let (auth, demo) = authenticator(&config(&[])).expect("signs");
        let token = demo.expect("a demo token in JWT mode");
        assert_eq!(auth.caller(&bearer(&token), None), Caller::User(DEMO_USER));
        // Each run has its own secret: another run's token is refused.
        let (other, _) = authenticator(&config(&[])).expect("signs");
        assert!(matches!(
            other.caller(&bearer(&token), None),
            Caller::Refused(_)
        ));
        let (_, none) = authenticator(&config(&[("AUTH_MODE", "trusted-header")])).expect("ok");
        assert_eq!(none, None, "no token in trusted-header mode");
    }

    #[test]
    fn with_a_secret_no_demo_token_is_made() {
        let secret = "0123456789abcdef0123456789abcdef";
        let (auth, demo) = authenticator(&config(&[("JWT_SECRET", secret)])).expect("ok");
        assert_eq!(demo, None);
        let token = Auth::new(crate::config::AuthMode::Jwt, secret)
            .mint(DEMO_USER, Duration::from_secs(60))
            .expect("mint");
        assert_eq!(auth.caller(&bearer(&token), None), Caller::User(DEMO_USER));
    }
}
