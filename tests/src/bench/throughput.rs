//! Placement throughput with 1, 8, 32 and 64 concurrent clients (client `i`
//! on symbol `i mod 10`, so several clients share a symbol past 10), against
//! the durable-commit floor: a plain single-row INSERT into `orders`,
//! autocommit, at the same concurrency. Placements go through the service one
//! transaction each, through the per-symbol sequencer (batches of the
//! placements that arrive together), and over HTTP through the api (started
//! in-process, which places through its sequencer). Cancels of resting bids
//! go through the service one transaction each and through the sequencer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rust_decimal::Decimal;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{self, PgPool, Row};
use service::Side;
use service::orders::{self, NewOrder, Sequencer, SequencerSettings};
use service::pooling::{Pool, PoolMode};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::market::{MARKETS, decimal};
use super::raw;
use super::report::{Measurement, Samples, round1, round3};

/// Placements of one client's user before the client takes a new user:
/// under the service's default cap on resting orders per user (1000).
const RESTING_PER_USER: usize = 900;

/// What one client places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bid 5 % under the last price: rests.
    Resting,
    /// A market order of the minimum size, buys and sells alternating.
    Crossing,
    /// The floor: one INSERT, no transaction around it.
    Floor,
    /// A resting bid through `POST /api/v1/orders`.
    Http,
    /// [`Kind::Crossing`] through `POST /api/v1/orders`.
    HttpCrossing,
    /// [`Kind::Resting`] through a [`Sequencer`].
    SequencedResting,
    /// [`Kind::Crossing`] through a [`Sequencer`].
    SequencedCrossing,
    /// A cancel of one of the client's resting bids, one transaction each.
    Cancel,
    /// [`Kind::Cancel`] through a [`Sequencer`].
    SequencedCancel,
}

/// Resting bids a cancel line gives each client before it starts, per second
/// of the line: `clients × this` at most [`CANCEL_STOCK_TOTAL`] a second,
/// above the rates cancels reach on this machine. A client that runs out
/// inserts as many again, inside the line's wall time.
const CANCEL_STOCK_PER_CLIENT: usize = 1_500;
const CANCEL_STOCK_TOTAL: usize = 6_000;

/// Resting bids of one client's user to cancel, inserted in one statement
/// with version 7 ids (as the service gives its orders), so a cancel finds
/// each by its id in one partition.
const STOCK: &str = "INSERT INTO orders (order_id, user_id, symbol, side, order_type, status,
        quantity, price)
    SELECT id, $2, $3, 'BUY', 'LIMIT', 'OPEN', $4, $5 FROM unnest($1::uuid[]) AS id";

/// What a cancel line left resting, cancelled after it (not timed), so the
/// book is as before the line.
const UNSTOCK: &str = "UPDATE orders SET status = 'CANCELLED'
    WHERE user_id = ANY($1) AND created_at >= $2 AND status = 'OPEN'";

async fn stock(
    pool: &PgPool,
    user: Uuid,
    (symbol, bid, quantity): (&str, Decimal, Decimal),
    count: usize,
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    sqlx::query(STOCK)
        .bind(&ids)
        .bind(user)
        .bind(symbol)
        .bind(quantity)
        .bind(bid)
        .execute(pool)
        .await
        .context("resting bids to cancel")?;
    Ok(ids)
}

/// A throughput line's samples, and the batch sizes when a sequencer placed.
pub struct Run {
    pub samples: Samples,
    /// Mean and p99 of the batch sizes.
    pub batches: Option<(f64, usize)>,
}

/// Per symbol: last price, a resting bid price and a quantity worth ≥ 10 USDT.
#[derive(Clone, Debug)]
pub struct Prices {
    per_symbol: Vec<(&'static str, Decimal, Decimal)>,
}

impl Prices {
    pub async fn read(pool: &PgPool) -> Result<Prices> {
        let mut per_symbol = Vec::new();
        for market in MARKETS {
            let last: Decimal = sqlx::query(
                "SELECT price FROM trades WHERE symbol = $1 ORDER BY executed_at DESC LIMIT 1",
            )
            .bind(market.symbol)
            .fetch_one(pool)
            .await
            .with_context(|| format!("a trade of {}", market.symbol))?
            .try_get(0)?;
            let tick = decimal(market.tick);
            let bid = ((last * Decimal::new(95, 2)) / tick).floor() * tick;
            let units = (bid * Decimal::from(super::market::UNIT))
                .trunc()
                .try_into()
                .unwrap_or(i64::MAX);
            let lots = market.min_lots(units) * 2;
            let quantity = decimal(lots * market.lot);
            per_symbol.push((market.symbol, bid.normalize(), quantity));
        }
        Ok(Prices { per_symbol })
    }

