//! Archiving partitions past retention (`service::archive`) on real databases
//! and real stores: a day of 100,000 trades and a month of orders exported to
//! Parquet, verified, dropped and restored row for row (into the original
//! partition and into side tables); a store that fails mid-upload or at the
//! upload's completion, a damaged file, rows written after the export, and
//! refusals, each leaving the partition in place; the api's commands, gauge
//! and scheduled run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::archiving::{self, Archiving, Command};
use api::config::Config;
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sea_orm::DatabaseConnection;
use service::archive::object_store::memory::InMemory;
use service::archive::object_store::path::Path as ObjectPath;
use service::archive::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use service::archive::{self, ArchiveError, ArchiveState, Manifest, RestoreTarget, Step, Store};
use tests::app::{AppDatabase, AppOptions, spawn_app, wire};
use tests::db::TestDb;
use tests::sql::{column, exec, lines, scalar, waiting_sessions};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";

/// The day 61 months ago, past the 60 months of retention, as an SQL
/// expression of its UTC midnight.
const OLD_DAY: &str =
    "(((now() AT TIME ZONE 'UTC') - interval '61 months')::date::timestamp AT TIME ZONE 'UTC')";

/// A folder for one test's archive store, removed with the value.
struct ArchiveDir(PathBuf);

impl ArchiveDir {
    fn new(db: &TestDb) -> ArchiveDir {
        let dir = std::env::temp_dir().join(format!("{}_archive", db.name()));
        let _ = std::fs::remove_dir_all(&dir);
        ArchiveDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn store(&self) -> Store {
        Store::open_dir(&self.0).unwrap_or_else(|err| panic!("the archive folder opens: {err}"))
    }

    /// Every file under the folder, relative, sorted.
    fn files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else if let Ok(relative) = path.strip_prefix(root) {
                    out.push(relative.display().to_string());
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.0, &self.0, &mut files);
        files.sort();
        files
    }
}

impl Drop for ArchiveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the `trades` partition of the day 61 months ago and fills it with
/// `rows` valid trades (three symbols, NULLs, text that needs escaping,
/// microseconds); returns its name.
async fn old_trades(c: &DatabaseConnection, rows: i64) -> String {
    exec(
        c,
        &format!("SELECT create_trades_partition({OLD_DAY}::date)"),
    )
    .await;
    let name: String = scalar(
        c,
        &format!("SELECT to_char({OLD_DAY} AT TIME ZONE 'UTC', '\"trades_\"YYYY_MM_DD')"),
    )
    .await;
    exec(
        c,
        &format!(
            r#"INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id,
                   seller_user_id, buyer_institution_id, seller_institution_id, price, quantity,
                   buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker,
                   trade_source, execution_venue, executed_at, settled_at)
               SELECT (ARRAY['BTC/USDT', 'ETH/USDT', 'SOL/USDT'])[1 + i % 3],
                   gen_random_uuid(), gen_random_uuid(), '{A}', '{B}',
                   CASE WHEN i % 7 = 0 THEN NULL ELSE gen_random_uuid() END, NULL,
                   100 + (i % 1000) * 0.01 + 0.00000001, ((i % 50) + 1) * 0.001,
                   0.00000001 * i, 0, 'USDT', 'BTC', i % 2 = 0,
                   CASE WHEN i % 5 = 0 THEN NULL ELSE 'API' END,
                   CASE WHEN i % 1000 = 1 THEN E'tab\there\\ new\nline\rcr' ELSE 'MAIN' END,
                   day + i * interval '863 milliseconds' + (i % 997) * interval '1 microsecond',
                   CASE WHEN i % 3 = 0 THEN NULL ELSE day + interval '2 days' END
               FROM generate_series(1, {rows}) AS i, (SELECT {OLD_DAY} AS day) AS d"#
        ),
    )
    .await;
    name
}

