//! Orders: placement with price-time matching, cancel, expiry, queries.
//!
//! # Placing an order
//!
//! [`place`] (or [`place_with`], within other [`PlacementLimits`]) validates the
//! order against its symbol (ACTIVE; quantity within the symbol's sizes with at
//! most 8 decimals; prices positive multiples of the tick size; a LIMIT notional
//! of at least `min_order_value` and a LIMIT price within the price band around
//! the last trade) and its user's resting orders (below), then, in one
//! transaction serialized per symbol, matches it:
//!
//! 1. against the resting LIMIT orders of the other side (untriggered stop orders
//!    are not in the book), best price first, oldest first within a price;
//! 2. each match trades at the resting (maker) order's price, for the smaller
//!    remaining quantity; fees are price × quantity × the symbol's maker or taker
//!    fee, rounded half-up to 8 places, in the quote asset;
//! 3. both orders get their filled quantity, volume-weighted average price and
//!    status (FILLED, or PARTIALLY_FILLED);
//! 4. self-trade prevention: when the next resting order belongs to the same user,
//!    matching stops and the incoming order's rest expires;
//! 5. the fill bound: one order's sweep makes at most
//!    [`PlacementLimits::max_fills`] fills (default 1000); when more of the book is
//!    still in reach, matching stops there and the incoming order's rest expires
//!    like after self-trade prevention, a LIMIT order's too (resting it would
//!    leave the book crossed), and a FOK order executes nothing;
//! 6. what remains of a GTC or DAY LIMIT order rests; of an IOC or MARKET order,
//!    expires; a FOK order that cannot fill completely at once executes nothing
//!    and expires;
//! 7. after trades, the symbol's stop orders whose stop price the last trade price
//!    reached trigger in the order the price reached them (BUY stops lowest stop
//!    price first, SELL stops highest first, equal stop prices oldest first):
//!    STOP_LIMIT becomes LIMIT, STOP becomes MARKET; each leaves the watchlist and
//!    is matched in turn, as if just placed: one that rests queues behind the
//!    orders resting before it triggered (its `created_at`, the book's time
//!    priority, becomes the trigger time). A stop order whose stop price the last
//!    trade price has already reached triggers when it is placed;
//! 8. the trigger bound: one placement triggers at most
//!    [`PlacementLimits::max_triggered_stops`] stop orders (default 100). The
//!    others the price reached become PENDING (reached, not yet triggered; still
//!    in the watchlist, still cancellable) and trigger first, in the same order,
//!    at the next placement on the symbol that trades, whatever the price has
//!    done since, or at
//!    [`maintenance::trigger_reached_stops`](crate::maintenance::trigger_reached_stops),
//!    which a scheduler runs every minute so a quiet market does not strand them.
//!    A stop order placed while others wait PENDING queues behind them, and is
//!    returned PENDING when the bound leaves it waiting.
//!
//! A `(user, client_order_id)` pair used within 24 hours is refused with
//! [`ServiceError::DuplicateClientOrderId`](crate::ServiceError::DuplicateClientOrderId),
//! also when two placements race.
//!
//! # Resting orders per user
//!
//! An order that could rest (LIMIT GTC or DAY, STOP, STOP_LIMIT; not MARKET, IOC or
//! FOK) is refused with
//! [`ServiceError::TooManyRestingOrders`](crate::ServiceError::TooManyRestingOrders)
//! when its user already has [`PlacementLimits::max_resting_orders_per_user`]
//! (default 1000) orders OPEN, PARTIALLY_FILLED or PENDING, over all symbols and
//! types. The count runs under the book lock, so it is exact within a symbol; two
//! placements of one user on different symbols at the same moment can each
//! overshoot it by one.
//!
//! # Contention
//!
//! A serialization failure or deadlock (40001, 40P01) in a placement, a cancel or
//! an expiry run is retried at once, the whole transaction again, up to
//! [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS) (3) times in total; then the
//! error is [`ServiceError::Contention`](crate::ServiceError::Contention) and
//! nothing was stored.

pub(crate) mod lifecycle;
pub(crate) mod limits;
mod matching;
mod query;
#[cfg(feature = "sequencer")]
mod sequencer;
pub(crate) mod store;
mod validate;

