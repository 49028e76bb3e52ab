//! Order and trade operations of the trade engine, on any SeaORM connection or
//! transaction.
//!
//! - [`orders`]: place (validation, price-time matching, stop triggers, within
//!   [`orders::PlacementLimits`]), cancel, expire, get and list a user's orders.
//! - [`trades`]: one trade, a symbol's recent trades, a user's history seen from
//!   their side, an order's fills.
//! - [`market`]: order-book depth, best bid/ask, ticker, statistics, VWAP and
//!   volume, a user's fill rate.
//! - [`maintenance`]: partitions, retention, expiry, PENDING stop triggers, the
//!   materialized book, book snapshots, health; entry points for a scheduler.
//! - [`events`]: the event outbox the schema writes in every changing
//!   transaction (orders, trades, book levels), read by one relay at a time;
//!   the book snapshot a stream of book events continues.
//! - `archive` (the `archive` feature, off by default): partitions past
//!   retention exported to Parquet in a folder or an object store, verified,
//!   then dropped; and restored.
//!
//! Writes retry a serialization failure or deadlock up to
//! [`CONTENTION_ATTEMPTS`] times in total before reporting
//! [`ServiceError::Contention`]; listings refuse a page the database could not
//! take (see [`Page::check`]).
//!
//! Every operation takes `&C` where `C` is a [`sea_orm::DatabaseConnection`] or a
//! [`sea_orm::DatabaseTransaction`], so callers can compose operations in their own
//! transactions. The crate selects no async runtime: enable one on your own
//! `sea-orm` dependency (`runtime-tokio-rustls`, or `runtime-async-std-rustls`).
//!
//! ```no_run
//! use rust_decimal::Decimal;
//! use service::orders::{self, NewOrder};
//! use service::{Side, ServiceError};
//! use uuid::Uuid;
//!
//! # async fn example(db: &sea_orm::DatabaseConnection) -> Result<(), ServiceError> {
//! let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
//! let btc = "BTC/USDT";
//! orders::place(db, NewOrder::limit(alice, btc, Side::Sell, Decimal::ONE, Decimal::new(50_000, 0))).await?;
//! let placed = orders::place(db, NewOrder::market(bob, btc, Side::Buy, Decimal::ONE)).await?;
//! assert_eq!(placed.trades.len(), 1);
//! assert_eq!(placed.trades[0].price, Decimal::new(50_000, 0)); // the maker's price
//! # Ok(()) }
//! ```

/// The README's Rust examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

#[cfg(feature = "archive")]
pub mod archive;
pub mod error;
pub mod events;
pub mod ids;

/// The service's hand-written statements, for tools that must send exactly the
/// same SQL (the benchmark's raw-SQL baseline). Not a stable interface.
#[doc(hidden)]
pub mod statements {
    pub use crate::market::book::{BEST_BID_ASK, DEPTH, TICKER};
    pub use crate::market::candles::statement_text as candles_statement;
    pub use crate::market::stats::STATS;
    pub use crate::orders::lifecycle::CANCEL;
    pub use crate::orders::limits::RESTING_ORDERS;
    pub use crate::orders::store::{
        BOOK_LOCK, LAST_PRICE, LOCK_BOOK_READ_CLOCK, TRIGGERED_STOPS, WRITE_MATCH_AND_TAKER,
        resting_statement,
    };
    pub use crate::trades::history::{
        HISTORY_PAGE, last_week as history_last_week, with_bounds as history_with_bounds,
    };
}
pub mod maintenance;
pub mod market;
pub mod orders;
pub mod pagination;
pub mod pooling;
mod retry;
mod sql;
pub mod trades;

pub use entity::sea_orm_active_enums::{
    OrderSideEnum as Side, OrderStatusEnum as OrderStatus, OrderTypeEnum as OrderType,
    SymbolStatusEnum as SymbolStatus, TimeInForceEnum as TimeInForce,
};
pub use error::{Result, ServiceError};
pub use pagination::{Cursor, Page, Paged};
pub use pooling::TransactionAware;
pub use retry::CONTENTION_ATTEMPTS;

/// Statuses of an order that rests in the book (or waits, for a stop order).
pub const ACTIVE_STATUSES: [OrderStatus; 2] = [OrderStatus::Open, OrderStatus::PartiallyFilled];

/// Statuses an order never leaves.
pub const TERMINAL_STATUSES: [OrderStatus; 4] = [
    OrderStatus::Filled,
    OrderStatus::Cancelled,
    OrderStatus::Rejected,
    OrderStatus::Expired,
];

/// The side an order of `side` trades against.
pub fn opposite(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// True when an order in `status` can never change again.
pub fn is_terminal(status: OrderStatus) -> bool {
    TERMINAL_STATUSES.contains(&status)
}
