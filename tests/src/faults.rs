//! Support for the fault suite (`tests/tests/reliability/*.rs`): the
//! invariants of the service spec as SQL, the least-privilege roles of
//! `scripts/roles.sql`, PgBouncer started for one test, and a private
//! PostgreSQL server a test may crash and restart on the same port.
//!
//! ```no_run
//! use tests::faults::{Invariants, PrivateServer};
//!
//! # async fn example() {
//! let server = PrivateServer::start("example").await;
//! server.crash();
//! server.restart();
//! # }
//! ```

mod invariants;
mod pooler;
mod roles;
mod server;

pub use invariants::{Invariants, market_state_drift};
pub use pooler::{PoolMode, Pooler};
pub use roles::Roles;
pub use server::PrivateServer;

use std::path::Path;
use std::process::Command;

/// Whether the tests run as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program`, run as the `postgres` account when root (PostgreSQL's tools and
/// PgBouncer refuse to run as root), as the current user otherwise.
fn as_server_account(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}
