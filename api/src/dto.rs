//! The JSON shapes of the contract: decimals as strings, RFC 3339 UTC times,
//! upper-case enums, symbols in their database form.

use chrono::{DateTime, FixedOffset, Utc};
use entity::{orders, symbols, trades};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use service::{OrderStatus, OrderType, Side, TimeInForce};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::extract::{
    decimal, optional_decimal, serialize_decimal, serialize_optional_decimal,
    serialize_optional_timestamp, serialize_timestamp,
};

/// `POST /api/v1/orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// `BTC/USDT`, `BTC-USDT` or any letter case.
    #[schema(example = "BTC/USDT")]
    pub symbol: String,
    #[schema(value_type = String, example = "BUY")]
    pub side: Side,
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "LIMIT")]
    pub order_type: OrderType,
    #[serde(deserialize_with = "decimal")]
    #[schema(value_type = String, example = "0.5")]
    pub quantity: Decimal,
    /// LIMIT and STOP_LIMIT only.
    #[serde(default, deserialize_with = "optional_decimal")]
    #[schema(value_type = Option<String>, example = "50000.00")]
    pub price: Option<Decimal>,
    /// STOP and STOP_LIMIT only.
    #[serde(default, deserialize_with = "optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub stop_price: Option<Decimal>,
    /// GTC (the default; IOC for a MARKET order, which never rests), IOC, FOK
    /// or DAY.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "GTC")]
    pub time_in_force: Option<TimeInForce>,
    /// At most 100 characters; unique per user within 24 hours.
    #[serde(default)]
    pub client_order_id: Option<String>,
}

/// An order as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDto {
    pub id: Uuid,
    pub symbol: String,
    #[schema(value_type = String)]
    pub side: Side,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub order_type: OrderType,
    #[schema(value_type = String)]
    pub status: OrderStatus,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub filled_quantity: Decimal,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub price: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub stop_price: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub average_price: Option<Decimal>,
    #[schema(value_type = String)]
    pub time_in_force: TimeInForce,
    pub client_order_id: Option<String>,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<FixedOffset>,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<FixedOffset>,
    #[serde(serialize_with = "serialize_optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub filled_at: Option<DateTime<FixedOffset>>,
    #[serde(serialize_with = "serialize_optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<DateTime<FixedOffset>>,
    #[serde(serialize_with = "serialize_optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<FixedOffset>>,
}

impl From<orders::Model> for OrderDto {
    fn from(o: orders::Model) -> OrderDto {
        OrderDto {
            id: o.order_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            status: o.status,
            quantity: o.quantity,
            filled_quantity: o.filled_quantity,
            price: o.price,
            stop_price: o.stop_price,
            average_price: o.average_price,
            time_in_force: o.time_in_force,
            client_order_id: o.client_order_id,
            created_at: o.created_at,
            updated_at: o.updated_at,
            filled_at: o.filled_at,
            cancelled_at: o.cancelled_at,
            expires_at: o.expires_at,
        }
    }
}

/// A trade as anyone may see it (`GET /api/v1/trades`, `GET
/// /api/v1/trades/{id}`): public market data names no user, no order and no
/// fee.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeDto {
    pub id: Uuid,
    pub symbol: String,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub price: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// The side of the order that took liquidity.
    #[schema(value_type = String, example = "BUY")]
    pub taker_side: Side,
    pub is_buyer_maker: bool,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub executed_at: DateTime<FixedOffset>,
}

/// The taker's side of a trade whose buyer was (or was not) the maker.
fn taker_side(is_buyer_maker: bool) -> Side {
    if is_buyer_maker {
        Side::Sell
    } else {
        Side::Buy
    }
}

impl From<trades::Model> for TradeDto {
    fn from(t: trades::Model) -> TradeDto {
        TradeDto {
            id: t.trade_id,
            symbol: t.symbol,
            price: t.price,
            quantity: t.quantity,
            taker_side: taker_side(t.is_buyer_maker),
            is_buyer_maker: t.is_buyer_maker,
            executed_at: t.executed_at,
        }
    }
}

/// `201` of `POST /api/v1/orders`: the order after matching and its trades,
/// seen from the caller's side.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacementDto {
    pub order: OrderDto,
    pub trades: Vec<OwnTradeDto>,
}

