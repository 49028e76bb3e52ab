//! The events' messages: what the relay publishes to the broker for an outbox
//! event, and what a WebSocket client receives for a broker message.
//!
//! Broker messages (JSON bodies, routing key in brackets; `<SYMBOL>` as in
//! paths, `BTC-USDT`):
//!
//! - `[trade.<SYMBOL>]` `{"event_id", "type": "trade", "symbol", "data": <public trade>}`
//! - `[book.<SYMBOL>]` `{"event_id", "type": "update", "symbol", "sequence",
//!   "bids": [[price, quantity], …], "asks": […]}` — each level's new total,
//!   `"0"` when it is gone; sequences of a symbol are consecutive.
//! - `[order.<user_id>]` `{"event_id", "type": "order", "user_id", "data": <order>}`
//!   and, for each side of a trade, `{"event_id", "type": "fill", "user_id",
//!   "data": <own trade>}`.
//!
//! Each message's AMQP `message_id` is unique (`<event_id>`, or
//! `<event_id>.buyer` / `<event_id>.seller` for fills): consumers drop a
//! message whose id they have seen (delivery is at least once).

use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use service::events::{BookSnapshot, OutboxEvent};
use service::trades::UserTrade;
use service::{OrderStatus, OrderType, Side, TimeInForce};
use uuid::Uuid;

use super::Frame;
use crate::dto::{OrderDto, OwnTradeDto, TickerDto, TradeDto};
use crate::extract::decimal_string;

/// One message for the broker.
#[derive(Clone, Debug)]
pub struct Message {
    pub routing_key: String,
    pub message_id: String,
    pub body: Vec<u8>,
}

/// `BTC/USDT` → `BTC-USDT` (the form of paths and routing keys).
pub fn path_symbol(symbol: &str) -> String {
    symbol.replace('/', "-")
}

#[derive(Deserialize)]
struct OrderPayload {
    order_id: Uuid,
    user_id: Uuid,
    symbol: String,
    side: Side,
    order_type: OrderType,
    status: OrderStatus,
    quantity: Decimal,
    filled_quantity: Decimal,
    price: Option<Decimal>,
    stop_price: Option<Decimal>,
    average_price: Option<Decimal>,
    time_in_force: TimeInForce,
    client_order_id: Option<String>,
    created_at: DateTime<FixedOffset>,
    updated_at: DateTime<FixedOffset>,
    filled_at: Option<DateTime<FixedOffset>>,
    cancelled_at: Option<DateTime<FixedOffset>>,
    expires_at: Option<DateTime<FixedOffset>>,
}

#[derive(Deserialize)]
struct TradePayload {
    trade_id: Uuid,
    symbol: String,
    buyer_order_id: Uuid,
    seller_order_id: Uuid,
    buyer_user_id: Uuid,
    seller_user_id: Uuid,
    price: Decimal,
    quantity: Decimal,
    buyer_fee: Decimal,
    seller_fee: Decimal,
    buyer_fee_asset: String,
    seller_fee_asset: String,
    is_buyer_maker: bool,
    executed_at: DateTime<FixedOffset>,
}

#[derive(Deserialize)]
struct BookPayload {
    bids: Vec<(String, String)>,
    asks: Vec<(String, String)>,
}

