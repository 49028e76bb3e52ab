//! The embedded default: with no `DATABASE_URL`, the api runs its own
//! project-local PostgreSQL cluster from the server binaries installed on the
//! machine.
//!
//! # Folder layout
//!
//! [`EmbeddedPostgres::start`] takes the cluster's data folder (the api passes
//! `<repo>/.pgdata`, which `.gitignore` lists). It is an ordinary PostgreSQL
//! data directory, created by `initdb` on first run with
//!
//! * the superuser `postgres`, UTF8 and the C locale, `trust` authentication
//!   for connections from this machine only;
//! * `listen_addresses = '127.0.0.1'` and `unix_socket_directories = '.'`
//!   appended to its `postgresql.conf`: TCP on loopback only, and the Unix
//!   socket inside the folder (relative, so the folder may move and the socket
//!   path never outgrows the OS limit; `psql -h <folder> -p <port> -U postgres`);
//! * `server.log`, the server's log, appended to on every start;
//! * the database `trade`, created when missing, which
//!   [`EmbeddedPostgres::database_url`] names.
//!
//! The port is not stored: each start takes a free one on 127.0.0.1.
//!
//! # Reuse
//!
//! A folder that already holds a cluster is started as it is, without
//! `initdb`. If its server is already running (another `cargo run`, or one
//! left behind by a killed process), [`EmbeddedPostgres::start`] attaches to it
//! on the port recorded in `postmaster.pid`, and that handle never stops it:
//! [`EmbeddedPostgres::stop`] and drop only stop a server this process started.
//! A stale `postmaster.pid` is `pg_ctl`'s to clean up.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. As root, the folder is created and handed
//! (recursively) to the `postgres` account, and `initdb` and `pg_ctl` run as
//! that account through `runuser -u postgres --` (or `su -s /bin/sh postgres
//! -c` where `runuser` is missing). Every parent folder must let that account
//! through; the error names the first one that does not. As a normal user the
//! binaries run directly and the folder stays the user's.
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
const SETTINGS: &str = "\n# Written by the trade engine's embedded mode (api/src/embedded.rs).\n\
                        listen_addresses = '127.0.0.1'\n\
                        unix_socket_directories = '.'\n";
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
    /// The server refused a connection or the query that creates `trade`.
    #[error("the embedded PostgreSQL on port {port} failed: {}", one_line(&source.to_string()))]
    Database { port: u16, source: sqlx::Error },
}

/// Where [`find_server_binaries`] looks, in this order.
#[derive(Debug, Clone, Default)]
pub struct SearchPaths {
    /// `PG_BIN_DIR`: when set, the only folder searched.
    pub bin_dir_override: Option<PathBuf>,
    /// The folders of `PATH`, in order; also where `pg_config` is looked for,
    /// whose `--bindir` is tried next.
    pub path_dirs: Vec<PathBuf>,
    /// The usual install folders, tried last, in order.
    pub usual_dirs: Vec<PathBuf>,
}

