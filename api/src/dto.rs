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
    /// GTC (default), IOC, FOK or DAY.
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

/// A trade as clients see it.
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
    pub buyer_order_id: Uuid,
    pub seller_order_id: Uuid,
    pub buyer_user_id: Uuid,
    pub seller_user_id: Uuid,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub buyer_fee: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub seller_fee: Decimal,
    pub buyer_fee_asset: String,
    pub seller_fee_asset: String,
    pub is_buyer_maker: bool,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub executed_at: DateTime<FixedOffset>,
}

impl From<trades::Model> for TradeDto {
    fn from(t: trades::Model) -> TradeDto {
        TradeDto {
            id: t.trade_id,
            symbol: t.symbol,
            price: t.price,
            quantity: t.quantity,
            buyer_order_id: t.buyer_order_id,
            seller_order_id: t.seller_order_id,
            buyer_user_id: t.buyer_user_id,
            seller_user_id: t.seller_user_id,
            buyer_fee: t.buyer_fee,
            seller_fee: t.seller_fee,
            buyer_fee_asset: t.buyer_fee_asset,
            seller_fee_asset: t.seller_fee_asset,
            is_buyer_maker: t.is_buyer_maker,
            executed_at: t.executed_at,
        }
    }
}

/// `201` of `POST /api/v1/orders`: the order after matching and its trades.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacementDto {
    pub order: OrderDto,
    pub trades: Vec<TradeDto>,
}

/// A trade seen from the caller's side (`GET /api/v1/me/trades`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserTradeDto {
    pub id: Uuid,
    pub order_id: Uuid,
    pub symbol: String,
    #[schema(value_type = String)]
    pub side: Side,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub price: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(value_type = String)]
    pub fee: Decimal,
    pub fee_asset: String,
    pub is_maker: bool,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub executed_at: DateTime<FixedOffset>,
}

impl From<service::trades::UserTrade> for UserTradeDto {
    fn from(t: service::trades::UserTrade) -> UserTradeDto {
        UserTradeDto {
            id: t.trade_id,
            order_id: t.order_id,
            symbol: t.symbol,
            side: t.side,
            price: t.price,
            quantity: t.quantity,
            fee: t.fee,
            fee_asset: t.fee_asset,
            is_maker: t.is_maker,
            executed_at: t.executed_at,
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
