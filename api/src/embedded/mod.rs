//! The embedded default: with no `DATABASE_URL`, the api runs its own
//! project-local PostgreSQL cluster from the server binaries installed on the
//! machine.
//!
//! # Folder layout and access
//!
//! [`EmbeddedPostgres::start`] takes the cluster's data folder (the api passes
//! `<repo>/.pgdata`, which `.gitignore` lists). It is an ordinary PostgreSQL
//! data directory, created by `initdb` on first run with
//!
//! * the superuser `postgres`, UTF8 and the C locale, `trust` authentication
//!   over the Unix socket and `reject` for every TCP connection, so turning
//!   TCP on later lets nobody in until `pg_hba.conf` says how;
//! * `listen_addresses = ''`, `unix_socket_directories = '.'` and
//!   `unix_socket_permissions = 0700` appended to its `postgresql.conf`, and
//!   passed on the server's command line as well (so a cluster created by an
//!   older version, whose `postgresql.conf` says `listen_addresses =
//!   '127.0.0.1'`, starts without TCP too): no TCP listener at all, only the
//!   socket `.s.PGSQL.<port>` inside the folder;
//! * mode 0700, checked on every start (a folder opened to others is closed
//!   again), so the socket is reachable only by the folder's owner (and root);
//! * `server.log`, the server's log, appended to on every start;
//! * the database `trade`, created when missing, which
//!   [`EmbeddedPostgres::database_url`] names:
//!   `postgres://postgres@localhost/trade?host=<folder>&port=<port>&sslmode=disable`.
//!
//! The port only names the socket file. It is not stored: each start takes one
//! that is free on 127.0.0.1 (the `embedded PostgreSQL ready` log line and the
//! fourth line of `postmaster.pid` say which). To connect by hand:
//! `psql -h <folder> -p <port> -U postgres trade`, with the folder's absolute
//! path (libpq takes only a `-h` starting with `/` for a socket folder).
//!
//! A socket path is limited by the OS (107 bytes on Linux, 103 on macOS), and
//! the client connects to `<folder>/.s.PGSQL.<port>` by its absolute path, so a
//! data folder whose absolute path is too long is refused before anything is
//! created, with an error naming the path.
//!
//! # Reuse
//!
//! A folder that already holds a cluster is started as it is, without
//! `initdb`. If its server is already running (another `cargo run`, or one
//! left behind by a killed process), [`EmbeddedPostgres::start`] attaches to it
//! on the port recorded in `postmaster.pid`, and that handle never stops it:
//! [`EmbeddedPostgres::stop`] and drop only stop a server this process started.
//! A stale `postmaster.pid` is `pg_ctl`'s to clean up. A running server started
//! by an older version may still listen on TCP; a warning says so, and the
//! next start (after `pg_ctl stop -D <folder>`) has no TCP listener.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. As root, the folder is created and handed
//! (recursively) to the `postgres` account, and `initdb` and `pg_ctl` run as
//! that account through `runuser -u postgres --` (or `su -s /bin/sh postgres
//! -c` where `runuser` is missing). Every parent folder must let that account
//! through; the error names the first one that does not. Root still reaches the
//! socket in the `postgres`-owned 0700 folder. As a normal user the binaries run
//! directly and the folder, the socket and the server are the user's own.
//!
//! # Reset
//!
//! Stop the api and delete the folder (`rm -rf .pgdata`); the next run creates
//! a fresh cluster.
//!
//! # Example
//!
//! ```no_run
//! use api::embedded::{EmbeddedError, EmbeddedPostgres};
//!
//! # async fn example() -> Result<(), EmbeddedError> {
//! let postgres = EmbeddedPostgres::start(std::path::Path::new(".pgdata")).await?;
//! println!("serving from {}", postgres.database_url());
//! postgres.stop().await
//! # }
//! ```

