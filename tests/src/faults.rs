//! Support for the fault suite (`tests/tests/reliability_*.rs`): the
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
