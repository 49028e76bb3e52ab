//! Preparing the folder, checking versions, creating the database, and
//! one-line messages.

use super::*;

/// Creates the folder, checks what it holds and, as root, hands it to the
/// service account. Returns whether it still needs `initdb`.
pub(super) async fn prepare_folder(
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
    make_private(data_dir, !needs_initdb)?;
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

pub(super) fn chown_recursive(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
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
pub(super) async fn check_version(
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

/// Closes the data folder to everyone but its owner: the socket inside it
/// admits whoever reaches it (`trust`), so the folder's mode is the access
/// control. PostgreSQL itself accepts 0700 and 0750; 0750 would let the
/// folder's group in. `existing` only decides whether that is worth a warning:
/// a folder just created by `create_dir_all` is 0755 under the usual umask.
pub(super) fn make_private(data_dir: &Path, existing: bool) -> Result<(), EmbeddedError> {
    let mode = fs::metadata(data_dir)
        .map_err(|source| EmbeddedError::FolderNotWritable {
            dir: data_dir.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
        EmbeddedError::FolderNotPrivate {
            dir: data_dir.to_path_buf(),
            mode,
            source,
        }
    })?;
    if existing {
        tracing::warn!(data_dir = %data_dir.display(), mode = format!("{mode:o}"), "the embedded PostgreSQL folder was open to other accounts; made it 0700");
    }
    Ok(())
}

/// Longest socket path the OS takes: `sun_path` (108 bytes on Linux, 104 on
/// macOS and the BSDs) less its terminating NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const SOCKET_PATH_LIMIT: usize = 107;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) const SOCKET_PATH_LIMIT: usize = 103;

/// The socket file sqlx connects to, spelled as sqlx spells it.
pub(super) fn socket_path(data_dir: &Path, port: u16) -> PathBuf {
    PathBuf::from(format!("{}/.s.PGSQL.{port}", data_dir.display()))
}

/// Refuses a data folder whose socket could not be connected to: one whose
/// path is not UTF-8 (a URL cannot carry it) or so long that
/// `<folder>/.s.PGSQL.<port>` exceeds [`SOCKET_PATH_LIMIT`] for some port.
/// The server, whose socket directory is `.`, would start; clients would not
/// reach it, failing later with a less direct error.
pub(super) fn check_socket_dir(data_dir: &Path) -> Result<(), EmbeddedError> {
    if data_dir.to_str().is_none() {
        return Err(EmbeddedError::PathNotUtf8 {
            dir: data_dir.to_path_buf(),
        });
    }
    // The longest port, so whichever one the server gets (or already has) fits.
    let length = socket_path(data_dir, u16::MAX).as_os_str().len();
    if length > SOCKET_PATH_LIMIT {
        return Err(EmbeddedError::SocketPathTooLong {
            dir: data_dir.to_path_buf(),
            length,
            limit: SOCKET_PATH_LIMIT,
        });
    }
    Ok(())
}

/// `postgres://postgres@localhost/trade?host=<data dir>&port=<port>&sslmode=disable`.
/// sqlx takes a `host` parameter starting with `/` as the socket folder; the
/// authority's `localhost` is only there to make the URL well-formed. TLS over
/// a socket in our own folder would protect nothing, so it is not attempted.
pub(super) fn database_url(data_dir: &Path, port: u16) -> Result<String, EmbeddedError> {
    let dir = data_dir
        .to_str()
        .ok_or_else(|| EmbeddedError::PathNotUtf8 {
            dir: data_dir.to_path_buf(),
        })?;
    Ok(format!(
        "postgres://{SUPERUSER}@localhost/{DATABASE}?host={}&port={port}&sslmode=disable",
        query_encode(dir)
    ))
}

/// Percent-encodes every byte but unreserved characters and `/`: sqlx decodes
/// query values as form data, where a bare `+` would become a space and `&`,
/// `#` or `%` in a folder name would cut or garble the value.
pub(super) fn query_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// What `postmaster.pid` says about a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RunningServer {
    pub(super) port: u16,
    /// The first of `listen_addresses`, empty when there is no TCP listener.
    pub(super) listen_address: String,
}

impl RunningServer {
    /// `postmaster.pid`: pid, data folder, start time, port, socket folder,
    /// first listen address, shared memory key, status.
    pub(super) fn parse(pid_file: &str) -> Option<Self> {
        let lines: Vec<&str> = pid_file.lines().map(str::trim).collect();
        Some(Self {
            port: lines.get(3)?.parse().ok()?,
            listen_address: lines.get(5).copied().unwrap_or_default().to_owned(),
        })
    }
}

/// Waits until the server accepts connections on its socket, then creates
/// `trade` if missing.
pub(super) async fn create_database(data_dir: &Path, port: u16) -> Result<(), EmbeddedError> {
    let socket = socket_path(data_dir, port);
    let options = PgConnectOptions::new_without_pgpass()
        .socket(data_dir)
        .port(port)
        .username(SUPERUSER)
        .database("postgres")
        .ssl_mode(PgSslMode::Disable);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut connection = loop {
        match PgConnection::connect_with(&options).await {
            Ok(connection) => break connection,
            Err(source) if Instant::now() >= deadline => {
                return Err(EmbeddedError::Database { socket, source });
            }
            Err(error) => {
                tracing::debug!(socket = %socket.display(), %error, "embedded PostgreSQL not accepting connections yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let database_error = |source| EmbeddedError::Database {
        socket: socket.clone(),
        source,
    };
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
            Ok(_) => {
                tracing::info!(socket = %socket.display(), database = DATABASE, "database created")
            }
            // Another process starting on the same folder created it first.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(source) => return Err(database_error(source)),
        }
    }
    connection.close().await.map_err(database_error)
}

/// The last lines of a command's output, as one line.
pub(super) fn output_tail(output: &Output) -> String {
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
pub(super) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

pub(super) fn one_line(text: &str) -> String {
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

pub(super) fn path_list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing: no PG_BIN_DIR, PATH or install folder".to_owned();
    }
    let paths: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    paths.join(", ")
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn the_database_url_names_the_socket_folder_sqlx_reads_back() {
        let dir = Path::new("/srv/my data+1/a&b=c#d%e?f");
        let url = database_url(dir, 54321).expect("a UTF-8 path makes a URL");

        assert_eq!(
            url,
            "postgres://postgres@localhost/trade?host=/srv/my%20data%2B1/a%26b%3Dc%23d%25e%3Ff\
             &port=54321&sslmode=disable"
        );
        let options = PgConnectOptions::from_str(&url).expect("sqlx parses the URL");
        assert_eq!(options.get_socket(), Some(&dir.to_path_buf()));
        assert_eq!(options.get_port(), 54321);
        assert_eq!(options.get_database(), Some(DATABASE));
        assert_eq!(options.get_username(), SUPERUSER);
    }

    #[test]
    fn a_folder_path_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = Path::new(OsStr::from_bytes(b"/tmp/\xff"));

        assert!(matches!(
            check_socket_dir(dir),
            Err(EmbeddedError::PathNotUtf8 { .. })
        ));
        assert!(matches!(
            database_url(dir, 5432),
            Err(EmbeddedError::PathNotUtf8 { .. })
        ));
    }

    #[test]
    fn postmaster_pid_gives_the_port_and_any_tcp_listener() {
        let old = "4242\n/data\n1700000000\n40123\n.\n127.0.0.1\n  1234   5678\nready   \n";
        let new = "4242\n/data\n1700000000\n40123\n.\n\n  1234   5678\nready   \n";

        assert_eq!(
            RunningServer::parse(old),
            Some(RunningServer {
                port: 40123,
                listen_address: "127.0.0.1".to_owned()
            })
        );
        assert_eq!(
            RunningServer::parse(new).map(|server| (server.port, server.listen_address)),
            Some((40123, String::new()))
        );
        assert_eq!(RunningServer::parse("4242\n/data\n"), None);
    }
}