impl From<service::orders::Placement> for PlacementDto {
    fn from(placed: service::orders::Placement) -> PlacementDto {
        let order_id = placed.order.order_id;
        PlacementDto {
            order: placed.order.into(),
            trades: placed
                .trades
                .into_iter()
                .map(|trade| OwnTradeDto::of_order(trade, order_id))
                .collect(),
        }
    }
}

/// A trade seen from the caller's side (a placement's trades, `GET
/// /api/v1/me/trades`): the public fields, plus the caller's own order, side,
/// fee and maker flag; never the counterparty's user or order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnTradeDto {
    /// What anyone may see of the trade.
    #[serde(flatten)]
    pub public: TradeDto,
    /// The caller's order this trade filled.
    pub order_id: Uuid,
    /// The caller's side: BUY when the caller bought.
    #[schema(value_type = String)]
    pub side: Side,
    /// The caller's fee, in `fee_asset`.
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub fee: Decimal,
    pub fee_asset: String,
    /// True when the caller's order was resting (the maker).
    pub is_maker: bool,
}

impl OwnTradeDto {
    /// `trade` seen from the side of the order `order_id`.
    pub fn of_order(trade: trades::Model, order_id: Uuid) -> OwnTradeDto {
        let bought = trade.buyer_order_id == order_id;
        let (side, fee, fee_asset) = if bought {
            (Side::Buy, trade.buyer_fee, trade.buyer_fee_asset.clone())
        } else {
            (Side::Sell, trade.seller_fee, trade.seller_fee_asset.clone())
        };
        let is_maker = bought == trade.is_buyer_maker;
        OwnTradeDto {
            public: trade.into(),
            order_id,
            side,
            fee,
            fee_asset,
            is_maker,
        }
    }
}

impl From<service::trades::UserTrade> for OwnTradeDto {
    fn from(t: service::trades::UserTrade) -> OwnTradeDto {
        let is_buyer_maker = (t.side == Side::Buy) == t.is_maker;
        OwnTradeDto {
            public: TradeDto {
                id: t.trade_id,
                symbol: t.symbol,
                price: t.price,
                quantity: t.quantity,
                taker_side: taker_side(is_buyer_maker),
                is_buyer_maker,
                executed_at: t.executed_at,
            },
            order_id: t.order_id,
            side: t.side,
            fee: t.fee,
            fee_asset: t.fee_asset,
            is_maker: t.is_maker,
        }
    }
}

/// One price level of the book.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelDto {
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub price: Decimal,
    /// Remaining quantity at this price.
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub volume: Decimal,
    pub count: i64,
}

/// `GET /api/v1/orderbook/{symbol}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBookDto {
    pub symbol: String,
    pub bids: Vec<LevelDto>,
    pub asks: Vec<LevelDto>,
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: String,
}

fn level(level: service::market::PriceLevel) -> LevelDto {
    LevelDto {
        price: level.price,
        volume: level.quantity,
        count: level.order_count,
    }
}

fn utc(at: DateTime<Utc>) -> String {
    crate::extract::timestamp_string(&at.fixed_offset())
}

impl From<service::market::OrderBook> for OrderBookDto {
    fn from(book: service::market::OrderBook) -> OrderBookDto {
        OrderBookDto {
            symbol: book.symbol,
            bids: book.bids.into_iter().map(level).collect(),
            asks: book.asks.into_iter().map(level).collect(),
            timestamp: utc(book.timestamp),
        }
    }
}

/// `GET /api/v1/markets/{symbol}/ticker`; fields without data are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct TickerDto {
    pub symbol: String,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub last_price: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub best_bid_price: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub best_ask_price: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub best_bid_volume: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub best_ask_volume: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub spread: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub spread_percentage: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub total_bids_volume: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub total_asks_volume: Option<Decimal>,
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: String,
}

impl From<service::market::Ticker> for TickerDto {
    fn from(t: service::market::Ticker) -> TickerDto {
        TickerDto {
            symbol: t.symbol,
            last_price: t.last_price,
            best_bid_price: t.best_bid_price,
            best_ask_price: t.best_ask_price,
            best_bid_volume: t.best_bid_volume,
            best_ask_volume: t.best_ask_volume,
            spread: t.spread,
            spread_percentage: t.spread_percentage,
            total_bids_volume: t.total_bids_volume,
            total_asks_volume: t.total_asks_volume,
            timestamp: utc(t.timestamp),
        }
    }
}

