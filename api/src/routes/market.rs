//! Market data: order book, ticker, statistics, candles, symbols, recent
//! trades. No credentials needed.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use service::market::{self, Period};
use utoipa::IntoParams;

use super::paging::page_limit;
use crate::dto::{CandleDto, MarketStatsDto, OrderBookDto, SymbolDto, TickerDto, TradeDto};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, canonical_symbol, parse_id};
use crate::state::AppState;

/// The most price levels per side `GET /api/v1/orderbook` returns.
pub const MAX_DEPTH: u64 = 100;

/// Query of `GET /api/v1/orderbook/{symbol}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DepthQuery {
    /// Price levels per side (`maximum`: [`MAX_DEPTH`]).
    #[param(minimum = 1, maximum = 100, default = 50)]
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
        Some(d) if (1..=MAX_DEPTH).contains(&d) => d,
        Some(d) => {
            return Err(ApiError::field(
                "depth",
                format!("must be between 1 and {MAX_DEPTH}, got {d}"),
            ));
        }
    };
    let symbol = canonical_symbol(&symbol);
    let book = state
        .reads
        .public(async |db| market::depth(db, &symbol, depth).await)
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
        .reads
        .public(async |db| market::ticker(db, &symbol).await)
        .await?;
    Ok(Json(ticker.into()))
}

/// Query of `GET /api/v1/markets/{symbol}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The window: 1h, 4h, 24h, 7d or 30d.
    #[param(pattern = "^(1h|4h|24h|7d|30d)$", default = "24h")]
    period: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/markets/{symbol}/stats", tag = "market", operation_id = "market_stats",
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
        .reads
        .public(async |db| market::stats(db, &symbol, period).await)
        .await?;
    Ok(Json(stats.into()))
}

/// Query of `GET /api/v1/markets/{symbol}/candles`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CandlesQuery {
    /// The bucket width: 1m, 5m, 15m, 1h, 4h or 1d.
    #[param(required = true, value_type = String, pattern = "^(1m|5m|15m|1h|4h|1d)$", example = "1m")]
    interval: Option<String>,
    /// RFC 3339; buckets whose open_time is at or after it (then the first
    /// `limit` of them). Without it: the `limit` newest buckets.
    #[param(value_type = Option<String>, format = DateTime)]
    start: Option<String>,
    /// RFC 3339; buckets whose open_time is before it. Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    end: Option<String>,
    /// Buckets at most.
    #[param(minimum = 1, maximum = 1000, default = 500)]
    limit: Option<u64>,
}

fn parse_time(
    field: &str,
    text: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    text.map(|text| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| at.to_utc())
            .map_err(|err| {
                ApiError::field(
                    field,
                    format!("must be an RFC 3339 time ({err}), got {text:?}"),
                )
            })
    })
    .transpose()
}

#[utoipa::path(get, path = "/api/v1/markets/{symbol}/candles", tag = "market", operation_id = "market_candles",
    params(("symbol" = String, Path, description = "BTC/USDT, BTC-USDT, any case"), CandlesQuery),
    responses(
        (status = 200, description = "Buckets with trades, oldest first", body = [CandleDto]),
        (status = 400, description = "Unknown interval, malformed time, limit out of range", body = crate::dto::ErrorBody),
        (status = 404, description = "Unknown symbol", body = crate::dto::ErrorBody),
    ))]
pub async fn candles(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<CandlesQuery>,
) -> Result<Json<Vec<CandleDto>>, ApiError> {
    let interval: market::Interval = query
        .interval
        .as_deref()
        .ok_or_else(|| ApiError::field("interval", "is required (1m, 5m, 15m, 1h, 4h, 1d)"))?
        .parse()?;
    let request = market::CandleQuery {
        interval,
        start: parse_time("start", query.start.as_deref())?,
        end: parse_time("end", query.end.as_deref())?,
        limit: page_limit(query.limit, 500, market::MAX_CANDLES)?,
    };
    let symbol = canonical_symbol(&symbol);
    let candles = state
        .reads
        .public(async |db| market::candles(db, &symbol, request).await)
        .await?;
    Ok(Json(candles.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/symbols", tag = "market",
    responses((status = 200, description = "Every symbol and its trading parameters", body = [SymbolDto])))]
pub async fn symbols(State(state): State<AppState>) -> Result<Json<Vec<SymbolDto>>, ApiError> {
    let all = state
        .reads
        .public(async |db| market::symbols(db).await)
        .await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

/// Query of `GET /api/v1/trades`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecentTradesQuery {
    /// BTC/USDT, BTC-USDT, any case.
    #[param(required = true, value_type = String, example = "BTC-USDT")]
    symbol: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
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
        .reads
        .public(async |db| service::trades::recent(db, &symbol, limit).await)
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
        .reads
        .public(async |db| service::trades::get(db, trade_id).await)
        .await?;
    Ok(Json(trade.into()))
}
