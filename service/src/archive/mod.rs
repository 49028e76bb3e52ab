//! Archiving partitions before retention drops them, and restoring them.
//!
//! Retention ([`crate::maintenance::enforce_retention`], the schema's
//! `enforce_partition_retention`) drops `orders` and `trades` partitions once
//! their whole range is older than the table's retention, with their rows.
//! This module puts an exact copy of each such partition in an archive
//! [`Store`] first (a local folder, or S3 through `object_store`), and drops
//! the partition only when the copy is proven complete:
//!
//! 1. **Export** ([`Step::ReadRows`], [`Step::Encode`], [`Step::Upload`],
//!    [`Step::CompleteUpload`]): the partition's rows are read in primary-key
//!    order through a cursor, a batch at a time, encoded as Parquet (zstd)
//!    row group by row group, and sent to the store as a multipart upload
//!    part by part. Memory holds one fetched batch, one row group and one part,
//!    whatever the partition's size. The file appears in the store only when
//!    the upload completes.
//! 2. **Manifest** ([`Step::WriteManifest`]): `<table>/<partition>.manifest.json`
//!    next to `<table>/<partition>.parquet` (see [`Manifest`]): bounds, row
//!    count, the row checksum of the rows as PostgreSQL rendered them, the
//!    schema version and columns, the file's size and SHA-256, the codec, when.
//!    The manifests are the only record of what is archived; the database
//!    keeps none.
//! 3. **Verify the file** ([`Step::VerifyFile`]): read back from the store, the
//!    file must have the manifest's size and SHA-256, and its rows, decoded
//!    from Parquet, the manifest's row count and row checksum.
//! 4. **Verify the database and drop** ([`Step::VerifyDatabase`],
//!    [`Step::Drop`]): in one transaction, the partition is locked against
//!    writes (`SHARE`: readers go on), its rows' count and checksum are
//!    computed again and must equal the manifest's; then the parent is locked
//!    (`ACCESS EXCLUSIVE`, for the moments the detach takes), the row count
//!    is checked once more, and the partition is detached and dropped (for
//!    `trades`, the candles of the dropped trades are pruned in the same
//!    transaction, as [`crate::maintenance::enforce_retention`] does). A
//!    writer of the table can close a lock cycle with the parent's lock; when
//!    PostgreSQL breaks it by failing this transaction, it runs again from the
//!    start (up to [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS)
//!    times in all).
//!
//! A failure at any step is an [`ArchiveError`] naming the partition, the
//! step and the reason, and leaves the partition in place. A partition whose
//! archive already exists and verifies is not exported again (only checked
//! and dropped); an archive that exists but does not verify is never
//! overwritten: the error says so, and an operator decides.
//!
//! [`restore`] loads an archive back, into its original partition
//! (re-created with its bounds when gone) or into a side table, in one
//! transaction, and checks the loaded rows against the manifest's checksum.
//!
//! What is due comes from `enforce_partition_retention(true)`, the dry run of
//! retention itself ([`due`]); [`plan`] adds each partition's archive state.
//!
//! Every function takes a connection, not a transaction: each step commits on
//! its own, so a drop's lock is held for that drop only. The functions that
//! write set `statement_timeout = 0` for their transactions (a month of orders
//! takes a while to read) and [`Options::lock_timeout`] as their lock timeout.
//!
//! ```no_run
//! use service::archive::{self, RestoreTarget, Store};
//!
//! # async fn example(db: &sea_orm::DatabaseConnection) -> Result<(), archive::ArchiveError> {
//! let store = Store::open_dir("/var/lib/trade-engine/archive")?;
//! for entry in archive::plan(db, &store).await? {
//!     println!("{} {:?}", entry.partition.partition_name, entry.state);
//! }
//! let done = archive::archive_due(db, &store, true).await?; // export, verify, drop
//! # let _ = done;
//! archive::restore(db, &store, "trades_2021_06_01", RestoreTarget::SideTable("restored_trades_2021_06_01".into())).await?;
//! # Ok(()) }
//! ```

mod error;
mod manifest;
mod rows;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};
use futures_util::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::async_reader::{ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sea_orm::{
    ConnectionTrait, DbBackend, FromQueryResult, QueryResult, Statement, TransactionSession,
    TransactionTrait,
};
use serde::Serialize;

pub use error::{ArchiveError, Step};
pub use manifest::{
    Checksum, FileInfo, MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, SchemaVersion,
};
/// The `object_store` crate this module is built on, for wrapping or
/// providing stores of the same version ([`Store::from_object_store`]).
pub use object_store;
pub use rows::{CHECKSUM_ALGORITHM, Column};
pub use store::{DEFAULT_PART_SIZE, Location, MIN_PART_SIZE, Store};

use crate::error::ServiceError;
use error::Failing;
use rows::{CATALOG_COLUMNS, CatalogColumn, ColumnInfo, RowDigest, quote_ident};
use store::{FileReader, UploadError, relative_data_path};

/// The partitioned tables retention applies to.
pub(crate) const TABLES: [&str; 2] = ["orders", "trades"];

/// The zstd level of the Parquet pages: most of zstd's ratio on this data
/// at a fraction of the higher levels' time.
const ZSTD_LEVEL: i32 = 3;

/// Tuning of the archive's reads, writes and locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The `lock_timeout` of the transactions that lock a partition or its
    /// parent (verify and drop, restore): a lock not granted by then fails
    /// the step (the partition stays), rather than queueing every writer of
    /// the table behind the archive. Default 5 s.
    pub lock_timeout: Duration,
    /// Rows fetched from the database per round trip. Default 10,000.
    pub fetch_rows: usize,
    /// Rows per Parquet row group: the writer holds one row group in memory.
    /// Default 65,536.
    pub row_group_rows: usize,
    /// Rows per `INSERT` when restoring. Default 5,000.
    pub insert_rows: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: Duration::from_secs(5),
            fetch_rows: 10_000,
            row_group_rows: 65_536,
            insert_rows: 5_000,
        }
    }
}

/// A partition past its table's retention, as `enforce_partition_retention(true)`
/// lists it, with its lower bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct DuePartition {
    pub partition_name: String,
    /// `orders` or `trades`.
    pub parent_table: String,
    /// `None` when the partition's lower bound is not a timestamp (no
    /// partition the schema creates).
    pub range_start: Option<DateTime<Utc>>,
    pub range_end: DateTime<Utc>,
}

/// What the store holds of a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ArchiveState {
    /// No manifest: archiving exports the partition.
    Missing,
    /// A manifest for these bounds and a file of the size it names (the full
    /// check, hash and rows, runs before anything is dropped).
    Archived {
        rows: u64,
        bytes: u64,
        created_at: DateTime<Utc>,
    },
    /// Something is there that is not a usable archive of this partition
    /// (unreadable manifest, other bounds, file missing or of another size).
    /// Archiving refuses to overwrite it.
    Damaged { reason: String },
}

/// One due partition and its archive state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    pub partition: DuePartition,
    pub state: ArchiveState,
}

/// What [`archive_due`] did with one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Archived {
    pub partition: DuePartition,
    /// The archive state before this run.
    pub before: ArchiveState,
    /// Exported now (false: a dry run, or an archive that already verified).
    pub exported: bool,
    /// Detached and dropped (false on a dry run).
    pub dropped: bool,
    /// The archive's manifest (none on a dry run).
    pub manifest: Option<Manifest>,
}

