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

/// Waits until the server accepts connections, then creates `trade` if missing.
pub(super) async fn create_database(port: u16) -> Result<(), EmbeddedError> {
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
