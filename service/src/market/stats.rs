//! Trade statistics over a trailing window, and a user's fill rate.

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde::Serialize;
use uuid::Uuid;

use super::{Period, statement};
use crate::error::{Result, ServiceError};

/// A symbol's trading over `[period_start, period_end]`.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct MarketStats {
    pub symbol: String,
    /// The window asked for (not a column: set by [`stats`]).
    #[sea_orm(skip)]
    pub period: Period,
    pub period_start: DateTime<FixedOffset>,
    pub period_end: DateTime<FixedOffset>,
    pub trade_count: i64,
    /// Σ quantity (0 without trades).
    pub base_volume: Decimal,
    /// Σ price × quantity, rounded to 8 places (0 without trades).
    pub quote_volume: Decimal,
    /// Σ(price × quantity) / Σ quantity, rounded to 8 places.
    pub vwap: Option<Decimal>,
    pub high: Option<Decimal>,
    pub low: Option<Decimal>,
    /// Price of the window's newest trade.
    pub last: Option<Decimal>,
}

/// A symbol's volume over a window, as `get_trading_volume` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TradingVolume {
    pub symbol: String,
    pub period: Period,
    pub period_start: DateTime<FixedOffset>,
    pub period_end: DateTime<FixedOffset>,
    pub trade_count: i64,
    pub base_volume: Decimal,
    pub quote_volume: Decimal,
}

/// `$1` symbol, `$2` window in hours, `$3` an instant at or before the window's
/// start (the caller's clock less a margin). The window is `[now() − $2 h, now()]`,
/// the bounds of `get_trading_volume`; `now()` is fixed for the transaction, so
/// every figure covers the same trades. The totals come from
/// `trade_window_totals` (migration 10): the whole minutes and hours of the
/// window from `trade_candles` (at most 59 + 59 minute rows and 719 hour rows
/// for 30 days), the partial minutes at its two edges from `trades`, planned
/// with the bounds as constants, so the figures equal a computation over the
/// window's trades and the cost does not grow with them. A statement that
/// reads the edges itself, with bounds the planner cannot see, gets a generic
/// plan whose estimate covers every partition, and PostgreSQL's JIT then
/// compiles it at every execution (0.5–1.5 s at full scale). The last price
/// is the symbol's `market_last_trade` when that trade is in the window, else
/// one step down `IDX_trades_symbol_time` (a trade stamped after now).
/// Rounding as `calculate_vwap` and `get_trading_volume` round. No row:
/// unknown symbol.
///
/// `now()` bounds prune only at run time, after the planner has planned (and
/// locked) every partition: 55 ms of planning at five years of partitions.
/// `executed_at >= $3` says the same in a form the planner prunes on (D15).
pub const STATS: &str = r#"
SELECT s.symbol, w.period_start, w.period_end,
       coalesce(a.trade_count, 0)::bigint AS trade_count,
       coalesce(a.volume, 0) AS base_volume,
       coalesce(round(a.quote_volume, 8), 0) AS quote_volume,
       round(a.quote_volume / nullif(a.volume, 0), 8) AS vwap,
       a.high_price AS high,
       a.low_price AS low,
       coalesce(
           (SELECT m.price FROM market_last_trade m
            WHERE m.symbol = $1 AND m.executed_at >= w.period_start
              AND m.executed_at <= w.period_end),
           (SELECT t.price FROM trades t
            WHERE t.symbol = $1 AND t.executed_at >= w.period_start
              AND t.executed_at <= w.period_end AND t.executed_at >= $3
            ORDER BY t.executed_at DESC, t.trade_id DESC LIMIT 1)
       ) AS last
FROM symbols s
CROSS JOIN (SELECT now() - make_interval(hours => $2) AS period_start, now() AS period_end) w
LEFT JOIN LATERAL trade_window_totals($1, w.period_start, w.period_end) a ON true
WHERE s.symbol = $1"#;