pub use lifecycle::{cancel, cancel_many, expire_due};
pub use limits::PlacementLimits;
pub(crate) use matching::continue_stops;
pub use matching::{place, place_many, place_with};
pub use query::{OrderFilter, get, list, list_statement, order_from_row};
#[cfg(feature = "sequencer")]
pub use sequencer::{Sequencer, SequencerSettings, SequencerStats};

use chrono::{DateTime, FixedOffset};
use entity::{orders, trades};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{OrderType, Side, TimeInForce};

/// An order to place.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOrder {
    pub user_id: Uuid,
    /// The database form, `BTC/USDT`.
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: Decimal,
    /// LIMIT and STOP_LIMIT only.
    pub price: Option<Decimal>,
    /// STOP and STOP_LIMIT only.
    pub stop_price: Option<Decimal>,
    pub time_in_force: TimeInForce,
    /// At most 100 characters; unique per user within 24 hours.
    pub client_order_id: Option<String>,
    /// The order expires (EXPIRED) at this time if it still rests.
    pub expires_at: Option<DateTime<FixedOffset>>,
    /// WEB, MOBILE, API or BOT; stored as given.
    pub order_source: Option<String>,
}

impl NewOrder {
    /// A GTC LIMIT order.
    pub fn limit(
        user_id: Uuid,
        symbol: &str,
        side: Side,
        quantity: Decimal,
        price: Decimal,
    ) -> NewOrder {
        NewOrder {
            price: Some(price),
            ..NewOrder::market(user_id, symbol, side, quantity)
        }
        .with_type(OrderType::Limit)
        .with_time_in_force(TimeInForce::Gtc)
    }

    /// A MARKET order, IOC: it never rests (a FOK one fills completely or
    /// not at all: [`NewOrder::with_time_in_force`]).
    pub fn market(user_id: Uuid, symbol: &str, side: Side, quantity: Decimal) -> NewOrder {
        NewOrder {
            user_id,
            symbol: symbol.to_owned(),
            side,
            order_type: OrderType::Market,
            quantity,
            price: None,
            stop_price: None,
            time_in_force: TimeInForce::Ioc,
            client_order_id: None,
            expires_at: None,
            order_source: None,
        }
    }

    /// A GTC STOP order: a MARKET order once the last trade price reaches
    /// `stop_price`.
    pub fn stop(
        user_id: Uuid,
        symbol: &str,
        side: Side,
        quantity: Decimal,
        stop_price: Decimal,
    ) -> NewOrder {
        NewOrder {
            stop_price: Some(stop_price),
            ..NewOrder::market(user_id, symbol, side, quantity)
        }
        .with_type(OrderType::Stop)
        .with_time_in_force(TimeInForce::Gtc)
    }

    /// A GTC STOP_LIMIT order: a LIMIT order at `price` once the last trade
    /// price reaches `stop_price`.
    pub fn stop_limit(
        user_id: Uuid,
        symbol: &str,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        stop_price: Decimal,
    ) -> NewOrder {
        NewOrder {
            price: Some(price),
            stop_price: Some(stop_price),
            ..NewOrder::market(user_id, symbol, side, quantity)
        }
        .with_type(OrderType::StopLimit)
        .with_time_in_force(TimeInForce::Gtc)
    }

    /// The same order with another type.
    pub fn with_type(mut self, order_type: OrderType) -> NewOrder {
        self.order_type = order_type;
        self
    }

    /// The same order with another time in force.
    pub fn with_time_in_force(mut self, time_in_force: TimeInForce) -> NewOrder {
        self.time_in_force = time_in_force;
        self
    }

    /// The same order with a client order id (for idempotent retries).
    pub fn with_client_order_id(mut self, client_order_id: impl Into<String>) -> NewOrder {
        self.client_order_id = Some(client_order_id.into());
        self
    }

    /// The same order with an expiry time.
    pub fn with_expires_at(mut self, expires_at: DateTime<FixedOffset>) -> NewOrder {
        self.expires_at = Some(expires_at);
        self
    }
}

/// An order as it stands after matching, and the trades it executed.
#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    pub order: orders::Model,
    /// In execution order.
    pub trades: Vec<trades::Model>,
}

/// What a placement did: the placed order and its trades, and the stop orders
/// its trades triggered, each with its own trades, in trigger order.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub order: orders::Model,
    pub trades: Vec<trades::Model>,
    pub triggered: Vec<Execution>,
}
