//! The migrated template: one database per day and migration source, migrated
//! once and then copied by every [`TestDb::migrated`](super::TestDb::migrated).
//!
//! Test binaries (and, under nextest, single tests) run in separate processes,
//! so the build is coordinated through the server: whoever holds the advisory
//! lock [`TEMPLATE_LOCK_KEY`] on the admin database checks for the template and
//! builds it if missing. Inside a process the outcome is memoised, as a name
//! only: each `#[tokio::test]` has its own runtime, and a pool must not outlive
//! the runtime it was opened on.

use std::path::{Path, PathBuf};

use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::OnceCell;

use super::server::{self, quote_ident};

/// Session advisory lock serialising template builds across processes: the
/// ASCII bytes of `te_templ`. Distinct from the migrator's own lock, which is
/// taken in the database being migrated.
const TEMPLATE_LOCK_KEY: i64 = i64::from_be_bytes(*b"te_templ");

/// Prefix of every template; older ones (another day, other migrations) are
/// dropped once a new one is built.
const TEMPLATE_PREFIX: &str = "te_tpl_";

/// The template's name, building it on first use in this process. Panics with
/// the reason when it cannot be built; later callers get the same message
/// without trying again.
pub(crate) async fn template() -> String {
    static TEMPLATE: OnceCell<Result<String, String>> = OnceCell::const_new();
    match TEMPLATE.get_or_init(prepare).await {
        Ok(name) => name.clone(),
        Err(reason) => panic!("the migrated template database could not be prepared: {reason}"),
    }
}

async fn prepare() -> Result<String, String> {
    let fingerprint = migration_fingerprint()?;
    let admin = server::admin_session()
        .await
        .map_err(|err| format!("cannot connect to the admin database of DATABASE_URL: {err}"))?;
    let outcome = prepare_locked(&admin, &fingerprint).await;
    // Ending the session also releases the lock if unlocking was skipped.
    let _ = admin.close().await;
    outcome
}

async fn prepare_locked(admin: &DatabaseConnection, fingerprint: &str) -> Result<String, String> {
    admin
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_lock($1)",
            [TEMPLATE_LOCK_KEY.into()],
        ))
        .await
        .map_err(|err| format!("cannot take the template lock: {err}"))?;
    // The date is read under the lock, so a build straddling midnight is named
    // after the day its partitions were created for.
    let outcome = match utc_day(admin).await {
        Ok(day) => {
            let name = format!("{TEMPLATE_PREFIX}{day}_{fingerprint}");
            ensure(admin, &name).await.map(|()| name)
        }
        Err(err) => Err(err),
    };
    let _ = admin
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_unlock($1)",
            [TEMPLATE_LOCK_KEY.into()],
        ))
        .await;
    outcome
}

/// Builds `name` unless it exists. Runs under the template lock.
async fn ensure(admin: &DatabaseConnection, name: &str) -> Result<(), String> {
    if database_exists(admin, name).await? {
        return Ok(());
    }
    let build = format!("{name}_build");
    // A leftover of a run that died mid-build; nobody else builds while we hold the lock.
    execute(
        admin,
        &format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&build)
        ),
    )
    .await?;
    execute(
        admin,
        &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&build)),
    )
    .await?;
    if let Err(err) = migrate(&build).await {
        let _ = execute(
            admin,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&build)
            ),
        )
        .await;
        return Err(err);
    }
    // Copying fails while anyone is connected to the template, so nobody may
    // connect again; the rename publishes the finished template atomically.
    execute(
        admin,
        &format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            quote_ident(&build)
        ),
    )
    .await?;
    execute(
        admin,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&build),
            quote_ident(name)
        ),
    )
    .await?;
    drop_stale_templates(admin, name).await;
    Ok(())
}

async fn migrate(build: &str) -> Result<(), String> {
    let db = server::connect(&server::database_url(build))
        .await
        .map_err(|err| format!("cannot connect to {build}: {err}"))?;
    let migrated = migration::Migrator::up(&db, None).await;
    // Closed before the rename, which waits for the database to have no sessions.
    let closed = db.close().await;
    migrated.map_err(|err| format!("migrating {build} failed: {err}"))?;
    closed.map_err(|err| format!("closing the pool on {build} failed: {err}"))
}

/// Drops templates of other days or migration sources. Failures are only
/// reported: another process may be copying one right now.
async fn drop_stale_templates(admin: &DatabaseConnection, current: &str) {
    let stale = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            r"SELECT datname FROM pg_database WHERE datname LIKE 'te\_tpl\_%' AND datname <> $1",
            [current.into()],
        ))
        .await;
    let Ok(stale) = stale else { return };
    for row in stale {
        let Ok(name) = row.try_get_by_index::<String>(0) else {
            continue;
        };
        if let Err(err) = execute(
            admin,
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(&name)),
        )
        .await
        {
            eprintln!("note: stale template database {name} was not dropped: {err}");
        }
    }
}

async fn database_exists(admin: &DatabaseConnection, name: &str) -> Result<bool, String> {
    admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .map(|row| row.is_some())
        .map_err(|err| format!("cannot look for {name}: {err}"))
}

async fn utc_day(admin: &DatabaseConnection) -> Result<String, String> {
    let row = admin
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')",
        ))
        .await
        .map_err(|err| format!("cannot read the server's date: {err}"))?;
    row.ok_or_else(|| "the server returned no date".to_owned())?
        .try_get_by_index::<String>(0)
        .map_err(|err| format!("cannot read the server's date: {err}"))
}

async fn execute(admin: &DatabaseConnection, sql: &str) -> Result<(), String> {
    admin
        .execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(|err| format!("{sql}: {err}"))
}

/// A hash of the migration crate's sources (`../migration/src`, every file,
/// sorted by path), so changing a migration builds a new template.
fn migration_fingerprint() -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migration/src");
    let mut files = Vec::new();
    collect_files(&root, &mut files)?;
    files.sort();
    let mut hash = Fnv1a::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap_or(path);
        let contents =
            std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        // Length-prefixed, so moving bytes between name and contents changes the hash.
        for part in [relative.to_string_lossy().as_bytes(), contents.as_slice()] {
            hash.write(&(part.len() as u64).to_le_bytes());
            hash.write(part);
        }
    }
    Ok(format!("{:016x}", hash.finish()))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|err| format!("cannot list {}: {err}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// 64-bit FNV-1a: tiny, stable across Rust versions and platforms (unlike
/// `DefaultHasher`), and plenty to tell migration sources apart.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv(bytes: &[u8]) -> u64 {
        let mut hash = Fnv1a::new();
        hash.write(bytes);
        hash.finish()
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_lock_key_is_not_the_migrators() {
        assert_ne!(TEMPLATE_LOCK_KEY, migration::MIGRATION_LOCK_KEY);
    }
}