/// Creates the `orders` partition of the month 61 months ago and fills it
/// with `rows` finished orders; returns its name.
async fn old_orders(c: &DatabaseConnection, rows: i64) -> String {
    exec(
        c,
        &format!("SELECT create_orders_partition({OLD_DAY}::date)"),
    )
    .await;
    let name: String = scalar(
        c,
        &format!("SELECT to_char({OLD_DAY} AT TIME ZONE 'UTC', '\"orders_\"YYYY_MM')"),
    )
    .await;
    exec(
        c,
        &format!(
            r#"INSERT INTO orders (user_id, symbol, side, order_type, status, quantity,
                   filled_quantity, price, average_price, client_order_id, created_at,
                   updated_at, filled_at)
               SELECT '{A}', 'BTC/USDT', (ARRAY['BUY', 'SELL'])[1 + i % 2]::order_side_enum,
                   'LIMIT', (ARRAY['FILLED', 'CANCELLED', 'EXPIRED'])[1 + i % 3]::order_status_enum,
                   1, CASE WHEN i % 3 = 0 THEN 1 ELSE 0 END, 100 + i,
                   CASE WHEN i % 3 = 0 THEN 100 + i END, 'c-' || i,
                   m + i * interval '17 minutes', m + i * interval '17 minutes' + interval '1 second',
                   CASE WHEN i % 3 = 0 THEN m + i * interval '17 minutes' END
               FROM generate_series(1, {rows}) AS i,
                   (SELECT date_trunc('month', {OLD_DAY} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m) AS mm"#
        ),
    )
    .await;
    name
}

async fn table_exists(c: &DatabaseConnection, name: &str) -> bool {
    scalar(c, &format!("SELECT to_regclass('{name}') IS NOT NULL")).await
}

async fn count(c: &DatabaseConnection, table: &str) -> i64 {
    scalar(c, &format!("SELECT count(*) FROM {table}")).await
}

async fn market_differences(c: &DatabaseConnection) -> i64 {
    scalar(c, "SELECT count(*) FROM market_state_differences()").await
}

/// `left` and `right` hold the same rows, duplicates counted (`EXCEPT ALL`
/// both ways), and as many.
async fn assert_same_rows(c: &DatabaseConnection, left: &str, right: &str) {
    let only_left: i64 = scalar(
        c,
        &format!("SELECT count(*) FROM (SELECT * FROM {left} EXCEPT ALL SELECT * FROM {right}) d"),
    )
    .await;
    let only_right: i64 = scalar(
        c,
        &format!("SELECT count(*) FROM (SELECT * FROM {right} EXCEPT ALL SELECT * FROM {left}) d"),
    )
    .await;
    assert_eq!(
        (only_left, only_right),
        (0, 0),
        "rows of {left} not in {right}, and of {right} not in {left}"
    );
    assert_eq!(count(c, left).await, count(c, right).await);
}

