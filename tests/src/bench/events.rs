//! What the events cost a placement and how fast they travel (migration 13's
//! outbox, `api::events`), on the loaded database after the other lines:
//!
//! - **Outbox overhead** ([`outbox_overhead`]): blocks of resting and crossing
//!   placements (one client, through the service) with the trigger functions
//!   that write the events as the migrations left them and as they were
//!   before the outbox (migration 12's) in turn, back to back, alternating
//!   which goes first, as [`upkeep`](super::upkeep) does with the market-state
//!   triggers. Nothing relays during the blocks: this is the writing side.
//! - **Publish lag** ([`publish_lag`]): the api in-process with the broker
//!   (RabbitMQ, an exchange of the run's own), clients placing over HTTP
//!   (resting bids and market orders alternating). Per outbox event of the
//!   window, `published_at − created_at`: written in the placing transaction
//!   → marked right after the broker confirmed it; split for each
//!   placement's order event at the placement's HTTP response (after its
//!   commit). With `track_commit_timestamp = on` on the server, also from
//!   the commit ([`CommitWatch`]). And per message a consumer of the bench's
//!   own receives (with `--audit-consumer`: a
//!   queue bound to the exchange with `#`), arrival − the placement's clock
//!   in the message (`executed_at` of a trade, `updated_at` of an order).
//!   Then the same load without the broker (the relay hands the events to
//!   the api's hub), for what the broker adds.
//! - **WebSocket fan-out** ([`ws_delivery`]): subscribers of one symbol's
//!   trades on one api, crossing orders at a fixed rate over HTTP; per
//!   (subscriber, trade), receipt − the HTTP acknowledgement of the placement
//!   that made the trade (matched by trade id), and receipt − the trade's
//!   `executed_at`. Without the broker (the relay feeds the hub in-process)
//!   and, when one is reachable, through it.
//!
//! Clients, api and PostgreSQL share the machine: the figures include the
//! clients' own scheduling.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use lapin::options::ExchangeDeleteOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use migration::{DataLoss, Operation};
use rust_decimal::Decimal;
use sea_orm::sqlx::{self, PgPool, Row};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use uuid::Uuid;

use super::latency::Fixture;
use super::report::{Measurement, Samples, round1, round3};
use super::throughput::{Http, Prices};
use super::upkeep::place_block;

/// The broker of the event lines unless the command names another.
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The sizes of the event lines.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// Blocks per setting of the outbox on/off comparison.
    pub blocks: usize,
    /// Clients placing during the publish-lag line.
    pub lag_clients: usize,
    /// How long they place.
    pub lag_duration: Duration,
    /// WebSocket connections subscribed to one symbol's trades.
    pub subscribers: usize,
    /// Crossing placements per second while they listen.
    pub trades_per_second: u32,
    /// How long the placements go on.
    pub ws_duration: Duration,
    /// The broker of the publish-lag line and of the WebSocket line through
    /// the broker; without one, or when it cannot be reached, those lines are
    /// left out (with a note on stderr).
    pub rabbitmq_url: Option<String>,
    /// A consumer of the bench's own on the broker during the publish-lag
    /// line, for the end-to-end line (placement clock → arrival). Off by
    /// default: it doubles the broker's deliveries, so it weighs on the lag
    /// it would measure.
    pub audit_consumer: bool,
}

impl EventSettings {
    /// The sizes both scales use: the lines measure the event path, which
    /// does not grow with the data.
    pub fn standard() -> EventSettings {
        EventSettings {
            blocks: 20,
            lag_clients: 32,
            lag_duration: Duration::from_secs(15),
            subscribers: 1000,
            trades_per_second: 20,
            ws_duration: Duration::from_secs(10),
            rabbitmq_url: Some(DEFAULT_RABBITMQ_URL.to_owned()),
            audit_consumer: false,
        }
    }
}

/// The symbol of the overhead and WebSocket lines.
const SYMBOL: &str = "BTC/USDT";

/// Every event line: the outbox overhead, the publish lag (with a broker),
/// the WebSocket delivery in-process and (with a broker) through the broker.
pub async fn run(
    db: &DatabaseConnection,
    server_url: &str,
    database: &str,
    settings: &EventSettings,
    progress: bool,
) -> Result<Vec<Measurement>> {
    let pool = db.get_postgres_connection_pool().clone();
    let fixture = Fixture::read(&pool, SYMBOL, super::generate::user_id(0)).await?;
    let mut lines = outbox_overhead(db, &fixture, settings.blocks, progress).await?;
    let quotes = Arc::new(Quotes::read(&pool).await?);
    let broker = match &settings.rabbitmq_url {
        Some(url) => reachable(url).await,
        None => None,
    };
    if let Some(url) = &broker {
        lines.extend(
            publish_lag(
                db,
                server_url,
                database,
                &quotes,
                settings,
                Some(url),
                progress,
            )
            .await
            .context("the publish-lag line")?,
        );
    }
    lines.extend(
        publish_lag(db, server_url, database, &quotes, settings, None, progress)
            .await
            .context("the publish-lag line without the broker")?,
    );
    lines.extend(
        ws_delivery(db, server_url, database, &quotes, settings, None, progress)
            .await
            .context("the WebSocket line")?,
    );
    if let Some(url) = &broker {
        lines.extend(
            ws_delivery(
                db,
                server_url,
                database,
                &quotes,
                settings,
                Some(url),
                progress,
            )
            .await
            .context("the WebSocket line through the broker")?,
        );
    }
    Ok(lines)
}

