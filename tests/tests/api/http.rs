//! The api's HTTP contract (as the OpenAPI document describes it), endpoint by endpoint,
//! over real sockets, with the api connected straight to its test database
//! (`DB_POOL_MODE=direct`). The `api_pgbouncer` binary runs these same modules
//! (but the three marked below) with a PgBouncer in transaction mode in between.

mod auth;
mod flows;
// The api's own defences do not depend on how it reaches the database, so
// only this binary runs them.
mod hardening;
mod market;
// The monitoring files of the repository, checked once.
mod monitoring;
mod ops;
mod order_reads;
mod orders;
// A private primary and its streaming replica; the pooler changes nothing there.
mod replica;

use tests::app::{AppOptions, TestApp};

/// How these tests start the api: on a direct connection.
async fn spawn_app(options: AppOptions) -> TestApp {
    tests::app::spawn_app(options).await
}
