//! The routes of the contract, wired to their handlers.

pub mod market;
pub mod me;
pub mod ops;
pub mod orders;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;

use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::state::AppState;

/// Every route, with the body limit, metrics and request logging.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/api/v1/orders", get(orders::list).post(orders::place))
        .route(
            "/api/v1/orders/{id}",
            get(orders::get).delete(orders::cancel),
        )
        .route("/api/v1/orderbook/{symbol}", get(market::order_book))
        .route("/api/v1/markets/{symbol}/ticker", get(market::ticker))
        .route("/api/v1/markets/{symbol}/stats", get(market::stats))
        .route("/api/v1/symbols", get(market::symbols))
        .route("/api/v1/trades", get(market::recent_trades))
        .route("/api/v1/trades/{id}", get(market::trade))
        .route("/api/v1/me/trades", get(me::trades))
        .route("/api/v1/me/stats", get(me::stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