/// The row checksum of `table` (columns of `parent`, rows ordered by `key`)
/// computed in SQL from the definition `service::archive` documents, so the
/// Rust code is checked against the written definition, not against itself.
async fn documented_checksum(
    c: &DatabaseConnection,
    table: &str,
    parent: &str,
    key: &str,
) -> String {
    let columns = lines(
        c,
        &format!(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a WHERE a.attrelid = '{parent}'::regclass
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
    )
    .await;
    let fields: Vec<String> = columns
        .iter()
        .map(|line| {
            let (name, sql_type) = line.split_once('|').expect("name|type");
            let text = match sql_type {
                "timestamp with time zone" => format!(
                    "to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                ),
                _ => format!("{name}::text"),
            };
            format!(
                r"coalesce(replace(replace(replace(replace({text}, '\', '\\'), E'\t', '\t'), E'\n', '\n'), E'\r', '\r'), '\N')"
            )
        })
        .collect();
    scalar(
        c,
        &format!(
            "SELECT encode(sha256(convert_to(coalesce(string_agg(line, '' ORDER BY {key}), ''), 'UTF8')), 'hex')
             FROM (SELECT concat_ws(E'\\t', {}) || E'\\n' AS line, {key} FROM {table}) r",
            fields.join(", ")
        ),
    )
    .await
}

fn names(entries: &[archive::Archived]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e.partition.partition_name.as_str())
        .collect()
}

#[tokio::test]
async fn a_day_of_trades_and_a_month_of_orders_are_archived_dropped_and_restored_row_for_row() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let trades = old_trades(c, 100_000).await;
    let orders = old_orders(c, 2_000).await;
    // The market goes on: each symbol's last trade is a recent one.
    exec(
        c,
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id,
                 seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
                 seller_fee_asset, is_buyer_maker, executed_at)
             SELECT s, gen_random_uuid(), gen_random_uuid(), '{A}', '{B}', 50, 1, 0, 0,
                 'USDT', 'BTC', true, now() - interval '1 minute'
             FROM unnest(ARRAY['BTC/USDT', 'ETH/USDT', 'SOL/USDT']) AS s"
        ),
    )
    .await;
    exec(
        c,
        &format!(
            "CREATE TABLE trades_before AS SELECT * FROM {trades};
             CREATE TABLE orders_before AS SELECT * FROM {orders};"
        ),
    )
    .await;
    assert_eq!(count(c, &trades).await, 100_000);
    assert_eq!(market_differences(c).await, 0);
    let trades_sum = documented_checksum(c, &trades, "trades", "trade_id, executed_at").await;
    let orders_sum = documented_checksum(c, &orders, "orders", "order_id, created_at").await;
    let dir = ArchiveDir::new(&db);
    let store = dir.store();

    // The dry run lists both, archives nothing, drops nothing.
    let planned = archive::archive_due(c, &store, false)
        .await
        .expect("dry run");
    assert_eq!(names(&planned), [orders.as_str(), trades.as_str()]);
    for entry in &planned {
        assert_eq!(entry.before, ArchiveState::Missing);
        assert!(!entry.exported && !entry.dropped && entry.manifest.is_none());
    }
    assert!(dir.files().is_empty(), "{:?}", dir.files());
    assert_eq!(count(c, &trades).await, 100_000);

    // Export, verify, drop.
    let done = archive::archive_due(c, &store, true)
        .await
        .expect("archived");
    assert_eq!(names(&done), [orders.as_str(), trades.as_str()]);
    assert!(done.iter().all(|e| e.exported && e.dropped));
    assert_eq!(
        dir.files(),
        [
            format!("orders/{orders}.manifest.json"),
            format!("orders/{orders}.parquet"),
            format!("trades/{trades}.manifest.json"),
            format!("trades/{trades}.parquet"),
        ]
    );
    assert!(!table_exists(c, &trades).await && !table_exists(c, &orders).await);
    assert_eq!(
        scalar::<i64>(
            c,
            "SELECT count(*) FROM trades WHERE executed_at < now() - interval '60 months'"
        )
        .await,
        0
    );
    assert_eq!(
        market_differences(c).await,
        0,
        "candles of the dropped day pruned"
    );
    assert!(archive::plan(c, &store).await.expect("plan").is_empty());

    // The manifest on disk says what the rows were.
    let on_disk: Manifest = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("trades/{trades}.manifest.json")))
            .expect("manifest"),
    )
    .expect("the manifest is JSON");
    assert_eq!(Some(&on_disk), done[1].manifest.as_ref());
    assert_eq!(
        (on_disk.table.as_str(), on_disk.partition.as_str()),
        ("trades", trades.as_str())
    );
    assert_eq!(on_disk.rows, 100_000);
    assert_eq!(on_disk.checksum.algorithm, "sha256-canonical-rows-v1");
    assert_eq!(
        on_disk.checksum.value, trades_sum,
        "the documented definition"
    );
    assert_eq!(
        on_disk.range_end - on_disk.range_start,
        chrono::Duration::days(1)
    );
    assert_eq!(on_disk.primary_key, ["trade_id", "executed_at"]);
    assert_eq!(on_disk.partition_key, "executed_at");
    let latest: String = scalar(c, "SELECT max(version) FROM seaql_migrations").await;
    assert_eq!(on_disk.schema.migration, latest);
    let columns: Vec<String> = on_disk
        .schema
        .columns
        .iter()
        .map(|col| {
            format!(
                "{} {} {} {}",
                col.name, col.sql_type, col.arrow_type, col.nullable
            )
        })
        .collect();
    assert_eq!(columns.len(), 19);
    assert_eq!(columns[0], "trade_id uuid utf8 false");
    assert_eq!(columns[8], "price numeric(20,8) decimal128(20,8) false");
    assert_eq!(
        columns[17],
        "executed_at timestamp with time zone timestamp_us_utc false"
    );
    assert_eq!(on_disk.file.compression, "zstd(3)");
    assert_eq!(
        on_disk.file.bytes,
        std::fs::metadata(dir.path().join(&on_disk.file.path))
            .expect("file")
            .len()
    );
    let orders_manifest = done[0].manifest.as_ref().expect("orders manifest");
    assert_eq!(orders_manifest.rows, 2_000);
    assert_eq!(orders_manifest.checksum.value, orders_sum);

    // Back into the original partition: re-created with its bounds, through
    // the parent's triggers.
    let restored = archive::restore(c, &store, &trades, RestoreTarget::Original)
        .await
        .expect("restored");
    assert!(restored.created_partition);
    assert_eq!(
        (restored.rows, restored.checksum.as_str()),
        (100_000, trades_sum.as_str())
    );
    assert_eq!(
        lines(
            c,
            &format!(
                "SELECT partition_name, range_end - range_start FROM range_partitions('trades')
                 WHERE partition_name = '{trades}'"
            )
        )
        .await,
        [format!("{trades}|1 day")]
    );
    assert_same_rows(c, "trades_before", &trades).await;
    assert_eq!(
        market_differences(c).await,
        0,
        "the market state follows the restored trades"
    );

    // And into side tables, attached to nothing.
    let side = archive::restore(
        c,
        &store,
        &trades,
        RestoreTarget::SideTable("restored_trades".into()),
    )
    .await
    .expect("restored beside");
    assert_eq!(
        (side.table.as_str(), side.rows, side.created_partition),
        ("restored_trades", 100_000, false)
    );
    assert_same_rows(c, "trades_before", "restored_trades").await;
    assert!(
        !scalar::<bool>(
            c,
            "SELECT relispartition FROM pg_class WHERE relname = 'restored_trades'"
        )
        .await
    );
    assert_eq!(
        column::<String>(
            c,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = 'restored_trades'::regclass AND contype = 'p'"
        )
        .await,
        ["PRIMARY KEY (trade_id, executed_at)"]
    );
    archive::restore(
        c,
        &store,
        &orders,
        RestoreTarget::SideTable("restored_orders".into()),
    )
    .await
    .expect("orders restored beside");
    assert_same_rows(c, "orders_before", "restored_orders").await;
    assert_eq!(market_differences(c).await, 0);

    // Neither over rows nor over a table that exists.
    let err = archive::restore(c, &store, &trades, RestoreTarget::Original)
        .await
        .expect_err("the partition holds rows");
    assert_eq!(err.step(), Some(Step::PrepareTarget), "{err}");
    assert!(err.to_string().contains("holds rows"), "{err}");
    let err = archive::restore(
        c,
        &store,
        &trades,
        RestoreTarget::SideTable("restored_trades".into()),
    )
    .await
    .expect_err("the table exists");
    assert_eq!(err.step(), Some(Step::PrepareTarget), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_same_rows(c, "trades_before", &trades).await;

    // The restored partition is past retention again: its archive verifies,
    // so it is dropped without being exported again.
    let again = archive::archive_due(c, &store, true)
        .await
        .expect("archived again");
    assert_eq!(names(&again), [trades.as_str()]);
    assert!(!again[0].exported && again[0].dropped);
    assert!(matches!(
        again[0].before,
        ArchiveState::Archived { rows: 100_000, .. }
    ));
    assert!(!table_exists(c, &trades).await);
    assert_eq!(market_differences(c).await, 0);
}

