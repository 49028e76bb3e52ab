//! Events: the outbox written in each changing transaction, the relay to the
//! RabbitMQ that runs on the machine (127.0.0.1:5672, guest/guest), and the
//! WebSocket streams — across two api processes, through a broker outage,
//! for slow and reconnecting clients.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, TransactionTrait};
use serde_json::{Value, json};
use service::Side;
use service::orders::{self, NewOrder};
use tests::app::{AppDatabase, AppOptions, TestApp, spawn_app};
use tests::db::TestDb;
use tests::sql::wait_until_relayed;
use tests::{dec, user};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use uuid::Uuid;

const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long a test waits for a message it expects.
const WAIT: Duration = Duration::from_secs(20);

/// The tests that use the broker take turns: one of them stops it.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's own exchange, deleted with its audit queue when the test ends
/// (also on a panic).
struct Exchange(String);

fn exchange() -> Exchange {
    Exchange(format!("te_test.{}", Uuid::new_v4().simple()))
}

impl std::ops::Deref for Exchange {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let name = self.0.clone();
        // A runtime of its own: the test's may be gone or panicking.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let connection = Connection::connect(RABBITMQ_URL, ConnectionProperties::default())
                    .await
                    .map_err(|err| err.to_string())?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|err| err.to_string())?;
                // The audit queue, left behind if the test failed before draining it.
                channel
                    .queue_delete(format!("{name}.audit").as_str().into(), Default::default())
                    .await
                    .map_err(|err| err.to_string())?;
                channel
                    .exchange_delete(name.as_str().into(), Default::default())
                    .await
                    .map_err(|err| err.to_string())?;
                let _ = connection.close(200, "done".into()).await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(reason)) = deleted {
            eprintln!("the test exchange {} was not deleted: {reason}", self.0);
        }
    }
}

/// An api on the broker with its own exchange (`None`: a fresh database).
async fn broker_app(exchange: &str, database: Option<&str>) -> TestApp {
    let mut options = AppOptions::trusted_header()
        .setting("RABBITMQ_URL", RABBITMQ_URL)
        .setting("RABBITMQ_EXCHANGE", exchange.to_owned())
        .setting("WS_MAX_CONNECTIONS_PER_ADDRESS", "1000");
    if let Some(url) = database {
        options = options.database(AppDatabase::Url(url.to_owned()));
    }
    let app = spawn_app(options).await;
    tokio::time::timeout(WAIT, app.events().consuming())
        .await
        .expect("the api consumes the broker");
    app
}

async fn local_app(settings: &[(&'static str, &str)]) -> TestApp {
    let mut options =
        AppOptions::trusted_header().setting("WS_MAX_CONNECTIONS_PER_ADDRESS", "1000");
    for (name, value) in settings {
        options = options.setting(name, *value);
    }
    spawn_app(options).await
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client of the api.
struct Ws {
    socket: Socket,
}

impl Ws {
    async fn connect(app: &TestApp, as_user: Option<Uuid>) -> Ws {
        Ws::try_connect(app, as_user)
            .await
            .unwrap_or_else(|err| panic!("the WebSocket upgrade succeeds: {err}"))
    }

    async fn try_connect(
        app: &TestApp,
        as_user: Option<Uuid>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/api/v1/ws", app.address.replacen("http", "ws", 1));
        let mut request = url.into_client_request()?;
        if let Some(user) = as_user {
            request
                .headers_mut()
                .insert("X-User-ID", user.to_string().parse().expect("header value"));
        }
        let (socket, _) = connect_async(request).await?;
        Ok(Ws { socket })
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("the client sends");
    }

    async fn subscribe(&mut self, channels: &[&str]) {
        self.send(json!({"op": "subscribe", "channels": channels}))
            .await;
    }

    /// The next JSON message (heartbeats skipped); `None` when the server
    /// closed the connection.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a message within the wait");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON text");
                    assert!(
                        value["channel"].is_string(),
                        "every message names its channel: {value}"
                    );
                    assert!(
                        value["type"].is_string(),
                        "every message names its type: {value}"
                    );
                    if value["type"] != "heartbeat" {
                        return Some(value);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Skips messages until one satisfies `wanted`.
    async fn until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the connection closed while waiting for {what}"));
            if wanted(&message) {
                return message;
            }
        }
    }
}

fn is(channel: &str, kind: &str) -> impl Fn(&Value) -> bool {
    let (channel, kind) = (channel.to_owned(), kind.to_owned());
    move |m: &Value| m["channel"] == channel.as_str() && m["type"] == kind.as_str()
}

/// `(price, quantity)` pairs, best first.
type Levels = Vec<(Decimal, Decimal)>;

/// A client's copy of a book: snapshot, then updates applied in order.
#[derive(Default, Debug)]
struct Book {
    sequence: i64,
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl Book {
    fn apply(&mut self, message: &Value) {
        let sequence = message["sequence"].as_i64().expect("a sequence");
        if message["type"] == "snapshot" {
            *self = Book::default();
        } else {
            assert_eq!(
                sequence,
                self.sequence + 1,
                "updates are consecutive: {message}"
            );
        }
        self.sequence = sequence;
        for (side, levels) in [("bids", &mut self.bids), ("asks", &mut self.asks)] {
            for pair in message[side].as_array().expect("levels") {
                let price = dec(pair[0].as_str().expect("price"));
                let quantity = dec(pair[1].as_str().expect("quantity"));
                if quantity.is_zero() {
                    levels.remove(&price);
                } else {
                    levels.insert(price, quantity);
                }
            }
        }
    }

    /// The best `depth` levels of each side as `GET /api/v1/orderbook` shows
    /// price and volume.
    fn top(&self, depth: usize) -> (Levels, Levels) {
        let bids = self
            .bids
            .iter()
            .rev()
            .take(depth)
            .map(|(p, q)| (*p, *q))
            .collect();
        let asks = self
            .asks
            .iter()
            .take(depth)
            .map(|(p, q)| (*p, *q))
            .collect();
        (bids, asks)
    }
}

fn levels_of(book: &Value, side: &str) -> Levels {
    book[side]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| {
            (
                dec(l["price"].as_str().expect("price")),
                dec(l["volume"].as_str().expect("volume")),
            )
        })
        .collect()
}

async fn book_sequence(db: &impl ConnectionTrait, symbol: &str) -> i64 {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT coalesce((SELECT book_sequence FROM event_sequences WHERE symbol = $1), 0) AS s",
        [symbol.into()],
    ))
    .await
    .expect("the sequence reads")
    .expect("a row")
    .try_get::<i64>("", "s")
    .expect("a number")
}