use std::{
    ffi::{OsStr, OsString},
    fs,
    io::{self, Write as _},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use sea_orm::sqlx::{
    self, Connection,
    postgres::{PgConnectOptions, PgConnection, PgSslMode},
};

/// The cluster's superuser, and the account the server runs as under root.
const SUPERUSER: &str = "postgres";
const SERVICE_ACCOUNT: &str = "postgres";
const DATABASE: &str = "trade";
const LOG_FILE: &str = "server.log";
/// Appended to a new cluster's `postgresql.conf`; see [`SERVER_OPTIONS`].
const SETTINGS: &str = "\n# Written by the trade engine's embedded mode (api/src/embedded/):\n\
                        # no TCP, only the owner's Unix socket inside this folder.\n\
                        listen_addresses = ''\n\
                        unix_socket_directories = '.'\n\
                        unix_socket_permissions = 0700\n";
/// The same settings on the server's command line (`pg_ctl -o`, read by a
/// shell), where they override `postgresql.conf`: clusters created before
/// [`SETTINGS`] said `listen_addresses = '127.0.0.1'`, and a later edit of the
/// file must not open TCP or move the socket the database URL points at.
/// `unix_socket_directories` is relative to the data folder, so the server's
/// own socket path never outgrows the OS limit.
const SERVER_OPTIONS: &str =
    "-c listen_addresses= -c unix_socket_directories=. -c unix_socket_permissions=0700";
const DATABASE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)";
const CREATE_DATABASE: &str = "CREATE DATABASE trade";