/// Where [`restore`] loads an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The partition the rows came from, re-created with its bounds when it
    /// is gone (and refused when a partition holding rows overlaps them).
    Original,
    /// A new plain table of this name in the current schema, with the
    /// archive's columns and primary key, attached to nothing (no triggers).
    SideTable(String),
}

/// What [`restore`] loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub partition: String,
    /// The table the rows are now in (the partition, or the side table).
    pub table: String,
    pub rows: u64,
    /// The loaded rows' checksum, equal to the manifest's.
    pub checksum: String,
    /// Whether the partition was created (false: it existed, empty).
    pub created_partition: bool,
    /// Empty partitions whose bounds overlapped the archive's, dropped to
    /// make room for the original partition.
    pub dropped_empty: Vec<String>,
}

/// One archive in the store, as [`list`] finds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The manifest's path in the store.
    pub path: String,
    /// The manifest, or why it cannot be read.
    pub manifest: Result<Manifest, String>,
}

pub(crate) use crate::sql::statement;

/// The table a partition belongs to, from its name (`orders_…`, `trades_…`).
fn table_of(partition: &str) -> Result<&'static str, ArchiveError> {
    let plain = !partition.is_empty()
        && partition.len() <= 63
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let table = TABLES.into_iter().find(|t| {
        partition
            .strip_prefix(t)
            .is_some_and(|r| r.starts_with('_'))
    });
    match table {
        Some(table) if plain && !partition.ends_with("_default") => Ok(table),
        _ => Err(ArchiveError::invalid(
            "partition",
            partition,
            "expected a ranged partition of orders or trades, e.g. orders_2021_06 or \
             trades_2021_06_01",
        )),
    }
}

/// The column a table is partitioned by.
fn partition_key(table: &str) -> &'static str {
    if table == "orders" {
        "created_at"
    } else {
        "executed_at"
    }
}

const DUE: &str = "SELECT r.partition_name, r.parent_table, b.range_start, r.range_end
    FROM enforce_partition_retention(true) r
    LEFT JOIN LATERAL (
        SELECT p.range_start FROM range_partitions(r.parent_table) p
        WHERE p.partition_name = r.partition_name
    ) b ON true
    ORDER BY r.parent_table, r.range_end";

/// The partitions past retention, oldest first per table: the dry run of
/// `enforce_partition_retention` (nothing is dropped), with lower bounds.
pub async fn due<C: ConnectionTrait>(db: &C) -> Result<Vec<DuePartition>, ArchiveError> {
    DuePartition::find_by_statement(statement(DUE, []))
        .all(db)
        .await
        .map_err(|e| ArchiveError::Due(e.into()))
}

/// Every due partition and what the store holds of it. Reads each manifest
/// and the size of each file; no file is downloaded.
pub async fn plan<C: ConnectionTrait>(
    db: &C,
    store: &Store,
) -> Result<Vec<PlanEntry>, ArchiveError> {
    let mut entries = Vec::new();
    for partition in due(db).await? {
        let state = state_of(store, &partition).await?;
        entries.push(PlanEntry { partition, state });
    }
    Ok(entries)
}

async fn state_of(store: &Store, due: &DuePartition) -> Result<ArchiveState, ArchiveError> {
    let store_error = |reason: String| ArchiveError::Store {
        store: store.to_string(),
        reason,
    };
    let manifest = match store
        .read_manifest(&due.parent_table, &due.partition_name)
        .await
    {
        Ok(None) => return Ok(ArchiveState::Missing),
        Ok(Some(Ok(manifest))) => manifest,
        Ok(Some(Err(reason))) => return Ok(ArchiveState::Damaged { reason }),
        Err(reason) => return Err(store_error(reason)),
    };
    if let Err(reason) = same_bounds(&manifest, due) {
        return Ok(ArchiveState::Damaged { reason });
    }
    Ok(
        match store.size(&manifest.file.path).await.map_err(store_error)? {
            Some(bytes) if bytes == manifest.file.bytes => ArchiveState::Archived {
                rows: manifest.rows,
                bytes,
                created_at: manifest.created_at,
            },
            Some(bytes) => ArchiveState::Damaged {
                reason: format!(
                    "{} is {bytes} bytes, its manifest says {}",
                    manifest.file.path, manifest.file.bytes
                ),
            },
            None => ArchiveState::Damaged {
                reason: format!(
                    "the manifest is there but {} is missing",
                    manifest.file.path
                ),
            },
        },
    )
}

fn same_bounds(manifest: &Manifest, due: &DuePartition) -> Result<(), String> {
    if manifest.table != due.parent_table
        || manifest.partition != due.partition_name
        || Some(manifest.range_start) != due.range_start
        || manifest.range_end != due.range_end
    {
        return Err(format!(
            "the manifest describes {}.{} [{}, {}) but the partition is {}.{} [{}, {})",
            manifest.table,
            manifest.partition,
            manifest.range_start,
            manifest.range_end,
            due.parent_table,
            due.partition_name,
            due.range_start
                .map_or_else(|| "?".to_owned(), |s| s.to_string()),
            due.range_end
        ));
    }
    Ok(())
}

/// [`archive_due_with`] with the default [`Options`].
pub async fn archive_due<C>(
    db: &C,
    store: &Store,
    execute: bool,
) -> Result<Vec<Archived>, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    archive_due_with(db, store, execute, &Options::default()).await
}

/// Archives, verifies and drops every partition past retention, oldest
/// first per table (`orders`, then `trades`). Without `execute` it is the
/// dry run: it lists them with their archive state ([`plan`]) and changes
/// nothing. Stops at the first partition that fails, with its error; the
/// partitions before it are archived and dropped, the one that failed and
/// those after it are left in place.
pub async fn archive_due_with<C>(
    db: &C,
    store: &Store,
    execute: bool,
    options: &Options,
) -> Result<Vec<Archived>, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let entries = plan(db, store).await?;
    let mut done = Vec::with_capacity(entries.len());
    for PlanEntry { partition, state } in entries {
        if !execute {
            done.push(Archived {
                partition,
                before: state,
                exported: false,
                dropped: false,
                manifest: None,
            });
            continue;
        }
        let started = Instant::now();
        let failing = Failing {
            partition: &partition.partition_name,
            restoring: false,
        };
        let archived = async {
            let target = inspect(db, &partition.partition_name, failing).await?;
            let (manifest, exported) =
                ensure_archived(db, store, &target, options, failing).await?;
            drop_verified(db, &target, &manifest, options, failing).await?;
            Ok::<_, ArchiveError>((manifest, exported))
        }
        .await;
        let (manifest, exported) = match archived {
            Ok(archived) => archived,
            Err(err) => {
                tracing::warn!(
                    partition = %partition.partition_name,
                    step = err.step().map_or("", Step::name),
                    error = %err,
                    "archiving a partition failed; it stays in place"
                );
                return Err(err);
            }
        };
        tracing::info!(
            partition = %partition.partition_name,
            parent_table = %partition.parent_table,
            rows = manifest.rows,
            bytes = manifest.file.bytes,
            exported,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partition archived and dropped"
        );
        done.push(Archived {
            partition,
            before: state,
            exported,
            dropped: true,
            manifest: Some(manifest),
        });
    }
    tracing::info!(
        execute,
        partitions = done.len(),
        store = %store,
        "archiving of partitions past retention done"
    );
    Ok(done)
}

/// Makes sure `partition` has an archive that verifies, and returns its
/// manifest: exports it when there is none (nothing is dropped). An archive
/// already there that verifies is kept as it is; one that does not is an
/// error (never overwritten).
pub async fn export<C>(db: &C, store: &Store, partition: &str) -> Result<Manifest, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    export_with(db, store, partition, &Options::default()).await
}