/// Follows `ws`'s book until it reached the database's sequence, then
/// requires its best 100 levels to equal `GET /api/v1/orderbook`.
async fn book_matches(app: &TestApp, ws: &mut Ws, book: &mut Book, channel: &str) {
    let db = app.db().conn();
    let target = book_sequence(db, "BTC/USDT").await;
    while book.sequence < target {
        let message = ws.until("a book update", is(channel, "update")).await;
        book.apply(&message);
    }
    let served = app
        .get_public_json("/api/v1/orderbook/BTC-USDT?depth=100", 200)
        .await;
    let (bids, asks) = book.top(100);
    assert_eq!(
        bids,
        levels_of(&served, "bids"),
        "bids at sequence {target}"
    );
    assert_eq!(
        asks,
        levels_of(&served, "asks"),
        "asks at sequence {target}"
    );
}

#[derive(Debug, FromQueryResult)]
struct EventRow {
    kind: String,
    symbol: String,
    sequence: Option<i64>,
    payload: Value,
}

async fn events(db: &impl ConnectionTrait) -> Vec<EventRow> {
    EventRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT kind, symbol, sequence, payload FROM event_outbox ORDER BY event_id",
    ))
    .all(db)
    .await
    .expect("the outbox reads")
}

/// `seller`'s resting sell of 1 BTC at 50,000, then `buyer`'s buy of 0.4 at
/// that price, which fills part of it in one trade.
async fn rest_and_cross(
    db: &(impl ConnectionTrait + TransactionTrait),
    seller: Uuid,
    buyer: Uuid,
) -> (orders::Placement, orders::Placement) {
    let btc = "BTC/USDT";
    let resting = orders::place(
        db,
        NewOrder::limit(seller, btc, Side::Sell, dec("1"), dec("50000")),
    )
    .await
    .expect("resting sell");
    let crossing = orders::place(
        db,
        NewOrder::limit(buyer, btc, Side::Buy, dec("0.4"), dec("50000")),
    )
    .await
    .expect("crossing buy");
    assert_eq!(crossing.trades.len(), 1);
    (resting, crossing)
}

#[tokio::test]
async fn every_committed_change_writes_its_events_and_a_rolled_back_one_none() {
    let db = TestDb::migrated().await;
    let conn = db.conn();
    let (alice, bob) = (user(1), user(2));
    let btc = "BTC/USDT";

    // Rolled back: nothing of it stays, and its book sequence is taken back.
    let txn = conn.begin().await.expect("begin");
    orders::place(
        &txn,
        NewOrder::limit(alice, btc, Side::Sell, dec("1"), dec("50000")),
    )
    .await
    .expect("placed inside the transaction");
    assert!(
        !events(&txn).await.is_empty(),
        "the transaction sees its own events"
    );
    txn.rollback().await.expect("rollback");
    assert!(
        events(conn).await.is_empty(),
        "a rolled-back placement leaves no event"
    );

    let (resting, crossing) = rest_and_cross(conn, alice, bob).await;
    orders::cancel(conn, alice, resting.order.order_id)
        .await
        .expect("cancel the rest");

    let written = events(conn).await;
    let kinds: Vec<&str> = written.iter().map(|e| e.kind.as_str()).collect();
    // Resting: its book change and the order; crossing: the maker's book
    // change and update, the trade, the taker; cancel: book and order.
    assert_eq!(
        kinds,
        [
            "book", "order", "book", "order", "trade", "order", "book", "order"
        ],
        "{written:#?}"
    );
    assert!(written.iter().all(|e| e.symbol == btc));
    let books: Vec<&EventRow> = written.iter().filter(|e| e.kind == "book").collect();
    assert_eq!(
        books.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)],
        "book sequences count from 1 without the rolled-back one"
    );
    assert_eq!(
        books[0].payload["asks"],
        json!([["50000.00000000", "1.00000000"]])
    );
    assert_eq!(
        books[1].payload["asks"],
        json!([["50000.00000000", "0.60000000"]])
    );
    assert_eq!(
        books[2].payload["asks"],
        json!([["50000.00000000", "0"]]),
        "a level gone is 0"
    );
    let trade = &written[4].payload;
    assert_eq!(trade["trade_id"], json!(crossing.trades[0].trade_id));
    assert_eq!(trade["quantity"], "0.40000000");
    assert_eq!(trade["buyer_user_id"], json!(bob));
    let statuses: Vec<&str> = written
        .iter()
        .filter(|e| e.kind == "order")
        .map(|e| e.payload["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        ["OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED"]
    );
}