const INITDB_TIMEOUT: Duration = Duration::from_secs(60);
/// `pg_ctl -t`; the process itself gets a few seconds more.
const PG_CTL_WAIT_SECONDS: u64 = 30;
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(PG_CTL_WAIT_SECONDS + 5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Command-line arguments from strings and paths alike.
macro_rules! os_args {
    ($($arg:expr),* $(,)?) => { vec![$(OsString::from($arg)),*] };
}

/// Why the embedded cluster could not be found, created, started or stopped.
/// Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No folder searched holds both `initdb` and `pg_ctl`.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found (searched: {}); install them \
         (`apt-get install postgresql` or `brew install postgresql@16`), point PG_BIN_DIR at \
         their folder, or set DATABASE_URL to an existing server",
        path_list(searched)
    )]
    NoServerBinaries { searched: Vec<PathBuf> },
    /// Running as root without a `postgres` account to run the server as.
    #[error(
        "running as root, which PostgreSQL refuses, and there is no `{account}` account to run \
         it as; create one (`useradd --system {account}`), run as a normal user, or set DATABASE_URL"
    )]
    NoServiceAccount { account: &'static str },
    /// Running as root without `runuser` or `su` to switch to that account.
    #[error(
        "running as root, which PostgreSQL refuses, and neither runuser nor su is available to \
         run it as `{account}`; run as a normal user or set DATABASE_URL"
    )]
    NoAccountSwitch { account: &'static str },
    /// The data folder (or a file in it) cannot be created, read or written.
    #[error("cannot create or use the PostgreSQL data folder {}: {source}", dir.display())]
    FolderNotWritable { dir: PathBuf, source: io::Error },
    /// As root: the `postgres` account cannot reach the data folder through `dir`.
    #[error(
        "the `{account}` account cannot enter {}, a parent of the PostgreSQL data folder; \
         allow it (`chmod o+x {}`) or choose a data folder elsewhere",
        dir.display(), dir.display()
    )]
    FolderNotTraversable { dir: PathBuf, account: &'static str },
    /// The data folder holds other files and no cluster; it is left untouched.
    #[error(
        "{} is neither empty nor a PostgreSQL data folder; move or delete it so a cluster can be \
         created there",
        dir.display()
    )]
    NotACluster { dir: PathBuf },
    /// The cluster was created by another major version than the binaries found.
    #[error(
        "{} holds a PostgreSQL {data_version} cluster but the server binaries in {} are \
         PostgreSQL {server_version}; point PG_BIN_DIR at PostgreSQL {data_version} binaries or \
         delete the folder to create a new cluster",
        dir.display(), bin_dir.display()
    )]
    VersionMismatch {
        dir: PathBuf,
        bin_dir: PathBuf,
        data_version: String,
        server_version: String,
    },
    /// A program could not be run at all.
    #[error("could not run {program}: {source}")]
    Run { program: String, source: io::Error },
    /// A step took longer than its bound.
    #[error("{step} did not finish within {} s", timeout.as_secs())]
    TimedOut {
        step: &'static str,
        timeout: Duration,
    },
    /// The OS gave no free TCP port on 127.0.0.1.
    #[error("no free TCP port on 127.0.0.1: {source}")]
    NoFreePort { source: io::Error },
    /// `initdb` failed; `detail` is the end of its output.
    #[error("initdb failed for {}: {detail}", dir.display())]
    InitdbFailed { dir: PathBuf, detail: String },
    /// The server did not start; `log_tail` is the end of this start's server log.
    #[error("PostgreSQL did not start in {} (log {}): {log_tail}", dir.display(), log.display())]
    StartFailed {
        dir: PathBuf,
        log: PathBuf,
        log_tail: String,
    },
    /// `pg_ctl stop` failed; `detail` is the end of its output.
    #[error("PostgreSQL in {} did not stop: {detail}", dir.display())]
    StopFailed { dir: PathBuf, detail: String },
    /// The data folder is open to other accounts and could not be closed.
    #[error(
        "the PostgreSQL data folder {} is open to other accounts (mode {mode:o}) and could not \
         be made private: {source}; run `chmod 700 {}`",
        dir.display(), dir.display()
    )]
    FolderNotPrivate {
        dir: PathBuf,
        mode: u32,
        source: io::Error,
    },
    /// The socket path `<data folder>/.s.PGSQL.<port>` would not fit the OS limit.
    #[error(
        "the PostgreSQL socket path {}/.s.PGSQL.<port> can be {length} bytes, over the OS \
         limit of {limit}; choose a shorter EMBEDDED_PGDATA",
        dir.display()
    )]
    SocketPathTooLong {
        dir: PathBuf,
        length: usize,
        limit: usize,
    },
    /// The data folder's path is not UTF-8, so no database URL can name its socket.
    #[error(
        "the PostgreSQL data folder path {} is not UTF-8, which a database URL cannot carry; \
         choose another EMBEDDED_PGDATA",
        dir.display()
    )]
    PathNotUtf8 { dir: PathBuf },
    /// The server refused a connection or the query that creates `trade`.
    #[error(
        "the embedded PostgreSQL at {} failed: {}",
        socket.display(), one_line(&source.to_string())
    )]
    Database {
        socket: PathBuf,
        source: sqlx::Error,
    },
}

/// Where [`find_server_binaries`] looks, in this order.
mod runner;
mod search;
mod setup;

use runner::Runner;
pub use search::{SearchPaths, find_server_binaries};
use setup::*;