/// [`export`] with `options`.
pub async fn export_with<C>(
    db: &C,
    store: &Store,
    partition: &str,
    options: &Options,
) -> Result<Manifest, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let failing = Failing {
        partition,
        restoring: false,
    };
    let target = inspect(db, partition, failing).await?;
    Ok(ensure_archived(db, store, &target, options, failing)
        .await?
        .0)
}

/// Reads the archive of `partition` back from the store and checks it
/// against its manifest (size, file hash, row count, row checksum); returns
/// the manifest. Needs no database.
pub async fn verify(store: &Store, partition: &str) -> Result<Manifest, ArchiveError> {
    let table = table_of(partition)?;
    let failing = Failing {
        partition,
        restoring: false,
    };
    let manifest = read_existing_manifest(store, table, partition, failing).await?;
    verify_file(store, &manifest, failing).await?;
    Ok(manifest)
}

/// Every manifest in the store (archives of partitions dropped long ago
/// included), by path.
pub async fn list(store: &Store) -> Result<Vec<Listed>, ArchiveError> {
    let mut listed = Vec::new();
    for path in store.list_manifests().await? {
        let manifest = store.read_manifest_at(&path).await;
        listed.push(Listed {
            path: path.to_string(),
            manifest,
        });
    }
    Ok(listed)
}

/// A partition about to be archived, as the catalog describes it now.
#[derive(Clone, Debug)]
struct Partition {
    schema: String,
    table: &'static str,
    name: String,
    range_start: DateTime<Utc>,
    range_end: DateTime<Utc>,
    columns: Vec<ColumnInfo>,
    primary_key: Vec<String>,
    migration: String,
}

impl Partition {
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    fn parent(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(self.table))
    }

    fn manifest_columns(&self) -> Vec<Column> {
        self.columns
            .iter()
            .map(ColumnInfo::manifest_column)
            .collect()
    }
}

#[derive(FromQueryResult)]
struct Bounds {
    range_start: DateTime<Utc>,
    range_end: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct Name {
    name: String,
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

const BOUNDS: &str = "SELECT range_start, range_end FROM range_partitions($1)
    WHERE partition_name = $2";
const PRIMARY_KEY: &str = "SELECT a.attname::text AS name
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = to_regclass(format('%I.%I', current_schema(), $1::text))
      AND i.indisprimary
    ORDER BY k.ord";
const MIGRATION: &str =
    "SELECT version AS name FROM seaql_migrations ORDER BY version DESC LIMIT 1";
const SCHEMA: &str = "SELECT current_schema()::text AS name";

/// The catalog's columns of `table`, as the archive holds them.
async fn columns_of<C: ConnectionTrait>(
    db: &C,
    table: &str,
) -> Result<Vec<CatalogColumn>, sea_orm::DbErr> {
    CatalogColumn::find_by_statement(statement(CATALOG_COLUMNS, [table.into()]))
        .all(db)
        .await
}

/// Finds the partition, its bounds, columns, primary key and the schema
/// version, and refuses what cannot be archived: a column type without a
/// canonical form, orders still live (a dropped resting order would leave
/// its price level behind in the market state).
async fn inspect<C: ConnectionTrait>(
    db: &C,
    partition: &str,
    failing: Failing<'_>,
) -> Result<Partition, ArchiveError> {
    let table = table_of(partition)?;
    let at = |reason: String| failing.at(Step::Inspect, reason);
    let db_err = |e: sea_orm::DbErr| failing.db(Step::Inspect, e);
    let schema = Name::find_by_statement(statement(SCHEMA, []))
        .one(db)
        .await
        .map_err(db_err)?
        .map(|n| n.name)
        .ok_or_else(|| at("no current schema".to_owned()))?;
    let bounds = Bounds::find_by_statement(statement(BOUNDS, [table.into(), partition.into()]))
        .one(db)
        .await
        .map_err(db_err)?
        .ok_or_else(|| {
            at(format!(
                "{table} has no ranged partition {partition} (already dropped, or never created)"
            ))
        })?;
    let columns = columns_of(db, table)
        .await
        .map_err(db_err)?
        .iter()
        .map(ColumnInfo::from_catalog)
        .collect::<Result<Vec<_>, _>>()
        .map_err(at)?;
    let primary_key: Vec<String> = Name::find_by_statement(statement(PRIMARY_KEY, [table.into()]))
        .all(db)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|n| n.name)
        .collect();
    if primary_key.is_empty() {
        return Err(at(format!(
            "{table} has no primary key to order the rows by"
        )));
    }
    let migration = Name::find_by_statement(statement(MIGRATION, []))
        .one(db)
        .await
        .map_err(db_err)?
        .map(|n| n.name)
        .ok_or_else(|| at("seaql_migrations is empty: the schema is not migrated".to_owned()))?;
    let target = Partition {
        schema,
        table,
        name: partition.to_owned(),
        range_start: bounds.range_start,
        range_end: bounds.range_end,
        columns,
        primary_key,
        migration,
    };
    if table == "orders" {
        // The status index answers this; counted up to a bound, to name how many.
        let live = Count::find_by_statement(statement(
            &format!(
                "SELECT count(*) AS n FROM (SELECT 1 FROM {} \
                 WHERE status IN ('PENDING', 'OPEN', 'PARTIALLY_FILLED') LIMIT 1000) live",
                target.qualified()
            ),
            [],
        ))
        .one(db)
        .await
        .map_err(db_err)?
        .map_or(0, |c| c.n);
        if live > 0 {
            let live = if live >= 1000 {
                "1000 or more".to_owned()
            } else {
                live.to_string()
            };
            return Err(at(format!(
                "{live} of its orders are still live (OPEN, PARTIALLY_FILLED or PENDING): \
                 dropping them would leave their price levels in the market state; cancel \
                 or expire them first"
            )));
        }
    }
    Ok(target)
}

async fn read_existing_manifest(
    store: &Store,
    table: &str,
    partition: &str,
    failing: Failing<'_>,
) -> Result<Manifest, ArchiveError> {
    match store.read_manifest(table, partition).await {
        Ok(Some(Ok(manifest))) => Ok(manifest),
        Ok(Some(Err(reason))) => Err(failing.at(Step::ReadManifest, reason)),
        Ok(None) => Err(failing.at(
            Step::ReadManifest,
            format!("the store {store} holds no archive of it"),
        )),
        Err(reason) => Err(failing.at(Step::ReadManifest, reason)),
    }
}

/// The archive of `target`: the one in the store when it verifies, else a
/// new export. True when exported now.
async fn ensure_archived<C>(
    db: &C,
    store: &Store,
    target: &Partition,
    options: &Options,
    failing: Failing<'_>,
) -> Result<(Manifest, bool), ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let keep_it = "the store's files of this partition are left as they are; remove them to \
                   export it again";
    match store.read_manifest(target.table, &target.name).await {
        Ok(Some(Err(reason))) => {
            return Err(failing.at(Step::ReadManifest, format!("{reason}; {keep_it}")));
        }
        Ok(Some(Ok(existing))) => {
            let due = DuePartition {
                partition_name: target.name.clone(),
                parent_table: target.table.to_owned(),
                range_start: Some(target.range_start),
                range_end: target.range_end,
            };
            same_bounds(&existing, &due)
                .map_err(|reason| failing.at(Step::VerifyFile, format!("{reason}; {keep_it}")))?;
            if existing.schema.columns != target.manifest_columns() {
                return Err(failing.at(
                    Step::VerifyFile,
                    format!(
                        "the archive was made under migration {} with other columns than \
                         {} has now; {keep_it}",
                        existing.schema.migration, target.table
                    ),
                ));
            }
            verify_file(store, &existing, failing)
                .await
                .map_err(|err| match err {
                    ArchiveError::Archive {
                        partition,
                        step,
                        reason,
                    } => ArchiveError::Archive {
                        partition,
                        step,
                        reason: format!("{reason}; {keep_it}"),
                    },
                    other => other,
                })?;
            tracing::info!(partition = %target.name, rows = existing.rows, "already archived; not exported again");
            return Ok((existing, false));
        }
        Ok(None) => {}
        Err(reason) => {
            return Err(failing.at(Step::ReadManifest, format!("{reason}; {keep_it}")));
        }
    }
    let started = Instant::now();
    let manifest = write_file(db, store, target, options, failing).await?;
    store
        .write_manifest(&manifest)
        .await
        .map_err(|reason| failing.at(Step::WriteManifest, reason))?;
    tracing::info!(
        partition = %target.name,
        rows = manifest.rows,
        bytes = manifest.file.bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partition exported"
    );
    // What the store now holds, not what was meant to be written.
    let stored = read_existing_manifest(store, target.table, &target.name, failing).await?;
    if stored != manifest {
        return Err(failing.at(
            Step::ReadManifest,
            "the manifest read back differs from the one written",
        ));
    }
    verify_file(store, &stored, failing).await?;
    Ok((stored, true))
}