/// Each order's and each trade's newest event, and the same row as
/// PostgreSQL renders every column of it (`to_jsonb`), the decimals as text.
const PAYLOADS_AND_ROWS: &str = "
    SELECT e.kind, e.payload, to_jsonb(o) || jsonb_build_object(
               'quantity', o.quantity::text, 'filled_quantity', o.filled_quantity::text,
               'price', o.price::text, 'stop_price', o.stop_price::text,
               'average_price', o.average_price::text) AS row
    FROM orders o
    JOIN LATERAL (SELECT kind, payload FROM event_outbox
                  WHERE kind = 'order' AND payload ->> 'order_id' = o.order_id::text
                  ORDER BY event_id DESC LIMIT 1) e ON true
    UNION ALL
    SELECT e.kind, e.payload, to_jsonb(t) || jsonb_build_object(
               'price', t.price::text, 'quantity', t.quantity::text,
               'buyer_fee', t.buyer_fee::text, 'seller_fee', t.seller_fee::text)
    FROM trades t
    JOIN event_outbox e ON e.kind = 'trade' AND e.payload ->> 'trade_id' = t.trade_id::text";

#[derive(Debug, FromQueryResult)]
struct PayloadAndRow {
    kind: String,
    payload: Value,
    row: Value,
}

#[tokio::test]
async fn order_and_trade_events_carry_every_column_of_their_row() {
    let db = TestDb::migrated().await;
    let conn = db.conn();
    let (alice, bob) = (user(1), user(2));
    let btc = "BTC/USDT";
    rest_and_cross(conn, alice, bob).await;
    // A stop (sell below 41,000) that waits: the last trade is at 50,000.
    let mut stop =
        NewOrder::stop_limit(bob, btc, Side::Sell, dec("0.1"), dec("40000"), dec("41000"));
    stop.client_order_id = Some("stop-1".to_owned());
    orders::place(conn, stop).await.expect("a waiting stop");

    let pairs = PayloadAndRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        PAYLOADS_AND_ROWS,
    ))
    .all(conn)
    .await
    .expect("the events and their rows");
    let kinds: Vec<&str> = pairs.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["order", "order", "order", "trade"], "{pairs:#?}");
    for pair in &pairs {
        // Every column, under its own name, with the row's value; the
        // decimals as text, so no digit is lost on the way.
        assert_eq!(pair.payload, pair.row, "a {} event", pair.kind);
    }
    let stop = pairs
        .iter()
        .find(|p| p.payload["order_type"] == "STOP_LIMIT")
        .expect("the stop's event");
    assert_eq!(stop.payload["stop_price"], "41000.00000000");
    assert_eq!(stop.payload["client_order_id"], "stop-1");
}

#[tokio::test]
async fn book_sequences_have_no_gap_under_concurrent_writers_and_replay_to_the_levels() {
    let db = TestDb::migrated().await;
    let btc = "BTC/USDT";
    let mut writers = Vec::new();
    for writer in 0..6u32 {
        let conn = db.connect().await;
        writers.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let who = user(u128::from(writer % 3) + 10);
                let side = if (writer + i) % 2 == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let price = Decimal::from(49_990 + (i * 7 + writer * 3) % 20);
                let placed =
                    orders::place(&conn, NewOrder::limit(who, btc, side, dec("0.3"), price)).await;
                if let Ok(placed) = placed
                    && i % 4 == 0
                {
                    let _ = orders::cancel(&conn, who, placed.order.order_id).await;
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer finishes");
    }
    let conn = db.conn();
    let mut replayed: HashMap<(String, String), Decimal> = HashMap::new();
    let mut expected = 1;
    for event in events(conn).await.into_iter().filter(|e| e.kind == "book") {
        assert_eq!(event.sequence, Some(expected), "no gap, no repeat");
        expected += 1;
        for side in ["bids", "asks"] {
            for pair in event.payload[side].as_array().expect("levels") {
                let key = (side.to_owned(), pair[0].as_str().expect("price").to_owned());
                let quantity = dec(pair[1].as_str().expect("quantity"));
                if quantity.is_zero() {
                    replayed.remove(&key);
                } else {
                    replayed.insert(key, quantity);
                }
            }
        }
    }
    assert_eq!(book_sequence(conn, btc).await, expected - 1);
    #[derive(FromQueryResult)]
    struct Level {
        side: String,
        price: String,
        quantity: Decimal,
    }
    let levels = Level::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT CASE side WHEN 'BUY' THEN 'bids' ELSE 'asks' END AS side, price::text AS price, \
         quantity FROM market_levels WHERE symbol = 'BTC/USDT'",
    ))
    .all(conn)
    .await
    .expect("levels read");
    let stored: HashMap<(String, String), Decimal> = levels
        .into_iter()
        .map(|l| ((l.side, l.price), l.quantity))
        .collect();
    assert!(!stored.is_empty(), "the writers left a book");
    assert_eq!(
        replayed, stored,
        "the book events replay to the stored levels"
    );
}

