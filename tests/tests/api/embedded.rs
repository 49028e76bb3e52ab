//! The embedded default: with no `DATABASE_URL`, the api creates a
//! project-local PostgreSQL cluster on first run, reuses it afterwards, and
//! says in one line what to do when no server binaries are installed.
//!
//! The cluster tests need the PostgreSQL server binaries on the machine; they
//! pass as root (the server then runs as `postgres`) and as a normal user.

use std::{
    fs,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use api::embedded::{EmbeddedError, EmbeddedPostgres, SearchPaths, find_server_binaries};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

/// A fresh folder under the system temp folder, mode 0755 so the `postgres`
/// account can pass through it when the tests run as root; removed on drop,
/// after the clusters inside it (declared later, so dropped earlier) stopped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "api-embedded-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).expect("the scratch folder is created");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .expect("the scratch folder is made traversable");
        Self { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

async fn scalar(url: &str, sql: &'static str) -> Option<i32> {
    let db = Database::connect(url)
        .await
        .unwrap_or_else(|error| panic!("{url} accepts connections: {error}"));
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql} runs: {error}"))
        .map(|row| row.try_get_by_index::<i32>(0).expect("an int4 column"));
    db.close().await.expect("the connection closes");
    row
}

async fn text(url: &str, sql: &'static str) -> Option<String> {
    let db = Database::connect(url)
        .await
        .unwrap_or_else(|error| panic!("{url} accepts connections: {error}"));
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql} runs: {error}"))
        .and_then(|row| {
            row.try_get_by_index::<Option<String>>(0)
                .expect("a text column")
        });
    db.close().await.expect("the connection closes");
    row
}

async fn execute(url: &str, sql: &'static str) {
    let db = Database::connect(url)
        .await
        .unwrap_or_else(|error| panic!("{url} accepts connections: {error}"));
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql} runs: {error}"));
    db.close().await.expect("the connection closes");
}

async fn start(data_dir: &Path) -> EmbeddedPostgres {
    EmbeddedPostgres::start(data_dir)
        .await
        .unwrap_or_else(|error| panic!("the embedded cluster starts: {error}"))
}

/// A cluster created in a scratch folder and stopped again, for tests that
/// change it before the next start; the scratch folder lives as long as the
/// first value.
async fn stopped_cluster(label: &str) -> (Scratch, PathBuf) {
    let scratch = Scratch::new(label);
    let data_dir = scratch.path.join("pgdata");
    start(&data_dir)
        .await
        .stop()
        .await
        .expect("the cluster stops");
    (scratch, data_dir)
}

#[tokio::test]
async fn a_cluster_is_created_once_reused_and_stopped() {
    let scratch = Scratch::new("lifecycle");
    let data_dir = scratch.path.join("pgdata");

    let first = start(&data_dir).await;
    assert!(
        first.created() && first.started(),
        "the first run runs initdb and starts the server"
    );
    assert_eq!(
        first.database_url(),
        format!(
            "postgres://postgres@localhost/trade?host={}&port={}&sslmode=disable",
            data_dir.display(),
            first.port()
        ),
        "the URL names the socket folder (the scratch path needs no escaping)"
    );
    assert!(
        data_dir.join("PG_VERSION").is_file(),
        "the cluster lives in the folder given"
    );
    assert_eq!(scalar(first.database_url(), "SELECT 1").await, Some(1));
    execute(
        first.database_url(),
        "CREATE TABLE embedded_marker (id int4); INSERT INTO embedded_marker VALUES (7)",
    )
    .await;

    let attached = start(&data_dir).await;
    assert!(
        !attached.created() && !attached.started(),
        "a running cluster is attached to, not started"
    );
    assert_eq!(
        attached.database_url(),
        first.database_url(),
        "the running server's port is reused"
    );
    attached
        .stop()
        .await
        .expect("stopping an attached handle succeeds");
    assert_eq!(
        scalar(first.database_url(), "SELECT 1").await,
        Some(1),
        "an attached handle leaves the server it did not start running"
    );

    first.stop().await.expect("the cluster stops");
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "no server runs after stop"
    );

    let second = start(&data_dir).await;
    assert!(
        !second.created() && second.started(),
        "the second run starts the existing cluster without initdb"
    );
    assert_eq!(
        scalar(second.database_url(), "SELECT id FROM embedded_marker").await,
        Some(7),
        "what the first run wrote is still there"
    );
    second.stop().await.expect("the cluster stops again");

    let dropped = start(&data_dir).await;
    assert!(dropped.started());
    drop(dropped);
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "dropping a handle without stop() still stops the server it started"
    );

    let settings = data_dir.join("postgresql.conf");
    let mut broken = fs::read_to_string(&settings).expect("the settings are readable");
    broken.push_str("\nembedded_test_bogus_setting = on\n");
    fs::write(&settings, broken).expect("the settings are written");
    let error = EmbeddedPostgres::start(&data_dir)
        .await
        .expect_err("a server with a bad setting does not start");
    let message = error.to_string();
    assert!(
        matches!(error, EmbeddedError::StartFailed { .. }),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains("embedded_test_bogus_setting"),
        "the server log's last lines say why: {message}"
    );
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "no server is left behind"
    );
}