/// `[price, quantity]` pairs with the api's decimal form.
fn pairs(levels: &[(String, String)]) -> Result<Value, String> {
    levels
        .iter()
        .map(|(price, quantity)| {
            let price = Decimal::from_str(price).map_err(|e| format!("price {price:?}: {e}"))?;
            let quantity =
                Decimal::from_str(quantity).map_err(|e| format!("quantity {quantity:?}: {e}"))?;
            Ok(json!([decimal_string(&price), decimal_string(&quantity)]))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Value::Array)
}

fn body(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn json_of<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// The broker messages of one outbox event.
pub fn messages(event: &OutboxEvent) -> Result<Vec<Message>, String> {
    let id = event.event_id;
    let symbol = path_symbol(&event.symbol);
    match event.kind.as_str() {
        "order" => {
            let o: OrderPayload = serde_json::from_str(&event.payload)
                .map_err(|e| format!("order event {id}: {e}"))?;
            let user = o.user_id;
            let order = OrderDto {
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
            };
            Ok(vec![Message {
                routing_key: format!("order.{user}"),
                message_id: id.to_string(),
                body: body(&json!({
                    "event_id": id, "type": "order", "user_id": user, "data": json_of(&order)?,
                })),
            }])
        }
        "trade" => {
            let t: TradePayload = serde_json::from_str(&event.payload)
                .map_err(|e| format!("trade event {id}: {e}"))?;
            let public = TradeDto {
                id: t.trade_id,
                symbol: t.symbol.clone(),
                price: t.price,
                quantity: t.quantity,
                taker_side: if t.is_buyer_maker {
                    Side::Sell
                } else {
                    Side::Buy
                },
                is_buyer_maker: t.is_buyer_maker,
                executed_at: t.executed_at,
            };
            let mut out = vec![Message {
                routing_key: format!("trade.{symbol}"),
                message_id: id.to_string(),
                body: body(&json!({
                    "event_id": id, "type": "trade", "symbol": t.symbol, "data": json_of(&public)?,
                })),
            }];
            let sides = [
                (
                    "buyer",
                    Side::Buy,
                    t.buyer_user_id,
                    t.buyer_order_id,
                    t.buyer_fee,
                    &t.buyer_fee_asset,
                    t.is_buyer_maker,
                ),
                (
                    "seller",
                    Side::Sell,
                    t.seller_user_id,
                    t.seller_order_id,
                    t.seller_fee,
                    &t.seller_fee_asset,
                    !t.is_buyer_maker,
                ),
            ];
            for (part, side, user, order_id, fee, fee_asset, is_maker) in sides {
                let own = OwnTradeDto::from(UserTrade {
                    trade_id: t.trade_id,
                    symbol: t.symbol.clone(),
                    side,
                    price: t.price,
                    quantity: t.quantity,
                    fee,
                    fee_asset: fee_asset.clone(),
                    is_maker,
                    executed_at: t.executed_at,
                    order_id,
                });
                out.push(Message {
                    routing_key: format!("order.{user}"),
                    message_id: format!("{id}.{part}"),
                    body: body(&json!({
                        "event_id": id, "type": "fill", "user_id": user, "data": json_of(&own)?,
                    })),
                });
            }
            Ok(out)
        }
        "book" => {
            let b: BookPayload = serde_json::from_str(&event.payload)
                .map_err(|e| format!("book event {id}: {e}"))?;
            let sequence = event
                .sequence
                .ok_or_else(|| format!("book event {id} has no sequence"))?;
            Ok(vec![Message {
                routing_key: format!("book.{symbol}"),
                message_id: id.to_string(),
                body: body(&json!({
                    "event_id": id, "type": "update", "symbol": event.symbol,
                    "sequence": sequence, "bids": pairs(&b.bids)?, "asks": pairs(&b.asks)?,
                })),
            }])
        }
        other => Err(format!("event {id} has an unknown kind {other:?}")),
    }
}

/// The JSON of `value` (an object) after its opening brace.
fn rest(value: &Value) -> String {
    let text = value.to_string();
    text.strip_prefix('{').unwrap_or(&text).to_owned()
}

/// The WebSocket frame of a broker message.
pub fn frame(body: &[u8]) -> Result<Frame, String> {
    let message: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let text = |key: &str| {
        message
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no {key:?}"))
    };
    let kind = text("type")?;
    let data = || message.get("data").cloned().ok_or("no \"data\"".to_owned());
    match kind.as_str() {
        "trade" => Ok(Frame {
            channel: format!("trades:{}", path_symbol(&text("symbol")?)),
            user: None,
            sequence: None,
            rest: rest(&json!({"type": "trade", "data": data()?})),
        }),
        "update" => {
            let sequence = message
                .get("sequence")
                .and_then(Value::as_i64)
                .ok_or("no \"sequence\"")?;
            Ok(Frame {
                channel: format!("book:{}", path_symbol(&text("symbol")?)),
                user: None,
                sequence: Some(sequence),
                rest: rest(&json!({
                    "type": "update", "sequence": sequence,
                    "bids": message.get("bids").cloned().unwrap_or(Value::Array(vec![])),
                    "asks": message.get("asks").cloned().unwrap_or(Value::Array(vec![])),
                })),
            })
        }
        "order" | "fill" => {
            let user = Uuid::try_parse(&text("user_id")?).map_err(|e| e.to_string())?;
            Ok(Frame {
                channel: "orders".to_owned(),
                user: Some(user),
                sequence: None,
                rest: rest(&json!({"type": kind, "data": data()?})),
            })
        }
        other => Err(format!("unknown type {other:?}")),
    }
}

/// The frame of a book snapshot (channel `book:<SYMBOL>`).
pub fn snapshot_frame(snapshot: &BookSnapshot) -> Frame {
    let side = |levels: &[(Decimal, Decimal)]| {
        Value::Array(
            levels
                .iter()
                .map(|(p, q)| json!([decimal_string(p), decimal_string(q)]))
                .collect(),
        )
    };
    Frame {
        channel: format!("book:{}", path_symbol(&snapshot.symbol)),
        user: None,
        sequence: Some(snapshot.sequence),
        rest: rest(&json!({
            "type": "snapshot", "sequence": snapshot.sequence,
            "bids": side(&snapshot.bids), "asks": side(&snapshot.asks),
        })),
    }
}

/// The frame of a ticker (channel `ticker:<SYMBOL>`).
pub fn ticker_frame(ticker: service::market::Ticker) -> Result<Frame, String> {
    let symbol = path_symbol(&ticker.symbol);
    let dto = TickerDto::from(ticker);
    Ok(Frame {
        channel: format!("ticker:{symbol}"),
        user: None,
        sequence: None,
        rest: rest(&json!({"type": "ticker", "data": json_of(&dto)?})),
    })
}