/// A durable queue of the test's own, bound to `exchange`, that keeps what
/// is published while nobody reads it (and through a broker restart).
async fn test_queue(exchange: &str) -> (Connection, lapin::Channel, String) {
    let (connection, channel) = api::events::broker::open_exchange(RABBITMQ_URL, exchange)
        .await
        .expect(
            "the test reaches RabbitMQ on 127.0.0.1:5672 (guest/guest) and declares its exchange",
        );
    let name = format!("{exchange}.audit");
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the audit queue");
    channel
        .queue_bind(
            name.as_str().into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bound");
    (connection, channel, name)
}

/// Every message in `queue` now: (routing key, message id, body).
async fn drain(queue: &str) -> Vec<(String, String, Value)> {
    let connection = Connection::connect(RABBITMQ_URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ answers");
    let channel = connection.create_channel().await.expect("a channel");
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .expect("basic.get")
    {
        let id = message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .expect("every message has an id");
        let body: Value = serde_json::from_slice(&message.delivery.data).expect("JSON body");
        out.push((message.delivery.routing_key.to_string(), id, body));
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("the audit queue goes");
    out
}

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|err| {
            panic!("rabbitmqctl {args:?} runs (the broker outage test stops RabbitMQ's application with it): {err}")
        });
    assert!(status.success(), "rabbitmqctl {args:?} succeeds");
}

/// Waits until the outbox holds no unpublished event.
async fn relayed(db: &impl ConnectionTrait) {
    wait_until_relayed(db, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_broker_outage_during_placements_loses_no_event() {
    let _turn = BROKER.lock().await;
    let exchange = exchange();
    let (_connection, _channel, queue) = test_queue(&exchange).await;
    let app = broker_app(&exchange, None).await;
    let (alice, bob) = (user(1), user(2));
    let load = {
        let (address, client) = (app.address.clone(), app.client.clone());
        tokio::spawn(async move {
            let mut acknowledged = 0;
            for i in 0..120u32 {
                let (who, side) = if i % 2 == 0 {
                    (alice, "SELL")
                } else {
                    (bob, "BUY")
                };
                let response = client
                    .post(format!("{address}/api/v1/orders"))
                    .header("X-User-ID", who.to_string())
                    .json(&json!({"symbol": "BTC/USDT", "side": side, "type": "LIMIT",
                                  "quantity": "0.1", "price": "50000"}))
                    .send()
                    .await
                    .expect("the api answers");
                assert_eq!(response.status(), 201, "placements do not need the broker");
                acknowledged += 1;
            }
            acknowledged
        })
    };
    // Stop the broker once the load has begun; start it again while it runs.
    let db = app.db().conn();
    loop {
        let trades = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM trades",
            ))
            .await
            .expect("count")
            .expect("row")
            .try_get::<i64>("", "n")
            .expect("n");
        if trades >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    assert_eq!(load.await.expect("the load finishes"), 120);
    relayed(db).await;
    let messages = drain(&queue).await;

    let trades: Vec<String> = db_trade_ids(db).await;
    assert_eq!(trades.len(), 60, "every buy crossed a sell");
    let published: HashSet<String> = messages
        .iter()
        .filter(|(key, _, _)| key == "trade.BTC-USDT")
        .map(|(_, _, body)| body["data"]["id"].as_str().expect("trade id").to_owned())
        .collect();
    assert_eq!(
        published,
        trades.iter().cloned().collect(),
        "every committed trade was published"
    );
    // In their order (a batch sent again after the outage repeats, later).
    let mut first_seen: Vec<&str> = Vec::new();
    for (_, _, body) in messages
        .iter()
        .filter(|(key, _, _)| key == "trade.BTC-USDT")
    {
        let id = body["data"]["id"].as_str().expect("trade id");
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    assert_eq!(
        first_seen, trades,
        "trades arrive in the order they were made"
    );
    // Book updates in order per symbol (a repeat of a delivered message is
    // allowed, a step back or a gap is not).
    let mut last = 0;
    for (_, _, body) in messages.iter().filter(|(key, _, _)| key == "book.BTC-USDT") {
        let sequence = body["sequence"].as_i64().expect("sequence");
        assert!(
            sequence == last + 1 || sequence <= last,
            "book {sequence} after {last}"
        );
        last = last.max(sequence);
    }
    assert_eq!(
        last,
        book_sequence(db, "BTC/USDT").await,
        "every book event arrived"
    );
    let orders: HashSet<&str> = messages
        .iter()
        .filter(|(_, _, body)| body["type"] == "order")
        .map(|(_, id, _)| id.as_str())
        .collect();
    assert_eq!(
        orders.len(),
        120 + 60,
        "each order's placement and each maker's fill"
    );
    app.shutdown().await;
}

async fn db_trade_ids(db: &impl ConnectionTrait) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT trade_id::text AS id FROM trades ORDER BY executed_at, trade_id",
    ))
    .await
    .expect("trades read")
    .iter()
    .map(|row| row.try_get::<String>("", "id").expect("id"))
    .collect()
}

