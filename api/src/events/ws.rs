//! `GET /api/v1/ws`: live streams over a WebSocket (JSON text frames).
//!
//! The client sends `{"op": "subscribe", "channels": [...]}` and
//! `{"op": "unsubscribe", "channels": [...]}`; channels are `trades:<SYMBOL>`,
//! `book:<SYMBOL>`, `ticker:<SYMBOL>` (symbol in any form the paths take) and
//! the private `orders` (needs credentials at the upgrade, the same as the
//! HTTP API's). Every server message is an object with `channel` (as the
//! client wrote it; `system` for what concerns the connection) and `type`:
//! `subscribed`, `unsubscribed`, `error`, `heartbeat`, `pong`, `trade`,
//! `snapshot`, `update`, `ticker`, `order`, `fill`. The whole protocol is
//! described in the README and `docs/asyncapi.yaml`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use service::ServiceError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::wire::{path_symbol, snapshot_frame, ticker_frame};
use super::{Frame, Hub};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::canonical_symbol;
use crate::replica::Reads;
use crate::state::AppState;
use crate::wire::timestamp_string;

/// The largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// How often the ticker task sends the tickers of symbols that traded or
/// whose book changed.
const TICKER_INTERVAL: Duration = Duration::from_millis(250);

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    op: String,
    #[serde(default)]
    channels: Vec<String>,
}

/// The upgrade: credentials (optional; refused ones are a 401), the
/// connection limits (429), then the stream.
#[utoipa::path(get, path = "/api/v1/ws", tag = "streams",
    description = "WebSocket streams (JSON text frames). Send `{\"op\": \"subscribe\", \"channels\": [...]}` \
(or `unsubscribe`, or `{\"op\": \"ping\"}`); channels: `trades:<SYMBOL>`, `book:<SYMBOL>`, \
`ticker:<SYMBOL>` and the private `orders` (credentials at the upgrade, as for HTTP). Every \
server message is an object with `channel` (as subscribed; `system` for the connection) and \
`type`: `subscribed`, `unsubscribed`, `error`, `heartbeat`, `pong`; `trade` (`data`: a public \
trade); `snapshot` then `update` on book channels (`sequence`, `bids`, `asks` as \
`[price, quantity]` string pairs; an update's quantity is the level's new total, `\"0\"` \
removes it; sequences are consecutive); `ticker` (`data`: a ticker); `order` (`data`: an order) \
and `fill` (`data`: an own trade) on `orders`. Every message is described in the repository's \
`docs/asyncapi.yaml`.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::dto::ErrorBody),
        (status = 401, description = "Credentials presented and refused", body = crate::dto::ErrorBody),
        (status = 429, description = "Too many connections of this user or address", body = crate::dto::ErrorBody),
    ),
    security((), ("bearer" = []), ("user_header" = [])))]
pub async fn upgrade(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let user = match parts.extensions.get::<Caller>() {
        Some(Caller::User(user)) => Some(*user),
        Some(Caller::Refused(reason)) => {
            return ApiError::Unauthorized(reason.clone()).into_response();
        }
        _ => None,
    };
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::bad_request(
                "expected a WebSocket upgrade",
                format!(
                    "{} (connect with a WebSocket client, e.g. websocat ws://host/api/v1/ws)",
                    rejection.body_text()
                ),
            )
            .into_response();
        }
    };
    let slot = match state.events.admit(user, address) {
        Ok(slot) => slot,
        Err(reason) => return ApiError::TooManyConnections(reason).into_response(),
    };
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            Connection::new(state, user).run(socket).await;
            drop(slot);
        })
}

/// What ended a connection.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed it or went away.
    Client,
    /// Its send buffer filled up, or it fell behind the hub.
    Slow,
    /// Nothing heard for three heartbeats.
    Silent,
    /// The server is stopping.
    Shutdown,
    /// After a gap in a book stream, the new snapshot could not be read.
    Resync,
}

struct Subscription {
    /// The channel as the client wrote it.
    as_sent: String,
    /// Book channels: the sequence of the last snapshot or update sent.
    sequence: Option<i64>,
}

struct Connection {
    state: AppState,
    hub: Arc<Hub>,
    user: Option<Uuid>,
    /// Canonical channel → subscription.
    subscriptions: HashMap<String, Subscription>,
    out: Option<mpsc::Sender<Message>>,
}

