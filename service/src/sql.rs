//! What every raw statement of the service is built with.

use sea_orm::{DbBackend, Statement, Value};

/// A PostgreSQL statement `sql` with its bind `values` (`$1`, `$2`, …).
pub(crate) fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The resting book's predicate, the one `IDX_orders_matching` serves: an
/// order that rests at a price. `resting!()` for unqualified columns,
/// `resting!("o")` for the columns of alias `o`.
macro_rules! resting {
    () => {
        "status IN ('OPEN', 'PARTIALLY_FILLED') AND price IS NOT NULL AND order_type = 'LIMIT'"
    };
    ($alias:literal) => {
        concat!(
            $alias,
            ".status IN ('OPEN', 'PARTIALLY_FILLED') AND ",
            $alias,
            ".price IS NOT NULL AND ",
            $alias,
            ".order_type = 'LIMIT'"
        )
    };
}
pub(crate) use resting;
