//! The api's HTTP tests (the modules of `api/http.rs`) with the api behind
//! PgBouncer 1.18 (the Debian package) in transaction pooling mode: each app
//! gets a PgBouncer of its own with two server connections for the api's five
//! client connections, and runs with `DB_POOL_MODE=transaction`
//! (each request one transaction begun with `DEALLOCATE ALL`, no statement
//! cache; see `service::pooling`). The tests' own checks on the database use a
//! direct connection.

#[path = "api/http/auth.rs"]
mod auth;
#[path = "api/http/flows.rs"]
mod flows;
#[path = "api/http/market.rs"]
mod market;
#[path = "api/http/ops.rs"]
mod ops;
#[path = "api/http/order_reads.rs"]
mod order_reads;
#[path = "api/http/orders.rs"]
mod orders;

use tests::app::{AppOptions, TestApp};

/// How this binary's tests start the api: through PgBouncer in transaction
/// mode (an app on an explicit URL, such as a closed port, is used as given).
async fn spawn_app(options: AppOptions) -> TestApp {
    tests::app::spawn_app(options.through_transaction_pooler()).await
}
