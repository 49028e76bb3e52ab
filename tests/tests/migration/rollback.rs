//! The rollback contract (spec section 7), `fresh`, atomicity, concurrent
//! migrators and the data-loss guard.

use std::time::Duration;

use migration::{DataLoss, MIGRATION_LOCK_KEY, Migrator, MigratorTrait, Operation};
use sea_orm::DatabaseConnection;
use tests::catalog::{Catalog, snapshot};
use tests::db::TestDb;
use tests::sql::{exec, scalar, try_exec};

async fn migrate(db: &DatabaseConnection, operation: Operation) {
    if let Err(err) = migration::run(db, operation, DataLoss::Refuse).await {
        panic!("{operation:?} failed: {err}");
    }
}

async fn applied(db: &DatabaseConnection) -> i64 {
    scalar(db, "SELECT count(*) FROM seaql_migrations").await
}

/// How many migrations the crate has.
fn all() -> u32 {
    u32::try_from(Migrator::migrations().len()).expect("a few migrations")
}

/// A down that keeps the first `keep` migrations.
fn down_to(keep: u32) -> Operation {
    Operation::Down(Some(all() - keep))
}

fn assert_same(left: &Catalog, right: &Catalog, what: &str) {
    let diff = left.diff(right);
    assert!(diff.is_empty(), "{what}:\n{diff}");
}

/// For every k: up to k, then down 1, is indistinguishable from up to k−1.
#[tokio::test]
async fn down_restores_exactly_the_catalog_before_each_up() {
    let reference = TestDb::empty().await;
    let rolled = TestDb::empty().await;
    // Both start from the same (empty) schema.
    assert_same(
        &snapshot(reference.conn()).await,
        &snapshot(rolled.conn()).await,
        "two empty databases",
    );
    for k in 1..=all() {
        // `reference` is at k−1; `rolled` goes to k and back.
        let before = snapshot(reference.conn()).await;
        migrate(rolled.conn(), Operation::Up(Some(1))).await;
        let after_up = snapshot(rolled.conn()).await;
        assert!(
            !before.diff(&after_up).is_empty(),
            "migration {k} must change the catalog"
        );
        migrate(rolled.conn(), Operation::Down(Some(1))).await;
        assert_same(
            &before,
            &snapshot(rolled.conn()).await,
            &format!("up to {k} then down 1 vs up to {}", k - 1),
        );
        assert_eq!(applied(rolled.conn()).await, i64::from(k - 1));
        migrate(rolled.conn(), Operation::Up(Some(1))).await;
        migrate(reference.conn(), Operation::Up(Some(1))).await;
        assert_same(
            &snapshot(reference.conn()).await,
            &snapshot(rolled.conn()).await,
            &format!("re-applied migration {k}"),
        );
    }
}

/// A drill: up, then down one step at a time to empty, then up again; the
/// catalog at each step equals a database migrated straight to that step.
#[tokio::test]
async fn drill_down_one_at_a_time_to_empty_and_up_again() {
    let db = TestDb::migrated().await;
    let mut snapshots = vec![snapshot(db.conn()).await];
    for remaining in (0..i64::from(all())).rev() {
        migrate(db.conn(), Operation::Down(Some(1))).await;
        assert_eq!(applied(db.conn()).await, remaining);
        snapshots.push(snapshot(db.conn()).await);
    }
    let empty = TestDb::empty().await;
    assert_same(
        &snapshot(empty.conn()).await,
        snapshots.last().expect("a snapshot per step"),
        "after every down",
    );
    migrate(db.conn(), Operation::Up(None)).await;
    assert_same(&snapshots[0], &snapshot(db.conn()).await, "up again");
}

#[tokio::test]
async fn fresh_on_a_migrated_database_equals_up_on_an_empty_one() {
    let db = TestDb::migrated().await;
    let expected = snapshot(db.conn()).await;
    // Leftovers SeaORM's fresh does not drop (functions) must not get in the way,
    // and the partitions the test made must go.
    exec(db.conn(), "SELECT create_orders_partition('2035-06-01')").await;
    Migrator::fresh(db.conn()).await.expect("fresh");
    assert_same(&expected, &snapshot(db.conn()).await, "fresh vs up");
    assert_eq!(applied(db.conn()).await, i64::from(all()));
}

