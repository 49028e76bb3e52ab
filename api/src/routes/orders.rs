//! `/api/v1/orders`: place, list, read and cancel the caller's orders.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use service::orders::{self, NewOrder, OrderFilter};
use service::{OrderStatus, OrderType, ServiceError, TimeInForce};
use utoipa::IntoParams;

use crate::auth::AuthUser;
use crate::dto::{OrderDto, PlaceOrderRequest, PlacementDto};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, canonical_symbol, parse_id};
use crate::state::AppState;

use super::paging::{next_cursor_header, page, page_limit};

/// The largest page `GET /api/v1/orders` returns.
const MAX_ORDERS: u64 = 100;

#[utoipa::path(post, path = "/api/v1/orders", tag = "orders",
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "The order after matching and its trades", body = PlacementDto),
        (status = 400, description = "Invalid parameters", body = crate::dto::ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = crate::dto::ErrorBody),
        (status = 409, description = "Duplicate client_order_id, or symbol not ACTIVE", body = crate::dto::ErrorBody),
    ),
    security(("bearer" = []), ("user_header" = [])))]
pub async fn place(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(request): ApiJson<PlaceOrderRequest>,
) -> Result<(StatusCode, Json<PlacementDto>), ApiError> {
    let order = NewOrder {
        user_id,
        symbol: canonical_symbol(&request.symbol),
        side: request.side,
        order_type: request.order_type,
        quantity: request.quantity.0,
        price: request.price.map(|d| d.0),
        stop_price: request.stop_price.map(|d| d.0),
        // A MARKET order never rests: IOC unless it says otherwise.
        time_in_force: request.time_in_force.unwrap_or(match request.order_type {
            OrderType::Market => TimeInForce::Ioc,
            _ => TimeInForce::Gtc,
        }),
        client_order_id: request.client_order_id,
        expires_at: None,
        order_source: Some("API".to_owned()),
    };
    let placed = state.sequencer.place(order).await;
    // Whatever the outcome: a placement that failed late may have written.
    state.reads.wrote(user_id);
    state.events.wake.notify_one();
    let placed = placed.map_err(|err| match err {
        // For a placement an unknown symbol is a bad parameter, not a missing page.
        ServiceError::UnknownSymbol(symbol) => {
            ApiError::field("symbol", format!("unknown symbol {symbol}"))
        }
        other => ApiError::from(other),
    })?;
    let trade_count = placed.trades.len()
        + placed
            .triggered
            .iter()
            .map(|t| t.trades.len())
            .sum::<usize>();
    metrics::counter!("orders_placed_total").increment(1);
    metrics::counter!("trades_executed_total").increment(trade_count as u64);
    Ok((StatusCode::CREATED, Json(PlacementDto::from(placed))))
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id (UUID)")),
    responses(
        (status = 200, body = OrderDto),
        (status = 400, description = "Malformed id", body = crate::dto::ErrorBody),
        (status = 401, body = crate::dto::ErrorBody),
        (status = 403, description = "Another user's order", body = crate::dto::ErrorBody),
        (status = 404, body = crate::dto::ErrorBody),
    ),
    security(("bearer" = []), ("user_header" = [])))]
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderDto>, ApiError> {
    let order_id = parse_id(&id)?;
    let order = state
        .reads
        .of_user(user_id, async |db| orders::get(db, user_id, order_id).await)
        .await?;
    Ok(Json(order.into()))
}

#[utoipa::path(delete, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id (UUID)")),
    responses(
        (status = 200, description = "The cancelled order", body = OrderDto),
        (status = 400, body = crate::dto::ErrorBody),
        (status = 401, body = crate::dto::ErrorBody),
        (status = 403, body = crate::dto::ErrorBody),
        (status = 404, body = crate::dto::ErrorBody),
        (status = 409, description = "FILLED, CANCELLED, REJECTED or EXPIRED", body = crate::dto::ErrorBody),
    ),
    security(("bearer" = []), ("user_header" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderDto>, ApiError> {
    let order_id = parse_id(&id)?;
    let cancelled = state.sequencer.cancel(user_id, order_id).await;
    state.reads.wrote(user_id);
    state.events.wake.notify_one();
    let cancelled = cancelled?;
    Ok(Json(cancelled.into()))
}

/// Query of `GET /api/v1/orders`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListOrdersQuery {
    /// `BTC/USDT`, `BTC-USDT`, any case.
    #[param(example = "BTC-USDT")]
    symbol: Option<String>,
    /// PENDING, OPEN, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED or EXPIRED.
    #[param(value_type = Option<String>, example = "OPEN")]
    status: Option<OrderStatus>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<u64>,
    /// Rows to skip; not with `cursor`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64, default = 0)]
    offset: Option<u64>,
    /// From the `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    params(ListOrdersQuery),
    responses(
        (status = 200, description = "The caller's orders, newest first; X-Next-Cursor when more", body = [OrderDto]),
        (status = 400, body = crate::dto::ErrorBody),
        (status = 401, body = crate::dto::ErrorBody),
    ),
    security(("bearer" = []), ("user_header" = [])))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(query): ApiQuery<ListOrdersQuery>,
) -> Result<(HeaderMap, Json<Vec<OrderDto>>), ApiError> {
    let limit = page_limit(query.limit, 50, MAX_ORDERS)?;
    let page = page(limit, query.offset, query.cursor.as_deref())?;
    let filter = OrderFilter {
        symbol: query.symbol.as_deref().map(canonical_symbol),
        status: query.status,
    };
    let found = state
        .reads
        .of_user(user_id, async |db| {
            orders::list(db, user_id, &filter, page).await
        })
        .await?;
    Ok((
        next_cursor_header(found.next),
        Json(found.items.into_iter().map(Into::into).collect()),
    ))
}
