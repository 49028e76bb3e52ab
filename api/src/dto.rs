//! The JSON shapes of the contract: decimals as strings, RFC 3339 UTC times,
//! upper-case enums, symbols in their database form.

use entity::{orders, symbols, trades};
use serde::{Deserialize, Serialize};
use service::{OrderStatus, OrderType, Side, TimeInForce};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::wire::{Dec, Time};

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
    pub quantity: Dec,
    /// LIMIT and STOP_LIMIT only.
    pub price: Option<Dec>,
    /// STOP and STOP_LIMIT only.
    pub stop_price: Option<Dec>,
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
    pub quantity: Dec,
    pub filled_quantity: Dec,
    pub price: Option<Dec>,
    pub stop_price: Option<Dec>,
    pub average_price: Option<Dec>,
    #[schema(value_type = String)]
    pub time_in_force: TimeInForce,
    pub client_order_id: Option<String>,
    pub created_at: Time,
    pub updated_at: Time,
    pub filled_at: Option<Time>,
    pub cancelled_at: Option<Time>,
    pub expires_at: Option<Time>,
}

impl From<orders::Model> for OrderDto {
    fn from(o: orders::Model) -> OrderDto {
        OrderDto {
            id: o.order_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            status: o.status,
            quantity: Dec(o.quantity),
            filled_quantity: Dec(o.filled_quantity),
            price: o.price.map(Dec),
            stop_price: o.stop_price.map(Dec),
            average_price: o.average_price.map(Dec),
            time_in_force: o.time_in_force,
            client_order_id: o.client_order_id,
            created_at: Time::from(o.created_at),
            updated_at: Time::from(o.updated_at),
            filled_at: o.filled_at.map(Time),
            cancelled_at: o.cancelled_at.map(Time),
            expires_at: o.expires_at.map(Time),
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
    pub price: Dec,
    pub quantity: Dec,
    /// The side of the order that took liquidity.
    #[schema(value_type = String, example = "BUY")]
    pub taker_side: Side,
    pub is_buyer_maker: bool,
    pub executed_at: Time,
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
            price: Dec(t.price),
            quantity: Dec(t.quantity),
            taker_side: taker_side(t.is_buyer_maker),
            is_buyer_maker: t.is_buyer_maker,
            executed_at: Time::from(t.executed_at),
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
    pub fee: Dec,
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
            fee: Dec(fee),
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
                price: Dec(t.price),
                quantity: Dec(t.quantity),
                taker_side: taker_side(is_buyer_maker),
                is_buyer_maker,
                executed_at: Time::from(t.executed_at),
            },
            order_id: t.order_id,
            side: t.side,
            fee: Dec(t.fee),
            fee_asset: t.fee_asset,
            is_maker: t.is_maker,
        }
    }
}

/// One price level of the book.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelDto {
    pub price: Dec,
    /// Remaining quantity at this price.
    pub volume: Dec,
    pub count: i64,
}

/// `GET /api/v1/orderbook/{symbol}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBookDto {
    pub symbol: String,
    pub bids: Vec<LevelDto>,
    pub asks: Vec<LevelDto>,
    pub timestamp: Time,
}

fn level(level: service::market::PriceLevel) -> LevelDto {
    LevelDto {
        price: Dec(level.price),
        volume: Dec(level.quantity),
        count: level.order_count,
    }
}

impl From<service::market::OrderBook> for OrderBookDto {
    fn from(book: service::market::OrderBook) -> OrderBookDto {
        OrderBookDto {
            symbol: book.symbol,
            bids: book.bids.into_iter().map(level).collect(),
            asks: book.asks.into_iter().map(level).collect(),
            timestamp: Time::from(book.timestamp),
        }
    }
}

/// `GET /api/v1/markets/{symbol}/ticker`; fields without data are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct TickerDto {
    pub symbol: String,
    pub last_price: Option<Dec>,
    pub best_bid_price: Option<Dec>,
    pub best_ask_price: Option<Dec>,
    pub best_bid_volume: Option<Dec>,
    pub best_ask_volume: Option<Dec>,
    pub spread: Option<Dec>,
    pub spread_percentage: Option<Dec>,
    pub total_bids_volume: Option<Dec>,
    pub total_asks_volume: Option<Dec>,
    pub timestamp: Time,
}

