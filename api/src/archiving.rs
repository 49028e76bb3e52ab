//! Archiving partitions past retention, as the api runs it: the store of
//! `ARCHIVE_DIR` / `ARCHIVE_URL`, the `api archive` commands, the hourly run
//! of `ARCHIVE_ON_SCHEDULE`, and the `trade_engine_partitions_due_for_archiving`
//! gauge. The work itself is `service::archive`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection};
use service::archive::{
    self, ArchiveError, ArchiveState, Archived, DuePartition, Options, RestoreTarget, Store,
};

use crate::config::Config;

/// How long a listing of a remote store serves the gauge before a scrape
/// lists it again (a local folder is listed on every scrape: it is cheap).
pub const LISTING_TTL: Duration = Duration::from_secs(600);

/// What to say when a command needs a store and none is configured.
pub const NO_STORE: &str = "no archive store is configured: set ARCHIVE_DIR=/path/to/folder \
     or ARCHIVE_URL=s3://bucket/prefix (in the environment or .env)";

/// The configured archive store, with what the api remembers of it.
#[derive(Debug)]
pub struct Archiving {
    store: Store,
    on_schedule: bool,
    options: Options,
    /// The partitions with a manifest, as last listed, and when.
    listed: Mutex<Option<(Instant, BTreeSet<String>)>>,
}

impl Archiving {
    /// The store of `config`, opened (a folder is created when missing);
    /// `None` without `ARCHIVE_DIR` or `ARCHIVE_URL`.
    pub fn open(config: &Config) -> Result<Option<Arc<Archiving>>, ArchiveError> {
        let Some(location) = &config.archive else {
            return Ok(None);
        };
        let store = Store::open(location)?;
        Ok(Some(Arc::new(Archiving {
            store,
            on_schedule: config.archive_on_schedule,
            options: Options {
                lock_timeout: config.job_lock_timeout,
                ..Options::default()
            },
            listed: Mutex::new(None),
        })))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `ARCHIVE_ON_SCHEDULE`.
    pub fn on_schedule(&self) -> bool {
        self.on_schedule
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Lists the store's manifests now and remembers them.
    pub async fn refresh(&self) -> Result<BTreeSet<String>, ArchiveError> {
        let names = self.store.archived_partitions().await?;
        if let Ok(mut listed) = self.listed.lock() {
            *listed = Some((Instant::now(), names.clone()));
        }
        Ok(names)
    }

    /// The partitions with a manifest: listed now for a local folder, or
    /// when the last listing is older than [`LISTING_TTL`]; else the last
    /// listing.
    async fn archived(&self) -> Result<BTreeSet<String>, ArchiveError> {
        if !self.store.is_local() {
            let cached = self.listed.lock().ok().and_then(|listed| {
                listed
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() < LISTING_TTL)
                    .map(|(_, names)| names.clone())
            });
            if let Some(names) = cached {
                return Ok(names);
            }
        }
        self.refresh().await
    }

    /// Per table (`orders`, `trades`), the partitions due for retention that
    /// have no archive in the store: what `archive --execute` would export.
    pub async fn due_for_archiving<C: ConnectionTrait>(
        &self,
        db: &C,
    ) -> Result<BTreeMap<String, usize>, ArchiveError> {
        let due = archive::due(db).await?;
        let archived = self.archived().await?;
        Ok(count_by_table(
            due.iter()
                .filter(|d| !archived.contains(&d.partition_name))
                .map(|d| d.parent_table.as_str()),
        ))
    }

    /// The scheduled run: archive, verify and drop what is due.
    pub async fn run(&self, db: &DatabaseConnection) -> Result<Vec<Archived>, ArchiveError> {
        let outcome = archive::archive_due_with(db, &self.store, true, &self.options).await;
        // Whatever happened, the store changed: the gauge lists it again.
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "listing the archive store after archiving");
        }
        outcome
    }
}

/// Counts per table, with both tables present (0 when none).
pub fn count_by_table<'a>(tables: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = ["orders", "trades"]
        .into_iter()
        .map(|t| (t.to_owned(), 0))
        .collect();
    for table in tables {
        *counts.entry(table.to_owned()).or_default() += 1;
    }
    counts
}

