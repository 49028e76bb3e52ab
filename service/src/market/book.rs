//! The live book: depth per price level, best bid/ask, ticker.
//!
//! The book is the symbol's resting LIMIT orders (OPEN or PARTIALLY_FILLED,
//! with a price); untriggered STOP, STOP_LIMIT and TRAILING_STOP orders are not
//! liquidity (D9). Every predicate below repeats the partial predicate of
//! `IDX_orders_matching` / `IDX_orders_active` so the planner can use them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde::Serialize;

use super::{ensure_symbol, statement};
use crate::error::{Result, ServiceError};
use crate::pagination::MAX_LIMIT;

/// One price level of one side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceLevel {
    pub price: Decimal,
    /// The remaining (unfilled) quantity of the level's orders.
    pub quantity: Decimal,
    pub order_count: i64,
}

/// The aggregated book of a symbol, best levels first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderBook {
    pub symbol: String,
    /// Highest price first.
    pub bids: Vec<PriceLevel>,
    /// Lowest price first.
    pub asks: Vec<PriceLevel>,
    pub timestamp: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct LevelRow {
    side: String,
    price: Decimal,
    quantity: Decimal,
    order_count: i64,
}

/// The best `$2` levels of each side, read from `market_levels` (kept by the
/// schema's triggers on `orders`, migration 9): a walk of its primary key
/// that stops after the n-th level, so the cost follows the levels asked for,
/// not the number of resting orders or of `orders` partitions.
pub const DEPTH: &str = r#"
(SELECT 'BUY'::text AS side, l.price, l.quantity, l.order_count
 FROM market_levels l
 WHERE l.symbol = $1 AND l.side = 'BUY'
 ORDER BY l.price DESC
 LIMIT $2)
UNION ALL
(SELECT 'SELL'::text, l.price, l.quantity, l.order_count
 FROM market_levels l
 WHERE l.symbol = $1 AND l.side = 'SELL'
 ORDER BY l.price ASC
 LIMIT $2)"#;

/// The best `levels` price levels (1..=[`MAX_LIMIT`]) of each side of the
/// symbol's book: bids highest first, asks lowest first, each with its
/// remaining quantity and order count. Both sides come from one statement,
/// so they are one consistent view of the book.
///
/// Errors: [`ServiceError::UnknownSymbol`], [`ServiceError::InvalidArgument`]
/// (`depth`).
pub async fn depth<C: ConnectionTrait>(db: &C, symbol: &str, levels: u64) -> Result<OrderBook> {
    check_depth(levels)?;
    let rows =
        LevelRow::find_by_statement(statement(DEPTH, [symbol.into(), (levels as i64).into()]))
            .all(db)
            .await?;
    if rows.is_empty() {
        ensure_symbol(db, symbol).await?;
    }
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for row in rows {
        let level = PriceLevel {
            price: row.price,
            quantity: row.quantity,
            order_count: row.order_count,
        };
        if row.side == "BUY" {
            bids.push(level);
        } else {
            asks.push(level);
        }
    }
    Ok(OrderBook {
        symbol: symbol.to_owned(),
        bids,
        asks,
        timestamp: Utc::now(),
    })
}

pub(crate) fn check_depth(levels: u64) -> Result<()> {
    if (1..=MAX_LIMIT).contains(&levels) {
        Ok(())
    } else {
        Err(ServiceError::argument(
            "depth",
            format!("must be between 1 and {MAX_LIMIT}, got {levels}"),
        ))
    }
}

/// The top of the book; `None` where a side is empty.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct BestBidAsk {
    pub symbol: String,
    pub best_bid: Option<Decimal>,
    /// Remaining quantity at the best bid.
    pub best_bid_volume: Option<Decimal>,
    pub best_ask: Option<Decimal>,
    pub best_ask_volume: Option<Decimal>,
    /// best_ask − best_bid.
    pub spread: Option<Decimal>,
    /// spread / best_bid × 100, rounded to 4 places.
    pub spread_percentage: Option<Decimal>,
}

