//! The handlers' error: every variant maps to a status and the contract's
//! body `{"error", "code", "details": {"error", …}}` in one place.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
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
    /// 503: a serialization failure or deadlock persisted through the
    /// service's retries; nothing was stored.
    #[error("database busy")]
    Busy(String),
    /// 503: more requests in flight than `MAX_CONCURRENT_REQUESTS`; shed at
    /// once instead of queueing.
    #[error("server overloaded")]
    Overloaded,
    /// 503: the request ran past `REQUEST_TIMEOUT_MS`.
    #[error("request timeout")]
    RequestTimeout(std::time::Duration),
    /// 429: the caller (a user, or a client address when anonymous) is over
    /// its rate limit; `retry_after` says when the next request is allowed.
    #[error("rate limit exceeded")]
    TooManyRequests { retry_after: std::time::Duration },
    /// 429: a WebSocket connection over the per-user or per-address limit.
    #[error("too many connections")]
    TooManyConnections(String),
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
            ApiError::Unavailable(_)
            | ApiError::Timeout(_)
            | ApiError::Busy(_)
            | ApiError::Overloaded
            | ApiError::RequestTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } | ApiError::TooManyConnections(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
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
            | ApiError::NotReady(reason)
            | ApiError::TooManyConnections(reason) => reason.clone(),
            ApiError::MethodNotAllowed => "see /api/v1/openapi.json for the routes".to_owned(),
            ApiError::PayloadTooLarge(limit) => format!("the limit is {limit} bytes"),
            ApiError::Unavailable(_) => "the database cannot be reached; retry later".to_owned(),
            ApiError::Timeout(_) => "the database did not finish the request within \
                                     DB_STATEMENT_TIMEOUT_MS; nothing was stored, retry later"
                .to_owned(),
            ApiError::Busy(_) => "the database was busy with conflicting work; nothing was \
                                  stored, retry later"
                .to_owned(),
            ApiError::Overloaded => "too many requests in flight; retry later".to_owned(),
            ApiError::RequestTimeout(limit) => format!(
                "the request did not finish within {} ms (REQUEST_TIMEOUT_MS); retry later",
                limit.as_millis()
            ),
            ApiError::TooManyRequests { retry_after } => format!(
                "too many requests; retry in {} s",
                retry_seconds(*retry_after)
            ),
            ApiError::Internal(_) => "see the server log".to_owned(),
        }
    }

    /// Seconds a client should wait before retrying, for `Retry-After`.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests { retry_after } => Some(retry_seconds(*retry_after)),
            ApiError::Unavailable(_)
            | ApiError::Timeout(_)
            | ApiError::Busy(_)
            | ApiError::Overloaded
            | ApiError::RequestTimeout(_) => Some(1),
            _ => None,
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
            ServiceError::TooManyRestingOrders { limit, .. } => {
                let mut extra = Map::new();
                extra.insert("limit".to_owned(), Value::from(limit));
                ApiError::Conflict {
                    message: "too many resting orders".to_owned(),
                    detail: text,
                    extra,
                }
            }
            ServiceError::TransitionRefused { .. } => ApiError::Conflict {
                message: "order cannot change".to_owned(),
                detail: text,
                extra: Map::new(),
            },
            ServiceError::InvalidText { reason } => ApiError::bad_request("invalid text", reason),
            ServiceError::Unavailable(_) => ApiError::Unavailable(text),
            ServiceError::Timeout(_) => ApiError::Timeout(text),
            ServiceError::Contention { .. } => ApiError::Busy(text),
            ServiceError::Database(_) => ApiError::Internal(text),
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
            ApiError::Busy(cause) => tracing::warn!(cause = %cause, "database contention"),
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
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Whole seconds, rounded up, at least 1: `Retry-After` has no fractions.
fn retry_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use sea_orm::DbErr;
    use uuid::Uuid;

    use super::*;

    fn status_and_retry(err: ServiceError) -> (StatusCode, Option<String>) {
        let response = ApiError::from(err).into_response();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status(), retry)
    }

    #[test]
    fn service_outcomes_map_to_their_statuses() {
        let db = || DbErr::Custom("x".to_owned());
        for (err, status, retry) in [
            (
                ServiceError::TransitionRefused {
                    message: "Cannot change status of a filled order".to_owned(),
                },
                StatusCode::CONFLICT,
                None,
            ),
            (
                ServiceError::TooManyRestingOrders {
                    user_id: Uuid::nil(),
                    limit: 3,
                },
                StatusCode::CONFLICT,
                None,
            ),
            (
                ServiceError::Contention {
                    attempts: 3,
                    source: db(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                Some("1"),
            ),
            (
                ServiceError::Timeout(db()),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("1"),
            ),
            (
                ServiceError::Unavailable(db()),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("1"),
            ),
            (
                ServiceError::InvalidText {
                    reason: "NUL".to_owned(),
                },
                StatusCode::BAD_REQUEST,
                None,
            ),
            (
                ServiceError::Database(db()),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
        ] {
            let what = format!("{err:?}");
            assert_eq!(
                status_and_retry(err),
                (status, retry.map(str::to_owned)),
                "{what}"
            );
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        use std::time::Duration;
        assert_eq!(retry_seconds(Duration::ZERO), 1);
        assert_eq!(retry_seconds(Duration::from_millis(300)), 1);
        assert_eq!(retry_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_seconds(Duration::from_millis(2001)), 3);
    }
}