#[tokio::test]
async fn refresh_and_reset_work_on_a_seed_only_database() {
    let db = TestDb::migrated().await;
    let expected = snapshot(db.conn()).await;
    Migrator::refresh(db.conn()).await.expect("refresh");
    assert_same(&expected, &snapshot(db.conn()).await, "refresh");
    Migrator::reset(db.conn()).await.expect("reset");
    let empty = TestDb::empty().await;
    assert_same(
        &snapshot(empty.conn()).await,
        &snapshot(db.conn()).await,
        "reset",
    );
    let tables: i64 = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace",
    )
    .await;
    assert_eq!(tables, 0, "reset leaves nothing, not even seaql_migrations");
}

#[tokio::test]
async fn a_failing_up_leaves_nothing_of_its_migration_behind() {
    let db = TestDb::empty().await;
    migrate(db.conn(), Operation::Up(Some(3))).await;
    // Migration 4 creates this table after `trades`, its default partition and
    // indexes; the clash makes it fail midway.
    exec(db.conn(), "CREATE TABLE partition_retention_config (x int)").await;
    let before = snapshot(db.conn()).await;
    let err = migration::run(db.conn(), Operation::Up(None), DataLoss::Refuse)
        .await
        .expect_err("migration 4 clashes");
    assert!(
        err.to_string().contains("partition_retention_config"),
        "{err}"
    );
    assert_same(&before, &snapshot(db.conn()).await, "after the failed up");
    assert_eq!(applied(db.conn()).await, 3);
    let trades: Option<String> = scalar(db.conn(), "SELECT to_regclass('trades')::text").await;
    assert_eq!(trades, None);
}

#[tokio::test]
async fn a_failing_run_of_several_migrations_changes_nothing() {
    let db = TestDb::empty().await;
    migrate(db.conn(), Operation::Up(Some(1))).await;
    exec(db.conn(), "CREATE VIEW v_active_orders AS SELECT 1 AS x").await;
    let before = snapshot(db.conn()).await;
    migration::run(db.conn(), Operation::Up(None), DataLoss::Refuse)
        .await
        .expect_err("migration 5 clashes");
    assert_same(&before, &snapshot(db.conn()).await, "after the failed run");
    assert_eq!(applied(db.conn()).await, 1);
}

#[tokio::test]
async fn concurrent_ups_both_succeed_and_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let (a, b, c, d) = (
        db.connect().await,
        db.connect().await,
        db.connect().await,
        db.connect().await,
    );
    let results = tokio::join!(
        Migrator::up(&a, None),
        Migrator::up(&b, None),
        Migrator::up(&c, None),
        Migrator::up(&d, None),
    );
    for (i, result) in [results.0, results.1, results.2, results.3]
        .into_iter()
        .enumerate()
    {
        result.unwrap_or_else(|err| panic!("runner {i}: {err}"));
    }
    let versions: i64 = scalar(
        db.conn(),
        "SELECT count(DISTINCT version) FROM seaql_migrations",
    )
    .await;
    assert_eq!(
        (applied(db.conn()).await, versions),
        (i64::from(all()), i64::from(all()))
    );
    let sequential = TestDb::migrated().await;
    assert_same(
        &snapshot(sequential.conn()).await,
        &snapshot(db.conn()).await,
        "concurrent vs sequential",
    );
    for conn in [a, b, c, d] {
        conn.close().await.ok();
    }
}

