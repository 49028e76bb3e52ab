//! The entity crate: generated from the migrated schema, and every model
//! through a real database and back.

mod drift;
mod roundtrip;