impl From<service::market::Ticker> for TickerDto {
    fn from(t: service::market::Ticker) -> TickerDto {
        TickerDto {
            symbol: t.symbol,
            last_price: t.last_price.map(Dec),
            best_bid_price: t.best_bid_price.map(Dec),
            best_ask_price: t.best_ask_price.map(Dec),
            best_bid_volume: t.best_bid_volume.map(Dec),
            best_ask_volume: t.best_ask_volume.map(Dec),
            spread: t.spread.map(Dec),
            spread_percentage: t.spread_percentage.map(Dec),
            total_bids_volume: t.total_bids_volume.map(Dec),
            total_asks_volume: t.total_asks_volume.map(Dec),
            timestamp: Time::from(t.timestamp),
        }
    }
}

/// `GET /api/v1/markets/{symbol}/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketStatsDto {
    pub symbol: String,
    #[schema(example = "24h")]
    pub period: String,
    pub period_start: Time,
    pub period_end: Time,
    pub trade_count: i64,
    pub base_volume: Dec,
    pub quote_volume: Dec,
    pub vwap: Option<Dec>,
    pub high: Option<Dec>,
    pub low: Option<Dec>,
    pub last: Option<Dec>,
}

impl From<service::market::MarketStats> for MarketStatsDto {
    fn from(s: service::market::MarketStats) -> MarketStatsDto {
        MarketStatsDto {
            symbol: s.symbol,
            period: s.period.as_str().to_owned(),
            period_start: Time::from(s.period_start),
            period_end: Time::from(s.period_end),
            trade_count: s.trade_count,
            base_volume: Dec(s.base_volume),
            quote_volume: Dec(s.quote_volume),
            vwap: s.vwap.map(Dec),
            high: s.high.map(Dec),
            low: s.low.map(Dec),
            last: s.last.map(Dec),
        }
    }
}

/// One bucket of `GET /api/v1/markets/{symbol}/candles`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandleDto {
    /// The bucket's start, a multiple of the interval since the UTC epoch.
    pub open_time: Time,
    /// The first trade's price (by execution time, then trade id).
    pub open: Dec,
    pub high: Dec,
    pub low: Dec,
    /// The last trade's price.
    pub close: Dec,
    /// Base quantity traded.
    pub volume: Dec,
    /// Σ price × quantity.
    pub quote_volume: Dec,
    pub trade_count: i64,
}

impl From<service::market::Candle> for CandleDto {
    fn from(c: service::market::Candle) -> CandleDto {
        CandleDto {
            open_time: Time::from(c.open_time.fixed_offset()),
            open: Dec(c.open),
            high: Dec(c.high),
            low: Dec(c.low),
            close: Dec(c.close),
            volume: Dec(c.volume),
            quote_volume: Dec(c.quote_volume),
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
    pub fill_rate: Option<Dec>,
}

impl From<service::market::FillRate> for FillRateDto {
    fn from(f: service::market::FillRate) -> FillRateDto {
        FillRateDto {
            days: f.days,
            total_orders: f.total_orders,
            filled_orders: f.filled_orders,
            partially_filled_orders: f.partially_filled_orders,
            cancelled_orders: f.cancelled_orders,
            fill_rate: f.fill_rate.map(Dec),
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
    pub tick_size: Dec,
    pub min_order_size: Dec,
    pub max_order_size: Dec,
    pub min_order_value: Dec,
    pub price_band_percentage: Dec,
    pub maker_fee: Dec,
    pub taker_fee: Dec,
}

impl From<symbols::Model> for SymbolDto {
    fn from(s: symbols::Model) -> SymbolDto {
        SymbolDto {
            symbol: s.symbol,
            base_asset: s.base_asset,
            quote_asset: s.quote_asset,
            status: s.status,
            tick_size: Dec(s.tick_size),
            min_order_size: Dec(s.min_order_size),
            max_order_size: Dec(s.max_order_size),
            min_order_value: Dec(s.min_order_value),
            price_band_percentage: Dec(s.price_band_percentage),
            maker_fee: Dec(s.maker_fee),
            taker_fee: Dec(s.taker_fee),
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
