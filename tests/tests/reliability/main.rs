//! Reliability: the api killed and the database restarted under load,
//! PgBouncer in both pooling modes, pool exhaustion, concurrent migrators,
//! hostile input, authorization and least privilege (docs/reliability.md).

mod api_kill;
mod authorization;
mod db_restart;
mod hostile_input;
mod invariants;
mod least_privilege;
mod migrators;
mod pgbouncer;
mod pool_exhaustion;
