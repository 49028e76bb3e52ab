//! The README's *Migrating* block and its rollback drill, run as written by
//! bash: `cargo run [-q] -p migration -- …` and `sea-orm-cli migrate …` (which
//! runs the migration crate's binary with the same arguments) stand for the
//! CLI built for the tests (`migration_cli`, the same `migration::cli::main`);
//! the database the README names (`trade`, `drill` on 127.0.0.1:5432) is the
//! test's own, created by the test (so `createdb` only checks it is asked for
//! that name), and the URL written in the block is the test database's. The
//! script runs in a folder of its own, without `DATABASE_URL` in its
//! environment: the `.env` the block writes is what the CLI reads.

use std::process::Command;

use migration::{Migrator, MigratorTrait};
use tests::db::TestDb;
use tests::readme::{readme, replaced, shell_block};
use tests::sql::scalar;

const STAND_INS: &str = r#"
set -e
cargo() {
  case "$*" in
    "run -p migration -- "*) shift 4; "$MIGRATION_BIN" "$@" ;;
    "run -q -p migration -- "*) shift 5; "$MIGRATION_BIN" "$@" ;;
    *) echo "the README ran an unexpected cargo $*" >&2; return 1 ;;
  esac
}
sea-orm-cli() {
  [ "$1" = migrate ] || { echo "the README ran an unexpected sea-orm-cli $*" >&2; return 1; }
  shift; "$MIGRATION_BIN" "$@"
}
createdb() {
  [ "${@: -1}" = "$README_DB" ] || { echo "the README created ${@: -1}, not the database its URL names" >&2; return 1; }
}
"#;

/// Runs `block` in a new folder, with the database it names (`readme_db` on
/// 127.0.0.1:5432, in its URL and its `createdb`) replaced by the test's, and
/// returns its stdout and stderr together.
fn run(db: &TestDb, block: &str, readme_db: &str) -> String {
    let readme_url = format!("postgres://postgres@127.0.0.1:5432/{readme_db}");
    let block = replaced(block, &readme_url, db.url());
    let block = replaced(
        &block,
        &format!("-U postgres {readme_db}"),
        &format!("-U postgres {}", db.name()),
    );
    let folder = std::env::temp_dir().join(format!("{}_readme", db.name()));
    std::fs::create_dir_all(&folder).expect("a folder for the script");
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{STAND_INS}\n{block}"))
        .current_dir(&folder)
        .env("MIGRATION_BIN", env!("CARGO_BIN_EXE_migration_cli"))
        .env("README_DB", db.name())
        .env_remove("DATABASE_URL")
        .env_remove("MIGRATION_ALLOW_DATA_LOSS")
        .output()
        .expect("bash runs");
    std::fs::remove_dir_all(&folder).ok();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the block failed ({}):\n{block}\noutput:\n{text}",
        output.status
    );
    text
}

async fn applied(db: &TestDb) -> i64 {
    scalar::<i64>(db.conn(), "SELECT count(*) FROM seaql_migrations").await
}

#[tokio::test]
async fn the_migrating_block_creates_the_env_file_and_applies_every_migration() {
    let db = TestDb::empty().await;
    let block = shell_block(&readme(), "## Migrating");
    let output = run(&db, &block, "trade");
    // `sea-orm-cli migrate up` applied them all; the direct CLI found nothing left.
    let all = Migrator::migrations().len();
    assert_eq!(applied(&db).await, all as i64, "{output}");
    assert_eq!(
        output.matches("has been applied").count(),
        all,
        "each migration applied once:\n{output}"
    );
}

#[tokio::test]
async fn the_rollback_drill_takes_every_migration_down_and_back_up() {
    let db = TestDb::empty().await;
    let block = shell_block(&readme(), "### A rollback drill");
    // The drill's numbers are the migrations' count: it goes all the way down.
    let all = Migrator::migrations().len();
    let steps: Vec<String> = (1..=all).rev().map(|n| n.to_string()).collect();
    for says in [
        format!("# {all} applied"),
        format!("for step in {}; do", steps.join(" ")),
        format!("# back to {all}"),
    ] {
        assert!(block.contains(&says), "the drill says {says:?}:\n{block}");
    }
    let output = run(&db, &block, "drill");
    for migration in Migrator::migrations() {
        let name = migration.name();
        assert_eq!(
            output
                .matches(&format!("Migration '{name}' has been rolled back"))
                .count(),
            1,
            "{name} rolled back once:\n{output}"
        );
        assert_eq!(
            output
                .matches(&format!("Migration '{name}' has been applied"))
                .count(),
            2,
            "{name} applied before and after the drill:\n{output}"
        );
    }
    assert_eq!(applied(&db).await, all as i64, "back up:\n{output}");
}
