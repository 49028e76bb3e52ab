//! The service's error: one variant per outcome a caller can act on.

use entity::sea_orm_active_enums::{OrderStatusEnum, SymbolStatusEnum};
use sea_orm::{DbErr, RuntimeErr};
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
    #[error("symbol {symbol} is not tradable: it is {status:?}")]
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
    #[error("order {order_id} is {status:?} and cannot change")]
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

    /// The database failed or refused in a way no other variant describes
    /// (unreachable, timed out, serialization failure, ...).
    #[error("database error: {0}")]
    Database(#[source] DbErr),
}

impl ServiceError {
    /// True for the two conflicts: a terminal status, a reused client_order_id.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ServiceError::TerminalStatus { .. } | ServiceError::DuplicateClientOrderId { .. }
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
        let Some((code, constraint)) = database_refusal(&err) else {
            return ServiceError::Database(err);
        };
        match (code.as_str(), constraint.as_deref()) {
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
