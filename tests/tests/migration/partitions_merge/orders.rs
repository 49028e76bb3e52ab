//! Merging a year of monthly `orders` partitions into one (D15) while writers
//! insert orders into that year and fill the year's resting orders, and a
//! reader sums them: nothing is lost, doubled or left stale, no writer or
//! reader fails, and the reader never sees the year go backwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use service::maintenance;
use service::pooling::{Pool, PoolMode};
use tests::db::TestDb;
use tests::sql::{column, exec, get, lines, scalar};
use tokio::sync::mpsc;

const YEAR: &str = "2024-01-01";
const IN_YEAR: &str =
    "created_at >= '2024-01-01 00:00:00+00' AND created_at < '2025-01-01 00:00:00+00'";
const OWNER: Uuid = Uuid::from_u128(0x0a);

/// A resting buy of 1,000 placed in month `$1` (0..12) of 2024.
const INSERT: &str = "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity,
        filled_quantity, price, created_at)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'BTC/USDT', 'BUY', 'LIMIT', 'OPEN', 1000, 0,
        100, '2024-01-01 00:00:00+00'::timestamptz
             + make_interval(months => $1, secs => random() * 86400 * 27))";

/// A partial fill of `$3` on the order `($1, $2)`.
const FILL: &str = "UPDATE orders SET filled_quantity = filled_quantity + $3,
        status = 'PARTIALLY_FILLED'
    WHERE order_id = $1 AND created_at = $2";

async fn run(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<u64, DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .map(|r| r.rows_affected())
}

async fn year_totals(db: &DatabaseConnection) -> (i64, Decimal) {
    let n = scalar(db, &format!("SELECT count(*) FROM orders WHERE {IN_YEAR}")).await;
    let filled = scalar(
        db,
        &format!("SELECT coalesce(sum(filled_quantity), 0) FROM orders WHERE {IN_YEAR}"),
    )
    .await;
    (n, filled)
}

#[derive(Debug, Default)]
struct Written {
    inserted: i64,
    filled: Decimal,
    errors: Vec<String>,
}