fn folder_mode(dir: &Path) -> u32 {
    fs::metadata(dir)
        .expect("the data folder exists")
        .permissions()
        .mode()
        & 0o7777
}

/// Whether a TCP connection to 127.0.0.1:`port` fails. The port was free on
/// 127.0.0.1 when the cluster chose it, so only the cluster could answer.
fn tcp_refused(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// What any account on the machine could use to get in: a TCP listener, or a
/// socket in a folder others may enter.
async fn assert_reachable_only_through_the_socket(postgres: &EmbeddedPostgres) {
    let url = postgres.database_url();
    assert_eq!(
        text(url, "SELECT inet_server_addr()::text").await,
        None,
        "database_url() connects over the Unix socket, not TCP"
    );
    assert_eq!(
        text(url, "SHOW listen_addresses").await.as_deref(),
        Some(""),
        "the server listens on no TCP address"
    );
    assert!(
        tcp_refused(postgres.port()),
        "nothing answers TCP on 127.0.0.1:{}",
        postgres.port()
    );
    let socket = postgres
        .data_dir()
        .join(format!(".s.PGSQL.{}", postgres.port()));
    assert!(
        fs::symlink_metadata(&socket).is_ok_and(|meta| meta.file_type().is_socket()),
        "the socket is {}",
        socket.display()
    );
    assert_eq!(
        folder_mode(postgres.data_dir()),
        0o700,
        "only the owner may enter the data folder, and so reach the socket"
    );
}

#[tokio::test]
async fn the_cluster_is_reachable_only_through_the_socket_in_its_folder() {
    let scratch = Scratch::new("private");
    let data_dir = scratch.path.join("pgdata");

    let postgres = start(&data_dir).await;

    assert_reachable_only_through_the_socket(&postgres).await;
    let url = postgres.database_url();
    assert_eq!(
        text(url, "SHOW unix_socket_directories").await.as_deref(),
        Some("."),
        "the socket folder is the data folder, relative to it"
    );
    assert!(
        scalar(
            url,
            "SELECT count(*)::int4 FROM pg_hba_file_rules WHERE type LIKE 'host%'"
        )
        .await
        .is_some_and(|rules| rules > 0),
        "initdb wrote host rules, so the next check has something to check"
    );
    assert_eq!(
        scalar(
            url,
            "SELECT count(*)::int4 FROM pg_hba_file_rules \
             WHERE type LIKE 'host%' AND auth_method <> 'reject'"
        )
        .await,
        Some(0),
        "every TCP connection is rejected, even if TCP is turned on"
    );
    let hba = fs::read_to_string(data_dir.join("pg_hba.conf")).expect("pg_hba.conf is readable");
    let host_trust: Vec<&str> = hba
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("host") && line.split_whitespace().any(|w| w == "trust"))
        .collect();
    assert!(
        host_trust.is_empty(),
        "host lines trusting anyone: {host_trust:?}"
    );
    assert_eq!(
        scalar(
            url,
            "SELECT count(*)::int4 FROM pg_hba_file_rules \
             WHERE type = 'local' AND auth_method = 'trust'"
        )
        .await
        .map(|rules| rules > 0),
        Some(true),
        "the socket trusts whoever reaches it, which the folder's mode limits"
    );
    postgres.stop().await.expect("the cluster stops");
}

