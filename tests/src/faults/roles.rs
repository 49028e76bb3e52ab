//! The least-privilege roles of `scripts/roles.sql`, created for one test
//! database under names of their own and dropped afterwards.

use std::path::Path;
use std::process::Command;

use crate::db::TestDb;

/// The application and analytics roles, applied to one database by `psql`
/// running `scripts/roles.sql`. Drop it after the database (declare it
/// before the [`TestDb`]): a role with grants in a live database cannot be
/// dropped.
pub struct Roles {
    pub app: String,
    pub analytics: String,
    admin_url: String,
}

/// The password both roles get (the test servers trust loopback anyway).
const PASSWORD: &str = "reliability-test-password";

impl Roles {
    /// Runs the script with psql as the database's owner, under role names
    /// unique to this test.
    pub fn apply(db: &TestDb) -> Roles {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let roles = Roles {
            app: format!("te_app_{}", &suffix[..12]),
            analytics: format!("te_ro_{}", &suffix[..12]),
            admin_url: db.url().to_owned(),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/roles.sql");
        let output = Command::new("psql")
            .arg(db.url())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg("-v")
            .arg(format!("app_role={}", roles.app))
            .arg("-v")
            .arg(format!("app_password={PASSWORD}"))
            .arg("-v")
            .arg(format!("analytics_role={}", roles.analytics))
            .arg("-v")
            .arg(format!("analytics_password={PASSWORD}"))
            .arg("-f")
            .arg(&script)
            .output()
            .unwrap_or_else(|err| panic!("psql runs (is the PostgreSQL client installed?): {err}"));
        assert!(
            output.status.success(),
            "scripts/roles.sql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        roles
    }

    /// `url` (a database URL) with `role` and its password as the user.
    pub fn url_as(url: &str, role: &str) -> String {
        let mut parsed =
            reqwest::Url::parse(url).unwrap_or_else(|err| panic!("{url} is a URL: {err}"));
        let _ = parsed.set_username(role);
        let _ = parsed.set_password(Some(PASSWORD));
        parsed.to_string()
    }
}

impl Drop for Roles {
    /// Drops both roles (from the database they were made in, if it still
    /// exists, else from the server's admin database); failures are ignored.
    fn drop(&mut self) {
        let sql = format!(
            "DROP ROLE IF EXISTS \"{}\"; DROP ROLE IF EXISTS \"{}\";",
            self.app, self.analytics
        );
        let admin = std::env::var("DATABASE_URL").unwrap_or_default();
        for url in [admin.as_str(), self.admin_url.as_str()] {
            let ok = Command::new("psql")
                .arg(url)
                .args(["-X", "-q", "-c", &sql])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
        }
    }
}