#[tokio::test]
async fn a_runner_waits_for_the_migration_lock_then_runs() {
    let db = TestDb::empty().await;
    let holder = db.connect_single().await;
    exec(
        &holder,
        &format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"),
    )
    .await;
    let runner_conn = db.connect().await;
    let runner = tokio::spawn(async move {
        let outcome = Migrator::up(&runner_conn, None).await;
        runner_conn.close().await.ok();
        outcome
    });
    let waiting = "SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND NOT granted
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let mut waited = 0;
    for _ in 0..200 {
        waited = scalar::<i64>(db.conn(), waiting).await;
        if waited == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(waited, 1, "the runner waits on the advisory lock");
    let table: Option<String> =
        scalar(db.conn(), "SELECT to_regclass('seaql_migrations')::text").await;
    assert_eq!(table, None, "nothing happens before the lock is granted");
    exec(
        &holder,
        &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"),
    )
    .await;
    runner
        .await
        .expect("the runner task")
        .expect("up after the lock is released");
    assert_eq!(applied(db.conn()).await, i64::from(all()));
    holder.close().await.ok();
}

#[tokio::test]
async fn an_up_racing_a_down_ends_in_a_consistent_state() {
    let db = TestDb::migrated().await;
    let (a, b) = (db.connect().await, db.connect().await);
    let (down, up) = tokio::join!(Migrator::down(&a, Some(1)), Migrator::up(&b, None));
    down.expect("down");
    up.expect("up");
    // Whichever ran second decides; either way the catalog is that of a
    // database migrated straight to the same step.
    let steps = applied(db.conn()).await;
    assert!(
        steps == i64::from(all()) - 1 || steps == i64::from(all()),
        "{steps}"
    );
    let reference = TestDb::empty().await;
    migrate(reference.conn(), Operation::Up(Some(steps as u32))).await;
    assert_same(
        &snapshot(reference.conn()).await,
        &snapshot(db.conn()).await,
        "after the race",
    );
    a.close().await.ok();
    b.close().await.ok();
}

#[tokio::test]
async fn down_refuses_to_drop_rows_and_changes_nothing() {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price)
         VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 1, 100),
                (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 2, 100)",
    )
    .await;
    let before = snapshot(db.conn()).await;
    // Migrations 4 and later could go, but 3 would drop the orders: nothing goes.
    let err = migration::run(db.conn(), down_to(2), DataLoss::Refuse)
        .await
        .expect_err("orders hold rows");
    let message = err.to_string();
    assert!(
        message.contains("table \"orders\" holds 2 rows"),
        "{message}"
    );
    assert!(message.contains("MIGRATION_ALLOW_DATA_LOSS"), "{message}");
    assert_same(
        &before,
        &snapshot(db.conn()).await,
        "after the refused down",
    );
    assert_eq!(applied(db.conn()).await, i64::from(all()));

    for operation in [Operation::Reset, Operation::Refresh, Operation::Fresh] {
        let err = migration::run(db.conn(), operation, DataLoss::Refuse)
            .await
            .expect_err("orders hold rows");
        assert!(
            err.to_string().contains("\"orders\" holds 2 rows"),
            "{operation:?}: {err}"
        );
        assert_same(
            &before,
            &snapshot(db.conn()).await,
            &format!("after {operation:?}"),
        );
    }

    migration::run(db.conn(), down_to(2), DataLoss::Allow)
        .await
        .expect("allowed");
    assert_eq!(applied(db.conn()).await, 2);
}

#[tokio::test]
async fn a_refusal_names_every_table_the_run_would_empty() {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price)
         VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 1, 100);
         INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
            price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker)
         SELECT 'ETH/USDT', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
            1, 1, 0, 0, 'USDT', 'USDT', true FROM generate_series(1, 3);",
    )
    .await;
    let err = migration::run(db.conn(), down_to(2), DataLoss::Refuse)
        .await
        .expect_err("trades and orders hold rows");
    let message = err.to_string();
    assert!(
        message.contains("table \"trades\" holds 3 rows"),
        "{message}"
    );
    assert!(
        message.contains("table \"orders\" holds 1 row;"),
        "{message}"
    );
    // The order's and the trades' events, not yet published, are data too.
    assert!(
        message.contains("table \"event_outbox\" holds 4 rows"),
        "{message}"
    );
    // Down to migration 12: the outbox's (13) and the later ones.
    let past_outbox = all() - 12;
    let err = migration::run(
        db.conn(),
        Operation::Down(Some(past_outbox)),
        DataLoss::Refuse,
    )
    .await
    .expect_err("the outbox holds unpublished events");
    assert!(
        err.to_string().contains("\"event_outbox\" holds 4 rows"),
        "{err}"
    );
    // Published events are not: nothing is at stake once they are out.
    exec(db.conn(), "UPDATE event_outbox SET published_at = now()").await;
    migrate(db.conn(), Operation::Down(Some(past_outbox))).await;
    assert_eq!(applied(db.conn()).await, 12);
}

