//! The schema: the migrations' objects, behaviour, deviations from the
//! originals, rollbacks and CLI, partitions after years of retention and their
//! merging under load — and the per-test databases these tests stand on.

mod behaviour;
mod cli;
mod deviations;
mod inventory;
mod partitions_five_years;
mod partitions_merge;
mod readme;
mod rollback;
mod support;