/// `DECLARE`s a cursor over `table`'s `columns` rendered as canonical text,
/// in primary-key order.
async fn declare_rows<C: ConnectionTrait>(
    txn: &C,
    table: &str,
    columns: &[ColumnInfo],
    primary_key: &[String],
) -> Result<Cursor, sea_orm::DbErr> {
    let select: Vec<String> = columns.iter().map(ColumnInfo::render_sql).collect();
    let order: Vec<String> = primary_key.iter().map(|c| quote_ident(c)).collect();
    let cursor = Cursor(CURSORS.fetch_add(1, Ordering::Relaxed));
    txn.execute_unprepared(&format!(
        "DECLARE {cursor} NO SCROLL CURSOR FOR SELECT {} FROM {table} ORDER BY {}",
        select.join(", "),
        order.join(", ")
    ))
    .await?;
    Ok(cursor)
}

/// Cursors declared by this process so far: each gets a name of its own.
static CURSORS: AtomicU64 = AtomicU64::new(0);

/// A cursor over a table's rows. Its name is new for each declaration:
/// `FETCH … FROM <name>` is a prepared statement the driver caches with the
/// row shape it saw first, and another table's cursor of the same name would
/// be read with the wrong columns.
#[derive(Clone, Copy, Debug)]
struct Cursor(u64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "archive_rows_{}", self.0)
    }
}

/// The cursor's next `n` rows, each as canonical text per column.
async fn fetch_rows<C: ConnectionTrait>(
    txn: &C,
    cursor: Cursor,
    n: usize,
    width: usize,
) -> Result<Vec<Vec<Option<String>>>, sea_orm::DbErr> {
    let fetched: Vec<QueryResult> = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("FETCH FORWARD {} FROM {cursor}", n.max(1)),
        ))
        .await?;
    fetched
        .iter()
        .map(|row| {
            (0..width)
                .map(|i| row.try_get_by_index::<Option<String>>(i))
                .collect()
        })
        .collect()
}

/// The row count and checksum of `table`'s rows, as PostgreSQL renders them,
/// in a transaction the caller holds.
async fn database_digest<C: ConnectionTrait>(
    txn: &C,
    table: &str,
    columns: &[ColumnInfo],
    primary_key: &[String],
    fetch: usize,
) -> Result<(u64, String), sea_orm::DbErr> {
    let cursor = declare_rows(txn, table, columns, primary_key).await?;
    let mut digest = RowDigest::new();
    loop {
        let rows = fetch_rows(txn, cursor, fetch, columns.len()).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            digest.push_text_row(row);
        }
    }
    txn.execute_unprepared(&format!("CLOSE {cursor}")).await?;
    Ok(digest.finish())
}

/// The session settings of the archive's transactions: no statement timeout
/// (reading a month of orders takes longer than a request may), and a lock
/// timeout.
async fn set_timeouts<C: ConnectionTrait>(
    txn: &C,
    options: &Options,
) -> Result<(), sea_orm::DbErr> {
    let lock_ms = options.lock_timeout.as_millis().clamp(1, i32::MAX as u128);
    txn.execute_unprepared(&format!(
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = {lock_ms}"
    ))
    .await
    .map(|_| ())
}

/// Exports `target` to `<table>/<partition>.parquet`: rows in primary-key
/// order from a cursor, Parquet row groups, a multipart upload. Returns the
/// manifest to write.
async fn write_file<C>(
    db: &C,
    store: &Store,
    target: &Partition,
    options: &Options,
    failing: Failing<'_>,
) -> Result<Manifest, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let relative = relative_data_path(target.table, &target.name);
    let compression = ZstdLevel::try_new(ZSTD_LEVEL)
        .map(Compression::ZSTD)
        .map_err(|e| failing.at(Step::Encode, e))?;
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_created_by(created_by())
        .set_key_value_metadata(Some(vec![
            KeyValue::new("trade_engine.table".to_owned(), target.table.to_owned()),
            KeyValue::new("trade_engine.partition".to_owned(), target.name.clone()),
            KeyValue::new(
                "trade_engine.migration".to_owned(),
                target.migration.clone(),
            ),
        ]))
        .build();
    let schema = rows::arrow_schema(&target.columns);
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
        .map_err(|e| failing.at(Step::Encode, e))?;
    let mut upload = store
        .upload(&relative)
        .await
        .map_err(|reason| failing.at(Step::Upload, reason))?;
    let mut digest = RowDigest::new();
    let streamed = stream_rows(
        db,
        target,
        options,
        failing,
        &schema,
        &mut writer,
        &mut upload,
        &mut digest,
    )
    .await;
    let row_groups = match streamed {
        Ok(row_groups) => row_groups,
        Err(err) => {
            upload.abort().await;
            return Err(err);
        }
    };
    let (bytes, sha256) = match upload.finish().await {
        Ok(done) => done,
        Err((err, upload)) => {
            upload.abort().await;
            return Err(match err {
                UploadError::Part(reason) => failing.at(Step::Upload, reason),
                UploadError::Complete(reason) => failing.at(Step::CompleteUpload, reason),
            });
        }
    };
    let (rows, checksum) = digest.finish();
    Ok(Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        format_version: MANIFEST_VERSION,
        table: target.table.to_owned(),
        partition: target.name.clone(),
        partition_key: partition_key(target.table).to_owned(),
        range_start: target.range_start,
        range_end: target.range_end,
        primary_key: target.primary_key.clone(),
        rows,
        checksum: Checksum {
            algorithm: CHECKSUM_ALGORITHM.to_owned(),
            value: checksum,
        },
        schema: SchemaVersion {
            migration: target.migration.clone(),
            columns: target.manifest_columns(),
        },
        file: FileInfo {
            path: relative,
            bytes,
            sha256,
            compression: format!("zstd({ZSTD_LEVEL})"),
            row_groups,
        },
        created_at: Utc::now(),
        created_by: created_by(),
    })
}

fn created_by() -> String {
    format!("trade-engine service {}", env!("CARGO_PKG_VERSION"))
}

