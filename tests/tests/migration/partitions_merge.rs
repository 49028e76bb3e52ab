//! Merging a month of daily `trades` partitions into one (D15) while writers
//! insert into the very days being merged and readers count them: nothing is
//! lost or doubled, no writer or reader fails, and a reader never sees the
//! month shrink. `orders` does the same for a year of months while its
//! resting orders are being filled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::prelude::Decimal;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement};
use service::maintenance;
use service::pooling::{Pool, PoolMode};
use tests::db::TestDb;
use tests::sql::{exec, lines, scalar};
use tokio::sync::mpsc;

/// The same for a year of monthly `orders` partitions.
mod orders;

/// The month merged: 2024-03, long past any daily window.
const MONTH: &str = "2024-03-01";
const IN_MONTH: &str =
    "executed_at >= '2024-03-01 00:00:00+00' AND executed_at < '2024-04-01 00:00:00+00'";

/// One trade on a day of the month (`$1` 0..31, `$2` quantity).
const INSERT: &str = "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id,
        seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset,
        is_buyer_maker, executed_at)
    VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
        100, $2, 0, 0, 'USDT', 'USDT', true,
        '2024-03-01 00:00:00+00'::timestamptz + make_interval(days => $1, secs => random() * 86399))";

async fn insert(db: &DatabaseConnection, day: i32, quantity: Decimal) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT,
        [day.into(), quantity.into()],
    ))
    .await
    .map(|_| ())
}

async fn month_totals(db: &DatabaseConnection) -> (i64, Decimal) {
    let count = scalar(db, &format!("SELECT count(*) FROM trades WHERE {IN_MONTH}")).await;
    let sum = scalar(
        db,
        &format!("SELECT coalesce(sum(quantity), 0) FROM trades WHERE {IN_MONTH}"),
    )
    .await;
    (count, sum)
}

/// Runs `sql` (one row) on `conn` again and again until `stop`, collecting
/// what `read` makes of each row and every error; signals `started` after the
/// first answer.
fn spawn_reader<T: Send + 'static>(
    conn: DatabaseConnection,
    sql: String,
    (stop, started): (Arc<AtomicBool>, mpsc::Sender<()>),
    read: fn(&QueryResult) -> Result<T, DbErr>,
) -> tokio::task::JoinHandle<(Vec<T>, Vec<String>)> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        loop {
            let answer = conn
                .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.clone()))
                .await
                .and_then(|row| read(&row.ok_or_else(|| DbErr::RecordNotFound(sql.clone()))?));
            match answer {
                Ok(value) => seen.push(value),
                Err(err) => errors.push(err.to_string()),
            }
            if seen.len() + errors.len() == 1 {
                started.send(()).await.ok();
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        (seen, errors)
    })
}

/// A merge's outcome: `partition` covers `range` (UTC days) of `parent`.
struct Merged {
    parent: &'static str,
    key: &'static str,
    id: &'static str,
    partition: &'static str,
    range: (&'static str, &'static str),
    neighbours: [&'static str; 2],
}

/// One partition holds the merged range, the default partition none of it,
/// the range has `rows` rows with as many distinct ids, and the partitions
/// around it are still there.
async fn assert_merged(db: &DatabaseConnection, merged: Merged, rows: i64) {
    let Merged {
        parent,
        key,
        id,
        partition,
        range: (from, to),
        neighbours,
    } = merged;
    let in_range = format!("{key} >= '{from} 00:00:00+00' AND {key} < '{to} 00:00:00+00'");
    let layout = lines(
        db,
        &format!(
            "SELECT partition_name FROM range_partitions('{parent}')
             WHERE range_start < '{to} 00:00:00+00' AND range_end > '{from} 00:00:00+00'"
        ),
    )
    .await;
    assert_eq!(layout, vec![partition.to_owned()]);
    let in_default: i64 = scalar(
        db,
        &format!("SELECT count(*) FROM {parent}_default WHERE {in_range}"),
    )
    .await;
    assert_eq!(in_default, 0);
    let distinct: i64 = scalar(
        db,
        &format!("SELECT count(DISTINCT {id}) FROM {parent} WHERE {in_range}"),
    )
    .await;
    assert_eq!(distinct, rows);
    let around: i64 = scalar(
        db,
        &format!(
            "SELECT count(*) FROM range_partitions('{parent}')
             WHERE partition_name IN ('{}', '{}')",
            neighbours[0], neighbours[1]
        ),
    )
    .await;
    assert_eq!(around, 2, "{neighbours:?}");
}

/// The steps of a `down` that rolls back every migration from the newest
/// through the `n`-th.
fn steps_through(n: u32) -> u32 {
    use migration::MigratorTrait;
    let all = u32::try_from(migration::Migrator::migrations().len()).unwrap_or(u32::MAX);
    all + 1 - n
}

/// What one writer did.
#[derive(Debug, Default)]
struct Written {
    rows: i64,
    quantity: Decimal,
    errors: Vec<String>,
}

#[tokio::test]
async fn merging_a_month_under_concurrent_writes_and_reads_loses_nothing() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    exec(
        c,
        "SELECT count(create_trades_partition(d::date))
         FROM generate_series('2024-02-27'::date, '2024-04-02'::date, interval '1 day') d",
    )
    .await;
    // Rows of the month on every day, and one waiting in the default partition
    // (a day whose partition was never created: D5 must carry it over).
    for day in 0..31 {
        for _ in 0..3 {
            insert(c, day, Decimal::new(125, 2)).await.expect("seed");
        }
    }
    exec(
        c,
        "ALTER TABLE trades DETACH PARTITION trades_2024_03_15;
         INSERT INTO trades_default SELECT * FROM trades_2024_03_15;
         DROP TABLE trades_2024_03_15;",
    )
    .await;
    let (seeded, seeded_quantity) = month_totals(c).await;
    assert_eq!(seeded, 93);