#[tokio::test]
async fn a_subscriber_of_one_process_follows_trades_and_the_book_placed_through_another() {
    let _turn = BROKER.lock().await;
    let exchange = exchange();
    let (_connection, _channel, audit) = test_queue(&exchange).await;
    let first = broker_app(&exchange, None).await;
    let second = broker_app(&exchange, Some(first.db().url())).await;
    let mut trades = Ws::connect(&second, None).await;
    trades.subscribe(&["trades:btc-usdt"]).await;
    trades
        .until("subscribed", is("trades:btc-usdt", "subscribed"))
        .await;
    let mut ws = Ws::connect(&second, None).await;
    ws.subscribe(&["book:BTC-USDT"]).await;
    let mut book = Book::default();
    let snapshot = ws
        .until("the snapshot", is("book:BTC-USDT", "snapshot"))
        .await;
    book.apply(&snapshot);
    assert_eq!(book.sequence, 0, "nothing rests yet");

    let mut trade_ids = Vec::new();
    for round in 0..4u32 {
        for i in 0..6u32 {
            let price = (49_990 + i * 3 + round).to_string();
            first.limit(user(1), "SELL", "0.5", &price).await;
            second
                .limit(user(2), "BUY", "0.2", &(49_980 + i).to_string())
                .await;
        }
        let placed = first.market(user(3), "BUY", "1.3").await;
        for trade in placed["trades"].as_array().expect("trades") {
            trade_ids.push(trade["id"].as_str().expect("id").to_owned());
        }
        // At this moment the copy built from the diffs is the served book.
        book_matches(&first, &mut ws, &mut book, "book:BTC-USDT").await;
    }
    let mut seen = Vec::new();
    while seen.len() < trade_ids.len() {
        let trade = trades
            .until("a trade", is("trades:btc-usdt", "trade"))
            .await;
        let data = &trade["data"];
        for private in [
            "buyer_user_id",
            "seller_user_id",
            "buyer_order_id",
            "buyer_fee",
            "fee",
        ] {
            assert!(
                data.get(private).is_none(),
                "public trades name no {private}: {data}"
            );
        }
        seen.push(data["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(
        seen, trade_ids,
        "every trade, in order, through the other process"
    );
    // Two relays stood ready; each event was published once.
    relayed(first.db().conn()).await;
    let published = drain(&audit).await;
    let ids: HashSet<&str> = published.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), published.len(), "no message was published twice");
    let outbox = events(first.db().conn()).await;
    let trades_in_outbox = outbox.iter().filter(|e| e.kind == "trade").count();
    assert_eq!(
        published.len(),
        outbox.len() + 2 * trades_in_outbox,
        "every event: one message, a trade three (public, buyer's and seller's fills)"
    );
    drop((ws, trades));
    second.shutdown().await;
    first.shutdown().await;
}

#[tokio::test]
async fn the_orders_channel_carries_only_the_callers_orders_and_fills() {
    let app = local_app(&[]).await;
    let (alice, bob) = (user(1), user(2));
    let mut anonymous = Ws::connect(&app, None).await;
    anonymous.subscribe(&["orders"]).await;
    let refused = anonymous.until("the refusal", is("orders", "error")).await;
    assert!(
        refused["error"].as_str().expect("text").contains("private"),
        "{refused}"
    );

    let mut of_alice = Ws::connect(&app, Some(alice)).await;
    let mut of_bob = Ws::connect(&app, Some(bob)).await;
    for ws in [&mut of_alice, &mut of_bob] {
        ws.subscribe(&["orders"]).await;
        ws.until("subscribed", is("orders", "subscribed")).await;
    }
    let sell = app.limit(alice, "SELL", "1", "50000").await;
    let buy = app.market(bob, "BUY", "0.25").await;
    let own = of_alice.until("alice's order", is("orders", "order")).await;
    assert_eq!(own["data"]["id"], sell["id"]);
    assert_eq!(own["data"]["status"], "OPEN");
    let fill = of_alice.until("alice's fill", is("orders", "fill")).await;
    assert_eq!(fill["data"]["order_id"], sell["id"]);
    assert_eq!(fill["data"]["side"], "SELL");
    assert_eq!(fill["data"]["is_maker"], true);
    // Bob's first private message is his own: nothing of Alice's came before.
    let first = of_bob.until("bob's first", |_| true).await;
    assert_eq!(first["channel"], "orders");
    let data = &first["data"];
    let of_bob_order = data["id"] == buy["order"]["id"] || data["order_id"] == buy["order"]["id"];
    assert!(
        of_bob_order,
        "bob sees only his own orders and fills: {first}"
    );
}