/// `url` when the broker answers, else `None` (and a note).
async fn reachable(url: &str) -> Option<String> {
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await;
    match attempt {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "bench: reachable".into()).await;
            Some(url.to_owned())
        }
        Ok(Err(error)) => {
            eprintln!(
                "no broker ({error}): the publish-lag and broker WebSocket lines are left out"
            );
            None
        }
        Err(_) => {
            eprintln!(
                "the broker did not answer in 5 s: the publish-lag and broker WebSocket lines are left out"
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Outbox overhead

/// The migration that adds the outbox.
const OUTBOX_MIGRATION: &str = "m1700000013000_event_outbox";

/// The trigger functions that write the events (migration 13 gave them their
/// event-writing statements, later migrations may have changed those).
const EVENT_WRITERS: [&str; 4] = [
    "market_levels_on_insert",
    "market_levels_on_update",
    "market_levels_on_delete",
    "market_trades_on_insert",
];

/// The definitions (`CREATE OR REPLACE FUNCTION` statements) of
/// [`EVENT_WRITERS`] as `db` sees them.
async fn writer_definitions(db: &impl ConnectionTrait) -> Result<String> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_get_functiondef(to_regproc(f)) || ';'
             FROM unnest($1::text[]) WITH ORDINALITY AS w(f, n) ORDER BY n",
            [EVENT_WRITERS.map(str::to_owned).to_vec().into()],
        ))
        .await
        .context("the event-writing trigger functions")?;
    let definitions = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(definitions.join("\n"))
}

/// The event-writing functions without events (as they were before
/// [`OUTBOX_MIGRATION`]) and with them (everything applied). The first are
/// read inside a transaction that rolls back the migrations from the
/// outbox's on and is itself rolled back: nothing is dropped or rebuilt.
async fn outbox_settings(db: &DatabaseConnection) -> Result<[String; 2]> {
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE version = $1), count(*) FILTER (WHERE version >= $1)
         FROM seaql_migrations",
    )
    .bind(OUTBOX_MIGRATION)
    .fetch_one(db.get_postgres_connection_pool())
    .await
    .context("the applied migrations")?;
    let (applied, from_outbox): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    ensure!(
        applied == 1,
        "the outbox overhead needs {OUTBOX_MIGRATION}, which is not applied"
    );
    let on = writer_definitions(db).await?;
    let txn = db.begin().await?;
    migration::run(
        &txn,
        Operation::Down(Some(u32::try_from(from_outbox)?)),
        DataLoss::Allow,
    )
    .await
    .context("rolling back to the migration before the outbox's (in a transaction)")?;
    let off = writer_definitions(&txn).await?;
    txn.rollback().await?;
    Ok([off, on])
}

/// Puts the event-writing functions of `setting` (one of
/// [`outbox_settings`]) in place.
async fn switch_outbox(db: &DatabaseConnection, setting: &str) -> Result<()> {
    db.execute_unprepared(setting)
        .await
        .context("switching the event-writing trigger functions")?;
    Ok(())
}