impl Connection {
    fn new(state: AppState, user: Option<Uuid>) -> Connection {
        let hub = state.events.clone();
        Connection {
            state,
            hub,
            user,
            subscriptions: HashMap::new(),
            out: None,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let settings = self.hub.settings.clone();
        let mut events = self.hub.subscribe();
        let (mut sink, mut stream) = socket.split();
        let (out, mut queue) = mpsc::channel::<Message>(settings.send_buffer);
        self.out = Some(out);
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let mut stop = self.state.stop.clone();
        let mut heartbeat = tokio::time::interval(settings.heartbeat);
        heartbeat.tick().await;
        let mut heard = Instant::now();
        let end = loop {
            tokio::select! {
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        if let Err(end) = self.on_client_text(text.as_str()).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        heard = Instant::now();
                        if let Err(end) = self.system_error("binary frames are not understood; send JSON text") {
                            break end;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break End::Client,
                    Some(Ok(_)) => heard = Instant::now(),
                },
                event = events.recv() => match event {
                    Ok(frame) => {
                        if let Err(end) = self.on_frame(&frame).await {
                            break end;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break End::Slow,
                    Err(broadcast::error::RecvError::Closed) => break End::Shutdown,
                },
                _ = heartbeat.tick() => {
                    if heard.elapsed() > settings.heartbeat * 3 {
                        break End::Silent;
                    }
                    let beat = json!({"channel": "system", "type": "heartbeat",
                                      "time": timestamp_string(&chrono::Utc::now().fixed_offset())});
                    if let Err(end) = self.send_text(beat.to_string())
                        .and_then(|()| self.send(Message::Ping(Default::default())))
                    {
                        break end;
                    }
                }
                () = crate::server::stopped(&mut stop) => break End::Shutdown,
            }
        };
        for (channel, _) in self.subscriptions.drain() {
            if let Some(symbol) = channel.strip_prefix("ticker:") {
                self.hub.ticker_interest(symbol, false);
            }
        }
        let reason = match end {
            End::Client => None,
            End::Slow => Some((close_code::POLICY, "slow consumer: the send buffer is full")),
            End::Silent => Some((
                close_code::POLICY,
                "no message or pong for three heartbeats",
            )),
            End::Shutdown => Some((close_code::AWAY, "the server is shutting down")),
            End::Resync => Some((
                close_code::ERROR,
                "the book could not be read again after a gap; reconnect",
            )),
        };
        let label = format!("{end:?}").to_lowercase();
        metrics::counter!("trade_engine_ws_disconnects_total", "reason" => label).increment(1);
        if let (Some(out), Some((code, reason))) = (self.out.take(), reason) {
            // Best effort: a slow consumer's full buffer has no room for it.
            let _ = out.try_send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })));
        }
        if end == End::Slow {
            writer.abort();
        } else {
            let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        }
    }

    /// Queues a message; a full queue ends the connection (slow consumer).
    fn send(&self, message: Message) -> Result<(), End> {
        match &self.out {
            Some(out) => out.try_send(message).map_err(|_| End::Slow),
            None => Err(End::Client),
        }
    }

    fn send_text(&self, text: String) -> Result<(), End> {
        self.send(Message::Text(text.into()))
    }

    /// Records the subscription and confirms it.
    fn hold(&mut self, canonical: String, channel: &str, sequence: Option<i64>) -> Result<(), End> {
        self.subscriptions.insert(
            canonical,
            Subscription {
                as_sent: channel.to_owned(),
                sequence,
            },
        );
        self.reply(channel, "subscribed")
    }

    fn reply(&self, channel: &str, kind: &str) -> Result<(), End> {
        self.send_text(json!({"channel": channel, "type": kind}).to_string())
    }

    fn error(&self, channel: &str, error: impl Into<String>) -> Result<(), End> {
        self.send_text(
            json!({"channel": channel, "type": "error", "error": error.into()}).to_string(),
        )
    }

    fn system_error(&self, error: impl Into<String>) -> Result<(), End> {
        self.error("system", error)
    }

    async fn on_client_text(&mut self, text: &str) -> Result<(), End> {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(error) => {
                return self.system_error(format!(
                    "not understood: {error}; send {{\"op\": \"subscribe\", \"channels\": [\"trades:BTC-USDT\"]}}"
                ));
            }
        };
        match message.op.as_str() {
            "subscribe" | "unsubscribe" if message.channels.is_empty() => {
                self.system_error(format!("{}: \"channels\" lists no channel", message.op))
            }
            "subscribe" => {
                for channel in message.channels {
                    self.subscribe(channel).await?;
                }
                Ok(())
            }
            "unsubscribe" => {
                for channel in message.channels {
                    match parse_channel(&channel) {
                        Ok(canonical) => {
                            if self.subscriptions.remove(&canonical).is_some()
                                && let Some(symbol) = canonical.strip_prefix("ticker:")
                            {
                                self.hub.ticker_interest(symbol, false);
                            }
                            self.reply(&channel, "unsubscribed")?;
                        }
                        Err(reason) => self.error(&channel, reason)?,
                    }
                }
                Ok(())
            }
            "ping" => self.reply("system", "pong"),
            other => self.system_error(format!(
                "unknown op {other:?}: expected subscribe, unsubscribe or ping"
            )),
        }
    }

    async fn subscribe(&mut self, channel: String) -> Result<(), End> {
        let canonical = match parse_channel(&channel) {
            Ok(canonical) => canonical,
            Err(reason) => return self.error(&channel, reason),
        };
        if self.subscriptions.contains_key(&canonical) {
            return self.reply(&channel, "subscribed");
        }
        if self.subscriptions.len() >= self.hub.settings.max_subscriptions {
            return self.error(
                &channel,
                format!(
                    "this connection already holds {} subscriptions (the most allowed)",
                    self.subscriptions.len()
                ),
            );
        }
        let (kind, symbol) = canonical
            .split_once(':')
            .unwrap_or((canonical.as_str(), ""));
        let symbol = symbol.to_owned();
        let db_symbol = symbol.replace('-', "/");
        match kind {
            "orders" => {
                if self.user.is_none() {
                    return self.error(
                        &channel,
                        "the orders channel is private: connect with credentials (Authorization: \
                         Bearer <token>, or X-User-ID behind the gateway)",
                    );
                }
                self.hold(canonical, &channel, None)
            }
            "trades" => {
                let symbols = self
                    .state
                    .reads
                    .public(async |db| service::market::symbols(db).await)
                    .await;
                match symbols {
                    Ok(all) if all.iter().any(|s| s.symbol == db_symbol) => {
                        self.hold(canonical, &channel, None)
                    }
                    Ok(_) => self.error(&channel, format!("unknown symbol {db_symbol}")),
                    Err(error) => self.error(&channel, service_error(&error)),
                }
            }
            "ticker" => {
                let ticker = read_ticker(&self.state.reads, &db_symbol).await;
                match ticker {
                    Ok(ticker) => {
                        self.hub.ticker_interest(&symbol, true);
                        self.hold(canonical, &channel, None)?;
                        match ticker_frame(ticker) {
                            Ok(frame) => self.send_text(frame.text(&channel)),
                            Err(reason) => self.error(&channel, reason),
                        }
                    }
                    Err(error) => self.error(&channel, service_error(&error)),
                }
            }
            _ => {
                // book: a snapshot read on the primary, which has everything
                // the relay can have delivered; updates it already holds are
                // dropped by their sequence, later ones follow it.
                match self.snapshot(&db_symbol).await {
                    Ok(frame) => {
                        self.hold(canonical, &channel, frame.sequence)?;
                        self.send_text(frame.text(&channel))
                    }
                    Err(error) => self.error(&channel, service_error(&error)),
                }
            }
        }
    }

    async fn snapshot(&self, db_symbol: &str) -> Result<Frame, ServiceError> {
        let snapshot = self
            .state
            .db
            .run(async |db| service::events::book_snapshot(db, db_symbol).await)
            .await?;
        Ok(snapshot_frame(&snapshot))
    }

    async fn on_frame(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(subscription) = self.subscriptions.get(&frame.channel) else {
            return Ok(());
        };
        if frame.user.is_some() && frame.user != self.user {
            return Ok(());
        }
        let as_sent = subscription.as_sent.clone();
        match (frame.sequence, subscription.sequence) {
            (Some(sequence), Some(last)) if sequence <= last => Ok(()),
            (Some(sequence), Some(last)) if sequence > last + 1 => {
                // A gap (the process's queue dropped messages, or the broker
                // was away): start over from a new snapshot.
                metrics::counter!("trade_engine_ws_book_resyncs_total").increment(1);
                let db_symbol = frame.channel.trim_start_matches("book:").replace('-', "/");
                match self.snapshot(&db_symbol).await {
                    Ok(snapshot) => {
                        if let Some(s) = self.subscriptions.get_mut(&frame.channel) {
                            s.sequence = snapshot.sequence;
                        }
                        self.send_text(snapshot.text(&as_sent))?;
                        if snapshot.sequence == Some(sequence - 1) {
                            if let Some(s) = self.subscriptions.get_mut(&frame.channel) {
                                s.sequence = Some(sequence);
                            }
                            self.send_text(frame.text(&as_sent))?;
                        }
                        Ok(())
                    }
                    Err(error) => {
                        // Say why, then end: the stream cannot go on without
                        // its snapshot.
                        let _ = self.error(&as_sent, service_error(&error));
                        Err(End::Resync)
                    }
                }
            }
            (Some(sequence), _) => {
                if let Some(s) = self.subscriptions.get_mut(&frame.channel) {
                    s.sequence = Some(sequence);
                }
                self.send_text(frame.text(&as_sent))
            }
            (None, _) => self.send_text(frame.text(&as_sent)),
        }
    }
}

