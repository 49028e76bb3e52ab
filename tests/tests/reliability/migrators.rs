//! Concurrent migrators, beyond the two-runner races of
//! `migration/rollback.rs`: four `up` runs at once, in one process and as four
//! CLI processes, and a CLI `up` racing a CLI `down`. Each migration is
//! recorded once and the catalog equals a sequential run's.

use std::process::{Child, Command, Stdio};

use migration::{DataLoss, Operation};
use sea_orm::DatabaseConnection;
use tests::catalog::snapshot;
use tests::db::TestDb;
use tests::sql::{column, scalar};

/// How many migrations the crate has.
fn migrations() -> usize {
    use migration::{Migrator, MigratorTrait};
    Migrator::migrations().len()
}

/// The recorded versions, oldest first; panics when one is recorded twice.
async fn recorded(db: &DatabaseConnection) -> Vec<String> {
    let versions: Vec<String> =
        column(db, "SELECT version FROM seaql_migrations ORDER BY version").await;
    let distinct: i64 = scalar(db, "SELECT count(DISTINCT version) FROM seaql_migrations").await;
    assert_eq!(
        distinct as usize,
        versions.len(),
        "a migration recorded twice: {versions:?}"
    );
    versions
}

/// How a database was migrated: the CLI pins the functions' search_path to
/// its schema (`-s`, default public), the library call to the connection's,
/// so each is compared with a sequential run of the same kind.
#[derive(Clone, Copy)]
enum Runner {
    Library,
    Cli,
}

/// Asserts `db` has exactly the catalog of a database migrated
/// sequentially, one run by `runner`, up to `applied` migrations.
async fn assert_matches_sequential(db: &TestDb, applied: usize, runner: Runner) {
    let reference = TestDb::empty().await;
    if applied > 0 {
        let steps = u32::try_from(applied).expect("a few migrations");
        match runner {
            Runner::Library => migration::run(
                reference.conn(),
                Operation::Up(Some(steps)),
                DataLoss::Refuse,
            )
            .await
            .unwrap_or_else(|err| panic!("sequential up {applied}: {err}")),
            Runner::Cli => wait_all(
                vec![start_cli(
                    reference.url(),
                    &["up", "-n", &steps.to_string()],
                )],
                "sequential migration_cli up",
            ),
        }
    }
    let (expected, actual) = (snapshot(reference.conn()).await, snapshot(db.conn()).await);
    let diff = expected.diff(&actual);
    assert!(
        diff.is_empty(),
        "concurrent vs sequential ({applied}):\n{diff}"
    );
    assert_eq!(recorded(db.conn()).await, recorded(reference.conn()).await);
}

/// The migration CLI, started (not awaited) against `url`.
fn start_cli(url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_migration_cli"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", url)
        .env_remove("DATABASE_SCHEMA")
        .env_remove("MIGRATION_ALLOW_DATA_LOSS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("the migration CLI starts: {err}"))
}

/// Waits for every child; panics with its stderr when one failed.
fn wait_all(children: Vec<Child>, what: &str) {
    for (n, child) in children.into_iter().enumerate() {
        let output = child
            .wait_with_output()
            .unwrap_or_else(|err| panic!("{what} {n} finishes: {err}"));
        assert!(
            output.status.success(),
            "{what} {n} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn four_ups_at_once_in_one_process_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let pools = [
        db.connect().await,
        db.connect().await,
        db.connect().await,
        db.connect().await,
    ];
    let up = |conn| migration::run(conn, Operation::Up(None), DataLoss::Refuse);
    let results = tokio::join!(up(&pools[0]), up(&pools[1]), up(&pools[2]), up(&pools[3]));
    for result in [results.0, results.1, results.2, results.3] {
        if let Err(err) = result {
            panic!("a concurrent up failed: {err}");
        }
    }
    assert_eq!(recorded(db.conn()).await.len(), migrations());
    assert_matches_sequential(&db, migrations(), Runner::Library).await;
}

#[tokio::test]
async fn four_cli_processes_running_up_at_once_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let children = (0..4).map(|_| start_cli(db.url(), &["up"])).collect();
    wait_all(children, "migration_cli up");
    assert_eq!(recorded(db.conn()).await.len(), migrations());
    assert_matches_sequential(&db, migrations(), Runner::Cli).await;
}

#[tokio::test]
async fn a_cli_up_racing_a_cli_down_ends_where_a_sequential_run_would() {
    let db = TestDb::empty().await;
    wait_all(
        vec![start_cli(
            db.url(),
            &["up", "-n", &(migrations() - 1).to_string()],
        )],
        "migration_cli up to the one before the newest",
    );
    let children = vec![
        start_cli(db.url(), &["up"]),
        start_cli(db.url(), &["down", "-n", "1"]),
    ];
    wait_all(children, "migration_cli up/down");
    // Up then down leaves all but one; down then up leaves all. Either way, whole.
    let applied = recorded(db.conn()).await.len();
    assert!(
        applied == migrations() - 1 || applied == migrations(),
        "{applied} migrations recorded after up racing down"
    );
    assert_matches_sequential(&db, applied, Runner::Cli).await;
}
