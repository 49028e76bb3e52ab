//! The routes of the contract, wired to their handlers.

pub mod market;
pub mod me;
pub mod ops;
pub mod orders;
pub mod paging;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::timeout::error::Elapsed;
use tower::{BoxError, ServiceBuilder};
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::config::Config;
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::state::AppState;

/// The contract's routes and `extra`, under the layers every request passes,
/// outermost first:
///
/// 1. metrics and the request log (so 429s, 503s and panics are counted too);
/// 2. the panic guard: a handler that panics is answered with the contract's
///    500 body and the server keeps serving;
/// 3. the rate limits per user and per client address (429, `Retry-After`);
/// 4. load shedding: past `MAX_CONCURRENT_REQUESTS` in flight, 503 with
///    `Retry-After` at once instead of a queue;
/// 5. the whole-request timeout (`REQUEST_TIMEOUT_MS`, 503);
/// 6. the body limit (413).
pub fn router_with(state: AppState, extra: Router<AppState>, config: &Config) -> Router {
    let request_timeout = config.request_timeout;
    let shedding = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |error: BoxError| async move {
            shed(error, request_timeout)
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests,
        ))
        .timeout(request_timeout);
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
        .route("/api/v1/markets/{symbol}/candles", get(market::candles))
        .route("/api/v1/symbols", get(market::symbols))
        .route("/api/v1/trades", get(market::recent_trades))
        .route("/api/v1/trades/{id}", get(market::trade))
        .route("/api/v1/me/trades", get(me::trades))
        .route("/api/v1/me/stats", get(me::stats))
        .route("/api/v1/ws", get(crate::events::ws::upgrade))
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(shedding)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::throttle::limit_rate,
        ))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(request_log())
        .with_state(state)
}

/// One log line per request (tower-http's trace layer): the answer's status
/// and latency, in a span naming the method (as the metrics label it) and
/// the route.
fn request_log() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    impl Fn(&Request) -> tracing::Span + Clone,
    (),
    DefaultOnResponse,
    (),
    (),
    (),
> {
    TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let method = crate::metrics::method_label(request.method());
            tracing::info_span!("request", method, route)
        })
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(LatencyUnit::Micros),
        )
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The error of a shed or timed-out request, as the contract's 503.
fn shed(error: BoxError, request_timeout: Duration) -> ApiError {
    if error.is::<Overloaded>() {
        ApiError::Overloaded
    } else if error.is::<Elapsed>() {
        ApiError::RequestTimeout(request_timeout)
    } else {
        ApiError::Internal(error.to_string())
    }
}

/// A handler panicked: log what it said, answer the contract's 500.
fn panicked(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::Internal(format!("a handler panicked: {message}")).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