/// A cluster created before this change: `trust` for TCP too, and
/// `listen_addresses = '127.0.0.1'` in its `postgresql.conf`.
#[tokio::test]
async fn a_cluster_from_the_tcp_days_starts_without_a_tcp_listener() {
    let (_scratch, data_dir) = stopped_cluster("legacy").await;
    let settings = data_dir.join("postgresql.conf");
    let mut conf = fs::read_to_string(&settings).expect("the settings are readable");
    conf.push_str("\nlisten_addresses = '127.0.0.1'\n");
    fs::write(&settings, conf).expect("the settings are written");
    let hba_file = data_dir.join("pg_hba.conf");
    let hba = fs::read_to_string(&hba_file).expect("pg_hba.conf is readable");
    fs::write(&hba_file, format!("host all all 127.0.0.1/32 trust\n{hba}"))
        .expect("pg_hba.conf is written");

    let postgres = start(&data_dir).await;

    assert!(!postgres.created() && postgres.started());
    let url = postgres.database_url();
    assert_eq!(
        text(
            url,
            "SELECT setting FROM pg_file_settings \
             WHERE name = 'listen_addresses' ORDER BY seqno DESC LIMIT 1"
        )
        .await
        .as_deref(),
        Some("127.0.0.1"),
        "the old setting is the file's last word"
    );
    assert_reachable_only_through_the_socket(&postgres).await;
    postgres.stop().await.expect("the cluster stops");
}

#[tokio::test]
async fn a_data_folder_opened_to_others_is_made_private_again() {
    let (_scratch, data_dir) = stopped_cluster("opened").await;
    fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o755))
        .expect("the folder is opened up");

    let postgres = start(&data_dir).await;

    assert_eq!(folder_mode(&data_dir), 0o700);
    assert_eq!(scalar(postgres.database_url(), "SELECT 1").await, Some(1));
    postgres.stop().await.expect("the cluster stops");
}

/// The longest accepted folder works end to end, with characters a URL must
/// escape; one byte more is refused in one line, before anything is created.
#[tokio::test]
async fn the_socket_path_must_fit_the_os_limit() {
    #[cfg(target_os = "linux")]
    const LIMIT: usize = 107;
    #[cfg(not(target_os = "linux"))]
    const LIMIT: usize = 103;
    let scratch = Scratch::new("long");
    // `<folder>/.s.PGSQL.<port>` with the longest port, 65535.
    let folder_of = |total: usize| {
        let prefix = "pg data+&%#=?";
        let base = scratch.path.as_os_str().len() + 1;
        let fill = total - "/.s.PGSQL.65535".len() - base - prefix.len();
        scratch.path.join(format!("{prefix}{}", "x".repeat(fill)))
    };
    let (longest, too_long) = (folder_of(LIMIT), folder_of(LIMIT + 1));

    let error = EmbeddedPostgres::start(&too_long)
        .await
        .expect_err("a socket path over the limit is refused");
    let message = error.to_string();
    assert!(
        matches!(error, EmbeddedError::SocketPathTooLong { length, limit, .. } if length == LIMIT + 1 && limit == LIMIT),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    for expected in [too_long.display().to_string(), "EMBEDDED_PGDATA".to_owned()] {
        assert!(
            message.contains(&expected),
            "{expected:?} missing from: {message}"
        );
    }
    assert!(!too_long.exists(), "nothing is created");

    let postgres = start(&longest).await;
    assert_eq!(
        text(
            postgres.database_url(),
            "SELECT current_setting('data_directory')"
        )
        .await
        .as_deref(),
        longest.to_str(),
        "the escaped URL reaches the cluster in {}",
        longest.display()
    );
    postgres.stop().await.expect("the cluster stops");
}

/// As root the server runs as `postgres`, which must be able to reach the
/// folder; as a normal user the folder is the user's own, so there is nothing
/// to refuse.
#[tokio::test]
async fn as_root_a_parent_the_postgres_account_cannot_enter_is_named() {
    let running_as_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    if !running_as_root {
        return;
    }
    let scratch = Scratch::new("locked");
    let locked = scratch.path.join("locked");
    fs::create_dir(&locked).expect("the locked folder is created");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).expect("it is locked");

    let error = EmbeddedPostgres::start(&locked.join("pgdata"))
        .await
        .expect_err("postgres cannot reach the data folder");

    assert!(
        matches!(&error, EmbeddedError::FolderNotTraversable { dir, .. } if dir == &locked),
        "{error}"
    );
    assert!(!error.to_string().contains('\n'), "one line: {error}");
}

