//! The manifest: the JSON file next to each archived partition's Parquet
//! file, and the store's only record of what is archived.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rows::Column;

/// What `format` holds in every manifest.
pub const MANIFEST_FORMAT: &str = "trade-engine-partition-archive";
/// The manifest layout this version writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Everything needed to check an archived partition and to load it back.
///
/// ```json
/// {
///   "format": "trade-engine-partition-archive",
///   "format_version": 1,
///   "table": "trades",
///   "partition": "trades_2021_06_01",
///   "partition_key": "executed_at",
///   "range_start": "2021-06-01T00:00:00Z",
///   "range_end": "2021-06-02T00:00:00Z",
///   "primary_key": ["trade_id", "executed_at"],
///   "rows": 100000,
///   "checksum": {"algorithm": "sha256-canonical-rows-v1", "value": "…64 hex digits…"},
///   "schema": {"migration": "m1700000011000_market_sides", "columns": [
///     {"name": "trade_id", "sql_type": "uuid", "arrow_type": "utf8", "nullable": false}, …]},
///   "file": {"path": "trades/trades_2021_06_01.parquet", "bytes": 4194304,
///            "sha256": "…", "compression": "zstd(3)", "row_groups": 2},
///   "created_at": "2026-11-30T05:00:00.123456Z",
///   "created_by": "trade-engine service 0.1.0"
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`MANIFEST_VERSION`] when written by this version.
    pub format_version: u32,
    /// `orders` or `trades`.
    pub table: String,
    /// The partition's name (`orders_2021_06`, `trades_2021_06_01`).
    pub partition: String,
    /// The column the table is partitioned by (`created_at`, `executed_at`).
    pub partition_key: String,
    /// The partition's bounds: every row has `range_start <= key < range_end`.
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    /// The primary key's columns: the file's rows are in this order, and so
    /// is the checksum.
    pub primary_key: Vec<String>,
    /// Rows in the file (and in the partition when it was archived).
    pub rows: u64,
    pub checksum: Checksum,
    pub schema: SchemaVersion,
    pub file: FileInfo,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// The row checksum (its exact definition: [`super::CHECKSUM_ALGORITHM`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `sha256-canonical-rows-v1`.
    pub algorithm: String,
    /// 64 lowercase hex digits.
    pub value: String,
}

/// The schema the rows were archived under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// The latest migration applied then (`seaql_migrations.version`).
    pub migration: String,
    /// The table's columns in their order, with their types.
    pub columns: Vec<Column>,
}

/// The Parquet file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Where it is, relative to the store's root (`trades/trades_2021_06_01.parquet`).
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, 64 lowercase hex digits: a flipped byte
    /// anywhere (data, statistics, footer) is caught before the rows are even
    /// decoded.
    pub sha256: String,
    /// The Parquet codec of its pages (`zstd(3)`).
    pub compression: String,
    pub row_groups: usize,
}

impl Manifest {
    /// The manifest as stored: pretty JSON, ending with a newline.
    pub fn to_json(&self) -> Result<String, String> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        Ok(text)
    }

    /// Parses a stored manifest; refuses another format or a newer layout.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!(
                "format is {:?}, expected {MANIFEST_FORMAT:?}",
                manifest.format
            ));
        }
        if manifest.format_version > MANIFEST_VERSION {
            return Err(format!(
                "format_version {} is newer than this version reads ({MANIFEST_VERSION})",
                manifest.format_version
            ));
        }
        Ok(manifest)
    }
}