#[tokio::test]
async fn every_data_table_is_guarded() {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
            price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker)
         VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
            1, 1, 0, 0, 'USDT', 'USDT', true);
         INSERT INTO order_book_snapshots (symbol, bids, asks, sequence_number)
         VALUES ('BTC/USDT', '[]', '[]', 1);
         INSERT INTO stop_orders_watchlist (order_id, user_id, symbol, side, stop_price, quantity)
         VALUES (gen_random_uuid(), gen_random_uuid(), 'BTC/USDT', 'BUY', 1, 1);
         -- The trade's event counts as published: the outbox guard is
         -- a_refusal_names_every_table_the_run_would_empty's.
         UPDATE event_outbox SET published_at = now();",
    )
    .await;
    let err = migration::run(db.conn(), down_to(4), DataLoss::Refuse)
        .await
        .expect_err("watchlist and snapshots hold rows");
    let message = err.to_string();
    assert!(
        message.contains("\"stop_orders_watchlist\" holds 1 row"),
        "{message}"
    );
    assert!(
        message.contains("\"order_book_snapshots\" holds 1 row"),
        "{message}"
    );
    exec(
        db.conn(),
        "DELETE FROM stop_orders_watchlist; DELETE FROM order_book_snapshots;",
    )
    .await;
    let err = migration::run(db.conn(), down_to(3), DataLoss::Refuse)
        .await
        .expect_err("trades hold rows");
    assert!(err.to_string().contains("\"trades\" holds 1 row"), "{err}");
    exec(db.conn(), "DELETE FROM trades").await;

    // symbols: the seed rows are the migration's own, any other is data.
    migrate(db.conn(), down_to(2)).await;
    assert_eq!(applied(db.conn()).await, 2);
    exec(
        db.conn(),
        "INSERT INTO symbols (symbol, base_asset, quote_asset) VALUES ('PEPE/USDT', 'PEPE', 'USDT')",
    )
    .await;
    let err = migration::run(db.conn(), Operation::Down(Some(1)), DataLoss::Refuse)
        .await
        .expect_err("a symbol beyond the seed");
    assert!(err.to_string().contains("\"symbols\" holds 1 row"), "{err}");
    exec(db.conn(), "DELETE FROM symbols WHERE symbol = 'PEPE/USDT'").await;
    migrate(db.conn(), Operation::Down(Some(2))).await;
    assert_eq!(applied(db.conn()).await, 0);
}

#[tokio::test]
async fn the_guard_holds_against_rows_committed_during_the_check() {
    // The guard locks the table before counting: an insert racing the down
    // either commits first (and the down refuses) or waits and then fails
    // because the table is gone; it never commits into a table being dropped.
    let db = TestDb::migrated().await;
    migrate(db.conn(), down_to(3)).await; // orders is now the newest table
    let writer = db.connect().await;
    let (down, insert) = tokio::join!(
        migration::run(db.conn(), Operation::Down(Some(1)), DataLoss::Refuse),
        try_exec(
            &writer,
            "INSERT INTO orders (user_id, symbol, side, order_type, quantity, price)
             VALUES (gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT', 1, 100)",
        ),
    );
    match (down, insert) {
        (Ok(()), Err(_)) => assert_eq!(applied(db.conn()).await, 2),
        (Err(refusal), Ok(())) => {
            assert!(refusal.to_string().contains("holds 1 row"), "{refusal}");
            let rows: i64 = scalar(db.conn(), "SELECT count(*) FROM orders").await;
            assert_eq!(rows, 1);
        }
        (down, insert) => panic!("inconsistent outcome: down {down:?}, insert {insert:?}"),
    }
    writer.close().await.ok();
}