/// What the fault-injecting store does to the next uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// A part fails once this many bytes were sent in the upload.
    AfterBytes(usize),
    /// Every part goes through; completing the upload fails.
    AtCompletion,
}

/// A real object store (in memory) whose multipart uploads fail as told.
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<InMemory>,
    fault: Arc<Mutex<Fault>>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {what}").into(),
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        let fault = *self.fault.lock().expect("fault");
        Ok(Box::new(FaultyUpload {
            inner,
            fault,
            sent: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    fault: Fault,
    sent: usize,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.sent += data.content_length();
        match self.fault {
            Fault::AfterBytes(limit) if self.sent > limit => {
                let sent = self.sent;
                Box::pin(
                    async move { Err(injected(&format!("connection reset after {sent} bytes"))) },
                )
            }
            _ => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.fault == Fault::AtCompletion {
            return Err(injected("the upload could not be completed"));
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// Every object the in-memory store holds.
async fn objects(store: &InMemory) -> Vec<String> {
    store
        .list(None)
        .map(|meta| {
            meta.map(|m| m.location.to_string())
                .unwrap_or_else(|e| format!("error: {e}"))
        })
        .collect()
        .await
}

#[tokio::test]
async fn a_store_failing_mid_upload_or_at_completion_drops_nothing() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let trades = old_trades(c, 20_000).await;
    let memory = Arc::new(InMemory::new());
    let fault = Arc::new(Mutex::new(Fault::AfterBytes(100_000)));
    let faulty: Arc<dyn ObjectStore> = Arc::new(FaultyStore {
        inner: memory.clone(),
        fault: fault.clone(),
    });
    // Small parts, so the file goes up in several.
    let store = Store::from_object_store(faulty, "archive", "a faulty store")
        .expect("a store")
        .with_part_size(64 * 1024);

    let err = archive::archive_due(c, &store, true)
        .await
        .expect_err("the upload fails after 100,000 bytes");
    assert_eq!(err.step(), Some(Step::Upload), "{err}");
    assert_eq!(err.partition(), Some(trades.as_str()));
    let message = err.to_string();
    for says in [
        trades.as_str(),
        "\"upload\"",
        "injected fault",
        "part ",
        "left in place",
    ] {
        assert!(message.contains(says), "{says}: {message}");
    }
    assert_eq!(count(c, &trades).await, 20_000, "nothing dropped");
    assert!(
        objects(&memory).await.is_empty(),
        "{:?}",
        objects(&memory).await
    );

    *fault.lock().expect("fault") = Fault::AtCompletion;
    let err = archive::archive_due(c, &store, true)
        .await
        .expect_err("the upload does not complete");
    assert_eq!(err.step(), Some(Step::CompleteUpload), "{err}");
    assert!(err.to_string().contains("could not be completed"), "{err}");
    assert_eq!(count(c, &trades).await, 20_000, "nothing dropped");
    assert!(
        objects(&memory).await.is_empty(),
        "{:?}",
        objects(&memory).await
    );
    assert!(
        store
            .archived_partitions()
            .await
            .expect("listed")
            .is_empty()
    );

    // The store recovers: the same call archives and drops.
    *fault.lock().expect("fault") = Fault::None;
    let done = archive::archive_due(c, &store, true)
        .await
        .expect("archived");
    assert_eq!(names(&done), [trades.as_str()]);
    assert!(!table_exists(c, &trades).await);
    assert_eq!(
        objects(&memory).await,
        [
            format!("archive/trades/{trades}.manifest.json"),
            format!("archive/trades/{trades}.parquet"),
        ]
    );
    let verified = archive::verify(&store, &trades).await.expect("verifies");
    assert_eq!(verified.rows, 20_000);
}

#[tokio::test]
async fn a_damaged_archive_is_refused_and_nothing_is_dropped() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let trades = old_trades(c, 5_000).await;
    let dir = ArchiveDir::new(&db);
    let store = dir.store();
    let manifest = archive::export(c, &store, &trades).await.expect("exported");
    assert_eq!(manifest.rows, 5_000);
    assert!(table_exists(c, &trades).await, "export alone drops nothing");
    // Exporting again keeps the archive that verifies.
    assert_eq!(
        archive::export(c, &store, &trades).await.expect("kept"),
        manifest
    );

    // Flip bytes in the middle of the file (its row data), same size.
    let file = dir.path().join(&manifest.file.path);
    let mut bytes = std::fs::read(&file).expect("the file");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(&file, &bytes).expect("damaged");

    // The plan's cheap check sees a file of the right size; the full check,
    // which runs before any drop, does not pass.
    let planned = archive::plan(c, &store).await.expect("plan");
    assert!(matches!(
        planned[0].state,
        ArchiveState::Archived { rows: 5_000, .. }
    ));
    let err = archive::verify(&store, &trades).await.expect_err("damaged");
    assert_eq!(err.step(), Some(Step::VerifyFile), "{err}");
    assert!(
        err.to_string().contains("does not match its manifest"),
        "{err}"
    );
    let err = archive::archive_due(c, &store, true)
        .await
        .expect_err("damaged");
    assert_eq!(err.step(), Some(Step::VerifyFile), "{err}");
    assert!(
        err.to_string().contains("remove them to export it again"),
        "{err}"
    );
    assert_eq!(count(c, &trades).await, 5_000, "nothing dropped");
    let err = archive::restore(
        c,
        &store,
        &trades,
        RestoreTarget::SideTable("from_damaged".into()),
    )
    .await
    .expect_err("damaged");
    assert!(
        matches!(
            err,
            ArchiveError::Restore {
                step: Step::VerifyFile,
                ..
            }
        ),
        "{err}"
    );
    assert!(!table_exists(c, "from_damaged").await);

    // A truncated file is seen by the plan already.
    std::fs::write(&file, &bytes[..middle]).expect("truncated");
    let planned = archive::plan(c, &store).await.expect("plan");
    match &planned[0].state {
        ArchiveState::Damaged { reason } => assert!(reason.contains("bytes"), "{reason}"),
        other => panic!("expected a damaged archive, got {other:?}"),
    }
    assert!(archive::archive_due(c, &store, true).await.is_err());
    assert_eq!(count(c, &trades).await, 5_000, "nothing dropped");
}

#[tokio::test]
async fn rows_written_after_the_export_keep_the_partition() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let trades = old_trades(c, 3_000).await;
    let dir = ArchiveDir::new(&db);
    let store = dir.store();
    archive::export(c, &store, &trades).await.expect("exported");

    // A changed row: same count, another checksum.
    exec(
        c,
        &format!(
            "UPDATE {trades} SET settled_at = executed_at + interval '1 hour'
             WHERE trade_id = (SELECT trade_id FROM {trades} ORDER BY trade_id LIMIT 1)"
        ),
    )
    .await;
    let err = archive::archive_due(c, &store, true)
        .await
        .expect_err("changed");
    assert_eq!(err.step(), Some(Step::VerifyDatabase), "{err}");
    assert!(err.to_string().contains("3000 rows with checksum"), "{err}");
    assert_eq!(count(c, &trades).await, 3_000);

    // A row added: the count differs.
    exec(
        c,
        &format!(
            "INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id,
                 seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
                 seller_fee_asset, is_buyer_maker, executed_at)
             VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), '{A}', '{B}', 1, 1, 0, 0,
                 'USDT', 'BTC', true, {OLD_DAY} + interval '1 hour')"
        ),
    )
    .await;
    let err = archive::archive_due(c, &store, true)
        .await
        .expect_err("grown");
    assert_eq!(err.step(), Some(Step::VerifyDatabase), "{err}");
    assert!(err.to_string().contains("holds 3001 rows"), "{err}");
    assert_eq!(count(c, &trades).await, 3_001, "nothing lost");
}