#[tokio::test]
async fn a_client_that_reconnects_gets_a_fresh_snapshot() {
    let app = local_app(&[]).await;
    let mut ws = Ws::connect(&app, None).await;
    ws.subscribe(&["book:BTC/USDT"]).await;
    let mut book = Book::default();
    book.apply(&ws.until("snapshot", is("book:BTC/USDT", "snapshot")).await);
    app.limit(user(1), "SELL", "1", "50001").await;
    book_matches(&app, &mut ws, &mut book, "book:BTC/USDT").await;
    drop(ws);
    app.limit(user(1), "SELL", "2", "50002").await;
    app.limit(user(2), "BUY", "1.5", "50002").await;

    let mut again = Ws::connect(&app, None).await;
    again.subscribe(&["book:BTC-USDT"]).await;
    let mut fresh = Book::default();
    let snapshot = again
        .until("snapshot", is("book:BTC-USDT", "snapshot"))
        .await;
    fresh.apply(&snapshot);
    assert_eq!(
        fresh.sequence,
        book_sequence(app.db().conn(), "BTC/USDT").await
    );
    book_matches(&app, &mut again, &mut fresh, "book:BTC-USDT").await;
    // The buy took all of 50001 and half a unit of 50002.
    assert_eq!(fresh.asks.get(&dec("50001")), None);
    assert_eq!(fresh.asks.get(&dec("50002")), Some(&dec("1.5")));
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_and_the_server_goes_on() {
    let app = local_app(&[("WS_SEND_BUFFER", "4")]).await;
    // A deep book makes large snapshots.
    app.db()
        .conn()
        .execute_unprepared(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price) \
             SELECT '00000000-0000-0000-0000-000000000001', 'BTC/USDT', 'SELL', 'LIMIT', 'OPEN', 1, \
                    60000 + g FROM generate_series(1, 4000) g",
        )
        .await
        .expect("a deep book");
    let mut slow = Ws::connect(&app, None).await;
    // Asks for snapshot after snapshot and reads none of them.
    for _ in 0..300 {
        let outcome = slow
            .socket
            .send(Message::Text(
                json!({"op": "subscribe", "channels": ["book:BTC-USDT"]})
                    .to_string()
                    .into(),
            ))
            .await
            .and(
                slow.socket
                    .send(Message::Text(
                        json!({"op": "unsubscribe", "channels": ["book:BTC-USDT"]})
                            .to_string()
                            .into(),
                    ))
                    .await,
            );
        if outcome.is_err() {
            break;
        }
    }
    // Reading now: the connection ends before the 300 snapshots asked for.
    let mut snapshots = 0;
    while let Some(message) = slow.next().await {
        if message["type"] == "snapshot" {
            snapshots += 1;
        }
    }
    assert!(
        snapshots < 300,
        "the server cut the slow consumer off ({snapshots} snapshots)"
    );
    // Others are served as before.
    let mut other = Ws::connect(&app, None).await;
    other.subscribe(&["trades:BTC-USDT"]).await;
    other
        .until("subscribed", is("trades:BTC-USDT", "subscribed"))
        .await;
}

#[tokio::test]
async fn limits_and_refusals_are_named() {
    let app = local_app(&[
        ("WS_MAX_CONNECTIONS_PER_USER", "2"),
        ("WS_MAX_SUBSCRIPTIONS", "2"),
    ])
    .await;
    let alice = user(1);
    let _one = Ws::connect(&app, Some(alice)).await;
    let mut two = Ws::connect(&app, Some(alice)).await;
    match Ws::try_connect(&app, Some(alice)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body =
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("WebSocket connections"), "{body}");
        }
        Err(other) => panic!("a third connection of one user is a 429, not {other}"),
        Ok(_) => panic!("a third connection of one user is refused"),
    }
    two.subscribe(&["trades:BTC-USDT", "ticker:BTC-USDT", "book:BTC-USDT"])
        .await;
    two.until("first", is("trades:BTC-USDT", "subscribed"))
        .await;
    let ticker = two.until("ticker", is("ticker:BTC-USDT", "ticker")).await;
    assert_eq!(ticker["data"]["symbol"], "BTC/USDT");
    let over = two.until("the third", is("book:BTC-USDT", "error")).await;
    assert!(
        over["error"]
            .as_str()
            .expect("text")
            .contains("subscriptions"),
        "{over}"
    );
    two.send(json!({"op": "unsubscribe", "channels": ["ticker:BTC-USDT"]}))
        .await;
    two.until("unsubscribed", is("ticker:BTC-USDT", "unsubscribed"))
        .await;
    two.subscribe(&["trades:NOPE-USDT"]).await;
    let unknown = two.until("unknown", is("trades:NOPE-USDT", "error")).await;
    assert!(
        unknown["error"]
            .as_str()
            .expect("text")
            .contains("NOPE/USDT"),
        "{unknown}"
    );
    two.send(json!({"op": "jump"})).await;
    let op = two.until("op", is("system", "error")).await;
    assert!(
        op["error"].as_str().expect("text").contains("unknown op"),
        "{op}"
    );
    two.socket
        .send(Message::Text("not json".into()))
        .await
        .expect("sent");
    let garbage = two.until("garbage", is("system", "error")).await;
    assert!(
        garbage["error"]
            .as_str()
            .expect("text")
            .contains("not understood"),
        "{garbage}"
    );

    // Refused credentials and a plain GET are HTTP errors with the usual body.
    let refused = app
        .get_raw("/api/v1/ws", &[("X-User-ID", "not-a-user")])
        .await;
    assert_eq!(refused.status(), 401);
    let plain = app.get_raw("/api/v1/ws", &[]).await;
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.expect("the error body");
    assert!(
        body["details"]["error"]
            .as_str()
            .expect("detail")
            .contains("WebSocket"),
        "{body}"
    );
}