#[tokio::test]
async fn merging_a_year_of_orders_under_concurrent_fills_and_inserts_loses_nothing() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    exec(
        c,
        "SELECT count(create_orders_partition(m::date))
         FROM generate_series('2023-12-01'::date, '2025-01-01'::date, interval '1 month') m",
    )
    .await;
    for month in 0..12i32 {
        for _ in 0..8 {
            run(c, INSERT, vec![month.into()]).await.expect("seed");
        }
    }
    // One month's rows wait in the default partition (D5 carries them over).
    exec(
        c,
        "ALTER TABLE orders DETACH PARTITION orders_2024_06;
         INSERT INTO orders_default SELECT * FROM orders_2024_06;
         DROP TABLE orders_2024_06;",
    )
    .await;
    let (seeded, _) = year_totals(c).await;
    assert_eq!(seeded, 96);
    // The seeded orders, split between two writers; the last one is kept for
    // a cancel through the service after the merge.
    let sql = format!("SELECT order_id, created_at FROM orders WHERE {IN_YEAR} ORDER BY order_id");
    let keys: Vec<(Uuid, chrono::DateTime<chrono::FixedOffset>)> = tests::sql::rows(c, &sql)
        .await
        .iter()
        .map(|row| (get(row, 0, &sql), get(row, 1, &sql)))
        .collect();
    let (kept, filled_by_writers) = keys.split_last().expect("seeded orders");

    let stop = Arc::new(AtomicBool::new(false));
    let (started, mut ready) = mpsc::channel::<()>(4);
    let mut writers = Vec::new();
    for w in 0..2usize {
        let conn = db.connect().await;
        let (stop, started) = (stop.clone(), started.clone());
        let mine: Vec<_> = filled_by_writers
            .iter()
            .skip(w)
            .step_by(2)
            .copied()
            .collect();
        writers.push(tokio::spawn(async move {
            let mut written = Written::default();
            let mut n = 0usize;
            loop {
                let (id, at) = mine[n % mine.len()];
                let step = Decimal::new(1 + (n % 5) as i64, 3);
                match run(&conn, FILL, vec![id.into(), at.into(), step.into()]).await {
                    Ok(1) => written.filled += step,
                    Ok(rows) => written.errors.push(format!("a fill updated {rows} rows")),
                    Err(err) => written.errors.push(err.to_string()),
                }
                if n.is_multiple_of(4) {
                    match run(
                        &conn,
                        INSERT,
                        vec![((n / 4 + w) % 12).try_into().unwrap_or(0i32).into()],
                    )
                    .await
                    {
                        Ok(_) => written.inserted += 1,
                        Err(err) => written.errors.push(err.to_string()),
                    }
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
    let reader = super::spawn_reader(
        db.connect().await,
        format!(
            "SELECT count(*) AS n, coalesce(sum(filled_quantity), 0) AS f FROM orders WHERE {IN_YEAR}"
        ),
        (stop.clone(), started.clone()),
        |row| {
            Ok((
                row.try_get::<i64>("", "n")?,
                row.try_get::<Decimal>("", "f")?,
            ))
        },
    );
    drop(started);
    for _ in 0..3 {
        ready.recv().await.expect("writers and reader started");
    }

    // Step by step, with writes of our own between the steps: the first
    // month is copied in batches of 3 rows, so fills land before, between
    // and after its batches.
    let months: Vec<String> = lines(c, &format!("SELECT merge_orders_prepare('{YEAR}')")).await;
    assert_eq!(months.len(), 11, "{months:?}");
    let mut own_inserted = 0;
    run(c, INSERT, vec![0i32.into()]).await.expect("own insert");
    own_inserted += 1;
    let mut after: Option<Uuid> = None;
    let mut batches = 0;
    loop {
        let last: Vec<Option<Uuid>> = column(
            c,
            &format!(
                "SELECT last_id FROM merge_orders_copy('{YEAR}', '{}', {}, 3)",
                months[0],
                after.map_or_else(|| "NULL".to_owned(), |id| format!("'{id}'"))
            ),
        )
        .await;
        let Some(Some(last)) = last.first().copied() else {
            break;
        };
        after = Some(last);
        batches += 1;
        run(c, INSERT, vec![0i32.into()]).await.expect("own insert");
        own_inserted += 1;
    }
    assert!(batches >= 3, "{batches} batches");
    let pool = Pool::new(c.clone(), PoolMode::Direct);
    let merged = maintenance::merge_orders_year(
        &pool,
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date"),
    )
    .await
    .expect("the merge");
    assert_eq!(merged.months, 11);
    assert!(merged.outcome.contains("orders_2024"), "{merged:?}");
    // After the switch: a write into the yearly partition, and a cancel
    // through the service (the parent's triggers reached the new partition).
    run(c, INSERT, vec![6i32.into()]).await.expect("own insert");
    own_inserted += 1;
    let cancelled = service::orders::cancel(c, OWNER, kept.0)
        .await
        .expect("cancel an order of the merged year");
    assert_eq!(cancelled.status, service::OrderStatus::Cancelled);
    assert!(cancelled.cancelled_at.is_some());
    stop.store(true, Ordering::SeqCst);

    let mut written = Written::default();
    for writer in writers {
        let w = writer.await.expect("a writer");
        assert!(w.errors.is_empty(), "a writer failed: {:?}", w.errors);
        written.inserted += w.inserted;
        written.filled += w.filled;
    }
    let (seen, read_errors) = reader.await.expect("the reader");
    assert!(read_errors.is_empty(), "a reader failed: {read_errors:?}");
    assert!(
        seen.windows(2)
            .all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1),
        "a reader saw the year go backwards: {seen:?}"
    );
    assert!(written.filled > Decimal::ZERO);

    let (rows, filled) = year_totals(c).await;
    assert_eq!(rows, seeded + written.inserted + own_inserted);
    assert_eq!(filled, written.filled);
    super::assert_merged(
        c,
        super::Merged {
            parent: "orders",
            key: "created_at",
            id: "order_id",
            partition: "orders_2024",
            range: ("2024-01-01", "2025-01-01"),
            neighbours: ["orders_2023_12", "orders_2025_01"],
        },
        rows,
    )
    .await;
    // The yearly partition carries every index of the parent, its triggers
    // and its foreign key; no mirror trigger is left anywhere.
    let (parent_indexes, attached): (i64, i64) = (
        scalar(
            c,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass",
        )
        .await,
        scalar(
            c,
            "SELECT count(*) FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid
             WHERE x.indrelid = 'orders_2024'::regclass",
        )
        .await,
    );
    assert_eq!(attached, parent_indexes);
    let mirrors: i64 = scalar(
        c,
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'trg_merge_range_mirror'",
    )
    .await;
    assert_eq!(mirrors, 0);
    let refused = tests::sql::try_exec(
        c,
        "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, created_at)
         VALUES (gen_random_uuid(), 'NOPE/USDT', 'BUY', 'LIMIT', 'OPEN', 1, 1, '2024-03-10 00:00:00+00')",
    )
    .await;
    assert!(
        refused.is_err(),
        "the foreign key holds on the yearly partition"
    );
    // A second merge of the year does nothing; a rollback of migration 8
    // refuses while a merged year exists.
    let again = maintenance::merge_orders_year(
        &pool,
        chrono::NaiveDate::from_ymd_opt(2024, 7, 1).expect("a date"),
    )
    .await
    .expect("merging again");
    assert_eq!((again.months, again.rows_copied), (0, 0));
    // The writers' events count as published: the outbox has a guard of its own.
    exec(c, "UPDATE event_outbox SET published_at = now()").await;
    let down = migration::run(
        c,
        migration::Operation::Down(Some(super::steps_through(8))),
        migration::DataLoss::Refuse,
    )
    .await;
    assert!(
        down.is_err_and(|err| err.to_string().contains("orders_2024")),
        "down must refuse"
    );
}