/// The best level of each side from `market_levels` (`bid`, `ask`), joined
/// to `symbols s`: shared by [`BEST_BID_ASK`] and [`TICKER`].
macro_rules! top_of_book {
    () => {
        "FROM symbols s
LEFT JOIN LATERAL (
    SELECT l.price, l.quantity FROM market_levels l
    WHERE l.symbol = $1 AND l.side = 'BUY' ORDER BY l.price DESC LIMIT 1
) bid ON true
LEFT JOIN LATERAL (
    SELECT l.price, l.quantity FROM market_levels l
    WHERE l.symbol = $1 AND l.side = 'SELL' ORDER BY l.price ASC LIMIT 1
) ask ON true
"
    };
}

/// A [`BestBidAsk`]: the best level of each side, with the spread as
/// `get_best_bid_ask` computes it. No row: unknown symbol.
pub const BEST_BID_ASK: &str = concat!(
    "
SELECT s.symbol, bid.price AS best_bid, bid.quantity AS best_bid_volume,
       ask.price AS best_ask, ask.quantity AS best_ask_volume,
       ask.price - bid.price AS spread,
       round((ask.price - bid.price) / nullif(bid.price, 0) * 100, 4) AS spread_percentage
",
    top_of_book!(),
    "WHERE s.symbol = $1"
);

/// The best bid and ask of the symbol, the volume at each, and the spread.
///
/// Errors: [`ServiceError::UnknownSymbol`].
pub async fn best_bid_ask<C: ConnectionTrait>(db: &C, symbol: &str) -> Result<BestBidAsk> {
    BestBidAsk::find_by_statement(statement(BEST_BID_ASK, [symbol.into()]))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::UnknownSymbol(symbol.to_owned()))
}

/// The api's ticker; fields without data are `None`.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct Ticker {
    pub symbol: String,
    /// Price of the newest trade.
    pub last_price: Option<Decimal>,
    pub best_bid_price: Option<Decimal>,
    pub best_ask_price: Option<Decimal>,
    pub best_bid_volume: Option<Decimal>,
    pub best_ask_volume: Option<Decimal>,
    pub spread: Option<Decimal>,
    pub spread_percentage: Option<Decimal>,
    /// Remaining quantity of every resting bid.
    pub total_bids_volume: Option<Decimal>,
    /// Remaining quantity of every resting ask.
    pub total_asks_volume: Option<Decimal>,
    /// When it was read (the server's clock).
    pub timestamp: DateTime<Utc>,
}

/// A [`Ticker`]: what [`BEST_BID_ASK`] reports, the last trade (`market_last_trade`) and
/// the two side totals (`market_sides`, kept with the levels): a handful of
/// primary-key reads, whatever the size of the book or the trade count.
pub const TICKER: &str = concat!(
    "
SELECT s.symbol, (SELECT m.price FROM market_last_trade m WHERE m.symbol = $1) AS last_price,
       bid.price AS best_bid_price, bid.quantity AS best_bid_volume,
       ask.price AS best_ask_price, ask.quantity AS best_ask_volume,
       ask.price - bid.price AS spread,
       round((ask.price - bid.price) / nullif(bid.price, 0) * 100, 4) AS spread_percentage,
       bids.quantity AS total_bids_volume, asks.quantity AS total_asks_volume,
       clock_timestamp() AS timestamp
",
    top_of_book!(),
    "LEFT JOIN market_sides bids ON bids.symbol = $1 AND bids.side = 'BUY'
LEFT JOIN market_sides asks ON asks.symbol = $1 AND asks.side = 'SELL'
WHERE s.symbol = $1"
);

/// The symbol's ticker: last trade price, top of the book with volumes and
/// spread, and the total resting volume per side, read in one statement.
///
/// Errors: [`ServiceError::UnknownSymbol`].
pub async fn ticker<C: ConnectionTrait>(db: &C, symbol: &str) -> Result<Ticker> {
    Ticker::find_by_statement(statement(TICKER, [symbol.into()]))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::UnknownSymbol(symbol.to_owned()))
}
