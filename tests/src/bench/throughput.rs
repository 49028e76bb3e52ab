//! Placement throughput with 1, 8 and 32 concurrent clients, each on its own
//! symbol (client `i` on symbol `i mod 10`), against the durable-commit floor:
//! a plain single-row INSERT into `orders`, autocommit, at the same
//! concurrency. Also over HTTP through the api, started in-process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rust_decimal::Decimal;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{self, PgPool, Row};
use service::Side;
use service::orders::{self, NewOrder};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::market::{MARKETS, decimal};
use super::raw;
use super::report::{Measurement, Samples, round1, round3};

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
}

/// An api started in-process for the HTTP lines, and its client.
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

/// Runs `kind` with `clients` clients for `duration`.
pub async fn run(
    kind: Kind,
    clients: usize,
    duration: Duration,
    db: &DatabaseConnection,
    prices: &Prices,
    http: Option<&Http>,
) -> Result<Samples> {
    let prices = Arc::new(prices.clone());
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut set = JoinSet::new();
    for client in 0..clients {
        let db = db.clone();
        let prices = prices.clone();
        let http = http.map(|h| (h.base.clone(), h.client.clone()));
        set.spawn(async move {
            let mut samples = Samples::default();
            let user = Uuid::new_v4();
            let (symbol, bid, quantity) = prices.of(client);
            let pool = db.get_postgres_connection_pool().clone();
            let mut n = 0usize;
            while Instant::now() < deadline {
                let at = Instant::now();
                match kind {
                    Kind::Resting => {
                        let order = NewOrder::limit(user, symbol, Side::Buy, quantity, bid);
                        orders::place(&db, order).await?;
                    }
                    Kind::Crossing => {
                        let side = if n.is_multiple_of(2) {
                            Side::Buy
                        } else {
                            Side::Sell
                        };
                        orders::place(&db, NewOrder::market(user, symbol, side, quantity)).await?;
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
                    Kind::Http => {
                        let (base, client) = http.as_ref().context("the api is running")?;
                        let body = serde_json::json!({
                            "symbol": symbol, "side": "BUY", "type": "LIMIT",
                            "quantity": quantity.to_string(), "price": bid.to_string(),
                        });
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
    Ok(all)
}

/// The throughput lines of one kind at one concurrency.
pub fn line(kind: Kind, clients: usize, samples: &Samples, floor: Option<&Samples>) -> Measurement {
    let name = match kind {
        Kind::Resting => "place resting, service",
        Kind::Crossing => "place crossing, service",
        Kind::Floor => "single-row insert floor",
        Kind::Http => "place resting, HTTP api",
    };
    let mut line = samples.measurement(format!("{name} x{clients}"));
    line.ops_per_s = round1(samples.wall_ops_per_s());
    line.share_of_floor =
        floor.map(|floor| round3(samples.wall_ops_per_s() / floor.wall_ops_per_s().max(1e-9)));
    line
}
