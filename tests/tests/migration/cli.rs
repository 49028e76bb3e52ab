//! The migration CLI as a developer runs it from a shell: configuration from
//! the environment or `.env`, the SeaORM subcommands, one-line errors, and
//! the data-loss switch.

use std::path::PathBuf;
use std::process::{Command, Output};

use migration::{Migrator, MigratorTrait};
use tests::db::TestDb;
use tests::sql::{exec, scalar};

/// The newest migration's name.
fn newest() -> String {
    Migrator::migrations()
        .last()
        .map(|m| m.name().to_owned())
        .unwrap_or_default()
}

/// How many migrations the crate has.
fn all() -> i64 {
    i64::try_from(Migrator::migrations().len()).expect("a few migrations")
}

/// A fresh, empty working directory (no `.env` in it or above it).
fn workdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("te-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// Runs the CLI in `dir` with no database settings from this process.
fn cli(dir: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_migration_cli"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_SCHEMA")
        .env_remove("MIGRATION_ALLOW_DATA_LOSS");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the CLI runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Exit code 1 and exactly one line on stderr, `error: …`, containing `needle`.
fn assert_one_line_error(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_database_url_says_what_to_set() {
    let dir = workdir("missing");
    let output = cli(&dir, &["up"], &[]);
    assert_one_line_error(&output, "DATABASE_URL is not set");
    assert!(stderr(&output).contains(".env"));
}

#[test]
fn an_unreachable_server_is_one_line_without_the_password() {
    let dir = workdir("unreachable");
    let output = cli(
        &dir,
        &["status", "-u", "postgres://app:s3cret@127.0.0.1:1/trade"],
        &[],
    );
    assert_one_line_error(
        &output,
        "cannot connect to postgres://app:***@127.0.0.1:1/trade",
    );
    assert!(!stderr(&output).contains("s3cret"));
}

#[test]
fn a_missing_database_is_one_line_saying_how_to_create_it() {
    let dir = workdir("missing-db");
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let (base, _) = server
        .split('?')
        .next()
        .and_then(|url| url.rsplit_once('/'))
        .expect("a URL with a database");
    let url = format!("{base}/te_missing_{}", std::process::id());
    let output = cli(&dir, &["status", "-u", &url], &[]);
    assert_one_line_error(&output, "does not exist");
    let err = stderr(&output);
    assert!(err.contains("createdb -h"), "{err}");
    assert!(
        err.contains(&format!("te_missing_{}", std::process::id())),
        "{err}"
    );
}

#[test]
fn a_url_of_another_database_kind_is_refused() {
    let dir = workdir("mysql");
    let output = cli(
        &dir,
        &["up"],
        &[("DATABASE_URL", "mysql://root@127.0.0.1/trade")],
    );
    assert_one_line_error(&output, "must be a PostgreSQL URL");
}

#[tokio::test]
async fn up_down_and_status_with_the_url_from_a_dotenv_file() {
    let db = TestDb::empty().await;
    let dir = workdir("dotenv");
    std::fs::write(dir.join(".env"), format!("DATABASE_URL={}\n", db.url())).expect(".env");
    let applied =
        || async { scalar::<i64>(db.conn(), "SELECT count(*) FROM seaql_migrations").await };

    let up = cli(&dir, &["up"], &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(applied().await, all());
    // The server's INFO messages are shown: the market state's first build
    // reports its steps.
    for step in [
        "market state: price levels from the resting orders",
        "candles in",
    ] {
        assert!(stdout(&up).contains(step), "{step}: {}", stdout(&up));
    }
    // Routine notices are not.
    assert!(!stdout(&up).contains("skipping"), "{}", stdout(&up));
    let status = cli(&dir, &["status"], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(
        stdout(&status).matches("... Applied").count() as i64,
        all(),
        "{}",
        stdout(&status)
    );

    let down = cli(&dir, &["down"], &[]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(applied().await, all() - 1);
    let status = cli(&dir, &["status"], &[]);
    assert!(
        stdout(&status).contains(&format!("{}'... Pending", newest())),
        "{}",
        stdout(&status)
    );

    let rest = (all() - 1).to_string();
    let down = cli(&dir, &["down", "-n", &rest], &[]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(applied().await, 0);
    let up = cli(&dir, &["up", "-n", "2"], &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(applied().await, 2);
    // No subcommand means `up`, as with SeaORM's CLI.
    let up = cli(&dir, &[], &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(applied().await, all());
    let refresh = cli(&dir, &["refresh"], &[]);
    assert!(refresh.status.success(), "{}", stderr(&refresh));
    let fresh = cli(&dir, &["fresh"], &[]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let reset = cli(&dir, &["reset"], &[]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let left: i64 = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    )
    .await;
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_cli_refuses_data_loss_unless_it_is_allowed() {
    let db = TestDb::migrated().await;
    let dir = workdir("dataloss");
    let url = db.url().to_owned();
    let env = [("DATABASE_URL", url.as_str())];
    exec(
        db.conn(),
        "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price)
         VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 1, 100)",
    )
    .await;

    // Down to migration 2: through trades and orders.
    let to_two = (all() - 2).to_string();
    let refused = cli(&dir, &["down", "-n", &to_two], &env);
    assert_one_line_error(&refused, "table \"orders\" holds 1 row");
    let refused = cli(&dir, &["reset"], &env);
    assert_one_line_error(&refused, "MIGRATION_ALLOW_DATA_LOSS=1");
    let refused = cli(&dir, &["fresh"], &env);
    assert_one_line_error(&refused, "--allow-data-loss");
    let applied =
        || async { scalar::<i64>(db.conn(), "SELECT count(*) FROM seaql_migrations").await };
    assert_eq!(applied().await, all());

    let allowed = cli(
        &dir,
        &["down", "-n", &to_two],
        &[env[0], ("MIGRATION_ALLOW_DATA_LOSS", "1")],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(applied().await, 2);

    let up = cli(&dir, &["up"], &env);
    assert!(up.status.success(), "{}", stderr(&up));
    exec(
        db.conn(),
        "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price)
         VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 1, 100)",
    )
    .await;
    let allowed = cli(&dir, &["--allow-data-loss", "fresh"], &env);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let orders: i64 = scalar(db.conn(), "SELECT count(*) FROM orders").await;
    assert_eq!(orders, 0);
}

#[tokio::test]
async fn a_schema_other_than_public_is_migrated_with_dash_s() {
    let db = TestDb::empty().await;
    exec(db.conn(), "CREATE SCHEMA trading").await;
    let dir = workdir("schema");
    let url = db.url().to_owned();
    let up = cli(
        &dir,
        &["up", "-s", "trading"],
        &[("DATABASE_URL", url.as_str())],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let placed = scalar::<i64>(
        db.conn(),
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'trading'::regnamespace
           AND relname IN ('orders', 'trades', 'symbols', 'orders_default')",
    )
    .await;
    assert_eq!(placed, 4);
    let in_public = scalar::<i64>(
        db.conn(),
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    )
    .await;
    assert_eq!(in_public, 0);
    // The functions and triggers act on their own schema whatever the caller's
    // search_path is (here the default, which does not include `trading`).
    let created: String = scalar(
        db.conn(),
        "SELECT trading.create_trades_partition('2031-05-05')",
    )
    .await;
    assert_eq!(created, "Created partition: trades_2031_05_05");
    exec(
        db.conn(),
        "INSERT INTO trading.orders (user_id, symbol, side, order_type, status, quantity, stop_price)
         VALUES (gen_random_uuid(), 'BTC/USDT', 'SELL', 'STOP', 'OPEN', 1, 90)",
    )
    .await;
    let watched: i64 = scalar(
        db.conn(),
        "SELECT count(*) FROM trading.stop_orders_watchlist",
    )
    .await;
    assert_eq!(watched, 1);
    let placed: i64 = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_class WHERE relname = 'trades_2031_05_05'
           AND relnamespace = 'trading'::regnamespace",
    )
    .await;
    assert_eq!(placed, 1);
}

/// `status` and `up` warn when the server's lock table is too small for the
/// schema's partitions (D15), and say nothing when it is large enough.
#[tokio::test]
async fn status_and_up_warn_when_the_partitions_need_more_locks() {
    let db = TestDb::migrated().await;
    let dir = workdir("locks");
    let url = db.url().to_owned();
    let env = [("DATABASE_URL", url.as_str())];
    let quiet = cli(&dir, &["status"], &env);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    let fresh = migration::lock_capacity(db.conn()).await.expect("capacity");
    assert_eq!(
        stderr(&quiet).contains("warning: max_locks_per_transaction"),
        fresh.warning().is_some(),
        "{}",
        stderr(&quiet)
    );

    // 300 days more of daily partitions: 8 locks each, more than three such
    // statements fit in a lock table of 64 per backend.
    tests::history::build(db.conn(), 300, 30)
        .await
        .expect("300 days of partitions");
    let grown = migration::lock_capacity(db.conn()).await.expect("capacity");
    assert!(grown.worst_statement_locks >= 330 * 8, "{grown:?}");
    let status = cli(&dir, &["status"], &env);
    let up = cli(&dir, &["up"], &env);
    for output in [&status, &up] {
        assert!(output.status.success(), "{}", stderr(output));
        assert_eq!(
            stderr(output).contains(&format!(
                "warning: max_locks_per_transaction is {} but the schema's partitions need {}",
                grown.max_locks_per_transaction,
                grown.required()
            )),
            grown.warning().is_some(),
            "{}",
            stderr(output)
        );
    }
    if grown.max_locks_per_transaction == migration::DEFAULT_MAX_LOCKS_PER_TRANSACTION
        && grown.backends <= 100
    {
        assert!(grown.warning().is_some(), "{grown:?}");
    }
}