/// `trades:btc/usdt` → `trades:BTC-USDT`; `orders` stays. A reason otherwise.
fn parse_channel(channel: &str) -> Result<String, String> {
    if channel == "orders" {
        return Ok("orders".to_owned());
    }
    let Some((kind, symbol)) = channel.split_once(':') else {
        return Err(format!(
            "unknown channel {channel:?}: expected trades:<SYMBOL>, book:<SYMBOL>, \
             ticker:<SYMBOL> or orders"
        ));
    };
    if !matches!(kind, "trades" | "book" | "ticker") {
        return Err(format!(
            "unknown channel kind {kind:?}: expected trades, book, ticker or orders"
        ));
    }
    let symbol = canonical_symbol(symbol);
    if symbol.is_empty() || symbol.len() > 20 {
        return Err(format!("{channel:?} names no symbol such as BTC-USDT"));
    }
    Ok(format!("{kind}:{}", path_symbol(&symbol)))
}

fn service_error(error: &ServiceError) -> String {
    match error {
        ServiceError::UnknownSymbol(symbol) => format!("unknown symbol {symbol}"),
        other => format!("could not read it now, try again: {other}"),
    }
}

async fn read_ticker(
    reads: &Reads,
    db_symbol: &str,
) -> Result<service::market::Ticker, ServiceError> {
    reads
        .public(async |db| service::market::ticker(db, db_symbol).await)
        .await
}