/// `GET /api/v1/markets/{symbol}/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketStatsDto {
    pub symbol: String,
    #[schema(example = "24h")]
    pub period: String,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub period_start: DateTime<FixedOffset>,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub period_end: DateTime<FixedOffset>,
    pub trade_count: i64,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub base_volume: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub quote_volume: Decimal,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub vwap: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub high: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub low: Option<Decimal>,
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub last: Option<Decimal>,
}

impl From<service::market::MarketStats> for MarketStatsDto {
    fn from(s: service::market::MarketStats) -> MarketStatsDto {
        MarketStatsDto {
            symbol: s.symbol,
            period: s.period.as_str().to_owned(),
            period_start: s.period_start,
            period_end: s.period_end,
            trade_count: s.trade_count,
            base_volume: s.base_volume,
            quote_volume: s.quote_volume,
            vwap: s.vwap,
            high: s.high,
            low: s.low,
            last: s.last,
        }
    }
}

/// One bucket of `GET /api/v1/markets/{symbol}/candles`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandleDto {
    /// The bucket's start, a multiple of the interval since the UTC epoch.
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub open_time: DateTime<FixedOffset>,
    /// The first trade's price (by execution time, then trade id).
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub open: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub high: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub low: Decimal,
    /// The last trade's price.
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub close: Decimal,
    /// Base quantity traded.
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub volume: Decimal,
    /// Σ price × quantity.
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub quote_volume: Decimal,
    pub trade_count: i64,
}

impl From<service::market::Candle> for CandleDto {
    fn from(c: service::market::Candle) -> CandleDto {
        CandleDto {
            open_time: c.open_time.fixed_offset(),
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
            trade_count: c.trade_count,
        }
    }
}

/// `GET /api/v1/me/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FillRateDto {
    pub days: u32,
    pub total_orders: i64,
    pub filled_orders: i64,
    pub partially_filled_orders: i64,
    pub cancelled_orders: i64,
    /// filled / total × 100, 2 places; null without orders.
    #[serde(serialize_with = "serialize_optional_decimal")]
    #[schema(value_type = Option<String>)]
    pub fill_rate: Option<Decimal>,
}

impl From<service::market::FillRate> for FillRateDto {
    fn from(f: service::market::FillRate) -> FillRateDto {
        FillRateDto {
            days: f.days,
            total_orders: f.total_orders,
            filled_orders: f.filled_orders,
            partially_filled_orders: f.partially_filled_orders,
            cancelled_orders: f.cancelled_orders,
            fill_rate: f.fill_rate,
        }
    }
}

/// `GET /api/v1/symbols`: a symbol and its trading parameters.
#[derive(Debug, Serialize, ToSchema)]
pub struct SymbolDto {
    pub symbol: String,
    pub base_asset: String,
    pub quote_asset: String,
    #[schema(value_type = String)]
    pub status: service::SymbolStatus,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub tick_size: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub min_order_size: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub max_order_size: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub min_order_value: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub price_band_percentage: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub maker_fee: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub taker_fee: Decimal,
}

impl From<symbols::Model> for SymbolDto {
    fn from(s: symbols::Model) -> SymbolDto {
        SymbolDto {
            symbol: s.symbol,
            base_asset: s.base_asset,
            quote_asset: s.quote_asset,
            status: s.status,
            tick_size: s.tick_size,
            min_order_size: s.min_order_size,
            max_order_size: s.max_order_size,
            min_order_value: s.min_order_value,
            price_band_percentage: s.price_band_percentage,
            maker_fee: s.maker_fee,
            taker_fee: s.taker_fee,
        }
    }
}

/// The error body every non-2xx answer has.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "invalid quantity")]
    pub error: String,
    #[schema(example = "Bad Request")]
    pub code: String,
    #[schema(value_type = Object, example = json!({"error": "quantity: must be greater than 0, got 0"}))]
    pub details: serde_json::Value,
}
