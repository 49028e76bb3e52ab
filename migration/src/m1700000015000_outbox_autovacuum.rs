//! Migration 15 (`m1700000015000_outbox_autovacuum`, no TypeORM original):
//! the outbox is vacuumed as a queue, not as an ordinary table.
//!
//! Every event is inserted, updated once when the relay marks it published
//! and deleted once it is past retention, so `event_outbox` holds about the
//! events of the retention period and makes two dead row versions per event.
//! PostgreSQL's default vacuums a table once a fifth of it is dead: at
//! 1,500 events a second and an hour's retention that is a million dead
//! versions, half of them (the unpublished versions the relay's mark left
//! behind) with an entry in `idx_event_outbox_unpublished` (the relay's
//! queue) until then, and every claim from the oldest event and every count
//! of the backlog reads through those entries.
//!
//! - `event_outbox` gets `autovacuum_vacuum_scale_factor = 0` and
//!   `autovacuum_vacuum_threshold = 10000`: autovacuum takes it up once
//!   10,000 versions died, whatever its size (at most once per
//!   `autovacuum_naptime`, a minute by default), so the queue's index holds
//!   at most about a minute of published events.
//!
//! Settings only: nothing is rewritten or locked for long (`SET` of storage
//! parameters takes a `SHARE UPDATE EXCLUSIVE` lock, which writers do not
//! wait for). They act where autovacuum is on (the server's default). `down`
//! resets both parameters to the server's defaults; a value an operator had
//! set on the table by hand before `up` is not restored.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE event_outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000
);
"#;

const DOWN: &str = r#"
ALTER TABLE event_outbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
"#;

sql_migration!(UP, DOWN);