/// Why the gauge's count failed: the database (behind a transaction-mode
/// pooler the count runs in a unit of work) or the store.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// An `api archive` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// What is due and its archive state; with `execute`, archive, verify
    /// and drop it.
    Due { execute: bool },
    /// Every archive in the store.
    List,
    /// Load an archive back.
    Restore {
        partition: String,
        into: Option<String>,
    },
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn state_text(state: &ArchiveState) -> String {
    match state {
        ArchiveState::Missing => "not archived".to_owned(),
        ArchiveState::Archived {
            rows,
            bytes,
            created_at,
        } => format!(
            "archived ({rows} rows, {}, {})",
            size(*bytes),
            created_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        ArchiveState::Damaged { reason } => format!("DAMAGED: {reason}"),
    }
}

fn bounds(partition: &DuePartition) -> String {
    let day = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d").to_string();
    format!(
        "{} .. {}",
        partition.range_start.map_or_else(|| "?".to_owned(), day),
        day(partition.range_end)
    )
}

/// Runs `command` against `db` and the configured store (`None`: none
/// configured), writing its summary to `out`. A failure is returned for the
/// caller to print as one line.
pub async fn run_command(
    command: &Command,
    db: &DatabaseConnection,
    archiving: Option<&Archiving>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        Command::Due { execute } => due(*execute, db, archiving, out).await,
        Command::List => {
            let archiving = archiving.ok_or_else(|| anyhow::anyhow!(NO_STORE))?;
            list(archiving.store(), out).await
        }
        Command::Restore { partition, into } => {
            let archiving = archiving.ok_or_else(|| anyhow::anyhow!(NO_STORE))?;
            let target = match into {
                Some(table) => RestoreTarget::SideTable(table.clone()),
                None => RestoreTarget::Original,
            };
            let restored = archive::restore_with(
                db,
                archiving.store(),
                partition,
                target,
                archiving.options(),
            )
            .await?;
            let how = if restored.created_partition {
                " (partition re-created with its original bounds)"
            } else if into.is_none() {
                " (into the existing, empty partition)"
            } else {
                " (a new side table, attached to nothing)"
            };
            writeln!(
                out,
                "restored {} into {}{how}: {} rows, checksum {} verified against the manifest",
                restored.partition, restored.table, restored.rows, restored.checksum
            )?;
            for name in &restored.dropped_empty {
                writeln!(out, "  dropped the empty overlapping partition {name}")?;
            }
            if into.is_none() {
                writeln!(
                    out,
                    "note: the partition is past retention: the next `api archive --execute` (or \
                     the scheduled run) drops it again; restore with --into <table> to keep a copy"
                )?;
            }
            Ok(())
        }
    }
}

async fn due(
    execute: bool,
    db: &DatabaseConnection,
    archiving: Option<&Archiving>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let Some(archiving) = archiving else {
        if execute {
            anyhow::bail!("{NO_STORE}; nothing was archived or dropped");
        }
        let due = archive::due(db).await?;
        writeln!(out, "archive store: none ({NO_STORE})")?;
        writeln!(out, "partitions past retention: {}", due.len())?;
        for d in &due {
            writeln!(
                out,
                "  {:<20} {:<7} {}  not archived",
                d.partition_name,
                d.parent_table,
                bounds(d)
            )?;
        }
        return Ok(());
    };
    let store = archiving.store();
    writeln!(out, "archive store: {store}")?;
    if !execute {
        let plan = archive::plan(db, store).await?;
        writeln!(out, "partitions past retention: {}", plan.len())?;
        for entry in &plan {
            writeln!(
                out,
                "  {:<20} {:<7} {}  {}",
                entry.partition.partition_name,
                entry.partition.parent_table,
                bounds(&entry.partition),
                state_text(&entry.state)
            )?;
        }
        if plan.is_empty() {
            writeln!(out, "nothing is due")?;
        } else {
            writeln!(
                out,
                "dry run: nothing was exported or dropped; `api archive --execute` archives, \
                 verifies and drops them"
            )?;
        }
        return Ok(());
    }
    let done = archive::archive_due_with(db, store, true, archiving.options()).await;
    if let Err(error) = archiving.refresh().await {
        tracing::warn!(%error, "listing the archive store after archiving");
    }
    let done = done?;
    for entry in &done {
        let (rows, bytes) = entry
            .manifest
            .as_ref()
            .map_or((0, 0), |m| (m.rows, m.file.bytes));
        let how = if entry.exported {
            "exported"
        } else {
            "already archived"
        };
        writeln!(
            out,
            "  {:<20} {how}: {rows} rows, {}; verified; dropped",
            entry.partition.partition_name,
            size(bytes)
        )?;
    }
    writeln!(
        out,
        "archived and dropped {} partition(s) past retention",
        done.len()
    )?;
    Ok(())
}

async fn list(store: &Store, out: &mut impl Write) -> anyhow::Result<()> {
    let listed = archive::list(store).await?;
    writeln!(out, "archive store: {store}")?;
    writeln!(out, "archives: {}", listed.len())?;
    for entry in &listed {
        match &entry.manifest {
            Ok(m) => writeln!(
                out,
                "  {:<20} {:<7} {} .. {}  {} rows  {}  archived {}  (migration {})",
                m.partition,
                m.table,
                m.range_start.format("%Y-%m-%d"),
                m.range_end.format("%Y-%m-%d"),
                m.rows,
                size(m.file.bytes),
                m.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                m.schema.migration
            )?,
            Err(reason) => writeln!(out, "  {}  UNREADABLE: {reason}", entry.path)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_short_and_counts_name_both_tables() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(5 * 1024 * 1024 + 1024 * 512), "5.5 MiB");
        let counts = count_by_table(["trades", "trades"].into_iter());
        assert_eq!(counts.get("orders"), Some(&0));
        assert_eq!(counts.get("trades"), Some(&2));
    }
}
