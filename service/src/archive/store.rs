//! Where archives live: a local folder or any `object_store` store, under a
//! prefix; the streaming upload of a file in parts; reading manifests.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use sha2::{Digest, Sha256};
use url::Url;

use super::error::ArchiveError;
use super::manifest::Manifest;
use super::rows::hex;

/// Where the archive store is, as the api's settings give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local folder (`ARCHIVE_DIR`), created when missing.
    Dir(PathBuf),
    /// An object store URL (`ARCHIVE_URL`): `s3://bucket/prefix` (also
    /// `s3a://`, and `https://` URLs of S3 endpoints), `file:///absolute/path`
    /// or `memory://` (a store in this process's memory, for tests).
    Url(Url),
}

impl Location {
    /// Parses and checks an archive URL with `object_store`'s URL rules,
    /// keeping only the kinds this build can open (local files, memory, S3).
    pub fn parse_url(text: &str) -> Result<Location, ArchiveError> {
        let invalid = |reason: &str| ArchiveError::invalid("archive URL", redact(text), reason);
        let url = Url::parse(text.trim()).map_err(|e| {
            invalid(&format!(
                "{e}: expected s3://bucket/prefix, file:///absolute/path or memory://"
            ))
        })?;
        let (scheme, _) = ObjectStoreScheme::parse(&url).map_err(|e| {
            invalid(&format!(
                "{e}: expected s3://bucket/prefix, file:///absolute/path or memory://"
            ))
        })?;
        match scheme {
            ObjectStoreScheme::Local => {
                url.to_file_path().map_err(|()| {
                    invalid("a file:// URL needs an absolute path, e.g. file:///var/lib/archive")
                })?;
            }
            ObjectStoreScheme::Memory | ObjectStoreScheme::AmazonS3 => {}
            _ => {
                return Err(invalid(
                    "only S3 (s3://bucket/prefix) and local folders (file:///path) are built \
                     in, and memory:// for tests",
                ));
            }
        }
        Ok(Location::Url(url))
    }

    /// Whether this is an in-memory store (gone when the process exits).
    pub fn is_memory(&self) -> bool {
        matches!(self, Location::Url(url) if url.scheme() == "memory")
    }
}

impl fmt::Display for Location {
    /// The folder, or the URL without a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Url(url) => f.write_str(&redact(url.as_str())),
        }
    }
}

/// `text` with a URL's password replaced by `***`.
fn redact(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// The default size of an upload's parts: within S3's 5 MiB to 5 GiB, and
/// what a part costs in memory while it is sent.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// The smallest part size [`Store::with_part_size`] takes (S3 itself refuses
/// parts under 5 MiB but the last; local folders and memory take any size).
pub const MIN_PART_SIZE: usize = 1024;

/// The file of one partition and its manifest, relative to the store's prefix:
/// `<table>/<partition>.parquet` and `<table>/<partition>.manifest.json`.
pub(crate) fn relative_data_path(table: &str, partition: &str) -> String {
    format!("{table}/{partition}.parquet")
}

const MANIFEST_SUFFIX: &str = ".manifest.json";

/// An archive store: an `object_store` store and the prefix archives go
/// under. Cloning is cheap (the store is shared).
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    description: String,
    local: bool,
    part_size: usize,
}

impl Store {
    /// Opens `location`: a folder ([`Store::open_dir`]) or a URL
    /// ([`Store::open_url`]).
    pub fn open(location: &Location) -> Result<Store, ArchiveError> {
        match location {
            Location::Dir(dir) => Store::open_dir(dir),
            Location::Url(url) => Store::open_parsed_url(url),
        }
    }

