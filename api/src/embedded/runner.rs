//! Running `initdb` and `pg_ctl`: directly, or as the `postgres` account when root.

use super::search::{find_program, path_dirs};
use super::*;

/// How `initdb` and `pg_ctl` are run: directly, or as [`SERVICE_ACCOUNT`] when root.
#[derive(Debug, Clone)]
pub(super) enum Runner {
    Direct,
    Runuser {
        runuser: PathBuf,
        uid: u32,
        gid: u32,
    },
    Su {
        su: PathBuf,
        uid: u32,
        gid: u32,
    },
}

impl Runner {
    pub(super) fn detect() -> Result<Self, EmbeddedError> {
        if id_of(&["-u"]) != Some(0) {
            return Ok(Self::Direct);
        }
        let (Some(uid), Some(gid)) = (
            id_of(&["-u", SERVICE_ACCOUNT]),
            id_of(&["-g", SERVICE_ACCOUNT]),
        ) else {
            return Err(EmbeddedError::NoServiceAccount {
                account: SERVICE_ACCOUNT,
            });
        };
        let mut dirs = path_dirs();
        dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
        if let Some(runuser) = find_program("runuser", &dirs) {
            Ok(Self::Runuser { runuser, uid, gid })
        } else if let Some(su) = find_program("su", &dirs) {
            Ok(Self::Su { su, uid, gid })
        } else {
            Err(EmbeddedError::NoAccountSwitch {
                account: SERVICE_ACCOUNT,
            })
        }
    }

    /// The account's uid and gid when the server runs as another account.
    pub(super) fn account(&self) -> Option<(u32, u32)> {
        match self {
            Self::Direct => None,
            Self::Runuser { uid, gid, .. } | Self::Su { uid, gid, .. } => Some((*uid, *gid)),
        }
    }

    pub(super) fn command(&self, program: &Path, args: &[OsString]) -> std::process::Command {
        let mut command = match self {
            Self::Direct => {
                let mut command = std::process::Command::new(program);
                command.args(args);
                command
            }
            Self::Runuser { runuser, .. } => {
                let mut command = std::process::Command::new(runuser);
                command
                    .args(["-u", SERVICE_ACCOUNT, "--"])
                    .arg(program)
                    .args(args);
                command
            }
            Self::Su { su, .. } => {
                let mut line = shell_quote(program.as_os_str());
                for arg in args {
                    line.push(' ');
                    line.push_str(&shell_quote(arg));
                }
                let mut command = std::process::Command::new(su);
                command
                    .args(["-s", "/bin/sh", SERVICE_ACCOUNT, "-c"])
                    .arg(line);
                command
            }
        };
        // The account may not be allowed into the caller's working folder.
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    pub(super) async fn run(
        &self,
        step: &'static str,
        timeout: Duration,
        program: &Path,
        args: &[OsString],
    ) -> Result<Output, EmbeddedError> {
        let mut command = tokio::process::Command::from(self.command(program, args));
        command.kill_on_drop(true);
        match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(source)) => Err(EmbeddedError::Run {
                program: program.display().to_string(),
                source,
            }),
            Err(_) => Err(EmbeddedError::TimedOut { step, timeout }),
        }
    }

    /// Whether the account running the server can pass through `dir`.
    pub(super) async fn can_enter(&self, dir: &Path) -> Result<bool, EmbeddedError> {
        let args = os_args!["-x", dir];
        let output = self
            .run("a folder check", PG_CTL_TIMEOUT, Path::new("test"), &args)
            .await?;
        Ok(output.status.success())
    }
}

/// `id <args>` as a number: the effective uid, or an account's uid or gid.
pub(super) fn id_of(args: &[&str]) -> Option<u32> {
    let output = std::process::Command::new("id").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

pub(super) fn shell_quote(arg: &OsStr) -> String {
    format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"))
}
