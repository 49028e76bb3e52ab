//! `/api/v1/me/*`: the caller's trades and fill rate.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use service::market::MAX_FILL_RATE_DAYS;
use utoipa::IntoParams;

use super::paging::{next_cursor_header, page, page_limit};
use crate::auth::AuthUser;
use crate::dto::{FillRateDto, OwnTradeDto};
use crate::error::ApiError;
use crate::extract::{ApiQuery, canonical_symbol};
use crate::state::AppState;

/// Query of `GET /api/v1/me/trades`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MyTradesQuery {
    /// Only this symbol's trades: BTC/USDT, BTC-USDT, any case.
    #[param(example = "BTC-USDT")]
    symbol: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u64>,
    /// Rows to skip; not with `cursor`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64, default = 0)]
    offset: Option<u64>,
    /// From the `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me/trades", tag = "me", operation_id = "my_trades",
    params(MyTradesQuery),
    responses(
        (status = 200, description = "The caller's trades from their side, newest first", body = [OwnTradeDto]),
        (status = 400, body = crate::dto::ErrorBody),
        (status = 401, body = crate::dto::ErrorBody),
    ),
    security(("bearer" = []), ("user_header" = [])))]
pub async fn trades(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(query): ApiQuery<MyTradesQuery>,
) -> Result<(HeaderMap, Json<Vec<OwnTradeDto>>), ApiError> {
    let limit = page_limit(query.limit, 50, 500)?;
    let page = page(limit, query.offset, query.cursor.as_deref())?;
    let symbol = query.symbol.as_deref().map(canonical_symbol);
    let found = state
        .reads
        .of_user(user_id, async |db| {
            service::trades::user_history(db, user_id, symbol.as_deref(), page).await
        })
        .await?;
    Ok((
        next_cursor_header(found.next),
        Json(found.items.into_iter().map(Into::into).collect()),
    ))
}

/// Query of `GET /api/v1/me/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MyStatsQuery {
    /// The window in days (`maximum`: `service::market::MAX_FILL_RATE_DAYS`).
    #[param(minimum = 1, maximum = 3650, default = 30)]
    days: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/me/stats", tag = "me", operation_id = "my_fill_rate",
    params(MyStatsQuery),
    responses(
        (status = 200, body = FillRateDto),
        (status = 400, body = crate::dto::ErrorBody),
        (status = 401, body = crate::dto::ErrorBody),
    ),
    security(("bearer" = []), ("user_header" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(query): ApiQuery<MyStatsQuery>,
) -> Result<Json<FillRateDto>, ApiError> {
    let days = match query.days {
        None => 30,
        Some(d) if (1..=MAX_FILL_RATE_DAYS).contains(&d) => d,
        Some(d) => {
            return Err(ApiError::field(
                "days",
                format!("must be between 1 and {MAX_FILL_RATE_DAYS}, got {d}"),
            ));
        }
    };
    let rate = state
        .reads
        .of_user(user_id, async |db| {
            service::market::fill_rate(db, user_id, days).await
        })
        .await?;
    Ok(Json(rate.into()))
}