/// `$3` of [`STATS`] for a window of `hours`: an hour earlier than the window
/// starts by this process's clock, so a database clock a little behind it
/// loses no trade.
pub fn stats_floor(hours: i32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::TimeDelta::hours(i64::from(hours) + 1)
}

/// Trade count, base and quote volume, VWAP, high, low and last price of the
/// symbol's trades over `period` (ending now).
///
/// Reads the window's stored candles and the trades of its two partial
/// minutes: the cost follows the window's length, not its trades.
///
/// Errors: [`ServiceError::UnknownSymbol`].
pub async fn stats<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    period: Period,
) -> Result<MarketStats> {
    let mut stats = MarketStats::find_by_statement(statement(
        STATS,
        [
            symbol.into(),
            period.hours().into(),
            stats_floor(period.hours()).into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or_else(|| ServiceError::UnknownSymbol(symbol.to_owned()))?;
    stats.period = period;
    Ok(stats)
}

/// The symbol's volume-weighted average price over `period`, rounded to 8
/// places as `calculate_vwap`; `None` without trades.
///
/// Errors: [`ServiceError::UnknownSymbol`].
pub async fn vwap<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    period: Period,
) -> Result<Option<Decimal>> {
    Ok(stats(db, symbol, period).await?.vwap)
}

/// The symbol's trade count and base and quote volume over `period`.
///
/// Errors: [`ServiceError::UnknownSymbol`].
pub async fn volume<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    period: Period,
) -> Result<TradingVolume> {
    let stats = stats(db, symbol, period).await?;
    Ok(TradingVolume {
        symbol: stats.symbol,
        period,
        period_start: stats.period_start,
        period_end: stats.period_end,
        trade_count: stats.trade_count,
        base_volume: stats.base_volume,
        quote_volume: stats.quote_volume,
    })
}

/// A user's orders created over the last `days` days, by outcome.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct FillRate {
    /// Not columns: set by [`fill_rate`] from its arguments.
    #[sea_orm(skip)]
    pub user_id: Uuid,
    #[sea_orm(skip)]
    pub days: u32,
    pub total_orders: i64,
    pub filled_orders: i64,
    pub partially_filled_orders: i64,
    pub cancelled_orders: i64,
    /// filled / total × 100, rounded to 2 places; `None` without orders.
    pub fill_rate: Option<Decimal>,
}

/// The schema's function is already the query we want: a range walk of
/// `IDX_orders_user_created` over the window.
const FILL_RATE: &str = "SELECT total_orders, filled_orders, partially_filled_orders,
        cancelled_orders, fill_rate
    FROM get_order_fill_rate($1, $2)";

/// The longest window [`fill_rate`] accepts: ten years, beyond any retention.
pub const MAX_FILL_RATE_DAYS: u32 = 3650;

/// The user's order outcomes over the last `days` days (1..=3650), as
/// `get_order_fill_rate`.
///
/// Errors: [`ServiceError::InvalidArgument`] (`days`).
pub async fn fill_rate<C: ConnectionTrait>(db: &C, user_id: Uuid, days: u32) -> Result<FillRate> {
    if !(1..=MAX_FILL_RATE_DAYS).contains(&days) {
        return Err(ServiceError::argument(
            "days",
            format!("must be between 1 and {MAX_FILL_RATE_DAYS}, got {days}"),
        ));
    }
    let days_value =
        i32::try_from(days).map_err(|_| ServiceError::argument("days", "too large"))?;
    let mut rate =
        FillRate::find_by_statement(statement(FILL_RATE, [user_id.into(), days_value.into()]))
            .one(db)
            .await?
            .ok_or_else(|| {
                ServiceError::Database(sea_orm::DbErr::RecordNotFound(
                    "get_order_fill_rate returned no row".into(),
                ))
            })?;
    rate.user_id = user_id;
    rate.days = days;
    Ok(rate)
}