#[tokio::test]
async fn a_deadlock_with_a_writer_of_the_table_is_tried_again_and_the_drop_completes() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let trades = old_trades(c, 1_000).await;
    let dir = ArchiveDir::new(&db);
    let store = dir.store();
    archive::export(c, &store, &trades).await.expect("exported");

    // A writer of `trades` holds the parent, as every insert through it does.
    // Its deadlock check waits a minute, so when the cycle closes it is the
    // archive's transaction PostgreSQL fails, not this one.
    let writer = db.connect_single().await;
    exec(&writer, "BEGIN").await;
    exec(&writer, "SET LOCAL deadlock_timeout = '1min'").await;
    exec(&writer, "LOCK TABLE ONLY trades IN ROW EXCLUSIVE MODE").await;

    let archiving = {
        let (c, store) = (c.clone(), store.clone());
        tokio::spawn(async move { archive::archive_due(&c, &store, true).await })
    };
    // The archive holds the partition and waits for the parent.
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_sessions(
        c,
        "relation = 'trades'::regclass AND mode = 'AccessExclusiveLock'",
    )
    .await
        == 0
    {
        if archiving.is_finished() || Instant::now() > deadline {
            let waits = lines(
                c,
                "SELECT relation::regclass::text || ' ' || mode FROM pg_locks WHERE NOT granted",
            )
            .await;
            panic!(
                "the archive never waited for the parent (waits: {waits:?}): {:?}",
                archiving.await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The writer now needs the partition: a cycle. PostgreSQL fails the
    // archive's transaction, which frees the partition for the writer.
    exec(
        &writer,
        &format!("LOCK TABLE {trades} IN ROW EXCLUSIVE MODE"),
    )
    .await;
    exec(&writer, "COMMIT").await;

    let archived = archiving
        .await
        .expect("the task ran")
        .unwrap_or_else(|err| panic!("the archive tried again after the deadlock: {err}"));
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(!table_exists(c, &trades).await, "{trades} was dropped");
}

#[tokio::test]
async fn what_cannot_be_archived_or_restored_is_refused_with_a_reason() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let orders = old_orders(c, 10).await;
    exec(
        c,
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, created_at)
             VALUES ('{B}', 'ETH/USDT', 'SELL', 'LIMIT', 'OPEN', 1, 3000, {OLD_DAY} + interval '1 hour')"
        ),
    )
    .await;
    let dir = ArchiveDir::new(&db);
    let store = dir.store();
    let err = archive::archive_due(c, &store, true)
        .await
        .expect_err("a live order");
    assert_eq!(err.step(), Some(Step::Inspect), "{err}");
    assert!(
        err.to_string().contains("1 of its orders are still live"),
        "{err}"
    );
    assert_eq!(count(c, &orders).await, 11);
    assert!(dir.files().is_empty());

    let err = archive::restore(c, &store, &orders, RestoreTarget::Original)
        .await
        .expect_err("never archived");
    assert_eq!(err.step(), Some(Step::ReadManifest), "{err}");
    assert!(err.to_string().contains("holds no archive"), "{err}");
    for bad in ["orders", "symbols_2021", "trades_2021; DROP TABLE trades"] {
        let err = archive::restore(c, &store, bad, RestoreTarget::Original)
            .await
            .expect_err(bad);
        assert!(
            matches!(
                err,
                ArchiveError::Invalid {
                    what: "partition",
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = archive::restore(
        c,
        &store,
        &orders,
        RestoreTarget::SideTable("Bad Name".into()),
    )
    .await
    .expect_err("a bad side table");
    assert!(
        err.to_string().starts_with("invalid side table name"),
        "{err}"
    );
    let err = Store::open_url("gs://bucket/x").expect_err("not built in");
    assert!(err.to_string().contains("built in"), "{err}");
}

/// Log lines written through a `tracing` subscriber, kept for a failure
/// message.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0.lock().expect("logs")))
    }
}

/// A sample's value on a `/metrics` page: the first line of `name` with `label`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn config(settings: &[(&str, &str)]) -> Config {
    Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .unwrap_or_else(|err| panic!("a valid configuration: {err}"))
}

