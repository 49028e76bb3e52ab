//! Market data: order book, ticker, statistics, symbols, recent trades. No
//! credentials needed.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use service::market::{self, Period};
use utoipa::IntoParams;

use super::orders::page_limit;
use crate::dto::{MarketStatsDto, OrderBookDto, SymbolDto, TickerDto, TradeDto};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, canonical_symbol, parse_id};
use crate::state::AppState;

/// Query of `GET /api/v1/orderbook/{symbol}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DepthQuery {
    /// Price levels per side, 1..=100, default 50.
    depth: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/orderbook/{symbol}", tag = "market",
    params(("symbol" = String, Path, description = "BTC/USDT, BTC-USDT, any case"), DepthQuery),
    responses(
        (status = 200, description = "Bids best first, asks lowest first", body = OrderBookDto),
        (status = 400, body = crate::dto::ErrorBody),
        (status = 404, description = "Unknown symbol", body = crate::dto::ErrorBody),
    ))]
pub async fn order_book(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<DepthQuery>,
) -> Result<Json<OrderBookDto>, ApiError> {
    let depth = match query.depth {
        None => 50,
        Some(d) if (1..=100).contains(&d) => d,
        Some(d) => {
            return Err(ApiError::field(
                "depth",
                format!("must be between 1 and 100, got {d}"),
            ));
        }
    };
    let symbol = canonical_symbol(&symbol);
    let book = state
        .db
        .run(async |db| market::depth(db, &symbol, depth).await)
        .await?;
    Ok(Json(book.into()))
}

#[utoipa::path(get, path = "/api/v1/markets/{symbol}/ticker", tag = "market",
    params(("symbol" = String, Path, description = "BTC/USDT, BTC-USDT, any case")),
    responses(
        (status = 200, body = TickerDto),
        (status = 404, description = "Unknown symbol", body = crate::dto::ErrorBody),
    ))]
pub async fn ticker(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
) -> Result<Json<TickerDto>, ApiError> {
    let symbol = canonical_symbol(&symbol);
    let ticker = state
        .db
        .run(async |db| market::ticker(db, &symbol).await)
        .await?;
    Ok(Json(ticker.into()))
}

/// Query of `GET /api/v1/markets/{symbol}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// 1h, 4h, 24h (default), 7d or 30d.
    period: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/markets/{symbol}/stats", tag = "market",
    params(("symbol" = String, Path, description = "BTC/USDT, BTC-USDT, any case"), StatsQuery),
    responses(
        (status = 200, body = MarketStatsDto),
        (status = 400, description = "Unknown period", body = crate::dto::ErrorBody),
        (status = 404, description = "Unknown symbol", body = crate::dto::ErrorBody),
    ))]
pub async fn stats(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<MarketStatsDto>, ApiError> {
    let period: Period = match query.period {
        None => Period::OneDay,
        Some(text) => text.parse()?,
    };
    let symbol = canonical_symbol(&symbol);
    let stats = state
        .db
        .run(async |db| market::stats(db, &symbol, period).await)
        .await?;
    Ok(Json(stats.into()))
}

#[utoipa::path(get, path = "/api/v1/symbols", tag = "market",
    responses((status = 200, description = "Every symbol and its trading parameters", body = [SymbolDto])))]
pub async fn symbols(State(state): State<AppState>) -> Result<Json<Vec<SymbolDto>>, ApiError> {
    let all = state.db.run(async |db| market::symbols(db).await).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

/// Query of `GET /api/v1/trades`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecentTradesQuery {
    /// Required: BTC/USDT, BTC-USDT, any case.
    symbol: Option<String>,
    /// 1..=500, default 50.
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/trades", tag = "trades",
    params(RecentTradesQuery),
    responses(
        (status = 200, description = "The symbol's trades, newest first", body = [TradeDto]),
        (status = 400, body = crate::dto::ErrorBody),
        (status = 404, description = "Unknown symbol", body = crate::dto::ErrorBody),
    ))]
pub async fn recent_trades(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RecentTradesQuery>,
) -> Result<Json<Vec<TradeDto>>, ApiError> {
    let symbol = query
        .symbol
        .as_deref()
        .map(canonical_symbol)
        .ok_or_else(|| ApiError::field("symbol", "is required"))?;
    let limit = page_limit(query.limit, 50, 500)?;
    let trades = state
        .db
        .run(async |db| service::trades::recent(db, &symbol, limit).await)
        .await?;
    Ok(Json(trades.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/trades/{id}", tag = "trades",
    params(("id" = String, Path, description = "Trade id (UUID)")),
    responses(
        (status = 200, body = TradeDto),
        (status = 400, description = "Malformed id", body = crate::dto::ErrorBody),
        (status = 404, body = crate::dto::ErrorBody),
    ))]
pub async fn trade(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TradeDto>, ApiError> {
    let trade_id = parse_id(&id)?;
    let trade = state
        .db
        .run(async |db| service::trades::get(db, trade_id).await)
        .await?;
    Ok(Json(trade.into()))
}