/// The export's loop: fetch, hash, encode, send; then the Parquet footer.
/// Returns the row groups written.
#[allow(clippy::too_many_arguments)]
async fn stream_rows<C>(
    db: &C,
    target: &Partition,
    options: &Options,
    failing: Failing<'_>,
    schema: &arrow_schema::SchemaRef,
    writer: &mut ArrowWriter<Vec<u8>>,
    upload: &mut store::Upload,
    digest: &mut RowDigest,
) -> Result<usize, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let read = |e: sea_orm::DbErr| failing.db(Step::ReadRows, e);
    let send = |e: UploadError| match e {
        UploadError::Part(reason) => failing.at(Step::Upload, reason),
        UploadError::Complete(reason) => failing.at(Step::CompleteUpload, reason),
    };
    // One snapshot for the whole partition: the cursor's query.
    let txn = db.begin().await.map_err(read)?;
    set_timeouts(&txn, options).await.map_err(read)?;
    let cursor = declare_rows(
        &txn,
        &target.qualified(),
        &target.columns,
        &target.primary_key,
    )
    .await
    .map_err(read)?;
    loop {
        let rows = fetch_rows(&txn, cursor, options.fetch_rows, target.columns.len())
            .await
            .map_err(read)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            digest.push_text_row(row);
        }
        let batch = rows::to_batch(&target.columns, schema, &rows)
            .map_err(|reason| failing.at(Step::Encode, reason))?;
        writer
            .write(&batch)
            .map_err(|e| failing.at(Step::Encode, e))?;
        let encoded = std::mem::take(writer.inner_mut());
        if !encoded.is_empty() {
            upload.write(&encoded).await.map_err(send)?;
        }
    }
    // Read only: nothing to keep, and nothing lost if the rollback fails.
    if let Err(error) = txn.rollback().await {
        tracing::debug!(%error, "closing the export's read transaction");
    }
    let metadata = writer.finish().map_err(|e| failing.at(Step::Encode, e))?;
    let footer = std::mem::take(writer.inner_mut());
    upload.write(&footer).await.map_err(send)?;
    Ok(metadata.num_row_groups())
}

/// The Parquet stream of an archive's file, checked to hold the manifest's
/// columns in their order and types.
async fn open_file(
    store: &Store,
    manifest: &Manifest,
    batch_rows: usize,
) -> Result<ParquetRecordBatchStream<FileReader>, String> {
    let reader = store.file_reader(&manifest.file.path, manifest.file.bytes);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| format!("{} is not a readable Parquet file: {e}", manifest.file.path))?;
    let fields = builder.schema().fields();
    let found: Vec<(String, Option<String>)> = fields
        .iter()
        .map(|f| (f.name().clone(), rows::type_label(f.data_type())))
        .collect();
    let expected: Vec<(String, Option<String>)> = manifest
        .schema
        .columns
        .iter()
        .map(|c| (c.name.clone(), Some(c.arrow_type.clone())))
        .collect();
    if found != expected {
        return Err(format!(
            "{} holds columns {found:?}, its manifest names {expected:?}",
            manifest.file.path
        ));
    }
    if builder.metadata().num_row_groups() != manifest.file.row_groups {
        return Err(format!(
            "{} has {} row groups, its manifest says {}",
            manifest.file.path,
            builder.metadata().num_row_groups(),
            manifest.file.row_groups
        ));
    }
    builder
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|e| format!("{}: {e}", manifest.file.path))
}

/// Reads the archive's file back and checks it against `manifest`: size and
/// SHA-256 of the whole file, then the rows decoded from Parquet: count and
/// row checksum.
async fn verify_file(
    store: &Store,
    manifest: &Manifest,
    failing: Failing<'_>,
) -> Result<(), ArchiveError> {
    let started = Instant::now();
    let fail = |reason: String| failing.at(Step::VerifyFile, reason);
    if manifest.checksum.algorithm != CHECKSUM_ALGORITHM {
        return Err(fail(format!(
            "the manifest's checksum is {:?}, this version checks {CHECKSUM_ALGORITHM:?}",
            manifest.checksum.algorithm
        )));
    }
    let path = &manifest.file.path;
    match store.size(path).await.map_err(&fail)? {
        None => return Err(fail(format!("{path} is missing from the store"))),
        Some(bytes) if bytes != manifest.file.bytes => {
            return Err(fail(format!(
                "{path} is {bytes} bytes, the manifest says {}",
                manifest.file.bytes
            )));
        }
        Some(_) => {}
    }
    let (bytes, sha256) = store.file_sha256(path).await.map_err(&fail)?;
    if bytes != manifest.file.bytes || sha256 != manifest.file.sha256 {
        return Err(fail(format!(
            "{path} does not match its manifest: SHA-256 {sha256} of {bytes} bytes read back, \
             the manifest says {} of {} bytes (the file was changed or damaged in the store)",
            manifest.file.sha256, manifest.file.bytes
        )));
    }
    let mut batches = open_file(store, manifest, 8192).await.map_err(&fail)?;
    let mut digest = RowDigest::new();
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| fail(format!("decoding {path}: {e}")))?;
        digest.push_batch(&batch).map_err(&fail)?;
    }
    let (rows, checksum) = digest.finish();
    if rows != manifest.rows || checksum != manifest.checksum.value {
        return Err(fail(format!(
            "the rows of {path} do not match its manifest: {rows} rows with checksum \
             {checksum} read back, the manifest says {} rows with checksum {}",
            manifest.rows, manifest.checksum.value
        )));
    }
    tracing::info!(
        partition = %manifest.partition,
        rows,
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "archive verified"
    );
    Ok(())
}

/// Verifies the partition in the database against `manifest` under a lock
/// and drops it, in one transaction (see the module documentation).
///
/// The transaction locks the partition, then its parent: a writer of the
/// table that already holds the parent and then waits for the partition closes
/// a lock cycle, and PostgreSQL breaks it by failing one side. When that is
/// this transaction (a deadlock or serialization failure), nothing of it
/// stayed, and it runs again from the start, up to
/// [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS) times in all.
async fn drop_verified<C>(
    db: &C,
    target: &Partition,
    manifest: &Manifest,
    options: &Options,
    failing: Failing<'_>,
) -> Result<(), ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut attempts = 1;
    loop {
        let (step, err) = match verify_and_drop(db, target, manifest, options, failing).await {
            Ok(()) => return Ok(()),
            Err(DropFailure::Refused(err)) => return Err(err),
            Err(DropFailure::Database(step, err)) => (step, err),
        };
        match crate::retry::again(Err::<(), _>(err), &mut attempts) {
            std::ops::ControlFlow::Continue(()) => tracing::info!(
                partition = %target.qualified(),
                attempt = attempts,
                "verify and drop met a concurrent writer's lock; trying again"
            ),
            std::ops::ControlFlow::Break(result) => {
                return result.map_err(|err| failing.db(step, err));
            }
        }
    }
}

/// Why one try of [`verify_and_drop`] failed: the database (kept as the
/// service's error, so contention can be told apart and tried again), or a
/// refusal that no retry changes.
enum DropFailure {
    Database(Step, ServiceError),
    Refused(ArchiveError),
}

/// A failing commit: the drop is what did not happen.
impl From<sea_orm::DbErr> for DropFailure {
    fn from(err: sea_orm::DbErr) -> DropFailure {
        DropFailure::Database(Step::Drop, err.into())
    }
}