/// `blocks` blocks per setting; lines for the resting and the crossing
/// placement with the outbox off and on, the on lines with their p50 over
/// the off line's. Everything stays applied; only the trigger functions
/// that write the events switch (the outbox's tables stay, unused when off),
/// and the ones with events are in place again after.
pub async fn outbox_overhead(
    db: &DatabaseConnection,
    fixture: &Fixture,
    blocks: usize,
    progress: bool,
) -> Result<Vec<Measurement>> {
    let settings = outbox_settings(db).await?;
    let db = &super::upkeep::one_connection(db).await?;
    // Per block: [resting off, resting on, crossing off, crossing on]
    let mut per_block = vec![vec![Samples::default(); 4]; blocks];
    let mut applied = true;
    let outcome = async {
        for (block, samples) in per_block.iter_mut().enumerate() {
            for on in [block % 2 == 1, block % 2 == 0] {
                if on != applied {
                    switch_outbox(db, &settings[usize::from(on)]).await?;
                    applied = on;
                }
                place_block(db, fixture, on, samples).await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Whatever happened, the functions with events are put back.
    if !applied {
        switch_outbox(db, &settings[1]).await?;
    }
    outcome?;
    let mut samples = vec![Samples::default(); 4];
    for block in &per_block {
        for (all, of_block) in samples.iter_mut().zip(block) {
            all.merge(of_block.clone());
        }
    }
    if progress {
        // The same comparison within each block (on and off back to back),
        // the median over the blocks: what the machine's drift leaves.
        let paired = |on: usize| {
            let mut ratios: Vec<f64> = per_block
                .iter()
                .map(|b| b[on].quantile(0.5) / b[on - 1].quantile(0.5).max(1e-9))
                .collect();
            ratios.sort_by(f64::total_cmp);
            ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
        };
        eprintln!(
            "outbox overhead: median over {blocks} blocks of p50 on / p50 off: resting {:.3}, crossing {:.3}",
            paired(1),
            paired(3)
        );
    }
    let names = [
        "place resting limit, outbox off",
        "place resting limit, outbox on",
        "place crossing (market), outbox off",
        "place crossing (market), outbox on",
    ];
    let mut lines: Vec<Measurement> = names
        .iter()
        .zip(&samples)
        .map(|(name, samples)| samples.measurement(*name))
        .collect();
    for on in [1, 3] {
        let off = samples[on - 1].quantile(0.5).max(1e-9);
        lines[on].ratio_vs_off = Some(round3(samples[on].quantile(0.5) / off));
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------
// Placements over HTTP

/// A symbol's resting bid price (5 % under the last trade) and a quantity
/// worth at least 10 USDT.
#[derive(Clone, Debug)]
struct Quote {
    symbol: &'static str,
    bid: Decimal,
    quantity: Decimal,
}

#[derive(Debug)]
struct Quotes(Vec<Quote>);

impl Quotes {
    /// The throughput lines' prices: 5 % under each symbol's last trade,
    /// twice its smallest order.
    async fn read(pool: &PgPool) -> Result<Quotes> {
        let prices = Prices::read(pool).await?;
        Ok(Quotes(
            prices
                .all()
                .iter()
                .map(|&(symbol, bid, quantity)| Quote {
                    symbol,
                    bid,
                    quantity,
                })
                .collect(),
        ))
    }

    /// Client `i`'s symbol: `i mod 10`, as in the throughput lines.
    fn of(&self, client: usize) -> &Quote {
        &self.0[client % self.0.len()]
    }

    fn symbol(&self, symbol: &str) -> Result<&Quote> {
        self.0
            .iter()
            .find(|q| q.symbol == symbol)
            .with_context(|| format!("no quote of {symbol}"))
    }
}

fn resting_body(quote: &Quote) -> Value {
    json!({
        "symbol": quote.symbol, "side": "BUY", "type": "LIMIT",
        "quantity": quote.quantity.to_string(), "price": quote.bid.to_string(),
    })
}

fn market_body(quote: &Quote, buy: bool) -> Value {
    json!({
        "symbol": quote.symbol, "side": if buy { "BUY" } else { "SELL" }, "type": "MARKET",
        "quantity": quote.quantity.to_string(),
    })
}

/// `POST /api/v1/orders` as `user`; the placement's JSON.
async fn place(base: &str, client: &reqwest::Client, user: Uuid, body: &Value) -> Result<Value> {
    let response = client
        .post(format!("{base}/api/v1/orders"))
        .header("X-User-ID", user.to_string())
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "POST /api/v1/orders: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Placements of one client's user before it takes a new one: under the
/// default cap on resting orders per user (1000).
const PLACEMENTS_PER_USER: usize = 900;

/// What a load placed: the latencies, and each placement's order with the
/// moment its response arrived (wall clock, to compare with the database's).
struct Load {
    samples: Samples,
    acks: Vec<(Uuid, DateTime<Utc>)>,
}

/// `clients` clients placing for `duration`, client `i` on symbol `i mod 10`,
/// a resting bid and a market order (buys and sells alternating) in turn.
async fn mixed_load(
    http: &Http,
    quotes: &Arc<Quotes>,
    clients: usize,
    duration: Duration,
) -> Result<Load> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut set = JoinSet::new();
    for client in 0..clients {
        let (base, http_client) = (http.base.clone(), http.client.clone());
        let quotes = quotes.clone();
        set.spawn(async move {
            let quote = quotes.of(client);
            let mut samples = Samples::default();
            let mut acks = Vec::new();
            let mut user = Uuid::new_v4();
            let mut n = 0usize;
            while Instant::now() < deadline {
                if n > 0 && n.is_multiple_of(PLACEMENTS_PER_USER) {
                    user = Uuid::new_v4();
                }
                let body = if n.is_multiple_of(2) {
                    resting_body(quote)
                } else {
                    market_body(quote, (n / 2).is_multiple_of(2))
                };
                let at = Instant::now();
                let placed = place(&base, &http_client, user, &body).await?;
                let acked = Utc::now();
                samples.record(at.elapsed());
                let order = placed["order"]["id"]
                    .as_str()
                    .context("a placement without order id")?;
                acks.push((Uuid::try_parse(order)?, acked));
                n += 1;
            }
            anyhow::Ok(Load { samples, acks })
        });
    }
    let mut all = Load {
        samples: Samples::default(),
        acks: Vec::new(),
    };
    while let Some(done) = set.join_next().await {
        let load = done.context("a client panicked")??;
        all.samples.merge(load.samples);
        all.acks.extend(load.acks);
    }
    all.samples.set_wall(started.elapsed());
    Ok(all)
}

/// `trade_engine_relay_failures_total` of the process (every api of the
/// bench shares the metrics recorder), from the api's `/metrics`.
async fn relay_failures(http: &Http) -> Result<f64> {
    Ok(metrics_text(http)
        .await?
        .lines()
        .filter(|line| line.starts_with("trade_engine_relay_failures_total"))
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum())
}

/// The api's `/metrics` page.
async fn metrics_text(http: &Http) -> Result<String> {
    Ok(http
        .client
        .get(format!("{}/metrics", http.base))
        .send()
        .await?
        .text()
        .await?)
}

/// The quantiles of `trade_engine_event_confirm_seconds` in the api's
/// `/metrics`, in milliseconds.
async fn confirm_summary(http: &Http) -> Result<String> {
    let quantiles: Vec<String> = metrics_text(http)
        .await?
        .lines()
        .filter_map(|line| line.strip_prefix("trade_engine_event_confirm_seconds{quantile=\""))
        .filter_map(|rest| {
            let (quantile, value) = rest.split_once("\"} ")?;
            Some(format!(
                "q{quantile} {:.1} ms",
                value.parse::<f64>().ok()? * 1e3
            ))
        })
        .collect();
    Ok(quantiles.join(", "))
}

// ---------------------------------------------------------------------------
// The outbox around a line

/// Marks every unpublished event published, so a line's relay starts from
/// an empty queue (the latency and overhead lines ran without a relay).
async fn settle_outbox(pool: &PgPool) -> Result<()> {
    sqlx::query(
        "UPDATE event_outbox SET published_at = clock_timestamp() WHERE published_at IS NULL",
    )
    .execute(pool)
    .await
    .context("marking the earlier lines' events published")?;
    Ok(())
}

async fn newest_event(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query("SELECT coalesce(max(event_id), 0) FROM event_outbox")
            .fetch_one(pool)
            .await?
            .try_get(0)?,
    )
}

/// Waits until the relay published every event up to `event_id`.
async fn wait_published(pool: &PgPool, event_id: i64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let pending: i64 = sqlx::query(
            "SELECT count(*) FROM event_outbox WHERE published_at IS NULL AND event_id <= $1",
        )
        .bind(event_id)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{pending} events up to {event_id} still unpublished after {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How often [`CommitWatch`] reads the waiting events.
const COMMIT_WATCH_EVERY: Duration = Duration::from_millis(2);

/// The commit time of the events of a line, for the lag from the commit
/// (the target's definition) rather than from the trigger's clock inside the
/// placing transaction. PostgreSQL keeps commit times only with
/// `track_commit_timestamp = on` (a server setting that takes a restart);
/// without it the line is left out, with a note. The watch reads the events
/// waiting for the relay every [`COMMIT_WATCH_EVERY`], with the commit time
/// of the transaction that wrote each (`pg_xact_commit_timestamp(xmin)`): the
/// relay's mark replaces the row's `xmin`, so an event marked between two
/// reads is not seen — the quickest ones, so the line errs on the slow side.
struct CommitWatch {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<HashMap<i64, f64>>>,
}

impl CommitWatch {
    async fn start(pool: &PgPool) -> Result<Option<CommitWatch>> {
        let setting: String = sqlx::query("SELECT current_setting('track_commit_timestamp')")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        if setting != "on" {
            eprintln!(
                "publish lag: track_commit_timestamp is off on the server: the lag from the commit is left out (ALTER SYSTEM SET track_commit_timestamp = on and a restart measure it)"
            );
            return Ok(None);
        }
        let mut connection = pool.acquire().await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut seen = HashMap::new();
            // Until told to stop, or until the watch is dropped (a line that
            // failed half-way): it must not poll on after its line.
            while !*stopped.borrow() && stopped.has_changed().is_ok() {
                let rows = sqlx::query(
                    "SELECT event_id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8
                     FROM event_outbox WHERE published_at IS NULL",
                )
                .fetch_all(&mut *connection)
                .await?;
                for row in rows {
                    if let Some(committed) = row.try_get::<Option<f64>, _>(1)? {
                        seen.entry(row.try_get(0)?).or_insert(committed);
                    }
                }
                tokio::time::sleep(COMMIT_WATCH_EVERY).await;
            }
            Ok(seen)
        });
        Ok(Some(CommitWatch { stop, task }))
    }

    /// Event id → commit time (seconds since the epoch) of what it saw.
    async fn finish(self) -> Result<HashMap<i64, f64>> {
        let _ = self.stop.send(true);
        self.task.await.context("the commit watch panicked")?
    }
}

/// A fresh exchange name, so the run's messages reach no one else's queue.
fn bench_exchange() -> String {
    format!("te_bench.{}", Uuid::new_v4().simple())
}

/// Declares `exchange` as the api does (a durable topic exchange).
async fn open_exchange(url: &str, exchange: &str) -> Result<(Connection, Channel)> {
    api::events::broker::open_exchange(url, exchange)
        .await
        .with_context(|| format!("connecting to the broker and declaring the exchange {exchange}"))
}

/// Deletes the run's exchange (the api declared it durable).
async fn delete_exchange(url: &str, exchange: &str) -> Result<()> {
    let (connection, channel) = open_exchange(url, exchange).await?;
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
        .with_context(|| format!("deleting the exchange {exchange}"))?;
    let _ = connection.close(200, "bench: done".into()).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Publish lag

/// A message the bench's own consumer received: its event and, for trade
/// and order messages, arrival − the placement's clock in it.
struct Arrival {
    event_id: i64,
    lag: Option<Duration>,
}

/// The bench's consumer: a queue of its own bound to the exchange with `#`.
struct Consumer {
    connection: Connection,
    stop: watch::Sender<bool>,
    newest: Arc<AtomicI64>,
    task: JoinHandle<Result<Vec<Arrival>>>,
}

impl Consumer {
    async fn start(url: &str, exchange: &str) -> Result<Consumer> {
        let (connection, channel) = open_exchange(url, exchange).await?;
        let (mut deliveries, _) = api::events::broker::exclusive_consumer(
            &channel,
            exchange,
            &["#"],
            FieldTable::default(),
        )
        .await?;
        let (stop, mut stopped) = watch::channel(false);
        let newest = Arc::new(AtomicI64::new(0));
        let seen = newest.clone();
        let task = tokio::spawn(async move {
            let mut arrivals = Vec::new();
            loop {
                tokio::select! {
                    delivery = deliveries.next() => match delivery {
                        Some(Ok(delivery)) => {
                            let now = Utc::now();
                            let arrival = arrival(&delivery.data, now)?;
                            seen.fetch_max(arrival.event_id, Ordering::Relaxed);
                            arrivals.push(arrival);
                        }
                        Some(Err(error)) => bail!("the bench's consumer: {error}"),
                        None => bail!("the broker ended the bench's consumer"),
                    },
                    _ = stopped.changed() => break,
                }
            }
            anyhow::Ok(arrivals)
        });
        Ok(Consumer {
            connection,
            stop,
            newest,
            task,
        })
    }

    /// Waits (up to 10 s) until a message of `event_id` or later arrived,
    /// then stops and returns every arrival.
    async fn finish(self, event_id: i64) -> Result<Vec<Arrival>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.newest.load(Ordering::Relaxed) < event_id && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        let arrivals = self.task.await.context("the bench's consumer panicked")??;
        let _ = self.connection.close(200, "bench: done".into()).await;
        Ok(arrivals)
    }
}

/// What a broker message says of its event; `now` is its arrival.
fn arrival(body: &[u8], now: DateTime<Utc>) -> Result<Arrival> {
    let message: Value = serde_json::from_slice(body).context("a broker message")?;
    let event_id = message["event_id"]
        .as_i64()
        .context("a broker message without event_id")?;
    let clock = match message["type"].as_str() {
        Some("trade") => message["data"]["executed_at"].as_str(),
        Some("order") => message["data"]["updated_at"].as_str(),
        _ => None,
    };
    let lag = match clock {
        Some(text) => {
            let at = DateTime::parse_from_rfc3339(text)
                .with_context(|| format!("a message's time {text:?}"))?;
            Some((now - at.to_utc()).to_std().unwrap_or_default())
        }
        None => None,
    };
    Ok(Arrival { event_id, lag })
}

/// The api (with the broker of `broker`, or relaying to its hub in-process),
/// `lag_clients` clients placing over HTTP for `lag_duration` after a
/// one-second warm-up. Lines for the placements and the outbox's publish lag;
/// with the broker also the lag's two parts (before and after the placement's
/// HTTP response, which comes after its commit: an upper bound of the
/// commit) and the bench consumer's end-to-end lag.
async fn publish_lag(
    db: &DatabaseConnection,
    server_url: &str,
    database: &str,
    quotes: &Arc<Quotes>,
    settings: &EventSettings,
    broker: Option<&str>,
    progress: bool,
) -> Result<Vec<Measurement>> {
    let pool = db.get_postgres_connection_pool().clone();
    let exchange = bench_exchange();
    let consumer = match broker {
        Some(url) if settings.audit_consumer => Some(Consumer::start(url, &exchange).await?),
        _ => None,
    };
    settle_outbox(&pool).await?;
    let mut api_settings = Vec::new();
    if let Some(url) = broker {
        api_settings.push(("RABBITMQ_URL", url.to_owned()));
        api_settings.push(("RABBITMQ_EXCHANGE", exchange.clone()));
    }
    let (http, server) = super::start_api(server_url, database, &api_settings).await?;
    let clients = settings.lag_clients;
    let outcome = async {
        // Warm-up: the relay's broker connection, the api's plans.
        mixed_load(&http, quotes, clients, Duration::from_secs(1)).await?;
        let first = newest_event(&pool).await?;
        wait_published(&pool, first, Duration::from_secs(60)).await?;
        let failures = relay_failures(&http).await?;
        let watch = CommitWatch::start(&pool).await?;
        let load = mixed_load(&http, quotes, clients, settings.lag_duration).await?;
        let last = newest_event(&pool).await?;
        wait_published(&pool, last, Duration::from_secs(60)).await?;
        let commits = match watch {
            Some(watch) => Some(watch.finish().await?),
            None => None,
        };
        let failures = relay_failures(&http).await? - failures;
        if progress && broker.is_some() {
            eprintln!(
                "publish lag: the api's summary of the broker's confirm of a batch (its last minute): {}",
                confirm_summary(&http).await?
            );
        }
        anyhow::Ok((first, last, load, failures, commits))
    }
    .await;
    server.shutdown().await.context("stopping the api")?;
    let arrivals = match (consumer, &outcome) {
        (Some(consumer), Ok((_, last, ..))) => Some(consumer.finish(*last).await),
        (Some(consumer), Err(_)) => Some(consumer.finish(0).await),
        (None, _) => None,
    };
    if let Some(url) = broker {
        delete_exchange(url, &exchange).await?;
    }
    let (first, last, load, failures, commits) = outcome?;
    let arrivals = arrivals.transpose()?;

    let rows = sqlx::query(
        "SELECT kind, payload->>'order_id',
                extract(epoch FROM created_at)::float8, extract(epoch FROM published_at)::float8,
                event_id
         FROM event_outbox WHERE event_id > $1 AND event_id <= $2 ORDER BY event_id",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&pool)
    .await?;
    let acked: HashMap<Uuid, f64> = load
        .acks
        .iter()
        .map(|(order, at)| (*order, at.timestamp_micros() as f64 / 1e6))
        .collect();
    let seconds = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let mut outbox = Samples::default();
    let mut from_commit = Samples::default();
    let (mut before_ack, mut after_ack) = (Samples::default(), Samples::default());
    let mut published_before_ack = 0usize;
    let mut first_events = std::collections::HashSet::new();
    let (mut earliest, mut latest) = (f64::MAX, f64::MIN);
    for row in &rows {
        let kind: String = row.try_get(0)?;
        let order: Option<String> = row.try_get(1)?;
        let created: f64 = row.try_get(2)?;
        let published: f64 = row.try_get(3)?;
        outbox.record(seconds(published - created));
        let event_id: i64 = row.try_get(4)?;
        if let Some(committed) = commits.as_ref().and_then(|c| c.get(&event_id)) {
            from_commit.record(seconds(published - committed));
        }
        earliest = earliest.min(created);
        latest = latest.max(created);
        // The event of a placement's own order as inserted: its first.
        let order = match (kind.as_str(), order) {
            ("order", Some(order)) => Uuid::try_parse(&order)?,
            _ => continue,
        };
        if let Some(&ack) = acked.get(&order)
            && first_events.insert(order)
        {
            before_ack.record(seconds(ack - created));
            after_ack.record(seconds(published - ack));
            published_before_ack += usize::from(published < ack);
        }
    }
    ensure!(!outbox.is_empty(), "the load wrote no event");
    let span = (latest - earliest).max(1e-3);
    let placements = &load.samples;
    let via = if broker.is_some() {
        "+ broker"
    } else {
        "no broker"
    };
    if progress {
        eprintln!(
            "publish lag ({via}): {} placements in {:.1} s, {} events ({:.0}/s); {published_before_ack} of {} placements' order events published before the HTTP response",
            placements.len(),
            settings.lag_duration.as_secs_f64(),
            outbox.len(),
            outbox.len() as f64 / span,
            before_ack.len(),
        );
    }
    if failures > 0.0 {
        eprintln!(
            "publish lag ({via}): the relay failed {failures} rounds during the line (broker or database restarted?): the figures are not representative"
        );
    }
    let mut lines = Vec::new();
    let mut line = placements.measurement(format!("place mix, HTTP api {via} x{clients}"));
    line.ops_per_s = round1(placements.wall_ops_per_s());
    line.samples = Some(placements.len());
    lines.push(line);
    let target = if broker.is_some() { "confirmed" } else { "hub" };
    let mut line = outbox.measurement(format!("event lag, created → {target} x{clients}"));
    line.ops_per_s = round1(outbox.len() as f64 / span);
    line.samples = Some(outbox.len());
    lines.push(line);
    if commits.is_some() {
        if progress {
            eprintln!(
                "publish lag ({via}): the commit of {} of {} events seen before the relay marked them",
                from_commit.len(),
                outbox.len()
            );
        }
        let mut line = from_commit.measurement(format!("event lag, commit → {target} x{clients}"));
        line.ops_per_s = round1(from_commit.len() as f64 / span);
        line.samples = Some(from_commit.len());
        lines.push(line);
    }
    for (samples, name) in [
        (&before_ack, "created → HTTP ack".to_owned()),
        (&after_ack, format!("HTTP ack → {target}")),
    ] {
        let mut line = samples.measurement(format!("event lag part, {name} x{clients}"));
        line.ops_per_s = round1(samples.len() as f64 / span);
        line.samples = Some(samples.len());
        lines.push(line);
    }
    let Some(arrivals) = arrivals else {
        return Ok(lines);
    };
    let mut consumed = Samples::default();
    let mut messages = 0usize;
    for arrival in arrivals
        .iter()
        .filter(|a| a.event_id > first && a.event_id <= last)
    {
        messages += 1;
        if let Some(lag) = arrival.lag {
            consumed.record(lag);
        }
    }
    let mut line = consumed.measurement(format!("event lag, clock → broker consumer x{clients}"));
    line.ops_per_s = round1(messages as f64 / span);
    line.samples = Some(consumed.len());
    lines.push(line);
    Ok(lines)
}

// ---------------------------------------------------------------------------
// WebSocket delivery

/// How many subscribers connect at a time (under the api's 256 requests in
/// flight).
const CONNECTING: usize = 64;

/// A text frame a subscriber received, and when.
struct Receipt {
    at: Instant,
    wall: DateTime<Utc>,
    text: Utf8Bytes,
}

/// What a subscriber received until it was stopped, and why it ended early
/// if it did.
struct Subscriber {
    receipts: Vec<Receipt>,
    cut_off: Option<String>,
}

/// One subscriber: connects, subscribes to `channel`, says it is ready once
/// the server confirmed, then keeps every text frame until `stop`.
async fn subscriber(
    url: String,
    channel: String,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<()>,
    trades: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Result<Subscriber> {
    let permit = gate.acquire_owned().await?;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .context("connecting a subscriber")?;
    let subscribe = json!({"op": "subscribe", "channels": [channel]});
    ws.send(Message::text(subscribe.to_string())).await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => {
                let reply: Value = serde_json::from_str(text.as_str())?;
                match reply["type"].as_str() {
                    Some("subscribed") if reply["channel"] == channel.as_str() => break,
                    Some("error") => bail!("subscribing to {channel}: {text}"),
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => bail!("a subscriber's connection: {error}"),
            Ok(None) => bail!("the server closed a subscriber before it was subscribed"),
            Err(_) => bail!("no reply to a subscription within 30 s"),
        }
    }
    drop(permit);
    let _ = ready.send(()).await;
    let mut receipts = Vec::new();
    let cut_off = loop {
        tokio::select! {
            message = ws.next() => {
                let (at, wall) = (Instant::now(), Utc::now());
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if text.as_str().contains("\"type\":\"trade\"") {
                            trades.fetch_add(1, Ordering::Relaxed);
                        }
                        receipts.push(Receipt { at, wall, text });
                    }
                    Some(Ok(Message::Close(frame))) => break Some(format!("closed: {frame:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break Some("the connection ended".to_owned()),
                }
            }
            _ = stop.changed() => break None,
        }
    };
    if cut_off.is_none() {
        let _ = ws.close(None).await;
    }
    Ok(Subscriber { receipts, cut_off })
}

/// Placement acknowledgements by trade id, and how many placements there
/// were.
#[derive(Default)]
struct Acks {
    by_trade: HashMap<Uuid, Instant>,
    placements: usize,
}

/// A crossing market order of `quote`; its trades' ids with the moment the
/// response arrived.
async fn place_crossing(http: &Http, quote: &Quote, buy: bool, acks: &mut Acks) -> Result<usize> {
    let placed = place(
        &http.base,
        &http.client,
        Uuid::new_v4(),
        &market_body(quote, buy),
    )
    .await?;
    let acked = Instant::now();
    acks.placements += 1;
    let trades = placed["trades"].as_array().map_or(&[][..], Vec::as_slice);
    for trade in trades {
        let id = trade["id"].as_str().context("a trade without id")?;
        acks.by_trade.insert(Uuid::try_parse(id)?, acked);
    }
    Ok(trades.len())
}

/// `settings.subscribers` subscribers of one symbol's trades on an api
/// (through the broker when `broker` names one), crossing orders at
/// `trades_per_second` for `ws_duration`; lines for the delivery after the
/// placement's acknowledgement and after the trade's `executed_at`.
async fn ws_delivery(
    db: &DatabaseConnection,
    server_url: &str,
    database: &str,
    quotes: &Arc<Quotes>,
    settings: &EventSettings,
    broker: Option<&str>,
    progress: bool,
) -> Result<Vec<Measurement>> {
    let pool = db.get_postgres_connection_pool().clone();
    settle_outbox(&pool).await?;
    let subscribers = settings.subscribers;
    let mut api_settings = vec![
        (
            "WS_MAX_CONNECTIONS_PER_ADDRESS",
            (subscribers + 100).max(5000).to_string(),
        ),
        ("ANONYMOUS_RATE_LIMIT_PER_SECOND", "0".to_owned()),
    ];
    let exchange = bench_exchange();
    if let Some(url) = broker {
        api_settings.push(("RABBITMQ_URL", url.to_owned()));
        api_settings.push(("RABBITMQ_EXCHANGE", exchange.clone()));
    }
    let (http, server) = super::start_api(server_url, database, &api_settings).await?;
    let quote = quotes.symbol(SYMBOL)?.clone();
    let outcome = async {
        let failures = relay_failures(&http).await?;
        let fanned = fan_out(&http, &quote, settings, progress).await?;
        anyhow::Ok((fanned, relay_failures(&http).await? - failures))
    }
    .await;
    server.shutdown().await.context("stopping the api")?;
    if let Some(url) = broker {
        delete_exchange(url, &exchange).await?;
    }
    let ((acks, received, connect_seconds), failures) = outcome?;

    let mut from_ack = Samples::default();
    let mut from_execution = Samples::default();
    let (mut early, mut cut_off) = (0usize, 0usize);
    // Per trade: its first and last receipt over the subscribers.
    let mut spread: HashMap<Uuid, (Instant, Instant)> = HashMap::new();
    for subscriber in &received {
        cut_off += usize::from(subscriber.cut_off.is_some());
        for receipt in &subscriber.receipts {
            let frame: Value = serde_json::from_str(receipt.text.as_str())?;
            if frame["type"] != "trade" {
                continue;
            }
            let Some(id) = frame["data"]["id"].as_str() else {
                bail!("a trade frame without id: {}", receipt.text.as_str());
            };
            let id = Uuid::try_parse(id)?;
            let Some(acked) = acks.by_trade.get(&id) else {
                // A warm-up trade.
                continue;
            };
            let (first, last) = spread.entry(id).or_insert((receipt.at, receipt.at));
            *first = (*first).min(receipt.at);
            *last = (*last).max(receipt.at);
            early += usize::from(receipt.at < *acked);
            from_ack.record(receipt.at.saturating_duration_since(*acked));
            let executed = frame["data"]["executed_at"]
                .as_str()
                .context("a trade frame without executed_at")?;
            let executed = DateTime::parse_from_rfc3339(executed)?.to_utc();
            from_execution.record((receipt.wall - executed).to_std().unwrap_or_default());
        }
    }
    let via = if broker.is_some() {
        "via broker"
    } else {
        "in-process"
    };
    let expected = acks.by_trade.len() * subscribers;
    if progress {
        eprintln!(
            "websocket ({via}): {subscribers} subscribers in {connect_seconds:.1} s; {} placements, {} trades; {} of {expected} deliveries, {early} before the placement's response; {cut_off} subscribers cut off",
            acks.placements,
            acks.by_trade.len(),
            from_ack.len(),
        );
    }
    if failures > 0.0 {
        eprintln!(
            "websocket ({via}): the relay failed {failures} rounds during the line (broker or database restarted?): the figures are not representative"
        );
    }
    if let Some(reason) = received.iter().find_map(|s| s.cut_off.as_deref()) {
        eprintln!("websocket ({via}): a subscriber was cut off: {reason}");
    }
    let per_second = from_ack.len() as f64 / settings.ws_duration.as_secs_f64();
    let mut lines = Vec::new();
    for (samples, after) in [(&from_ack, "ack"), (&from_execution, "executed_at")] {
        let mut line = samples.measurement(format!("ws trades x{subscribers} {via}, from {after}"));
        line.ops_per_s = round1(per_second);
        line.samples = Some(samples.len());
        lines.push(line);
    }
    // Where the time goes, per trade: to its first subscriber (the relay, and
    // the broker), then from the first subscriber to the last (the fan-out).
    let (mut to_first, mut fan_out) = (Samples::default(), Samples::default());
    for (id, (first, last)) in &spread {
        if let Some(acked) = acks.by_trade.get(id) {
            to_first.record(first.saturating_duration_since(*acked));
            fan_out.record(last.saturating_duration_since(*first));
        }
    }
    let per_second = spread.len() as f64 / settings.ws_duration.as_secs_f64();
    for (samples, part) in [
        (&to_first, "ack → first receipt"),
        (&fan_out, "first → last receipt"),
    ] {
        let mut line = samples.measurement(format!("ws x{subscribers} {via}, {part}"));
        line.ops_per_s = round1(per_second);
        line.samples = Some(samples.len());
        lines.push(line);
    }
    Ok(lines)
}

/// Connects the subscribers, warms up until one received a trade, places,
/// waits for the deliveries (up to 10 s), stops the subscribers.
async fn fan_out(
    http: &Http,
    quote: &Quote,
    settings: &EventSettings,
    progress: bool,
) -> Result<(Acks, Vec<Subscriber>, f64)> {
    let subscribers = settings.subscribers;
    let url = format!("ws://{}/api/v1/ws", http.base.trim_start_matches("http://"));
    let channel = format!("trades:{}", quote.symbol.replace('/', "-"));
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let trades = Arc::new(AtomicUsize::new(0));
    let (ready_tx, mut ready) = mpsc::channel(subscribers);
    let (stop, stopped) = watch::channel(false);
    let mut set = JoinSet::new();
    let connecting = Instant::now();
    for _ in 0..subscribers {
        set.spawn(subscriber(
            url.clone(),
            channel.clone(),
            gate.clone(),
            ready_tx.clone(),
            trades.clone(),
            stopped.clone(),
        ));
    }
    drop(ready_tx);
    let placed = async {
        for connected in 0..subscribers {
            match tokio::time::timeout(Duration::from_secs(60), ready.recv()).await {
                Ok(Some(())) => {}
                _ => bail!("{connected} of {subscribers} subscribers connected and subscribed"),
            }
        }
        let connect_seconds = connecting.elapsed().as_secs_f64();
        if progress {
            eprintln!(
                "websocket: {subscribers} subscribers of {channel} in {connect_seconds:.1} s"
            );
        }
        // Warm-up: until a subscriber received a trade (the broker's queue
        // of the api is bound, the relay connected), not measured.
        let mut warm = Acks::default();
        let mut placed_trades = 0;
        let warm_until = Instant::now() + Duration::from_secs(15);
        while trades.load(Ordering::Relaxed) == 0 {
            ensure!(
                Instant::now() < warm_until,
                "no subscriber received a trade within 15 s"
            );
            placed_trades +=
                place_crossing(http, quote, warm.placements % 2 == 0, &mut warm).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut acks = Acks::default();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(
            1.0 / f64::from(settings.trades_per_second.max(1)),
        ));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let until = Instant::now() + settings.ws_duration;
        while Instant::now() < until {
            ticker.tick().await;
            placed_trades +=
                place_crossing(http, quote, acks.placements % 2 == 0, &mut acks).await?;
        }
        let expected = placed_trades * subscribers;
        let deadline = Instant::now() + Duration::from_secs(10);
        while trades.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok((acks, connect_seconds))
    }
    .await;
    let _ = stop.send(true);
    let mut received = Vec::with_capacity(subscribers);
    let mut failure = None;
    while let Some(done) = set.join_next().await {
        match done.context("a subscriber panicked")? {
            Ok(subscriber) => received.push(subscriber),
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    let (acks, connect_seconds) = match (placed, failure) {
        (Ok(placed), None) => placed,
        (Ok(_), Some(error)) | (Err(_), Some(error)) => return Err(error),
        (Err(error), None) => return Err(error),
    };
    Ok((acks, received, connect_seconds))
}
