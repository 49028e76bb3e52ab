//! The api: its HTTP contract on a direct connection (`api_pgbouncer` runs
//! the same through PgBouncer), its lifecycle, the embedded PostgreSQL, the
//! events and WebSocket streams with the real broker, and the benchmark at a
//! CI size.

mod bench;
mod embedded;
mod events;
mod http;
mod lifecycle;
mod readme;