/// One try of [`drop_verified`]'s transaction.
async fn verify_and_drop<C>(
    db: &C,
    target: &Partition,
    manifest: &Manifest,
    options: &Options,
    failing: Failing<'_>,
) -> Result<(), DropFailure>
where
    C: ConnectionTrait + TransactionTrait,
{
    let verify_err = |e: sea_orm::DbErr| DropFailure::Database(Step::VerifyDatabase, e.into());
    let drop_err = |e: sea_orm::DbErr| DropFailure::Database(Step::Drop, e.into());
    let txn = db.begin().await.map_err(verify_err)?;
    let outcome = async {
        set_timeouts(&txn, options).await.map_err(verify_err)?;
        // Writers of this partition wait from here to the commit; readers
        // (and writers of every other partition) go on.
        txn.execute_unprepared(&format!("LOCK TABLE {} IN SHARE MODE", target.qualified()))
            .await
            .map_err(verify_err)?;
        let (rows, checksum) = database_digest(
            &txn,
            &target.qualified(),
            &target.columns,
            &target.primary_key,
            options.fetch_rows,
        )
        .await
        .map_err(verify_err)?;
        if rows != manifest.rows || checksum != manifest.checksum.value {
            return Err(DropFailure::Refused(failing.at(
                Step::VerifyDatabase,
                format!(
                    "the partition holds {rows} rows with checksum {checksum}, its archive {} \
                     rows with checksum {} (rows were written since it was archived; archive \
                     again after removing the archive's files, or find out who writes there)",
                    manifest.rows, manifest.checksum.value
                ),
            )));
        }
        txn.execute_unprepared(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            target.parent()
        ))
        .await
        .map_err(drop_err)?;
        let count = Count::find_by_statement(statement(
            &format!("SELECT count(*) AS n FROM {}", target.qualified()),
            [],
        ))
        .one(&txn)
        .await
        .map_err(verify_err)?
        .map_or(0, |c| c.n);
        if u64::try_from(count).ok() != Some(manifest.rows) {
            return Err(DropFailure::Refused(failing.at(
                Step::VerifyDatabase,
                format!(
                    "{count} rows under the table lock, the archive holds {}",
                    manifest.rows
                ),
            )));
        }
        txn.execute_unprepared(&format!(
            "ALTER TABLE {} DETACH PARTITION {}; DROP TABLE {}",
            target.parent(),
            target.qualified(),
            target.qualified()
        ))
        .await
        .map_err(drop_err)?;
        if target.table == "trades" {
            crate::maintenance::prune_trade_candles(&txn)
                .await
                .map_err(|e| DropFailure::Database(Step::Drop, e))?;
        }
        Ok(())
    }
    .await;
    crate::retry::finish(txn, outcome).await
}

/// Loads the archive of `partition` back into `target`, in one transaction,
/// and checks the loaded rows' count and checksum against the manifest (see
/// [`RestoreTarget`]); [`restore_with`] with the default [`Options`].
pub async fn restore<C>(
    db: &C,
    store: &Store,
    partition: &str,
    target: RestoreTarget,
) -> Result<Restored, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    restore_with(db, store, partition, target, &Options::default()).await
}

/// [`restore`] with `options`.
///
/// Into the original partition, rows are inserted through the parent table,
/// so its triggers keep the market state (price levels, last trades, candles)
/// as for any other write. A restored partition is still past retention: the
/// next archiving run finds its archive and drops it again; restore into a
/// side table to keep the rows around.
pub async fn restore_with<C>(
    db: &C,
    store: &Store,
    partition: &str,
    target: RestoreTarget,
    options: &Options,
) -> Result<Restored, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let table = table_of(partition)?;
    if let RestoreTarget::SideTable(name) = &target {
        check_side_table_name(name)?;
    }
    let failing = Failing {
        partition,
        restoring: true,
    };
    let started = Instant::now();
    let manifest = read_existing_manifest(store, table, partition, failing).await?;
    if manifest.table != table || manifest.partition != partition {
        return Err(failing.at(
            Step::ReadManifest,
            format!(
                "the manifest describes {}.{}",
                manifest.table, manifest.partition
            ),
        ));
    }
    verify_file(store, &manifest, failing).await?;
    let prepare = |e: sea_orm::DbErr| failing.db(Step::PrepareTarget, e);
    let schema = Name::find_by_statement(statement(SCHEMA, []))
        .one(db)
        .await
        .map_err(prepare)?
        .map(|n| n.name)
        .ok_or_else(|| failing.at(Step::PrepareTarget, "no current schema"))?;
    let catalog = columns_of(db, table).await.map_err(prepare)?;
    let columns = load_columns(&manifest, &catalog)
        .map_err(|reason| failing.at(Step::PrepareTarget, reason))?;
    let restored = match target {
        RestoreTarget::Original => {
            restore_original(db, store, &manifest, &schema, &columns, options, failing).await?
        }
        RestoreTarget::SideTable(name) => {
            restore_side_table(
                db, store, &manifest, &schema, &name, &columns, options, failing,
            )
            .await?
        }
    };
    tracing::info!(
        partition,
        table = %restored.table,
        rows = restored.rows,
        created_partition = restored.created_partition,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "archived partition restored"
    );
    Ok(restored)
}

fn check_side_table_name(name: &str) -> Result<(), ArchiveError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain {
        return Err(ArchiveError::invalid(
            "side table name",
            name,
            "expected a plain lower-case identifier of at most 63 characters, e.g. \
             restored_trades_2021_06_01",
        ));
    }
    if TABLES.contains(&name) || table_of(name).is_ok() {
        return Err(ArchiveError::invalid(
            "side table name",
            name,
            "names of the form orders_… and trades_… are the partitions'; pick another, \
             e.g. restored_trades_2021_06_01",
        ));
    }
    Ok(())
}

/// The archive's columns as the table has them now: each archived column
/// must still exist with the same type; a column added since must take NULL
/// or have a default.
fn load_columns(manifest: &Manifest, catalog: &[CatalogColumn]) -> Result<Vec<ColumnInfo>, String> {
    let mut columns = Vec::with_capacity(manifest.schema.columns.len());
    for archived in &manifest.schema.columns {
        let now = catalog
            .iter()
            .find(|c| c.name == archived.name)
            .ok_or_else(|| {
                format!(
                    "{} has no column {} any more (archived under migration {})",
                    manifest.table, archived.name, manifest.schema.migration
                )
            })?;
        if now.sql_type != archived.sql_type {
            return Err(format!(
                "column {}.{} is {} now, {} in the archive (migration {})",
                manifest.table,
                archived.name,
                now.sql_type,
                archived.sql_type,
                manifest.schema.migration
            ));
        }
        let info = ColumnInfo::from_catalog(now)?;
        if info.manifest_column().arrow_type != archived.arrow_type {
            return Err(format!(
                "column {}.{} is held as {} now, {} in the archive",
                manifest.table,
                archived.name,
                info.manifest_column().arrow_type,
                archived.arrow_type
            ));
        }
        columns.push(info);
    }
    for extra in catalog {
        if !manifest.schema.columns.iter().any(|c| c.name == extra.name)
            && extra.not_null
            && !extra.has_default
        {
            return Err(format!(
                "column {}.{} was added after the archive (migration {}) and is NOT NULL \
                 without a default: the archived rows have no value for it",
                manifest.table, extra.name, manifest.schema.migration
            ));
        }
    }
    Ok(columns)
}

