//! A PostgreSQL server of the test's own, in a temporary folder, that the test
//! may crash (`pg_ctl stop -m immediate`) and start again on the same port,
//! while the shared server of `DATABASE_URL` is never touched.

use std::path::PathBuf;
use std::process::Output;

use api::embedded::EmbeddedPostgres;

use super::as_server_account;

/// `pg_ctl -t`: how long a start or stop may take.
const PG_CTL_WAIT_SECONDS: &str = "30";

/// A private cluster on a free loopback port; stopped and deleted on drop.
pub struct PrivateServer {
    postgres: Option<EmbeddedPostgres>,
    dir: PathBuf,
    pg_ctl: PathBuf,
}

impl PrivateServer {
    /// Creates and starts a cluster in a fresh folder under the temporary
    /// folder (which the `postgres` account can enter when running as root).
    pub async fn start(tag: &str) -> PrivateServer {
        let dir = std::env::temp_dir().join(format!(
            "te_reliability_{tag}_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let bin_dir = crate::db::server_binaries();
        let postgres = EmbeddedPostgres::start_with_binaries(&dir, &bin_dir)
            .await
            .unwrap_or_else(|err| {
                panic!("a private PostgreSQL starts in {}: {err}", dir.display())
            });
        PrivateServer {
            dir: postgres.data_dir().to_path_buf(),
            postgres: Some(postgres),
            pg_ctl: bin_dir.join("pg_ctl"),
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/trade`.
    pub fn database_url(&self) -> String {
        self.embedded().database_url().to_owned()
    }

    /// The loopback port, the same across [`crash`](Self::crash) and
    /// [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.embedded().port()
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Stops the server the way a power cut would: `pg_ctl stop -m immediate`
    /// (no checkpoint; the next start replays the WAL).
    pub fn crash(&self) {
        let output = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECONDS]);
        assert!(
            output.status.success(),
            "pg_ctl stop -m immediate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server again on the same port and waits until it accepts
    /// connections.
    pub fn restart(&self) {
        let port = format!("-p {}", self.port());
        let log = self.log().display().to_string();
        let output = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            PG_CTL_WAIT_SECONDS,
            "-l",
            &log,
            "-o",
            &port,
        ]);
        assert!(
            output.status.success(),
            "pg_ctl start failed: {} (log {log})",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A hot standby of this server: `pg_basebackup -R` (streaming the WAL
    /// it needs, then following the primary through the `primary_conninfo`
    /// that `-R` writes) into a fresh folder, started as a private server of
    /// its own (its socket in its own folder).
    pub async fn replica(&self, tag: &str) -> PrivateServer {
        let dir = std::env::temp_dir().join(format!(
            "te_reliability_{tag}_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let bin_dir = self
            .pg_ctl
            .parent()
            .unwrap_or_else(|| panic!("{} has a folder", self.pg_ctl.display()))
            .to_path_buf();
        let port = self.port().to_string();
        let output = as_server_account(&bin_dir.join("pg_basebackup"))
            .arg("-D")
            .arg(&dir)
            .args([
                "-R", "-X", "stream", "-c", "fast", "-U", "postgres", "-p", &port, "-h",
            ])
            .arg(&self.dir)
            .output()
            .unwrap_or_else(|err| panic!("cannot run pg_basebackup: {err}"));
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let postgres = EmbeddedPostgres::start_with_binaries(&dir, &bin_dir)
            .await
            .unwrap_or_else(|err| panic!("the replica starts in {}: {err}", dir.display()));
        PrivateServer {
            dir: postgres.data_dir().to_path_buf(),
            postgres: Some(postgres),
            pg_ctl: self.pg_ctl.clone(),
        }
    }

    fn embedded(&self) -> &EmbeddedPostgres {
        self.postgres
            .as_ref()
            .unwrap_or_else(|| panic!("the private server is running until dropped"))
    }

    /// Runs `pg_ctl -D <dir> args…`, as the `postgres` account when root
    /// (PostgreSQL refuses to run as root).
    fn pg_ctl(&self, args: &[&str]) -> Output {
        let mut command = as_server_account(&self.pg_ctl);
        command.arg("-D").arg(&self.dir).args(args);
        command
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.pg_ctl.display()))
    }
}

impl Drop for PrivateServer {
    /// Stops the server (the embedded handle stops it at once on drop) and
    /// deletes its folder.
    fn drop(&mut self) {
        drop(self.postgres.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