#[tokio::test]
async fn a_folder_that_is_not_a_cluster_is_left_alone() {
    let scratch = Scratch::new("foreign");
    let keepsake = scratch.path.join("notes.txt");
    fs::write(&keepsake, "mine").expect("a file is written");

    let error = EmbeddedPostgres::start(&scratch.path)
        .await
        .expect_err("a non-empty folder without a cluster is refused");

    assert!(
        matches!(error, EmbeddedError::NotACluster { .. }),
        "{error}"
    );
    assert_eq!(
        fs::read_to_string(&keepsake).expect("the file is still there"),
        "mine"
    );
    assert_eq!(
        fs::read_dir(&scratch.path)
            .expect("the folder is readable")
            .count(),
        1
    );
}

#[test]
fn no_server_binaries_is_one_line_saying_what_to_do() {
    let error =
        find_server_binaries(&SearchPaths::default()).expect_err("nothing to search finds nothing");

    assert!(matches!(&error, EmbeddedError::NoServerBinaries { searched } if searched.is_empty()));
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    for expected in [
        "no PostgreSQL server binaries (initdb, pg_ctl)",
        "apt-get install postgresql",
        "brew install postgresql@16",
        "DATABASE_URL",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing from: {message}"
        );
    }
}

#[test]
fn pg_bin_dir_is_the_only_folder_searched_when_set() {
    let (empty, real) = (Scratch::new("override"), Scratch::new("path"));
    fake_server_binaries(&real.path, &["initdb", "pg_ctl"]);
    let search = SearchPaths {
        bin_dir_override: Some(empty.path.clone()),
        path_dirs: vec![real.path.clone()],
        usual_dirs: Vec::new(),
    };

    let error = find_server_binaries(&search).expect_err("the override holds no binaries");

    assert!(
        matches!(&error, EmbeddedError::NoServerBinaries { searched } if searched.as_slice() == [empty.path.as_path()]),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&empty.path.display().to_string()),
        "{error}"
    );
}

#[test]
fn the_first_folder_with_both_binaries_wins() {
    let (half, whole, usual) = (
        Scratch::new("half"),
        Scratch::new("whole"),
        Scratch::new("usual"),
    );
    fake_server_binaries(&half.path, &["initdb"]);
    fake_server_binaries(&whole.path, &["initdb", "pg_ctl"]);
    fake_server_binaries(&usual.path, &["initdb", "pg_ctl"]);

    let on_path = SearchPaths {
        bin_dir_override: None,
        path_dirs: vec![half.path.clone(), whole.path.clone()],
        usual_dirs: vec![usual.path.clone()],
    };
    let only_usual = SearchPaths {
        path_dirs: vec![half.path.clone()],
        ..on_path.clone()
    };

    let canonical = |path: &Path| fs::canonicalize(path).expect("the folder exists");
    assert_eq!(
        find_server_binaries(&on_path)
            .map(|dir| canonical(&dir))
            .ok(),
        Some(canonical(&whole.path)),
        "PATH comes before the usual folders, and initdb alone is not enough"
    );
    assert_eq!(
        find_server_binaries(&only_usual)
            .map(|dir| canonical(&dir))
            .ok(),
        Some(canonical(&usual.path)),
        "the usual folders are searched when PATH has no server"
    );
}

fn fake_server_binaries(dir: &Path, names: &[&str]) {
    for name in names {
        let file = dir.join(name);
        fs::write(&file, "#!/bin/sh\nexit 1\n").expect("a fake binary is written");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755))
            .expect("it is made executable");
    }
}