#[derive(FromQueryResult)]
struct Overlap {
    partition_name: String,
    range_start: DateTime<Utc>,
    range_end: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct Exists {
    found: bool,
}

async fn holds_rows<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, sea_orm::DbErr> {
    Ok(Exists::find_by_statement(statement(
        &format!("SELECT EXISTS (SELECT 1 FROM {table}) AS found"),
        [],
    ))
    .one(db)
    .await?
    .is_some_and(|e| e.found))
}

/// Into the original partition: re-create it (or find it empty), then load.
#[allow(clippy::too_many_arguments)]
async fn restore_original<C>(
    db: &C,
    store: &Store,
    manifest: &Manifest,
    schema: &str,
    columns: &[ColumnInfo],
    options: &Options,
    failing: Failing<'_>,
) -> Result<Restored, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let (created, dropped_empty) =
        prepare_partition(db, manifest, schema, options, failing).await?;
    let qualified = format!(
        "{}.{}",
        quote_ident(schema),
        quote_ident(&manifest.partition)
    );
    let parent = format!("{}.{}", quote_ident(schema), quote_ident(&manifest.table));
    let txn = db.begin().await.map_err(|e| failing.db(Step::Load, e))?;
    let loaded = async {
        set_timeouts(&txn, options)
            .await
            .map_err(|e| failing.db(Step::Load, e))?;
        // No one else writes into it while it is loaded.
        txn.execute_unprepared(&format!("LOCK TABLE {qualified} IN EXCLUSIVE MODE"))
            .await
            .map_err(|e| failing.db(Step::Load, e))?;
        if holds_rows(&txn, &qualified)
            .await
            .map_err(|e| failing.db(Step::Load, e))?
        {
            return Err(failing.at(
                Step::Load,
                format!("{} holds rows now: nothing was loaded", manifest.partition),
            ));
        }
        // Through the parent: its statement triggers keep the market state.
        load(&txn, store, manifest, &parent, columns, options, failing).await?;
        verify_loaded(&txn, &qualified, manifest, columns, options, failing).await
    }
    .await;
    let finished = match loaded {
        Ok(digest) => txn
            .commit()
            .await
            .map(|()| digest)
            .map_err(|e| failing.db(Step::Load, e)),
        Err(err) => {
            if let Err(error) = txn.rollback().await {
                tracing::debug!(%error, "rollback after a failed restore");
            }
            Err(err)
        }
    };
    match finished {
        Ok((rows, checksum)) => Ok(Restored {
            partition: manifest.partition.clone(),
            table: manifest.partition.clone(),
            rows,
            checksum,
            created_partition: created,
            dropped_empty,
        }),
        Err(err) => {
            if created {
                remove_created_partition(db, &parent, &qualified, options).await;
            }
            Err(err)
        }
    }
}

/// Makes room for the original partition and creates it, in one short
/// transaction under the parent's lock: partitions overlapping its bounds
/// that hold rows (and rows of its range in the default partition) refuse
/// the restore; empty ones are dropped. Returns whether the partition was
/// created and which empty ones were dropped.
async fn prepare_partition<C>(
    db: &C,
    manifest: &Manifest,
    schema: &str,
    options: &Options,
    failing: Failing<'_>,
) -> Result<(bool, Vec<String>), ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let midnight = |at: DateTime<Utc>| at.time() == NaiveTime::MIN;
    if !midnight(manifest.range_start) || !midnight(manifest.range_end) {
        return Err(failing.at(
            Step::PrepareTarget,
            format!(
                "the archived bounds [{}, {}) are not UTC midnights, which the schema's \
                 partitions always are: restore into a side table",
                manifest.range_start, manifest.range_end
            ),
        ));
    }
    let err = |e: sea_orm::DbErr| failing.db(Step::PrepareTarget, e);
    let parent = format!("{}.{}", quote_ident(schema), quote_ident(&manifest.table));
    let txn = db.begin().await.map_err(err)?;
    let prepared = async {
        set_timeouts(&txn, options).await.map_err(err)?;
        // The partition functions' own serialization (create_range_partition),
        // taken first as they take it, then the parent: nothing is created,
        // attached or written in the range while this looks and creates.
        txn.execute_raw(statement(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.' || $1 || ' partitions'))",
            [manifest.table.as_str().into()],
        ))
        .await
        .map_err(err)?;
        txn.execute_unprepared(&format!("LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE"))
            .await
            .map_err(err)?;
        let overlapping = Overlap::find_by_statement(statement(
            "SELECT partition_name, range_start, range_end FROM range_partitions($1)
             WHERE range_start < $3 AND range_end > $2 ORDER BY range_start",
            [
                manifest.table.as_str().into(),
                manifest.range_start.into(),
                manifest.range_end.into(),
            ],
        ))
        .all(&txn)
        .await
        .map_err(err)?;
        let mut existing = false;
        let mut dropped = Vec::new();
        for other in &overlapping {
            let qualified = format!("{}.{}", quote_ident(schema), quote_ident(&other.partition_name));
            let exact = other.partition_name == manifest.partition
                && other.range_start == manifest.range_start
                && other.range_end == manifest.range_end;
            if holds_rows(&txn, &qualified).await.map_err(err)? {
                let what = if exact {
                    format!("partition {} exists and holds rows", other.partition_name)
                } else {
                    format!(
                        "partition {} [{}, {}) overlaps the archived bounds and holds rows",
                        other.partition_name, other.range_start, other.range_end
                    )
                };
                return Err(failing.at(
                    Step::PrepareTarget,
                    format!("{what}: restore into a side table instead (--into <table>)"),
                ));
            }
            if exact {
                existing = true;
                continue;
            }
            txn.execute_unprepared(&format!(
                "ALTER TABLE {parent} DETACH PARTITION {qualified}; DROP TABLE {qualified}"
            ))
            .await
            .map_err(err)?;
            dropped.push(other.partition_name.clone());
        }
        let default = format!(
            "{}.{}",
            quote_ident(schema),
            quote_ident(&format!("{}_default", manifest.table))
        );
        let key = quote_ident(&manifest.partition_key);
        let stray = Exists::find_by_statement(statement(
            &format!(
                "SELECT CASE WHEN to_regclass($1) IS NULL THEN false ELSE EXISTS (
                    SELECT 1 FROM {default} WHERE {key} >= $2 AND {key} < $3) END AS found"
            ),
            [
                default.as_str().into(),
                manifest.range_start.into(),
                manifest.range_end.into(),
            ],
        ))
        .one(&txn)
        .await
        .map_err(err)?
        .is_some_and(|e| e.found);
        if stray {
            return Err(failing.at(
                Step::PrepareTarget,
                format!(
                    "{}_default holds rows in the archived range: creating the partition \
                     would move them into it; restore into a side table instead (--into <table>)",
                    manifest.table
                ),
            ));
        }
        if !existing {
            txn.execute_raw(statement(
                "SELECT create_range_partition($1, $2, $3, $4::date, $5::date)",
                [
                    manifest.table.as_str().into(),
                    manifest.partition_key.as_str().into(),
                    manifest.partition.as_str().into(),
                    manifest.range_start.date_naive().into(),
                    manifest.range_end.date_naive().into(),
                ],
            ))
            .await
            .map_err(err)?;
        }
        for name in &dropped {
            tracing::info!(partition = %name, "empty partition overlapping a restored one dropped");
        }
        Ok((!existing, dropped))
    }
    .await;
    match prepared {
        Ok(done) => txn.commit().await.map(|()| done).map_err(err),
        Err(e) => {
            if let Err(error) = txn.rollback().await {
                tracing::debug!(%error, "rollback after a failed restore preparation");
            }
            Err(e)
        }
    }
}

