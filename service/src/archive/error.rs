//! What archiving and restoring can fail with: which partition, which step,
//! and why, in one line an operator can act on.

use std::fmt;

use crate::error::ServiceError;

/// The steps of archiving and restoring a partition, in the order they run.
/// An [`ArchiveError`] names the one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Finding the partition, its bounds, columns and primary key, the
    /// schema version; refusing what cannot be archived (resting orders, a
    /// column type the archive has no form for).
    Inspect,
    /// Reading the partition's rows from the database.
    ReadRows,
    /// Encoding the rows as Parquet.
    Encode,
    /// Sending a part of the Parquet file to the store.
    Upload,
    /// Completing the multipart upload (the file appears in the store).
    CompleteUpload,
    /// Writing the manifest next to the file.
    WriteManifest,
    /// Reading (or parsing) a manifest from the store.
    ReadManifest,
    /// Reading the file back: size, file hash, row count and row checksum
    /// against the manifest.
    VerifyFile,
    /// The partition's rows in the database (under a lock) against the
    /// manifest: row count and row checksum.
    VerifyDatabase,
    /// Detaching and dropping the partition (and pruning the candles of
    /// dropped trades).
    Drop,
    /// Restore: checking and creating the target (the partition with its
    /// original bounds, or the side table).
    PrepareTarget,
    /// Restore: inserting the archived rows.
    Load,
    /// Restore: the loaded rows' count and checksum against the manifest.
    VerifyRestore,
}

impl Step {
    /// The step's name as errors and logs show it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Inspect => "inspect",
            Step::ReadRows => "read rows",
            Step::Encode => "encode Parquet",
            Step::Upload => "upload",
            Step::CompleteUpload => "complete upload",
            Step::WriteManifest => "write manifest",
            Step::ReadManifest => "read manifest",
            Step::VerifyFile => "verify file",
            Step::VerifyDatabase => "verify against the database",
            Step::Drop => "detach and drop",
            Step::PrepareTarget => "prepare target",
            Step::Load => "load rows",
            Step::VerifyRestore => "verify restored rows",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What archiving or restoring failed with. The messages are whole sentences
/// without a separate source: the cause's text is part of `reason`, so a
/// one-line error report (`error: …`) says everything once.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A name or setting the caller gave is unusable (a partition name that is
    /// not one of `orders`/`trades`, a side table name that is not a plain
    /// identifier, an archive URL of an unsupported kind).
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },

    /// The archive store cannot be opened or listed.
    #[error("archive store {store}: {reason}")]
    Store { store: String, reason: String },

    /// Archiving one partition failed at `step`. The partition is still in
    /// the database with all its rows: nothing is dropped before the file,
    /// the manifest and the database all agree.
    #[error(
        "archiving {partition} failed at step \"{step}\": {reason}; the partition was left in place"
    )]
    Archive {
        partition: String,
        step: Step,
        reason: String,
    },

    /// Restoring one partition failed at `step`; nothing of it was loaded
    /// (the load is one transaction, and a partition the restore created is
    /// dropped again).
    #[error("restoring {partition} failed at step \"{step}\": {reason}")]
    Restore {
        partition: String,
        step: Step,
        reason: String,
    },

    /// Listing the partitions due for retention failed.
    #[error("listing the partitions due for retention failed: {0}")]
    Due(ServiceError),
}

impl ArchiveError {
    /// The step that failed, for the errors of one partition.
    pub fn step(&self) -> Option<Step> {
        match self {
            ArchiveError::Archive { step, .. } | ArchiveError::Restore { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The partition the error is about, when it is about one.
    pub fn partition(&self) -> Option<&str> {
        match self {
            ArchiveError::Archive { partition, .. } | ArchiveError::Restore { partition, .. } => {
                Some(partition)
            }
            _ => None,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> ArchiveError {
        ArchiveError::Invalid {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Builds the error of one partition's step: `failed(step, reason)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failing<'a> {
    pub(crate) partition: &'a str,
    pub(crate) restoring: bool,
}

impl Failing<'_> {
    pub(crate) fn at(&self, step: Step, reason: impl fmt::Display) -> ArchiveError {
        let (partition, reason) = (self.partition.to_owned(), reason.to_string());
        if self.restoring {
            ArchiveError::Restore {
                partition,
                step,
                reason,
            }
        } else {
            ArchiveError::Archive {
                partition,
                step,
                reason,
            }
        }
    }

    /// A database error at `step`, in the service's words (a lock timeout
    /// says so).
    pub(crate) fn db(&self, step: Step, err: impl Into<ServiceError>) -> ArchiveError {
        self.at(step, err.into())
    }
}