    // Writers insert into the month's days, readers count the month, until
    // the merge is done.
    let stop = Arc::new(AtomicBool::new(false));
    let (started, mut ready) = mpsc::channel::<()>(4);
    let mut writers = Vec::new();
    for w in 0..2i32 {
        let conn = db.connect().await;
        let (stop, started) = (stop.clone(), started.clone());
        writers.push(tokio::spawn(async move {
            let mut written = Written::default();
            let mut n = 0i32;
            loop {
                let quantity = Decimal::new(i64::from(w * 1000 + n % 97 + 1), 3);
                match insert(&conn, (n * 7 + w) % 31, quantity).await {
                    Ok(()) => {
                        written.rows += 1;
                        written.quantity += quantity;
                    }
                    Err(err) => written.errors.push(err.to_string()),
                }
                if n == 0 {
                    started.send(()).await.ok();
                }
                n += 1;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            written
        }));
    }
    let reader = spawn_reader(
        db.connect().await,
        format!("SELECT count(*) AS n FROM trades WHERE {IN_MONTH}"),
        (stop.clone(), started.clone()),
        |row| row.try_get::<i64>("", "n"),
    );
    drop(started);
    for _ in 0..3 {
        ready.recv().await.expect("writers and reader started");
    }

    // The merge, step by step, with writes of our own between the steps, so
    // each step meets rows it did not see start: mirrored before the copy,
    // after the copy, after the validation.
    let pool = Pool::new(c.clone(), PoolMode::Direct);
    let mut own = Written::default();
    let days: Vec<String> = lines(c, &format!("SELECT merge_trades_prepare('{MONTH}')")).await;
    assert_eq!(days.len(), 30, "{days:?}");
    let mut write_own = async |day: i32| {
        let quantity = Decimal::new(3, 0);
        insert(c, day, quantity).await.expect("own write");
        own.rows += 1;
        own.quantity += quantity;
    };
    write_own(1).await;
    let _: i64 = scalar(
        c,
        &format!("SELECT merge_trades_copy('{MONTH}', '{}')", days[0]),
    )
    .await;
    write_own(0).await;
    write_own(2).await;
    // The rest of the steps through the service, as maintenance runs them
    // (the copies are resumed, the first day's again, without doubling).
    let merged = maintenance::merge_trades_month(
        &pool,
        chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("a date"),
    )
    .await
    .expect("the merge");
    assert_eq!(merged.days, 30);
    assert!(merged.outcome.contains("trades_2024_03"), "{merged:?}");
    write_own(14).await; // now into the monthly partition
    stop.store(true, Ordering::SeqCst);

    let mut written = Written::default();
    for writer in writers {
        let w = writer.await.expect("a writer");
        assert!(w.errors.is_empty(), "a writer failed: {:?}", w.errors);
        written.rows += w.rows;
        written.quantity += w.quantity;
    }
    let (seen, read_errors) = reader.await.expect("the reader");
    assert!(read_errors.is_empty(), "a reader failed: {read_errors:?}");
    assert!(
        seen.windows(2).all(|pair| pair[0] <= pair[1]),
        "a reader saw the month shrink: {seen:?}"
    );
    assert!(written.rows > 0);

    let (rows, quantity) = month_totals(c).await;
    assert_eq!(rows, seeded + written.rows + own.rows);
    assert_eq!(quantity, seeded_quantity + written.quantity + own.quantity);
    // One partition holds the month now, the default none of it, no trade
    // is there twice, and the days around the month are untouched.
    assert_merged(
        c,
        Merged {
            parent: "trades",
            key: "executed_at",
            id: "trade_id",
            partition: "trades_2024_03",
            range: ("2024-03-01", "2024-04-01"),
            neighbours: ["trades_2024_02_29", "trades_2024_04_01"],
        },
        rows,
    )
    .await;
    // The monthly partition carries the parent's indexes, constraints and
    // foreign key.
    let attached: i64 = scalar(
        c,
        "SELECT count(*) FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid
         WHERE x.indrelid = 'trades_2024_03'::regclass",
    )
    .await;
    assert_eq!(attached, 7);
    let refused = tests::sql::try_exec(
        c,
        "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
            price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset,
            is_buyer_maker, executed_at)
         VALUES ('NOPE/USDT', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
            gen_random_uuid(), 1, 1, 0, 0, 'USDT', 'USDT', true, '2024-03-10 00:00:00+00')",
    )
    .await;
    assert!(
        refused.is_err(),
        "the foreign key holds on the monthly partition"
    );
    // A rollback of migration 7 (after the later ones) refuses while merged
    // months exist (the writers' events count as published here: the outbox
    // has a guard of its own).
    exec(c, "UPDATE event_outbox SET published_at = now()").await;
    let down = migration::run(
        c,
        migration::Operation::Down(Some(steps_through(7))),
        migration::DataLoss::Refuse,
    )
    .await;
    assert!(
        down.is_err_and(|err| err.to_string().contains("trades_2024_03")),
        "down must refuse"
    );
}
