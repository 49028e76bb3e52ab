//! The service crate on real databases: matching and its rules, validation,
//! limits, stop triggers, group commit (of placements and of cancels), reads,
//! maintenance, archiving, concurrency, the model-based equivalence test, and
//! the service under async-std.

mod archive;
mod async_std;
mod cancels;
mod concurrency;
mod limits;
mod lock_ahead;
mod maintenance;
mod matching;
mod model;
mod read_paths;
mod stop_triggers;
mod validation;
