//! The api's HTTP contract (as the OpenAPI document describes it), endpoint by endpoint,
//! over real sockets, with the api connected straight to its test database
//! (`DB_POOL_MODE=direct`). `api_http_pgbouncer` runs these same tests with a
//! PgBouncer in transaction mode in between.

#[path = "api_http/auth.rs"]
mod auth;
#[path = "api_http/flows.rs"]
mod flows;
// The api's own defences do not depend on how it reaches the database, so
// only this binary runs them.
#[path = "api_http/hardening.rs"]
mod hardening;
#[path = "api_http/market.rs"]
mod market;
// The monitoring files of the repository, checked once.
#[path = "api_http/monitoring.rs"]
mod monitoring;
#[path = "api_http/ops.rs"]
mod ops;
#[path = "api_http/order_reads.rs"]
mod order_reads;
#[path = "api_http/orders.rs"]
mod orders;
// A private primary and its streaming replica; the pooler changes nothing there.
#[path = "api_http/replica.rs"]
mod replica;

use tests::app::{AppOptions, TestApp};

/// How this binary's tests start the api: on a direct connection.
async fn spawn_app(options: AppOptions) -> TestApp {
    tests::app::spawn_app(options).await
}
