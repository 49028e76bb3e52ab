//! What every raw statement of the service is built with.

use sea_orm::{DbBackend, Statement, Value};

/// A PostgreSQL statement `sql` with its bind `values` (`$1`, `$2`, …).
pub(crate) fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}