/// Resting asks of user 1 on BTC/USDT, one placement each.
async fn place_asks(conn: &sea_orm::DatabaseConnection, prices: &[&str]) {
    for price in prices {
        orders::place(
            conn,
            NewOrder::limit(user(1), "BTC/USDT", Side::Sell, dec("1"), dec(price)),
        )
        .await
        .expect("placed");
    }
}

async fn event_ids(db: &impl ConnectionTrait) -> Vec<i64> {
    tests::sql::column(db, "SELECT event_id FROM event_outbox ORDER BY event_id").await
}

/// Pruning reads the oldest events only, a batch at a time, so a statement
/// costs the same however many events retention keeps: it deletes the due
/// ones among them and says there may be more only when all of them went.
#[tokio::test]
async fn pruning_looks_at_the_oldest_events_a_batch_at_a_time() {
    let db = TestDb::migrated().await;
    let conn = db.conn();
    place_asks(conn, &["50000", "50001", "50002", "50003"]).await;
    let ids = event_ids(conn).await;
    assert!(
        ids.len() >= 6,
        "an order and a book event a placement: {ids:?}"
    );
    // Every event old and published, but the fifth one recent.
    conn.execute_unprepared(&format!(
        "UPDATE event_outbox SET created_at = created_at - interval '2 hours', published_at = now();
         UPDATE event_outbox SET created_at = now() WHERE event_id = {}",
        ids[4]
    ))
    .await
    .expect("aged and published");
    let before = chrono::Utc::now() - chrono::Duration::hours(1);
    let prune = async |batch| {
        service::events::prune(conn, before, batch)
            .await
            .expect("pruned")
    };
    assert_eq!(prune(2).await, 2, "the two oldest");
    assert_eq!(prune(2).await, 2, "the next two");
    assert_eq!(
        prune(2).await,
        1,
        "of the next two the recent one stays: no more this round"
    );
    let mut left = vec![ids[4]];
    left.extend(&ids[6..]);
    assert_eq!(event_ids(conn).await, left);
    assert_eq!(
        prune(1).await,
        0,
        "the oldest left is recent: nothing after it is looked at"
    );
    assert_eq!(event_ids(conn).await, left);
}

/// A claim takes the unpublished events above the id it is given (the relay
/// claims from near the newest it took), oldest first, leaving out those in
/// flight; from 0 it takes them all.
#[tokio::test]
async fn a_claim_takes_the_unpublished_events_after_the_id_it_is_given() {
    let db = TestDb::migrated().await;
    let conn = db.conn();
    place_asks(conn, &["50000", "50001", "50002"]).await;
    let ids = event_ids(conn).await;
    conn.execute_unprepared(&format!(
        "UPDATE event_outbox SET published_at = now() WHERE event_id = {}",
        ids[3]
    ))
    .await
    .expect("one published");
    let txn = conn.begin().await.expect("begin");
    let claimed = async |after, in_flight: &[i64]| -> Vec<i64> {
        let claim = service::events::claim(&txn, 1000, in_flight, after)
            .await
            .expect("claimed")
            .expect("the relay lock is free");
        assert_eq!(claim.newest, ids.last().copied(), "the newest event seen");
        claim.events.iter().map(|e| e.event_id).collect()
    };
    let unpublished: Vec<i64> = ids.iter().copied().filter(|&id| id != ids[3]).collect();
    assert_eq!(claimed(0, &[]).await, unpublished);
    assert_eq!(
        claimed(ids[1], &[]).await,
        unpublished[2..],
        "only the events after the id"
    );
    assert_eq!(
        claimed(ids[1], &[ids[2]]).await,
        unpublished[3..],
        "and not those in flight"
    );
    assert!(claimed(*ids.last().expect("events"), &[]).await.is_empty());
    txn.rollback().await.expect("rollback");
}

#[tokio::test]
async fn published_events_are_pruned_after_retention_and_unpublished_ones_kept() {
    let db = TestDb::migrated().await;
    let conn = db.conn();
    place_asks(conn, &["50000", "50001", "50002"]).await;
    conn.execute_unprepared(
        "UPDATE event_outbox SET created_at = created_at - interval '2 hours' WHERE event_id <= 4;
         UPDATE event_outbox SET published_at = now() WHERE event_id <= 2 OR event_id = 5",
    )
    .await
    .expect("aged and published");
    let before = chrono::Utc::now() - chrono::Duration::hours(1);
    let pruned = service::events::prune(conn, before, 1000)
        .await
        .expect("pruned");
    assert_eq!(pruned, 2, "old and published only");
    let left: Vec<i64> = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT event_id FROM event_outbox ORDER BY event_id",
        ))
        .await
        .expect("read")
        .iter()
        .map(|row| row.try_get::<i64>("", "event_id").expect("id"))
        .collect();
    assert_eq!(
        left,
        [3, 4, 5, 6],
        "unpublished (3, 4) and recent (5, 6) events stay"
    );
    let (pending, oldest) = service::events::backlog(conn).await.expect("backlog");
    assert_eq!(pending, 3);
    assert!(
        oldest >= 7200.0,
        "the oldest pending event is two hours old: {oldest}"
    );
}

