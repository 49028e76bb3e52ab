//! The service's error: one variant per outcome a caller can act on.

use entity::sea_orm_active_enums::{OrderStatusEnum, SymbolStatusEnum};
use sea_orm::{ActiveEnum, DbErr, RuntimeErr};
use uuid::Uuid;

/// What a service operation can fail with. Database refusals (check
/// constraints, the status-transition trigger, foreign keys) arrive as the
/// matching variant, never as a string inside [`ServiceError::Database`].
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No symbol of that name exists.
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),

    /// The symbol exists but is HALTED, in MAINTENANCE or DELISTED.
    #[error("symbol {symbol} is not tradable: it is {}", .status.to_value().value)]
    SymbolNotTradable {
        symbol: String,
        status: SymbolStatusEnum,
    },

    /// An order breaks a placement rule; `field` names the request field.
    #[error("invalid order: {field}: {reason}")]
    InvalidOrder { field: &'static str, reason: String },

    /// A query argument is out of range or malformed (a limit, a cursor, a period).
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    /// No such order or trade.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },

    /// The order exists but belongs to another user.
    #[error("{entity} {id} belongs to another user")]
    Forbidden { entity: &'static str, id: String },

    /// The order is FILLED, CANCELLED, REJECTED or EXPIRED and cannot change.
    #[error("order {order_id} is {} and cannot change", .status.to_value().value)]
    TerminalStatus {
        order_id: Uuid,
        status: OrderStatusEnum,
    },

    /// The user placed an order with this client_order_id within 24 hours.
    #[error(
        "client_order_id {client_order_id:?} was already used by order {existing_order_id} within 24 hours"
    )]
    DuplicateClientOrderId {
        client_order_id: String,
        existing_order_id: Uuid,
    },

    /// The order could rest and its user already has `limit` orders resting
    /// or waiting (OPEN, PARTIALLY_FILLED or PENDING, over all symbols); see
    /// `PlacementLimits::max_resting_orders_per_user`.
    #[error("user {user_id} already has {limit} resting orders, the most allowed")]
    TooManyRestingOrders { user_id: Uuid, limit: u64 },

    /// The status-transition trigger refused a change (the order is FILLED,
    /// CANCELLED, REJECTED or EXPIRED): someone else finished it first.
    #[error("status change refused: {message}")]
    TransitionRefused { message: String },

    /// Text the database cannot store (e.g. the NUL character): the caller's
    /// input, not a fault.
    #[error("invalid text: {reason}")]
    InvalidText { reason: String },

    /// The database cannot be reached now (connection refused or lost, pool
    /// exhausted, server shutting down, too many connections); retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbErr),

    /// A statement ran past `statement_timeout` or waited past `lock_timeout`;
    /// nothing of the operation was stored.
    #[error("database timeout: {0}")]
    Timeout(#[source] DbErr),

    /// A serialization failure or deadlock (40001, 40P01) that persisted
    /// through `attempts` tries (or, for a cancel, an order that kept moving
    /// under concurrent placements); nothing was stored, retry later.
    #[error("database contention persisted through {attempts} attempts: {source}")]
    Contention {
        attempts: u32,
        #[source]
        source: DbErr,
    },

    /// The database failed in a way no other variant describes: a fault.
    #[error("database error: {0}")]
    Database(#[source] DbErr),
}

impl ServiceError {
    /// True for the conflicts: a terminal status (also as refused by the
    /// status-transition trigger), a reused client_order_id, the resting cap.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ServiceError::TerminalStatus { .. }
                | ServiceError::DuplicateClientOrderId { .. }
                | ServiceError::TransitionRefused { .. }
                | ServiceError::TooManyRestingOrders { .. }
        )
    }

    /// True when trying the same operation again may succeed: a
    /// serialization failure or deadlock.
    pub fn is_contention(&self) -> bool {
        matches!(self, ServiceError::Contention { .. })
    }

    /// True when the database could not do the work now (unreachable, timed
    /// out, contended), as opposed to a refusal or a fault: worth a later retry.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ServiceError::Unavailable(_)
                | ServiceError::Timeout(_)
                | ServiceError::Contention { .. }
        )
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ServiceError {
        ServiceError::InvalidOrder {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn argument(field: &'static str, reason: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

/// The SQLSTATE of an error PostgreSQL answered with (`"40001"`, `"57014"`,
/// …); `None` for errors that did not come from the server.
pub fn sqlstate(err: &DbErr) -> Option<String> {
    database_refusal(err).map(|(code, _)| code)
}

/// The SQLSTATE and constraint name of a database error, when it is one.
pub(crate) fn database_refusal(err: &DbErr) -> Option<(String, Option<String>)> {
    let sqlx = match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    let db = sqlx.as_database_error()?;
    Some((
        db.code().map(|c| c.into_owned()).unwrap_or_default(),
        db.constraint().map(str::to_owned),
    ))
}

/// Whether a database error means "not reachable now" rather than a refusal
/// or a fault.
fn is_outage(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Error::Io(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => {
                    true
                }
                // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
                // 08xxx connection exceptions, 53300 too many connections.
                Error::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08") || code.starts_with("57P") || code == "53300"
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The server's message of a database error (`Cannot change status of a
/// filled order`), or the whole error when it has none.
fn database_message(err: &DbErr) -> String {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .map_or_else(|| err.to_string(), |db| db.message().to_owned()),
        _ => err.to_string(),
    }
}

/// Named constraints of the schema, and the request field each one guards.
const CHECKS: &[(&str, &str)] = &[
    ("chk_quantity_positive", "quantity"),
    ("chk_filled_lte_quantity", "quantity"),
    ("chk_market_no_price", "price"),
    ("chk_limit_has_price", "price"),
    ("chk_stop_has_stop_price", "stop_price"),
    ("chk_price_positive", "price"),
    ("chk_self_trade_prevention", "user_id"),
];

impl From<DbErr> for ServiceError {
    /// Maps the schema's named refusals to their variants; anything else is
    /// [`ServiceError::Database`].
    fn from(err: DbErr) -> ServiceError {
        if is_outage(&err) {
            return ServiceError::Unavailable(err);
        }
        let Some((code, constraint)) = database_refusal(&err) else {
            return ServiceError::Database(err);
        };
        match (code.as_str(), constraint.as_deref()) {
            // statement_timeout (query_canceled), lock_timeout (lock_not_available).
            ("57014" | "55P03", _) => ServiceError::Timeout(err),
            // serialization_failure, deadlock_detected.
            ("40001" | "40P01", _) => ServiceError::Contention {
                attempts: 1,
                source: err,
            },
            // character_not_in_repertoire (NUL), invalid_text_representation.
            ("22021", _) => ServiceError::InvalidText {
                reason: "text must not contain the NUL character (\\u0000)".to_owned(),
            },
            ("22P02", _) => ServiceError::InvalidText {
                reason: database_message(&err),
            },
            ("23514", Some("trg_validate_order_status_transition")) => {
                ServiceError::TransitionRefused {
                    message: database_message(&err),
                }
            }
            // get_trading_volume's refusal of an unknown period (D12).
            ("22023", _) => ServiceError::argument("period", database_message(&err)),
            ("23503", Some("FK_orders_symbol" | "FK_trades_symbol")) => {
                ServiceError::UnknownSymbol("(refused by the database)".to_owned())
            }
            ("23514", Some(name)) => match CHECKS.iter().find(|(check, _)| *check == name) {
                Some((check, field)) => {
                    ServiceError::invalid(field, format!("refused by constraint {check}"))
                }
                None => ServiceError::Database(err),
            },
            _ => ServiceError::Database(err),
        }
    }
}

/// Short for `Result<T, ServiceError>`.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named_as_the_database_and_the_api_name_them() {
        let filled = ServiceError::TerminalStatus {
            order_id: Uuid::nil(),
            status: OrderStatusEnum::Filled,
        };
        assert_eq!(
            filled.to_string(),
            "order 00000000-0000-0000-0000-000000000000 is FILLED and cannot change"
        );
        let halted = ServiceError::SymbolNotTradable {
            symbol: "BTC/USDT".to_owned(),
            status: SymbolStatusEnum::Halted,
        };
        assert_eq!(
            halted.to_string(),
            "symbol BTC/USDT is not tradable: it is HALTED"
        );
    }
}
