//! Starting and stopping the api: the pool, the listener, the background jobs,
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use service::pooling::{Pool, configure, set_statement_timeout};

use crate::auth::Auth;
use crate::config::Config;
use crate::routes::router;
use crate::state::AppState;

/// Opens the bounded pool the api uses: at most `db_max_connections`, and a
/// request waits at most `db_acquire_timeout` for one (then gets 503); set up
/// for `db_pool_mode` (no statement cache behind a transaction-mode pooler).
pub async fn connect(url: &str, config: &Config) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.db_max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(config.db_acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        .connect_lazy(true);
    configure(&mut options, config.db_pool_mode);
    if let Some(timeout) = config.db_statement_timeout {
        set_statement_timeout(&mut options, config.db_pool_mode, timeout);
    }
    Database::connect(options).await
}

/// A random secret for this process's lifetime, for JWT without `JWT_SECRET`.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A running api.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    jobs: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `config.bind_addr` (port 0 picks a free one), serves, and starts
    /// the background jobs when `config.background_jobs`.
    pub async fn start(
        db: DatabaseConnection,
        auth: Auth,
        config: &Config,
    ) -> std::io::Result<Server> {
        let mut db = Pool::new(db, config.db_pool_mode);
        if let Some(timeout) = config.db_statement_timeout {
            db = db.with_statement_timeout(timeout);
        }
        let state = AppState {
            db: db.clone(),
            auth: Arc::new(auth),
            metrics: crate::metrics::handle(),
        };
        let listener = TcpListener::bind(config.bind_addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let mut on_stop = stopped.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move {
                    while !*on_stop.borrow_and_update() {
                        if on_stop.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await
        });
        let jobs = if config.background_jobs {
            crate::jobs::spawn(db, stopped)
        } else {
            Vec::new()
        };
        tracing::info!(%addr, "serving");
        Ok(Server {
            addr,
            stop,
            http,
            jobs,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes in-flight requests, stops the jobs.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        for job in self.jobs {
            let _ = job.await;
        }
        match self.http.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
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
