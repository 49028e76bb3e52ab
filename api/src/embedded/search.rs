//! Finding the PostgreSQL server binaries.

use super::*;

#[derive(Debug, Clone, Default)]
pub struct SearchPaths {
    /// `PG_BIN_DIR`: when set, the only folder searched.
    pub bin_dir_override: Option<PathBuf>,
    /// The folders of `PATH`, in order; also where `pg_config` is looked for,
    /// whose `--bindir` is tried next.
    pub path_dirs: Vec<PathBuf>,
    /// The usual install folders, tried last, in order.
    pub usual_dirs: Vec<PathBuf>,
}

impl SearchPaths {
    /// `PG_BIN_DIR` (ignored when empty), `PATH`, and those of the usual install
    /// folders that exist, newest version first: `/usr/lib/postgresql/*/bin`,
    /// `/usr/local/pgsql/bin`, `/opt/homebrew/opt/postgresql@*/bin`,
    /// `/usr/local/opt/postgresql@*/bin`,
    /// `/Applications/Postgres.app/Contents/Versions/latest/bin`, `/usr/pgsql-*/bin`.
    pub fn from_environment() -> Self {
        let bin_dir_override = std::env::var_os("PG_BIN_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        let path_dirs = path_dirs();
        let mut usual_dirs = versioned_dirs(Path::new("/usr/lib/postgresql"), "");
        usual_dirs.push("/usr/local/pgsql/bin".into());
        usual_dirs.extend(versioned_dirs(
            Path::new("/opt/homebrew/opt"),
            "postgresql@",
        ));
        usual_dirs.extend(versioned_dirs(Path::new("/usr/local/opt"), "postgresql@"));
        usual_dirs.push("/Applications/Postgres.app/Contents/Versions/latest/bin".into());
        usual_dirs.extend(versioned_dirs(Path::new("/usr"), "pgsql-"));
        usual_dirs.retain(|dir| dir.is_dir());
        Self {
            bin_dir_override,
            path_dirs,
            usual_dirs,
        }
    }
}

pub(super) fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `<parent>/<prefix><version>/bin` for every numeric version, newest first.
pub(super) fn versioned_dirs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?;
            let key = version
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|left, right| right.0.cmp(&left.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// The folder holding `initdb` and `pg_ctl` (symbolic links on `PATH` are
/// followed to the real install folder), or
/// [`EmbeddedError::NoServerBinaries`] listing every folder tried.
///
/// ```
/// use api::embedded::{EmbeddedError, SearchPaths, find_server_binaries};
///
/// let nowhere = SearchPaths::default();
/// assert!(matches!(
///     find_server_binaries(&nowhere),
///     Err(EmbeddedError::NoServerBinaries { .. })
/// ));
/// ```
pub fn find_server_binaries(search: &SearchPaths) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = &search.bin_dir_override {
        return server_bin_dir(dir).ok_or_else(|| EmbeddedError::NoServerBinaries {
            searched: vec![dir.clone()],
        });
    }
    let mut searched = Vec::new();
    let pg_config_dir = pg_config_bindir(&search.path_dirs);
    let candidates = search
        .path_dirs
        .iter()
        .chain(pg_config_dir.iter())
        .chain(search.usual_dirs.iter());
    for dir in candidates {
        if let Some(found) = server_bin_dir(dir) {
            return Ok(found);
        }
        searched.push(dir.clone());
    }
    Err(EmbeddedError::NoServerBinaries { searched })
}

pub(super) fn server_bin_dir(dir: &Path) -> Option<PathBuf> {
    if !has_server_binaries(dir) {
        return None;
    }
    let real = fs::canonicalize(dir.join("initdb"))
        .ok()
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|real| has_server_binaries(real));
    Some(real.unwrap_or_else(|| dir.to_path_buf()))
}

pub(super) fn has_server_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

pub(super) fn is_executable(file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

pub(super) fn find_program(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|file| is_executable(file))
}

pub(super) fn pg_config_bindir(path_dirs: &[PathBuf]) -> Option<PathBuf> {
    let pg_config = find_program("pg_config", path_dirs)?;
    let output = std::process::Command::new(&pg_config)
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}
