//! The handlers' error: every variant maps to a status and the contract's
//! body `{"error", "code", "details": {"error", …}}` in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sea_orm::{DbErr, RuntimeErr};
use serde_json::{Map, Value, json};
use service::ServiceError;

/// What a request can end in besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client mistake: 400 naming what is wrong.
    #[error("{message}")]
    BadRequest { message: String, detail: String },
    /// 401: missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: someone else's resource.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409, with extra detail fields (e.g. the existing order's id).
    #[error("{message}")]
    Conflict {
        message: String,
        detail: String,
        extra: Map<String, Value>,
    },
    /// 413: the body is larger than the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 503 from `/ready`: up, but not ready to serve (the reason says why).
    #[error("not ready")]
    NotReady(String),
    /// 503: the database cannot be reached now; retry later.
    #[error("database unavailable")]
    Unavailable(String),
    /// 503: a statement ran past `DB_STATEMENT_TIMEOUT_MS` (e.g. waiting on a
    /// lock) and was cancelled; nothing of the request was stored.
    #[error("database timeout")]
    Timeout(String),
    /// 500: a fault of ours; logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// A 400 about one field: `{"error": "invalid <field>", "details": {"error": "<field>: <reason>"}}`.
    pub fn field(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request(format!("invalid {field}"), format!("{field}: {reason}"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::BadRequest { detail, .. } | ApiError::Conflict { detail, .. } => {
                detail.clone()
            }
            ApiError::Unauthorized(reason)
            | ApiError::Forbidden(reason)
            | ApiError::NotFound(reason)
            | ApiError::NotReady(reason) => reason.clone(),
            ApiError::MethodNotAllowed => "see /api/v1/openapi.json for the routes".to_owned(),
            ApiError::PayloadTooLarge(limit) => format!("the limit is {limit} bytes"),
            ApiError::Unavailable(_) => "the database cannot be reached; retry later".to_owned(),
            ApiError::Timeout(_) => "the database did not finish the request within \
                                     DB_STATEMENT_TIMEOUT_MS; nothing was stored, retry later"
                .to_owned(),
            ApiError::Internal(_) => "see the server log".to_owned(),
        }
    }
}

/// Whether a database error means "not reachable now" (503) rather than a fault.
pub fn is_outage(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            use sea_orm::sqlx::Error;
            match e.as_ref() {
                Error::Io(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => {
                    true
                }
                Error::Database(db) => {
                    // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
                    // 08xxx connection exceptions, 53300 too many connections.
                    db.code().is_some_and(|code| {
                        code.starts_with("08") || code.starts_with("57P") || code == "53300"
                    })
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether PostgreSQL refused a text value no text column can hold (SQLSTATE
/// 22021, e.g. the NUL character): the client's input, not a fault of ours.
pub fn is_unstorable_text(err: &DbErr) -> bool {
    service::error::sqlstate(err).as_deref() == Some("22021")
}

/// Whether PostgreSQL cancelled a statement (SQLSTATE 57014), which for the
/// api means `DB_STATEMENT_TIMEOUT_MS` ran out.
pub fn is_statement_timeout(err: &DbErr) -> bool {
    service::error::sqlstate(err).as_deref() == Some("57014")
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> ApiError {
        if is_outage(&err) {
            ApiError::Unavailable(err.to_string())
        } else if is_statement_timeout(&err) {
            ApiError::Timeout(err.to_string())
        } else if is_unstorable_text(&err) {
            ApiError::bad_request(
                "invalid text",
                "text must not contain the NUL character (\\u0000)",
            )
        } else {
            ApiError::Internal(err.to_string())
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> ApiError {
        let text = err.to_string();
        match err {
            ServiceError::UnknownSymbol(symbol) => {
                ApiError::NotFound(format!("unknown symbol {symbol}"))
            }
            ServiceError::SymbolNotTradable { .. } => ApiError::Conflict {
                message: "symbol not tradable".to_owned(),
                detail: text,
                extra: Map::new(),
            },
            ServiceError::InvalidOrder { field, reason }
            | ServiceError::InvalidArgument { field, reason } => ApiError::field(field, reason),
            ServiceError::NotFound { .. } => ApiError::NotFound(text),
            ServiceError::Forbidden { .. } => ApiError::Forbidden(text),
            ServiceError::TerminalStatus { .. } => ApiError::Conflict {
                message: "order cannot change".to_owned(),
                detail: text,
                extra: Map::new(),
            },
            ServiceError::DuplicateClientOrderId {
                existing_order_id, ..
            } => {
                let mut extra = Map::new();
                extra.insert(
                    "existing_order_id".to_owned(),
                    Value::String(existing_order_id.to_string()),
                );
                ApiError::Conflict {
                    message: "duplicate client_order_id".to_owned(),
                    detail: text,
                    extra,
                }
            }
            ServiceError::Database(db) => ApiError::from(db),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(cause = %cause, "database unavailable"),
            ApiError::Timeout(cause) => tracing::warn!(cause = %cause, "statement timeout"),
            _ => {}
        }
        let mut details = Map::new();
        details.insert("error".to_owned(), Value::String(self.detail()));
        if let ApiError::Conflict { extra, .. } = &self {
            details.extend(extra.clone());
        }
        let body = json!({
            "error": self.to_string(),
            "code": status.canonical_reason().unwrap_or("Error"),
            "details": details,
        });
        (status, Json(body)).into_response()
    }
}