impl SearchPaths {
    /// `PG_BIN_DIR` (ignored when empty), `PATH`, and those of the usual install
    /// folders that exist, newest version first: `/usr/lib/postgresql/*/bin`,
    /// `/usr/local/pgsql/bin`, `/opt/homebrew/opt/postgresql@*/bin`,
    /// `/usr/local/opt/postgresql@*/bin`,
    /// `/Applications/Postgres.app/Contents/Versions/latest/bin`, `/usr/pgsql-*/bin`.
    pub fn from_environment() -> Self {
        let bin_dir_override = std::env::var_os("PG_BIN_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        let path_dirs = path_dirs();
        let mut usual_dirs = versioned_dirs(Path::new("/usr/lib/postgresql"), "");
        usual_dirs.push("/usr/local/pgsql/bin".into());
        usual_dirs.extend(versioned_dirs(
            Path::new("/opt/homebrew/opt"),
            "postgresql@",
        ));
        usual_dirs.extend(versioned_dirs(Path::new("/usr/local/opt"), "postgresql@"));
        usual_dirs.push("/Applications/Postgres.app/Contents/Versions/latest/bin".into());
        usual_dirs.extend(versioned_dirs(Path::new("/usr"), "pgsql-"));
        usual_dirs.retain(|dir| dir.is_dir());
        Self {
            bin_dir_override,
            path_dirs,
            usual_dirs,
        }
    }
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `<parent>/<prefix><version>/bin` for every numeric version, newest first.
fn versioned_dirs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?;
            let key = version
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|left, right| right.0.cmp(&left.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// The folder holding `initdb` and `pg_ctl` (symbolic links on `PATH` are
/// followed to the real install folder), or
/// [`EmbeddedError::NoServerBinaries`] listing every folder tried.
///
/// ```
/// use api::embedded::{EmbeddedError, SearchPaths, find_server_binaries};
///
/// let nowhere = SearchPaths::default();
/// assert!(matches!(
///     find_server_binaries(&nowhere),
///     Err(EmbeddedError::NoServerBinaries { .. })
/// ));
/// ```
pub fn find_server_binaries(search: &SearchPaths) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = &search.bin_dir_override {
        return server_bin_dir(dir).ok_or_else(|| EmbeddedError::NoServerBinaries {
            searched: vec![dir.clone()],
        });
    }
    let mut searched = Vec::new();
    let pg_config_dir = pg_config_bindir(&search.path_dirs);
    let candidates = search
        .path_dirs
        .iter()
        .chain(pg_config_dir.iter())
        .chain(search.usual_dirs.iter());
    for dir in candidates {
        if let Some(found) = server_bin_dir(dir) {
            return Ok(found);
        }
        searched.push(dir.clone());
    }
    Err(EmbeddedError::NoServerBinaries { searched })
}

fn server_bin_dir(dir: &Path) -> Option<PathBuf> {
    if !has_server_binaries(dir) {
        return None;
    }
    let real = fs::canonicalize(dir.join("initdb"))
        .ok()
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|real| has_server_binaries(real));
    Some(real.unwrap_or_else(|| dir.to_path_buf()))
}

fn has_server_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

fn is_executable(file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn find_program(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|file| is_executable(file))
}

fn pg_config_bindir(path_dirs: &[PathBuf]) -> Option<PathBuf> {
    let pg_config = find_program("pg_config", path_dirs)?;
    let output = std::process::Command::new(&pg_config)
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// How `initdb` and `pg_ctl` are run: directly, or as [`SERVICE_ACCOUNT`] when root.
#[derive(Debug, Clone)]
enum Runner {
    Direct,
    Runuser {
        runuser: PathBuf,
        uid: u32,
        gid: u32,
    },
    Su {
        su: PathBuf,
        uid: u32,
        gid: u32,
    },
}

impl Runner {
    fn detect() -> Result<Self, EmbeddedError> {
        if id_of(&["-u"]) != Some(0) {
            return Ok(Self::Direct);
        }
        let (Some(uid), Some(gid)) = (
            id_of(&["-u", SERVICE_ACCOUNT]),
            id_of(&["-g", SERVICE_ACCOUNT]),
        ) else {
            return Err(EmbeddedError::NoServiceAccount {
                account: SERVICE_ACCOUNT,
            });
        };
        let mut dirs = path_dirs();
        dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
        if let Some(runuser) = find_program("runuser", &dirs) {
            Ok(Self::Runuser { runuser, uid, gid })
        } else if let Some(su) = find_program("su", &dirs) {
            Ok(Self::Su { su, uid, gid })
        } else {
            Err(EmbeddedError::NoAccountSwitch {
                account: SERVICE_ACCOUNT,
            })
        }
    }

    /// The account's uid and gid when the server runs as another account.
    fn account(&self) -> Option<(u32, u32)> {
        match self {
            Self::Direct => None,
            Self::Runuser { uid, gid, .. } | Self::Su { uid, gid, .. } => Some((*uid, *gid)),
        }
    }

    fn command(&self, program: &Path, args: &[OsString]) -> std::process::Command {
        let mut command = match self {
            Self::Direct => {
                let mut command = std::process::Command::new(program);
                command.args(args);
                command
            }
            Self::Runuser { runuser, .. } => {
                let mut command = std::process::Command::new(runuser);
                command
                    .args(["-u", SERVICE_ACCOUNT, "--"])
                    .arg(program)
                    .args(args);
                command
            }
            Self::Su { su, .. } => {
                let mut line = shell_quote(program.as_os_str());
                for arg in args {
                    line.push(' ');
                    line.push_str(&shell_quote(arg));
                }
                let mut command = std::process::Command::new(su);
                command
                    .args(["-s", "/bin/sh", SERVICE_ACCOUNT, "-c"])
                    .arg(line);
                command
            }
        };
        // The account may not be allowed into the caller's working folder.
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    async fn run(
        &self,
        step: &'static str,
        timeout: Duration,
        program: &Path,
        args: &[OsString],
    ) -> Result<Output, EmbeddedError> {
        let mut command = tokio::process::Command::from(self.command(program, args));
        command.kill_on_drop(true);
        match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(source)) => Err(EmbeddedError::Run {
                program: program.display().to_string(),
                source,
            }),
            Err(_) => Err(EmbeddedError::TimedOut { step, timeout }),
        }
    }

    /// Whether the account running the server can pass through `dir`.
    async fn can_enter(&self, dir: &Path) -> Result<bool, EmbeddedError> {
        let args = os_args!["-x", dir];
        let output = self
            .run("a folder check", PG_CTL_TIMEOUT, Path::new("test"), &args)
            .await?;
        Ok(output.status.success())
    }
}

/// `id <args>` as a number: the effective uid, or an account's uid or gid.
fn id_of(args: &[&str]) -> Option<u32> {
    let output = std::process::Command::new("id").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn shell_quote(arg: &OsStr) -> String {
    format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"))
}

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
        match postgres.running_port().await? {
            Some(port) => {
                tracing::info!(data_dir = %postgres.data_dir.display(), port, "attaching to the running embedded PostgreSQL");
                postgres.port = port;
            }
            None => postgres.start_server().await?,
        }
        postgres.database_url = format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}",
            postgres.port
        );
        // On error the handle drops here, stopping a server it started.
        create_database(postgres.port).await?;
        tracing::info!(
            data_dir = %postgres.data_dir.display(),
            port = postgres.port,
            created = postgres.created,
            started = postgres.started,
            "embedded PostgreSQL ready"
        );
        Ok(postgres)
    }

    /// `postgres://postgres@127.0.0.1:PORT/trade`.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The TCP port on 127.0.0.1.
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
            "-A",
            "trust"
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

    /// The port of the server already running on this folder, if one is.
    async fn running_port(&self) -> Result<Option<u16>, EmbeddedError> {
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
        // postmaster.pid: pid, data folder, start time, port, …
        Ok(fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| pid.lines().nth(3).and_then(|port| port.trim().parse().ok())))
    }

    async fn start_server(&mut self) -> Result<(), EmbeddedError> {
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
            format!("-p {}", self.port),
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
        if self.running_port().await.ok().flatten() == Some(self.port) {
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

/// Creates the folder, checks what it holds and, as root, hands it to the
/// service account. Returns whether it still needs `initdb`.
async fn prepare_folder(
    data_dir: &Path,
    bin_dir: &Path,
    runner: &Runner,
) -> Result<bool, EmbeddedError> {
    let not_writable = |source| EmbeddedError::FolderNotWritable {
        dir: data_dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(not_writable)?;
    let needs_initdb = match fs::read_to_string(data_dir.join("PG_VERSION")) {
        Ok(data_version) => {
            check_version(data_dir, bin_dir, runner, data_version.trim()).await?;
            false
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if fs::read_dir(data_dir)
                .map_err(not_writable)?
                .next()
                .is_some()
            {
                return Err(EmbeddedError::NotACluster {
                    dir: data_dir.to_path_buf(),
                });
            }
            true
        }
        Err(error) => return Err(not_writable(error)),
    };
    let Some((uid, gid)) = runner.account() else {
        return Ok(needs_initdb);
    };
    if fs::metadata(data_dir).map_err(not_writable)?.uid() != uid {
        chown_recursive(data_dir, uid, gid).map_err(not_writable)?;
    }
    if !runner.can_enter(data_dir).await? {
        for dir in data_dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if !runner.can_enter(dir).await? {
                return Err(EmbeddedError::FolderNotTraversable {
                    dir: dir.to_path_buf(),
                    account: SERVICE_ACCOUNT,
                });
            }
        }
    }
    Ok(needs_initdb)
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A cluster only runs on the major version that created it; say so before
/// the server's own, less direct, error.
async fn check_version(
    data_dir: &Path,
    bin_dir: &Path,
    runner: &Runner,
    data_version: &str,
) -> Result<(), EmbeddedError> {
    let pg_ctl = bin_dir.join("pg_ctl");
    let output = runner
        .run(
            "pg_ctl --version",
            PG_CTL_TIMEOUT,
            &pg_ctl,
            &[OsString::from("--version")],
        )
        .await?;
    // "pg_ctl (PostgreSQL) 15.20 (Debian …)": the major is "15", or "9.6" before 10.
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(full) = text
        .split_once("(PostgreSQL)")
        .and_then(|(_, rest)| rest.split_whitespace().next())
    else {
        return Ok(());
    };
    let parts: Vec<&str> = full.split('.').collect();
    let server_version = match parts.as_slice() {
        [major, minor, ..] if major.parse::<u32>().is_ok_and(|major| major < 10) => {
            format!("{major}.{minor}")
        }
        [major, ..] => major.chars().take_while(char::is_ascii_digit).collect(),
        [] => return Ok(()),
    };
    if server_version == data_version {
        return Ok(());
    }
    Err(EmbeddedError::VersionMismatch {
        dir: data_dir.to_path_buf(),
        bin_dir: bin_dir.to_path_buf(),
        data_version: data_version.to_owned(),
        server_version,
    })
}

/// Waits until the server accepts connections, then creates `trade` if missing.
async fn create_database(port: u16) -> Result<(), EmbeddedError> {
    let options = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .username(SUPERUSER)
        .database("postgres")
        .ssl_mode(PgSslMode::Disable);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut connection = loop {
        match PgConnection::connect_with(&options).await {
            Ok(connection) => break connection,
            Err(source) if Instant::now() >= deadline => {
                return Err(EmbeddedError::Database { port, source });
            }
            Err(error) => {
                tracing::debug!(port, %error, "embedded PostgreSQL not accepting connections yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let database_error = |source| EmbeddedError::Database { port, source };
    let exists: bool = sqlx::query_scalar(DATABASE_EXISTS)
        .bind(DATABASE)
        .fetch_one(&mut connection)
        .await
        .map_err(database_error)?;
    if !exists {
        match sqlx::raw_sql(CREATE_DATABASE)
            .execute(&mut connection)
            .await
        {
            Ok(_) => tracing::info!(port, database = DATABASE, "database created"),
            // Another process starting on the same folder created it first.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(source) => return Err(database_error(source)),
        }
    }
    connection.close().await.map_err(database_error)
}

/// The last lines of a command's output, as one line.
fn output_tail(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let text = tail(&text);
    if text.is_empty() {
        format!("exited with {}", output.status)
    } else {
        text
    }
}

/// The last five non-empty lines of a log, joined into one line.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

fn path_list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing: no PG_BIN_DIR, PATH or install folder".to_owned();
    }
    let paths: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    paths.join(", ")
}