async fn run(
    command: Command,
    c: &DatabaseConnection,
    archiving: Option<&Archiving>,
) -> anyhow::Result<String> {
    let mut out = Vec::new();
    archiving::run_command(&command, c, archiving, &mut out).await?;
    Ok(String::from_utf8(out).expect("UTF-8"))
}

#[tokio::test]
async fn the_commands_summarize_and_the_gauge_counts_the_partitions_without_an_archive() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let trades = old_trades(c, 1_000).await;
    let dir = ArchiveDir::new(&db);
    let dir_text = dir.path().display().to_string();
    let archiving = Archiving::open(&config(&[("ARCHIVE_DIR", &dir_text)]))
        .expect("opens")
        .expect("configured");

    let text = run(Command::Due { execute: false }, c, None)
        .await
        .expect("dry run");
    assert!(
        text.contains("no archive store") && text.contains("ARCHIVE_DIR"),
        "{text}"
    );
    assert!(text.contains(&trades), "{text}");
    let err = run(Command::Due { execute: true }, c, None)
        .await
        .expect_err("no store");
    assert!(err.to_string().contains("ARCHIVE_URL"), "{err}");

    let text = run(Command::Due { execute: false }, c, Some(&archiving))
        .await
        .expect("dry run");
    assert!(
        text.contains(&format!("archive store: {}", archiving.store())),
        "{text}"
    );
    assert!(text.contains("partitions past retention: 1"), "{text}");
    assert!(
        text.contains(&trades) && text.contains("not archived"),
        "{text}"
    );
    assert!(
        text.contains("dry run: nothing was exported or dropped"),
        "{text}"
    );

    // The gauge, on a live api over the same database.
    let app = spawn_app(
        AppOptions::jwt()
            .database(AppDatabase::Url(db.url().to_owned()))
            .setting("ARCHIVE_DIR", dir_text.clone()),
    )
    .await;
    let metrics = || async { wire::read(app.get_public("/metrics").await).await.text };
    let text = metrics().await;
    let label = "table=\"trades\"";
    assert_eq!(
        sample(&text, "trade_engine_partitions_due_for_archiving", label),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "trade_engine_partitions_due_for_archiving",
            "table=\"orders\""
        ),
        Some(0.0)
    );
    // Archived but not dropped: still due for retention, no longer for archiving.
    archive::export(c, &store_of(&archiving), &trades)
        .await
        .expect("exported");
    let text = metrics().await;
    assert_eq!(
        sample(&text, "trade_engine_partitions_due_for_archiving", label),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "trade_engine_partitions_due_for_retention", label),
        Some(1.0),
        "{text}"
    );

    let text = run(Command::Due { execute: true }, c, Some(&archiving))
        .await
        .expect("archived");
    assert!(
        text.contains(&trades) && text.contains("already archived"),
        "{text}"
    );
    assert!(
        text.contains("archived and dropped 1 partition(s)"),
        "{text}"
    );
    let text = metrics().await;
    assert_eq!(
        sample(&text, "trade_engine_partitions_due_for_retention", label),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "trade_engine_partitions_due_for_archiving", label),
        Some(0.0),
        "{text}"
    );

    let text = run(Command::List, c, Some(&archiving))
        .await
        .expect("listed");
    assert!(
        text.contains("archives: 1") && text.contains(&trades) && text.contains("1000 rows"),
        "{text}"
    );
    let text = run(
        Command::Restore {
            partition: trades.clone(),
            into: Some("restored_back".into()),
        },
        c,
        Some(&archiving),
    )
    .await
    .expect("restored");
    assert!(
        text.contains(&format!("restored {trades} into restored_back")),
        "{text}"
    );
    assert!(text.contains("1000 rows"), "{text}");
    assert_eq!(count(c, "restored_back").await, 1_000);
    let err = run(
        Command::Restore {
            partition: "trades_1999_01_01".into(),
            into: None,
        },
        c,
        Some(&archiving),
    )
    .await
    .expect_err("no such archive");
    assert!(err.to_string().contains("trades_1999_01_01"), "{err}");
    app.shutdown().await;
}

