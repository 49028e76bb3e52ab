//! Events: the outbox relayed to RabbitMQ (or, without a broker, straight to
//! this process's streams), and the WebSocket streams fed from them.
//!
//! The path of an event: a placement, cancel or job commits its rows and, in
//! the same transaction, the schema's triggers write its events to
//! `event_outbox` → the [`relay`] (one at a time over all processes) reads
//! them in order, turns each into its [`wire`] messages and publishes them to
//! the topic exchange `trade_engine.events` with publisher confirms, then
//! marks them published → every api process consumes the exchange on a queue
//! of its own ([`broker`]) and hands the messages to its [`Hub`] → each
//! WebSocket connection ([`ws`]) takes what it subscribed to.
//!
//! Without `RABBITMQ_URL` the relay hands its messages to the hub directly.

pub mod broker;
pub mod relay;
pub mod wire;
pub mod ws;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::config::EventsConfig;

/// The exchange the relay publishes to, unless `RABBITMQ_EXCHANGE` names
/// another.
pub const EXCHANGE: &str = "trade_engine.events";

/// How many events the hub keeps for connections that fall behind; a
/// connection further behind than this is disconnected (it lost events).
const HUB_CAPACITY: usize = 65_536;

/// How many message ids the hub remembers to drop a redelivered message.
const RECENT_IDS: usize = 100_000;

/// A message for WebSocket clients, serialized once for all of them.
#[derive(Debug)]
pub struct Frame {
    /// The channel in its canonical form: `trades:BTC-USDT`, `book:BTC-USDT`,
    /// `ticker:BTC-USDT`, `orders`.
    pub channel: String,
    /// Private messages: the user they belong to.
    pub user: Option<Uuid>,
    /// Book updates: their sequence.
    pub sequence: Option<i64>,
    /// The message's JSON after its `channel` member: `"type":…}`.
    pub rest: String,
}

impl Frame {
    /// The whole JSON text with `channel` as the client wrote it.
    pub fn text(&self, channel: &str) -> String {
        let channel = serde_json::to_string(channel).unwrap_or_else(|_| "\"\"".to_owned());
        format!("{{\"channel\":{channel},{}", self.rest)
    }
}

/// Every api process's fan-out of events to its WebSocket connections.
pub struct Hub {
    frames: broadcast::Sender<Arc<Frame>>,
    recent: Mutex<RecentIds>,
    /// Ticker subscriptions per symbol (path form), for the ticker task.
    tickers: Mutex<HashMap<String, usize>>,
    /// Connections per user and per address.
    connections: Mutex<Connections>,
    /// Wakes the relay (a write of this process committed).
    pub wake: Arc<Notify>,
    /// Whether this process consumes the broker now (always false without
    /// `RABBITMQ_URL`).
    consuming: watch::Sender<bool>,
    pub settings: EventsConfig,
}

#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

#[derive(Default)]
struct Connections {
    users: HashMap<Uuid, usize>,
    addresses: HashMap<std::net::IpAddr, usize>,
}

impl Hub {
    pub fn new(settings: EventsConfig) -> Hub {
        let (frames, _) = broadcast::channel(HUB_CAPACITY);
        Hub {
            frames,
            recent: Mutex::new(RecentIds::default()),
            tickers: Mutex::new(HashMap::new()),
            connections: Mutex::new(Connections::default()),
            wake: Arc::new(Notify::new()),
            consuming: watch::channel(false).0,
            settings,
        }
    }

    /// Records whether this process consumes the broker.
    pub(crate) fn set_consuming(&self, consuming: bool) {
        self.consuming.send_replace(consuming);
        metrics::gauge!("trade_engine_events_consumer_up").set(if consuming { 1.0 } else { 0.0 });
    }

    /// Waits until this process consumes the broker (its queue is bound):
    /// from then on every message published reaches its connections.
    pub async fn consuming(&self) {
        let mut consuming = self.consuming.subscribe();
        let _ = consuming.wait_for(|up| *up).await;
    }

    /// A receiver of every frame sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.frames.subscribe()
    }

    /// Whether a WebSocket connection is open on this process. Without one
    /// the relay (without a broker) renders no messages and a delivered
    /// message is dropped unread: nothing would receive it, and a connection
    /// that opens later starts from a book snapshot read after it opened,
    /// which holds every event committed before.
    pub fn has_connections(&self) -> bool {
        // Every open connection holds a slot counted by its address.
        !self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .addresses
            .is_empty()
    }

    /// Hands a broker message (its id and body) to the connections, once: a
    /// message id seen recently is dropped (the relay delivers at least once).
    /// Without an open connection it is dropped at once.
    pub fn deliver(&self, message_id: &str, body: &[u8]) {
        if !self.has_connections() {
            return;
        }
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if !recent.set.insert(message_id.to_owned()) {
                metrics::counter!("trade_engine_events_duplicates_total").increment(1);
                return;
            }
            recent.order.push_back(message_id.to_owned());
            if recent.order.len() > RECENT_IDS
                && let Some(old) = recent.order.pop_front()
            {
                recent.set.remove(&old);
            }
        }
        match wire::frame(body) {
            Ok(frame) => self.send(frame),
            Err(reason) => {
                tracing::warn!(message_id, %reason, "an event message was not understood");
            }
        }
    }

    /// Sends a frame to every connection (there may be none).
    pub fn send(&self, frame: Frame) {
        let _ = self.frames.send(Arc::new(frame));
    }

    /// Counts a ticker subscription of `symbol` in (`subscribed`) or out.
    fn ticker_interest(&self, symbol: &str, subscribed: bool) {
        let mut tickers = self.tickers.lock().unwrap_or_else(|e| e.into_inner());
        let count = tickers.entry(symbol.to_owned()).or_default();
        if subscribed {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                tickers.remove(symbol);
            }
        }
    }

    /// Whether any connection of this process wants `symbol`'s ticker.
    fn wants_ticker(&self, symbol: &str) -> bool {
        self.tickers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(symbol)
    }

    /// Takes a connection slot for `user` (if any) and `address`, or says
    /// which limit is reached.
    fn admit(
        self: &Arc<Hub>,
        user: Option<Uuid>,
        address: std::net::IpAddr,
    ) -> Result<Slot, String> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let at_address = connections.addresses.get(&address).copied().unwrap_or(0);
        if at_address >= self.settings.max_connections_per_address {
            return Err(format!(
                "{address} already holds {at_address} WebSocket connections (the most allowed)"
            ));
        }
        if let Some(user) = user {
            let of_user = connections.users.get(&user).copied().unwrap_or(0);
            if of_user >= self.settings.max_connections_per_user {
                return Err(format!(
                    "this user already holds {of_user} WebSocket connections (the most allowed)"
                ));
            }
            *connections.users.entry(user).or_default() += 1;
        }
        *connections.addresses.entry(address).or_default() += 1;
        metrics::gauge!("trade_engine_ws_connections").increment(1.0);
        Ok(Slot {
            hub: self.clone(),
            user,
            address,
        })
    }
}

/// A connection's place in the limits, given back when it ends.
pub struct Slot {
    hub: Arc<Hub>,
    user: Option<Uuid>,
    address: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut connections = self
            .hub
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(user) = self.user
            && let Some(count) = connections.users.get_mut(&user)
        {
            *count -= 1;
            if *count == 0 {
                connections.users.remove(&user);
            }
        }
        if let Some(count) = connections.addresses.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                connections.addresses.remove(&self.address);
            }
        }
        metrics::gauge!("trade_engine_ws_connections").decrement(1.0);
    }
}
