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

use entity::{orders, trades};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use service::events::{BookSnapshot, OutboxEvent};
use uuid::Uuid;

use super::Frame;
use crate::dto::{OrderDto, OwnTradeDto, TickerDto, TradeDto};
use crate::wire::decimal_string;

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
            let order: orders::Model = serde_json::from_str(&event.payload)
                .map_err(|e| format!("order event {id}: {e}"))?;
            let user = order.user_id;
            Ok(vec![Message {
                routing_key: format!("order.{user}"),
                message_id: id.to_string(),
                body: body(&json!({
                    "event_id": id, "type": "order", "user_id": user,
                    "data": json_of(&OrderDto::from(order))?,
                })),
            }])
        }
        "trade" => {
            let trade: trades::Model = serde_json::from_str(&event.payload)
                .map_err(|e| format!("trade event {id}: {e}"))?;
            let mut out = vec![Message {
                routing_key: format!("trade.{symbol}"),
                message_id: id.to_string(),
                body: body(&json!({
                    "event_id": id, "type": "trade", "symbol": trade.symbol,
                    "data": json_of(&TradeDto::from(trade.clone()))?,
                })),
            }];
            let sides = [
                ("buyer", trade.buyer_user_id, trade.buyer_order_id),
                ("seller", trade.seller_user_id, trade.seller_order_id),
            ];
            for (part, user, order_id) in sides {
                let own = OwnTradeDto::of_order(trade.clone(), order_id);
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