/// A running project-local PostgreSQL cluster; see the [module docs](self).
///
/// Dropping a handle whose server this process started, without
/// [`stop`](Self::stop), stops it at once (`pg_ctl stop -m immediate`, which
/// blocks the thread briefly), so a failed start or a panicking test leaves no
/// server behind.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    runner: Runner,
    port: u16,
    database_url: String,
    created: bool,
    started: bool,
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Finds the server binaries ([`SearchPaths::from_environment`]) and starts
    /// the cluster in `dir`, creating it on first run; then the database
    /// `trade` exists and accepts connections. Waits about 30 s at most per step.
    pub async fn start(dir: &Path) -> Result<Self, EmbeddedError> {
        let bin_dir = find_server_binaries(&SearchPaths::from_environment())?;
        Self::start_with_binaries(dir, &bin_dir).await
    }

    /// [`start`](Self::start) with the server binaries in `bin_dir`.
    pub async fn start_with_binaries(dir: &Path, bin_dir: &Path) -> Result<Self, EmbeddedError> {
        let data_dir =
            std::path::absolute(dir).map_err(|source| EmbeddedError::FolderNotWritable {
                dir: dir.to_path_buf(),
                source,
            })?;
        // Before anything is created: a folder whose socket cannot be reached is useless.
        check_socket_dir(&data_dir)?;
        let runner = Runner::detect()?;
        let created = prepare_folder(&data_dir, bin_dir, &runner).await?;
        let mut postgres = Self {
            database_url: String::new(),
            data_dir,
            bin_dir: bin_dir.to_path_buf(),
            runner,
            port: 0,
            created,
            started: false,
            stopped: false,
        };
        if created {
            postgres.initdb().await?;
        }
        match postgres.running_server().await? {
            Some(running) => {
                tracing::info!(data_dir = %postgres.data_dir.display(), port = running.port, "attaching to the running embedded PostgreSQL");
                if !running.listen_address.is_empty() {
                    tracing::warn!(
                        data_dir = %postgres.data_dir.display(),
                        listen_address = %running.listen_address,
                        "the running embedded PostgreSQL, started by an older version, still listens on TCP; \
                         stop it (`pg_ctl stop -D <folder>`) so the next start has only the Unix socket"
                    );
                }
                postgres.port = running.port;
            }
            None => postgres.start_server().await?,
        }
        postgres.database_url = database_url(&postgres.data_dir, postgres.port)?;
        // On error the handle drops here, stopping a server it started.
        create_database(&postgres.data_dir, postgres.port).await?;
        tracing::info!(
            data_dir = %postgres.data_dir.display(),
            port = postgres.port,
            created = postgres.created,
            started = postgres.started,
            "embedded PostgreSQL ready"
        );
        Ok(postgres)
    }

    /// `postgres://postgres@localhost/trade?host=<data dir>&port=<port>&sslmode=disable`:
    /// the Unix socket in the data folder (the `host` parameter, an absolute
    /// folder path, percent-encoded), which sqlx and SeaORM accept as they are.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The number in the socket file's name, `<data dir>/.s.PGSQL.<port>`; the
    /// server has no TCP listener, on this port or any other.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data folder, absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this start created the cluster (ran `initdb`).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether this process started the server, rather than attaching to one
    /// already running; only then do [`stop`](Self::stop) and drop stop it.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Stops the server (`pg_ctl stop -m fast`) if this process started it;
    /// a server that was already running is left running.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        if !self.started {
            tracing::info!(data_dir = %self.data_dir.display(), "leaving the embedded PostgreSQL running: this process did not start it");
            self.stopped = true;
            return Ok(());
        }
        let output = self
            .pg_ctl("pg_ctl stop", self.pg_ctl_stop_args("fast"))
            .await?;
        if !output.status.success() {
            return Err(EmbeddedError::StopFailed {
                dir: self.data_dir.clone(),
                detail: output_tail(&output),
            });
        }
        self.stopped = true;
        tracing::info!(data_dir = %self.data_dir.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    async fn initdb(&self) -> Result<(), EmbeddedError> {
        tracing::info!(data_dir = %self.data_dir.display(), bin_dir = %self.bin_dir.display(), "creating the embedded PostgreSQL cluster");
        let dir = &self.data_dir;
        let args = os_args![
            "-D",
            dir,
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            // The socket is the only way in, guarded by the 0700 folder; TCP,
            // should anyone turn it on, admits nobody until configured.
            "--auth-local=trust",
            "--auth-host=reject"
        ];
        let initdb = self.bin_dir.join("initdb");
        let output = self
            .runner
            .run("initdb", INITDB_TIMEOUT, &initdb, &args)
            .await?;
        if !output.status.success() {
            return Err(EmbeddedError::InitdbFailed {
                dir: self.data_dir.clone(),
                detail: output_tail(&output),
            });
        }
        let settings = self.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&settings)
            .and_then(|mut file| file.write_all(SETTINGS.as_bytes()))
            .map_err(|source| EmbeddedError::FolderNotWritable {
                dir: settings,
                source,
            })
    }

    /// The server already running on this folder, if one is.
    async fn running_server(&self) -> Result<Option<RunningServer>, EmbeddedError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return Ok(None);
        }
        let status = self
            .pg_ctl("pg_ctl status", os_args!["status", "-D", &self.data_dir])
            .await?;
        if !status.status.success() {
            return Ok(None);
        }
        Ok(fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| RunningServer::parse(&pid)))
    }

    async fn start_server(&mut self) -> Result<(), EmbeddedError> {
        // The port only names the socket file in our own folder, so any number
        // would do; one free on 127.0.0.1 is one no other server answers on, so
        // a TCP client aimed at it (by habit, or a check that nothing listens
        // there) reaches nothing rather than a stranger.
        self.port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|source| EmbeddedError::NoFreePort { source })?
            .port();
        let log = self.data_dir.join(LOG_FILE);
        // The log is appended to on every start; only this start's lines explain a failure.
        let earlier_log = fs::metadata(&log).map_or(0, |meta| meta.len());
        let (dir, wait, port) = (
            &self.data_dir,
            PG_CTL_WAIT_SECONDS.to_string(),
            format!("-p {} {SERVER_OPTIONS}", self.port),
        );
        let args = os_args!["start", "-w", "-t", wait, "-D", dir, "-l", &log, "-o", port];
        let output = self.pg_ctl("pg_ctl start", args).await;
        let failure = match output {
            Ok(output) if output.status.success() => {
                self.started = true;
                tracing::info!(data_dir = %self.data_dir.display(), port = self.port, "embedded PostgreSQL started");
                return Ok(());
            }
            Ok(output) => {
                let log_tail = fs::read(&log)
                    .ok()
                    .and_then(|bytes| {
                        bytes
                            .get(earlier_log as usize..)
                            .map(|new| tail(&String::from_utf8_lossy(new)))
                    })
                    .filter(|text| !text.is_empty())
                    .unwrap_or_else(|| output_tail(&output));
                EmbeddedError::StartFailed {
                    dir: self.data_dir.clone(),
                    log,
                    log_tail,
                }
            }
            Err(error) => error,
        };
        // A server still coming up on our port is ours (pg_ctl gave up waiting):
        // leave none behind. One on another port belongs to someone else.
        if self
            .running_server()
            .await
            .ok()
            .flatten()
            .is_some_and(|running| running.port == self.port)
        {
            self.started = true;
        }
        Err(failure)
    }

    async fn pg_ctl(
        &self,
        step: &'static str,
        args: Vec<OsString>,
    ) -> Result<Output, EmbeddedError> {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        self.runner.run(step, PG_CTL_TIMEOUT, &pg_ctl, &args).await
    }

    fn pg_ctl_stop_args(&self, mode: &str) -> Vec<OsString> {
        let (dir, wait) = (&self.data_dir, PG_CTL_WAIT_SECONDS.to_string());
        os_args!["stop", "-w", "-t", wait, "-D", dir, "-m", mode]
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if !self.started || self.stopped {
            return;
        }
        let args = self.pg_ctl_stop_args("immediate");
        let outcome = self
            .runner
            .command(&self.bin_dir.join("pg_ctl"), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match outcome {
            Ok(status) if status.success() => {
                tracing::warn!(data_dir = %self.data_dir.display(), "embedded PostgreSQL stopped immediately: its handle was dropped without stop()");
            }
            Ok(status) => {
                tracing::error!(data_dir = %self.data_dir.display(), %status, "could not stop the embedded PostgreSQL");
            }
            Err(error) => {
                tracing::error!(data_dir = %self.data_dir.display(), %error, "could not run pg_ctl to stop the embedded PostgreSQL");
            }
        }
    }
}