/// The counter of disconnects for `reason` on the api's `/metrics` (every
/// app of this test binary shares the process's recorder).
async fn disconnects(app: &TestApp, reason: &str) -> f64 {
    let text = app
        .get_public("/metrics")
        .await
        .text()
        .await
        .expect("metrics text");
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .find(|l| l.starts_with("trade_engine_ws_disconnects_total{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn heartbeats_flow_a_silent_client_is_dropped_and_shutdown_closes_with_1001() {
    let app = local_app(&[("WS_HEARTBEAT_SECS", "1")]).await;
    let mut listening = Ws::connect(&app, None).await;
    let beat = loop {
        let message = tokio::time::timeout(WAIT, listening.socket.next())
            .await
            .expect("a frame within the wait")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            break serde_json::from_str::<Value>(&text).expect("JSON");
        }
    };
    assert_eq!(beat["channel"], "system");
    assert_eq!(beat["type"], "heartbeat");
    assert!(beat["time"].is_string(), "{beat}");

    // A client that never reads never answers a ping: dropped after three beats.
    let silent_before = disconnects(&app, "silent").await;
    let _silent = Ws::connect(&app, None).await;
    let deadline = std::time::Instant::now() + WAIT;
    while disconnects(&app, "silent").await <= silent_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the silent client stays connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // (So was the first client, which stopped reading after its heartbeat.)
    let mut closing = Ws::connect(&app, None).await;
    closing.subscribe(&["trades:BTC-USDT"]).await;
    closing
        .until("subscribed", is("trades:BTC-USDT", "subscribed"))
        .await;
    let stopping = tokio::spawn(app.shutdown());
    let code = loop {
        match tokio::time::timeout(WAIT, closing.socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("a close frame, not {other:?}"),
        }
    };
    assert_eq!(code, Some(1001), "going away");
    stopping.await.expect("the api stops");
}

#[test]
fn the_asyncapi_document_describes_every_message_the_server_sends() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/asyncapi.yaml");
    let document = std::fs::read_to_string(path).expect("docs/asyncapi.yaml");
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; yaml.safe_load(open(sys.argv[1]))",
            path,
        ])
        .output()
        .unwrap_or_else(|err| {
            panic!("python3 runs (with PyYAML, which openapi-spec-validator brings): {err}")
        });
    assert!(
        parsed.status.success(),
        "docs/asyncapi.yaml is YAML: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let server_types = [
        "subscribed",
        "unsubscribed",
        "error",
        "heartbeat",
        "pong",
        "trade",
        "snapshot",
        "update",
        "ticker",
        "order",
        "fill",
    ];
    for kind in server_types {
        assert!(
            document.contains(&format!("type: {{const: {kind}}}")),
            "no message of type {kind}"
        );
    }
    for op in ["subscribe", "unsubscribe", "ping"] {
        assert!(
            document.contains(&format!("op: {{const: {op}}}")),
            "no request {op}"
        );
    }
    for setting in [
        "WS_HEARTBEAT_SECS",
        "WS_SEND_BUFFER",
        "WS_MAX_SUBSCRIPTIONS",
        "RABBITMQ_EXCHANGE",
    ] {
        assert!(document.contains(setting), "{setting} is not described");
    }
    for key in ["trade.{symbol}", "book.{symbol}", "order.{user_id}"] {
        assert!(document.contains(key), "routing key {key} is not described");
    }
}

#[tokio::test]
async fn streams_work_behind_a_transaction_mode_pooler() {
    let app = spawn_app(AppOptions::trusted_header().through_transaction_pooler()).await;
    let mut of_book = Ws::connect(&app, None).await;
    of_book.subscribe(&["book:BTC-USDT"]).await;
    let mut book = Book::default();
    book.apply(
        &of_book
            .until("snapshot", is("book:BTC-USDT", "snapshot"))
            .await,
    );
    let mut ws = Ws::connect(&app, Some(user(2))).await;
    ws.subscribe(&["trades:BTC-USDT", "orders"]).await;
    ws.until("orders", is("orders", "subscribed")).await;
    app.limit(user(1), "SELL", "1", "50000").await;
    let placed = app.market(user(2), "BUY", "0.4").await;
    let trade = ws.until("the trade", is("trades:BTC-USDT", "trade")).await;
    assert_eq!(trade["data"]["id"], placed["trades"][0]["id"]);
    let fill = ws.until("the fill", is("orders", "fill")).await;
    assert_eq!(fill["data"]["order_id"], placed["order"]["id"]);
    book_matches(&app, &mut of_book, &mut book, "book:BTC-USDT").await;
}