/// Sends the ticker of each symbol that traded or whose book changed, at
/// most every [`TICKER_INTERVAL`], while a connection of this process
/// subscribes to it.
pub fn spawn_tickers(
    hub: Arc<Hub>,
    reads: Reads,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut frames = hub.subscribe();
        let mut touched: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(TICKER_INTERVAL);
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Ok(frame) => {
                        let symbol = frame.channel.strip_prefix("trades:")
                            .or_else(|| frame.channel.strip_prefix("book:"));
                        if let Some(symbol) = symbol {
                            touched.insert(symbol.to_owned());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    for symbol in std::mem::take(&mut touched) {
                        if !hub.wants_ticker(&symbol) {
                            continue;
                        }
                        if let Ok(ticker) = read_ticker(&reads, &symbol.replace('-', "/")).await
                            && let Ok(frame) = ticker_frame(ticker)
                        {
                            hub.send(frame);
                        }
                    }
                }
                () = crate::server::stopped(&mut stop) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_take_any_symbol_form() {
        assert_eq!(
            parse_channel("trades:btc/usdt").as_deref(),
            Ok("trades:BTC-USDT")
        );
        assert_eq!(
            parse_channel("book:BTC_USDT").as_deref(),
            Ok("book:BTC-USDT")
        );
        assert_eq!(parse_channel("orders").as_deref(), Ok("orders"));
        assert!(
            parse_channel("candles:BTC-USDT")
                .expect_err("refused")
                .contains("unknown channel kind")
        );
        assert!(
            parse_channel("trades")
                .expect_err("refused")
                .contains("expected trades:<SYMBOL>")
        );
        assert!(
            parse_channel("trades:")
                .expect_err("refused")
                .contains("names no symbol")
        );
    }
}
