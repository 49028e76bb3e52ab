//! PgBouncer in front of a PostgreSQL server, started by the test on a free
//! loopback port with a generated ini and userlist (`auth_type = trust`), as
//! the `postgres` account when running as root (PgBouncer refuses root).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{as_server_account, is_root};

/// PgBouncer's `pool_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client session (what migrations need: their
    /// lock is a session-level advisory lock).
    Session,
    /// A server connection per transaction: no session state, and with
    /// PgBouncer 1.18 no named prepared statements across transactions.
    Transaction,
}

/// A running PgBouncer; stopped and its folder deleted on drop.
pub struct Pooler {
    port: u16,
    dir: PathBuf,
    child: Child,
}

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Debian package installs the binary, for a PATH without sbin.
const DEBIAN_BINARY: &str = "/usr/sbin/pgbouncer";

impl Pooler {
    /// Starts PgBouncer in `mode` for every database of the server at
    /// `server_port` on 127.0.0.1, with at most `server_connections` server
    /// connections per database and user.
    ///
    /// Panics with what to do when PgBouncer is not installed.
    pub fn start(mode: PoolMode, server_port: u16, server_connections: u32) -> Pooler {
        let binary = find_binary().unwrap_or_else(|| {
            panic!(
                "pgbouncer is not installed (not on PATH nor at {DEBIAN_BINARY}); the fault \
                 suite needs it: `apt-get install -y pgbouncer` (Debian ships 1.18), as .ci/run does"
            )
        });
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "te_pgbouncer_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let mode_name = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {userlist}\n\
             pool_mode = {mode_name}\n\
             default_pool_size = {server_connections}\n\
             max_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            userlist = dir.join("userlist.txt").display(),
            log = dir.join("pgbouncer.log").display(),
            pid = dir.join("pgbouncer.pid").display(),
        );
        write(&dir.join("pgbouncer.ini"), &ini);
        write(&dir.join("userlist.txt"), "\"postgres\" \"\"\n");
        if is_root() {
            let chowned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                chowned,
                "cannot hand {} to the postgres account",
                dir.display()
            );
        }
        let child = as_server_account(&binary)
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let pooler = Pooler { port, dir, child };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "pgbouncer did not listen on {port} within {START_TIMEOUT:?}: {}",
                pooler.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pooler
    }

    /// `url` (a database URL on the server) through this PgBouncer: same
    /// user and database, PgBouncer's port.
    pub fn url_for(&self, url: &str) -> String {
        let mut parsed =
            reqwest::Url::parse(url).unwrap_or_else(|err| panic!("{url} is a URL: {err}"));
        let _ = parsed.set_port(Some(self.port));
        parsed.to_string()
    }

    /// PgBouncer's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pooler {
    /// Stops PgBouncer (SIGTERM to its pid; the runuser wrapper then exits
    /// and reaps it; killed after 5 s if not) and deletes its folder.
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pgbouncer"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from(DEBIAN_BINARY);
        debian.is_file().then_some(debian)
    })
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("no free port on 127.0.0.1: {err}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}