fn store_of(archiving: &Archiving) -> Store {
    archiving.store().clone()
}

#[tokio::test]
async fn the_hourly_job_archives_and_drops_what_is_due_when_scheduled() {
    // The job's warnings (why a run failed), from the tasks this test's
    // runtime drives, for the failure message.
    let logs = Logs::default();
    let _capture = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish(),
    );
    let db = TestDb::migrated().await;
    let c = db.conn();
    old_trades(c, 500).await;
    let dir = ArchiveDir::new(&db);
    let app = spawn_app(
        AppOptions::jwt()
            .database(AppDatabase::Url(db.url().to_owned()))
            .setting("BACKGROUND_JOBS", "true")
            .setting("ARCHIVE_DIR", dir.path().display().to_string())
            .setting("ARCHIVE_ON_SCHEDULE", "true"),
    )
    .await;
    // The hourly jobs run once at start; wait until the archive run reported.
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = wire::read(app.get_public("/metrics").await).await.text;
        if sample(
            &text,
            "trade_engine_job_last_run_success",
            "job=\"archive_partitions\"",
        )
        .is_some()
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the archive job did not report; warnings:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Only this test's api runs the archive job in this process, so the
    // series is its own (the rest of the page is the whole process's).
    assert_eq!(
        sample(
            &text,
            "trade_engine_job_last_run_success",
            "job=\"archive_partitions\""
        ),
        Some(1.0),
        "the archive job failed; warnings:\n{logs}"
    );
    app.shutdown().await;
    // Whatever maintenance made of the day (merged into its month first), it
    // is archived with its 500 trades and gone from the database.
    let listed = archive::list(&dir.store()).await.expect("listed");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let manifest = listed[0].manifest.as_ref().expect("a manifest");
    assert_eq!((manifest.table.as_str(), manifest.rows), ("trades", 500));
    assert_eq!(
        scalar::<i64>(
            c,
            "SELECT count(*) FROM trades WHERE executed_at < now() - interval '60 months'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM enforce_partition_retention()").await,
        0
    );
}