    fn of(&self, client: usize) -> (&'static str, Decimal, Decimal) {
        self.per_symbol[client % self.per_symbol.len()]
    }

    /// Every symbol's `(symbol, bid, quantity)`, in the order of `MARKETS`.
    pub fn all(&self) -> &[(&'static str, Decimal, Decimal)] {
        &self.per_symbol
    }
}

/// An api started in-process for the HTTP lines, and its client.
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
    /// The api's sequencer, for its batch sizes.
    pub sequencer: Sequencer,
}

/// Runs `kind` with `clients` clients for `duration`.
pub async fn run(
    kind: Kind,
    clients: usize,
    duration: Duration,
    db: &DatabaseConnection,
    prices: &Prices,
    http: Option<&Http>,
) -> Result<Run> {
    let prices = Arc::new(prices.clone());
    let sequenced = matches!(
        kind,
        Kind::SequencedResting | Kind::SequencedCrossing | Kind::SequencedCancel
    );
    let sequencer = sequenced.then(|| {
        Sequencer::new(
            Pool::new(db.clone(), PoolMode::Direct),
            orders::PlacementLimits::default(),
            SequencerSettings::default(),
        )
    });
    // A cancel line's clients start with their stock of resting bids.
    let cancels = matches!(kind, Kind::Cancel | Kind::SequencedCancel);
    let stocked_from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let per_client = if cancels {
        let per_second = CANCEL_STOCK_PER_CLIENT.min(CANCEL_STOCK_TOTAL / clients.max(1));
        (duration.as_secs_f64() * per_second as f64).ceil() as usize
    } else {
        0
    };
    let pool = db.get_postgres_connection_pool().clone();
    let mut stocks = Vec::with_capacity(clients);
    for client in 0..clients {
        let user = Uuid::new_v4();
        let ids = if cancels {
            stock(&pool, user, prices.of(client), per_client).await?
        } else {
            Vec::new()
        };
        stocks.push((user, ids));
    }
    let users: Vec<Uuid> = stocks.iter().map(|(user, _)| *user).collect();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (client, (first_user, mut stocked)) in stocks.into_iter().enumerate() {
        let db = db.clone();
        let prices = prices.clone();
        let http = http.map(|h| (h.base.clone(), h.client.clone()));
        let sequencer = sequencer.clone();
        set.spawn(async move {
            let mut samples = Samples::default();
            let mut user = first_user;
            let (symbol, bid, quantity) = prices.of(client);
            let pool = db.get_postgres_connection_pool().clone();
            let mut n = 0usize;
            while Instant::now() < deadline {
                // A fresh user before the resting-order cap (1000 per user)
                // would refuse the next resting bid (a cancel line keeps its
                // stock's user).
                if !cancels && n > 0 && n.is_multiple_of(RESTING_PER_USER) {
                    user = Uuid::new_v4();
                }
                if cancels && stocked.is_empty() {
                    stocked = stock(&pool, user, prices.of(client), per_client.max(1)).await?;
                }
                let at = Instant::now();
                match kind {
                    Kind::Cancel => {
                        let id = stocked.pop().context("a resting bid to cancel")?;
                        orders::cancel(&db, user, id).await?;
                    }
                    Kind::SequencedCancel => {
                        let id = stocked.pop().context("a resting bid to cancel")?;
                        let sequencer = sequencer.as_ref().context("a sequencer")?;
                        sequencer.cancel(user, id).await?;
                    }
                    Kind::Resting => {
                        let order = NewOrder::limit(user, symbol, Side::Buy, quantity, bid);
                        orders::place(&db, order).await?;
                    }
                    Kind::Crossing => {
                        orders::place(&db, crossing(user, symbol, quantity, n)).await?;
                    }
                    Kind::SequencedResting => {
                        let order = NewOrder::limit(user, symbol, Side::Buy, quantity, bid);
                        let sequencer = sequencer.as_ref().context("a sequencer")?;
                        sequencer.place(order).await?;
                    }
                    Kind::SequencedCrossing => {
                        let sequencer = sequencer.as_ref().context("a sequencer")?;
                        sequencer.place(crossing(user, symbol, quantity, n)).await?;
                    }
                    Kind::Floor => {
                        sqlx::query(raw::FLOOR_INSERT)
                            .bind(user)
                            .bind(symbol)
                            .bind(quantity)
                            .bind(bid)
                            .execute(&pool)
                            .await?;
                    }
                    Kind::Http | Kind::HttpCrossing => {
                        let (base, client) = http.as_ref().context("the api is running")?;
                        let body = if kind == Kind::Http {
                            serde_json::json!({
                                "symbol": symbol, "side": "BUY", "type": "LIMIT",
                                "quantity": quantity.to_string(), "price": bid.to_string(),
                            })
                        } else {
                            let side = if n.is_multiple_of(2) { "BUY" } else { "SELL" };
                            serde_json::json!({
                                "symbol": symbol, "side": side, "type": "MARKET",
                                "quantity": quantity.to_string(),
                            })
                        };
                        let response = client
                            .post(format!("{base}/api/v1/orders"))
                            .header("X-User-ID", user.to_string())
                            .json(&body)
                            .send()
                            .await?;
                        anyhow::ensure!(
                            response.status().is_success(),
                            "POST /api/v1/orders: {} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
                    }
                }
                samples.record(at.elapsed());
                n += 1;
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Samples::default();
    while let Some(done) = set.join_next().await {
        all.merge(done.context("a client panicked")??);
    }
    all.set_wall(started.elapsed());
    if cancels {
        sqlx::query(UNSTOCK)
            .bind(&users)
            .bind(stocked_from)
            .execute(&pool)
            .await
            .context("cancelling what the cancel line left resting")?;
    }
    let batches = match (&sequencer, http) {
        (Some(sequencer), _) if cancels => Some(sequencer.cancel_batch_sizes()),
        (Some(sequencer), _) => Some(sequencer.batch_sizes()),
        (None, Some(http)) if matches!(kind, Kind::Http | Kind::HttpCrossing) => {
            let sizes = http.sequencer.batch_sizes();
            http.sequencer.reset_stats();
            Some(sizes)
        }
        _ => None,
    };
    Ok(Run {
        samples: all,
        batches,
    })
}

/// A market order of the minimum size, buys and sells alternating.
fn crossing(user: Uuid, symbol: &str, quantity: Decimal, n: usize) -> NewOrder {
    let side = if n.is_multiple_of(2) {
        Side::Buy
    } else {
        Side::Sell
    };
    NewOrder::market(user, symbol, side, quantity)
}

/// The throughput lines of one kind at one concurrency.
pub fn line(kind: Kind, clients: usize, run: &Run, floor: Option<&Samples>) -> Measurement {
    let name = match kind {
        Kind::Resting => "place resting, service",
        Kind::Crossing => "place crossing, service",
        Kind::Floor => "single-row insert floor",
        Kind::Http => "place resting, HTTP api",
        Kind::HttpCrossing => "place crossing, HTTP api",
        Kind::SequencedResting => "place resting, sequencer",
        Kind::SequencedCrossing => "place crossing, sequencer",
        Kind::Cancel => "cancel resting, service",
        Kind::SequencedCancel => "cancel resting, sequencer",
    };
    let samples = &run.samples;
    let mut line = samples.measurement(format!("{name} x{clients}"));
    if let Some((mean, p99)) = run.batches {
        line.batch_mean = Some(round3(mean));
        line.batch_p99 = Some(p99);
    }
    line.ops_per_s = round1(samples.wall_ops_per_s());
    line.share_of_floor =
        floor.map(|floor| round3(samples.wall_ops_per_s() / floor.wall_ops_per_s().max(1e-9)));
    line
}