    /// A local folder, created (with its parents) when missing. Files are
    /// written to a temporary name and renamed when complete, and synced to
    /// disk before the rename: a partition is dropped only after its archive
    /// is durable.
    pub fn open_dir(dir: impl AsRef<std::path::Path>) -> Result<Store, ArchiveError> {
        let dir = dir.as_ref();
        let store_error = |reason: String| ArchiveError::Store {
            store: dir.display().to_string(),
            reason,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(store_error(
                "exists and is not a folder (ARCHIVE_DIR must name a folder)".to_owned(),
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| store_error(format!("cannot create the folder: {e}")))?;
        let local = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| store_error(e.to_string()))?
            .with_fsync(true);
        let description = std::fs::canonicalize(dir)
            .map_or_else(|_| dir.display().to_string(), |p| p.display().to_string());
        Ok(Store {
            inner: Arc::new(local),
            prefix: Path::default(),
            description,
            local: true,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// An object store URL (see [`Location::parse_url`]). S3 reads its
    /// settings from the `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible
    /// services, …), as `object_store`'s `AmazonS3Builder::from_env` names them.
    pub fn open_url(url: &str) -> Result<Store, ArchiveError> {
        match Location::parse_url(url)? {
            Location::Url(url) => Store::open_parsed_url(&url),
            Location::Dir(dir) => Store::open_dir(dir),
        }
    }

    fn open_parsed_url(url: &Url) -> Result<Store, ArchiveError> {
        if url.scheme() == "file" {
            let dir = url.to_file_path().map_err(|()| {
                ArchiveError::invalid(
                    "archive URL",
                    url.as_str(),
                    "a file:// URL needs an absolute path",
                )
            })?;
            return Store::open_dir(dir);
        }
        let aws = std::env::vars()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .map(|(key, value)| (key.to_ascii_lowercase(), value));
        let (inner, prefix) =
            object_store::parse_url_opts(url, aws).map_err(|e| ArchiveError::Store {
                store: redact(url.as_str()),
                reason: e.to_string(),
            })?;
        Ok(Store {
            inner: Arc::from(inner),
            prefix,
            description: redact(url.as_str()),
            local: false,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// Any `object_store` store, archives under `prefix` (`""` for its root);
    /// `description` is how messages name it.
    pub fn from_object_store(
        inner: Arc<dyn ObjectStore>,
        prefix: &str,
        description: impl Into<String>,
    ) -> Result<Store, ArchiveError> {
        let description = description.into();
        let prefix = Path::parse(prefix).map_err(|e| ArchiveError::Store {
            store: description.clone(),
            reason: format!("prefix {prefix:?}: {e}"),
        })?;
        Ok(Store {
            inner,
            prefix,
            description,
            local: false,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// A store in this process's memory (`memory://`): for tests.
    pub fn memory() -> Store {
        Store {
            inner: Arc::new(InMemory::new()),
            prefix: Path::default(),
            description: "memory://".to_owned(),
            local: false,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Uploads in parts of `bytes` (default [`DEFAULT_PART_SIZE`], at least
    /// [`MIN_PART_SIZE`]; S3 needs 5 MiB or more).
    pub fn with_part_size(mut self, bytes: usize) -> Store {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// Whether the store is a local folder (listing it is cheap).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The underlying `object_store` store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Where a path relative to the store's root is.
    pub(crate) fn path(&self, relative: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    pub(crate) fn manifest_path(&self, table: &str, partition: &str) -> Path {
        self.path(&format!("{table}/{partition}{MANIFEST_SUFFIX}"))
    }

    /// The manifest of `partition`: `Ok(None)` when there is none,
    /// `Ok(Some(Err(why)))` when there is one that does not parse, `Err` when
    /// the store could not be read.
    pub(crate) async fn read_manifest(
        &self,
        table: &str,
        partition: &str,
    ) -> Result<Option<Result<Manifest, String>>, String> {
        let path = self.manifest_path(table, partition);
        let bytes = match self.inner.get(&path).await {
            Ok(found) => found.bytes().await.map_err(|e| format!("{path}: {e}"))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(format!("{path}: {e}")),
        };
        Ok(Some(
            Manifest::from_json(&bytes).map_err(|e| format!("{path}: {e}")),
        ))
    }

    pub(crate) async fn write_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        let path = self.manifest_path(&manifest.table, &manifest.partition);
        let json = manifest.to_json()?;
        self.inner
            .put(&path, PutPayload::from(Bytes::from(json)))
            .await
            .map(|_| ())
            .map_err(|e| format!("{path}: {e}"))
    }

    /// The size of the object at `relative`, `None` when there is none.
    pub(crate) async fn size(&self, relative: &str) -> Result<Option<u64>, String> {
        let path = self.path(relative);
        match self.inner.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("{path}: {e}")),
        }
    }

    /// SHA-256 of the object at `relative`, streamed (never held whole).
    pub(crate) async fn file_sha256(&self, relative: &str) -> Result<(u64, String), String> {
        let path = self.path(relative);
        let found = self
            .inner
            .get(&path)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let mut stream = found.into_stream();
        let (mut sha, mut bytes) = (Sha256::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("{path}: {e}"))?;
            bytes += chunk.len() as u64;
            sha.update(&chunk);
        }
        Ok((bytes, hex(&sha.finalize())))
    }

    /// The names of the partitions that have a manifest, by table
    /// (`orders_2021_06`, …): one listing, no manifest read.
    pub async fn archived_partitions(&self) -> Result<BTreeSet<String>, ArchiveError> {
        let mut names = BTreeSet::new();
        for path in self.list_manifests().await? {
            if let Some(name) = path
                .filename()
                .and_then(|f| f.strip_suffix(MANIFEST_SUFFIX))
            {
                names.insert(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Every manifest's path under the store's prefix.
    pub(crate) async fn list_manifests(&self) -> Result<Vec<Path>, ArchiveError> {
        let mut paths = Vec::new();
        for table in super::TABLES {
            let prefix = self.path(table);
            let mut listing = self.inner.list(Some(&prefix));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| ArchiveError::Store {
                    store: self.description.clone(),
                    reason: format!("listing {prefix}: {e}"),
                })?;
                if meta.location.as_ref().ends_with(MANIFEST_SUFFIX) {
                    paths.push(meta.location);
                }
            }
        }
        paths.sort();
        Ok(paths)
    }

    pub(crate) async fn read_manifest_at(&self, path: &Path) -> Result<Manifest, String> {
        let bytes = self
            .inner
            .get(path)
            .await
            .map_err(|e| format!("{path}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        Manifest::from_json(&bytes).map_err(|e| format!("{path}: {e}"))
    }

    /// Starts the upload of the file at `relative`.
    pub(crate) async fn upload(&self, relative: &str) -> Result<Upload, String> {
        let path = self.path(relative);
        let parts = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| format!("starting the upload of {path}: {e}"))?;
        Ok(Upload {
            path,
            parts,
            pending: Vec::new(),
            part_size: self.part_size,
            sent: 0,
            part: 0,
            sha: Sha256::new(),
        })
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// How an upload failed: a part (with how far it had got) or the completion.
#[derive(Debug)]
pub(crate) enum UploadError {
    Part(String),
    Complete(String),
}

/// A streaming (multipart) upload: bytes are sent in parts of the store's
/// part size as they come, one part in flight, so at most one part and the
/// bytes not yet making a whole part are held in memory.
pub(crate) struct Upload {
    path: Path,
    parts: Box<dyn MultipartUpload>,
    pending: Vec<u8>,
    part_size: usize,
    sent: u64,
    part: usize,
    sha: Sha256,
}

impl Upload {
    /// Adds `bytes` to the file, sending every whole part.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        self.sha.update(bytes);
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= self.part_size {
            let rest = self.pending.split_off(self.part_size);
            let part = std::mem::replace(&mut self.pending, rest);
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, part: Vec<u8>) -> Result<(), UploadError> {
        let len = part.len() as u64;
        self.part += 1;
        let sent = self
            .parts
            .put_part(PutPayload::from(Bytes::from(part)))
            .await;
        if let Err(e) = sent {
            return Err(UploadError::Part(format!(
                "part {} of {} ({} bytes sent before it): {e}",
                self.part, self.path, self.sent
            )));
        }
        self.sent += len;
        Ok(())
    }

    /// Sends the last part and completes the upload: only now does the file
    /// appear in the store. Returns its size and SHA-256.
    pub(crate) async fn finish(mut self) -> Result<(u64, String), (UploadError, Upload)> {
        if !self.pending.is_empty() || self.part == 0 {
            let last = std::mem::take(&mut self.pending);
            if let Err(e) = self.send(last).await {
                return Err((e, self));
            }
        }
        if let Err(e) = self.parts.complete().await {
            let message = format!("{}: {e}", self.path);
            return Err((UploadError::Complete(message), self));
        }
        let sha = std::mem::take(&mut self.sha);
        Ok((self.sent, hex(&sha.finalize())))
    }

    /// Gives the upload up (best effort: the store's parts are discarded; a
    /// failure to is only logged, since the file never appeared).
    pub(crate) async fn abort(mut self) {
        if let Err(error) = self.parts.abort().await {
            tracing::debug!(path = %self.path, %error, "aborting an archive upload");
        }
    }
}

/// Reads a Parquet file of the store by ranges, for the Parquet decoder:
/// the footer first, then one row group's column chunks at a time.
pub(crate) struct FileReader {
    inner: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

/// How much of a file's end the first read takes, to get the footer (and
/// usually the whole metadata) in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;

impl Store {
    /// A reader of the file at `relative`, of `size` bytes.
    pub(crate) fn file_reader(&self, relative: &str, size: u64) -> FileReader {
        FileReader {
            inner: self.inner.clone(),
            path: self.path(relative),
            size,
        }
    }
}

impl AsyncFileReader for FileReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.inner
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.inner
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