/// Drops the partition a failed restore created, if it is still empty (best
/// effort: a failure is logged; the empty partition is harmless and a later
/// restore reuses it).
async fn remove_created_partition<C>(db: &C, parent: &str, qualified: &str, options: &Options)
where
    C: ConnectionTrait + TransactionTrait,
{
    let removed = async {
        let txn = db.begin().await?;
        set_timeouts(&txn, options).await?;
        txn.execute_unprepared(&format!("LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE"))
            .await?;
        if holds_rows(&txn, qualified).await? {
            txn.rollback().await?;
            return Ok::<_, sea_orm::DbErr>(false);
        }
        txn.execute_unprepared(&format!(
            "ALTER TABLE {parent} DETACH PARTITION {qualified}; DROP TABLE {qualified}"
        ))
        .await?;
        txn.commit().await?;
        Ok(true)
    }
    .await;
    match removed {
        Ok(true) => tracing::info!(
            partition = qualified,
            "partition created by a failed restore dropped again"
        ),
        Ok(false) => tracing::warn!(
            partition = qualified,
            "partition created by a failed restore holds rows; left in place"
        ),
        Err(error) => {
            tracing::warn!(partition = qualified, %error, "could not drop the partition a failed restore created")
        }
    }
}

/// Into a new side table, in one transaction: create, load, key, verify.
#[allow(clippy::too_many_arguments)]
async fn restore_side_table<C>(
    db: &C,
    store: &Store,
    manifest: &Manifest,
    schema: &str,
    name: &str,
    columns: &[ColumnInfo],
    options: &Options,
    failing: Failing<'_>,
) -> Result<Restored, ArchiveError>
where
    C: ConnectionTrait + TransactionTrait,
{
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(name));
    let prepare = |e: sea_orm::DbErr| failing.db(Step::PrepareTarget, e);
    let txn = db.begin().await.map_err(prepare)?;
    let loaded = async {
        set_timeouts(&txn, options).await.map_err(prepare)?;
        let taken = Exists::find_by_statement(statement(
            "SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL AS found",
            [name.into()],
        ))
        .one(&txn)
        .await
        .map_err(prepare)?
        .is_some_and(|e| e.found);
        if taken {
            return Err(failing.at(
                Step::PrepareTarget,
                format!("a table {name} already exists: name a new table"),
            ));
        }
        let definitions: Vec<String> = columns
            .iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    quote_ident(&c.name),
                    c.sql_type,
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .collect();
        txn.execute_unprepared(&format!(
            "CREATE TABLE {qualified} ({})",
            definitions.join(", ")
        ))
        .await
        .map_err(prepare)?;
        txn.execute_raw(statement(
            &format!(
                "COMMENT ON TABLE {qualified} IS {}",
                quote_literal(&format!(
                    "Restored from the archive of {} ({} [{}, {}), {} rows, archived {})",
                    manifest.partition,
                    manifest.table,
                    manifest.range_start,
                    manifest.range_end,
                    manifest.rows,
                    manifest.created_at
                ))
            ),
            [],
        ))
        .await
        .map_err(prepare)?;
        load(&txn, store, manifest, &qualified, columns, options, failing).await?;
        let key: Vec<String> = manifest
            .primary_key
            .iter()
            .map(|c| quote_ident(c))
            .collect();
        txn.execute_unprepared(&format!(
            "ALTER TABLE {qualified} ADD PRIMARY KEY ({})",
            key.join(", ")
        ))
        .await
        .map_err(|e| failing.db(Step::Load, e))?;
        verify_loaded(&txn, &qualified, manifest, columns, options, failing).await
    }
    .await;
    match loaded {
        Ok((rows, checksum)) => {
            txn.commit().await.map_err(|e| failing.db(Step::Load, e))?;
            Ok(Restored {
                partition: manifest.partition.clone(),
                table: name.to_owned(),
                rows,
                checksum,
                created_partition: false,
                dropped_empty: Vec::new(),
            })
        }
        Err(err) => {
            if let Err(error) = txn.rollback().await {
                tracing::debug!(%error, "rollback after a failed restore");
            }
            Err(err)
        }
    }
}

/// `text` as a SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Inserts the archive's rows into `into`, a batch per statement: each
/// batch travels as one JSON array of rows of canonical text, cast to the
/// columns' types by PostgreSQL.
async fn load<C: ConnectionTrait>(
    txn: &C,
    store: &Store,
    manifest: &Manifest,
    into: &str,
    columns: &[ColumnInfo],
    options: &Options,
    failing: Failing<'_>,
) -> Result<(), ArchiveError> {
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST(r->>{i} AS {})", c.sql_type))
        .collect();
    let insert = format!(
        "INSERT INTO {into} ({}) SELECT {} FROM json_array_elements($1::text::json) AS r",
        names.join(", "),
        casts.join(", ")
    );
    let mut batches = open_file(store, manifest, options.insert_rows)
        .await
        .map_err(|reason| failing.at(Step::Load, reason))?;
    let mut text = String::new();
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| failing.at(Step::Load, format!("decoding the file: {e}")))?;
        let mut rows: Vec<Vec<Option<String>>> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(batch.num_columns());
            for array in batch.columns() {
                text.clear();
                let present = rows::value_text(array.as_ref(), row, &mut text)
                    .map_err(|reason| failing.at(Step::Load, reason))?;
                values.push(present.then(|| text.clone()));
            }
            rows.push(values);
        }
        let json = serde_json::to_string(&rows).map_err(|e| failing.at(Step::Load, e))?;
        txn.execute_raw(statement(&insert, [json.into()]))
            .await
            .map_err(|e| failing.db(Step::Load, e))?;
    }
    Ok(())
}

/// The loaded rows' count and checksum, which must be the manifest's.
async fn verify_loaded<C: ConnectionTrait>(
    txn: &C,
    table: &str,
    manifest: &Manifest,
    columns: &[ColumnInfo],
    options: &Options,
    failing: Failing<'_>,
) -> Result<(u64, String), ArchiveError> {
    let (rows, checksum) = database_digest(
        txn,
        table,
        columns,
        &manifest.primary_key,
        options.fetch_rows,
    )
    .await
    .map_err(|e| failing.db(Step::VerifyRestore, e))?;
    if rows != manifest.rows || checksum != manifest.checksum.value {
        return Err(failing.at(
            Step::VerifyRestore,
            format!(
                "{rows} rows with checksum {checksum} loaded, the archive holds {} rows with \
                 checksum {}; nothing was loaded",
                manifest.rows, manifest.checksum.value
            ),
        ));
    }
    Ok((rows, checksum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_name_their_table_or_are_refused() {
        assert_eq!(table_of("orders_2021_06").ok(), Some("orders"));
        assert_eq!(table_of("orders_2021").ok(), Some("orders"));
        assert_eq!(table_of("trades_2021_06_01").ok(), Some("trades"));
        for bad in [
            "",
            "orders",
            "orders_default",
            "ordersx_2021",
            "symbols_2021",
            "trades_2021; DROP TABLE trades",
            "Trades_2021_06_01",
        ] {
            let err = table_of(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid partition"), "{err}");
        }
    }

    #[test]
    fn side_tables_are_plain_new_names() {
        assert!(check_side_table_name("restored_trades_2021_06_01").is_ok());
        for bad in [
            "",
            "1abc",
            "Trades",
            "a-b",
            "trades",
            "trades_2021_06_01",
            "x\"y",
        ] {
            let err = check_side_table_name(bad).expect_err(bad);
            assert!(err.to_string().contains("side table name"), "{err}");
        }
    }
}
