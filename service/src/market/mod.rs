//! Market data: order-book depth, best bid/ask, ticker, trade statistics over
//! 1h/4h/24h/7d/30d (VWAP, volume), OHLCV candles, and a user's fill rate.
//!
//! Every function that takes a symbol answers [`ServiceError::UnknownSymbol`]
//! for a symbol that does not exist, and an empty result (no levels, `None`
//! prices, zero volume) for one that exists but has no orders or trades.
//! Decimals are the database's values: prices and quantities at their stored
//! scale, computed figures rounded where the schema's SQL functions round them.
//!
//! The book reads walk the partial indexes on resting orders in price order and
//! stop at the levels asked for; the statistics read the window's trades;
//! docs/query-plans.md shows the plans on a filled database.
//!
//! ```no_run
//! use service::market::{self, Period};
//! use service::ServiceError;
//!
//! # async fn example(db: &sea_orm::DatabaseConnection) -> Result<(), ServiceError> {
//! let book = market::depth(db, "BTC/USDT", 20).await?;
//! let top = market::best_bid_ask(db, "BTC/USDT").await?;
//! let day = market::stats(db, "BTC/USDT", "24h".parse::<Period>()?).await?;
//! # let _ = (book, top, day); Ok(()) }
//! ```

pub(crate) mod book;
pub(crate) mod candles;
mod period;
pub(crate) mod stats;

pub use book::{BestBidAsk, OrderBook, PriceLevel, Ticker, best_bid_ask, depth, ticker};
pub use candles::{Candle, CandleQuery, Interval, MAX_CANDLES, candles};
pub use period::Period;
pub use stats::{
    FillRate, MAX_FILL_RATE_DAYS, MarketStats, TradingVolume, fill_rate, stats, stats_floor,
    volume, vwap,
};

pub(crate) use book::check_depth;

use sea_orm::ConnectionTrait;

use crate::error::{Result, ServiceError};

pub(crate) use crate::sql::statement;

/// Fails with [`ServiceError::UnknownSymbol`] unless the symbol exists. Reads
/// call it only when their own result is empty, the one case where the symbol
/// may be unknown.
pub(crate) async fn ensure_symbol<C: ConnectionTrait>(db: &C, symbol: &str) -> Result<()> {
    db.query_one_raw(statement(
        "SELECT 1 FROM symbols WHERE symbol = $1",
        [symbol.into()],
    ))
    .await?
    .map(|_| ())
    .ok_or_else(|| ServiceError::UnknownSymbol(symbol.to_owned()))
}

/// Every symbol and its trading parameters, in the order they were created.
pub async fn symbols<C: ConnectionTrait>(db: &C) -> Result<Vec<entity::symbols::Model>> {
    use sea_orm::{EntityTrait, QueryOrder};
    Ok(entity::symbols::Entity::find()
        .order_by_asc(entity::symbols::Column::SymbolId)
        .all(db)
        .await?)
}
