//! Latency of each hot operation through the service and as raw SQL, one
//! client, interleaved: every round runs each operation's service call and
//! its raw statements back to back, alternating which goes first, so both see
//! the same cache and the same background load.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::sqlx::{self, PgPool, Row};
use sea_orm::{DatabaseConnection, Statement};
use service::market::{self, CandleQuery, Interval, Period};
use service::orders::{self, NewOrder, OrderFilter};
use service::{Cursor, Page, Side, trades};
use uuid::Uuid;

use super::raw::{self, Binds};
use super::report::{Measurement, Samples, round3};

/// The benchmarked symbol and the users whose history is paged.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub symbol: &'static str,
    /// The last trade price of `symbol`.
    pub last_price: Decimal,
    /// The loader's heaviest user.
    pub whale: Uuid,
    /// Where the whale's 100th page of orders (50 a page) starts.
    pub page_100: Cursor,
    /// The statements `orders::list` sends for the whale's first and 100th
    /// pages: the raw floor sends the same.
    pub orders_page_1: Statement,
    pub orders_page_100: Statement,
    /// The first statements `trades::recent` (50 trades) and
    /// `trades::user_history` (the whale's last week) send.
    pub recent_trades: Statement,
    pub trade_history: String,
}

const PAGE: i64 = 50;

impl Fixture {
    pub async fn read(pool: &PgPool, symbol: &'static str, whale: Uuid) -> Result<Fixture> {
        let last_price: Decimal = sqlx::query(
            "SELECT price FROM trades WHERE symbol = $1 ORDER BY executed_at DESC LIMIT 1",
        )
        .bind(symbol)
        .fetch_one(pool)
        .await
        .context("the loaded data has trades")?
        .try_get(0)?;
        let row = sqlx::query(
            "SELECT created_at, order_id FROM orders WHERE user_id = $1
             ORDER BY created_at DESC, order_id DESC OFFSET $2 LIMIT 1",
        )
        .bind(whale)
        .bind(99 * PAGE - 1)
        .fetch_one(pool)
        .await
        .context("the heavy user has at least 100 pages of orders")?;
        let at: DateTime<Utc> = row.try_get(0)?;
        let page_100 = Cursor {
            at: at.fixed_offset(),
            id: row.try_get(1)?,
        };
        let list = |page| orders::list_statement(whale, &OrderFilter::default(), page);
        Ok(Fixture {
            symbol,
            last_price,
            whale,
            page_100,
            recent_trades: trades::recent_statement(symbol, 50, Utc::now()),
            trade_history: raw::history_last_week(raw::HISTORY_PAGE, Utc::now()),
            orders_page_1: list(Page::first(PAGE as u64))?,
            orders_page_100: list(Page::After {
                limit: PAGE as u64,
                cursor: page_100,
            })?,
        })
    }

    /// A bid 5 % under the last price: rests, within the ±10 % band.
    pub fn resting_price(&self) -> Decimal {
        (self.last_price * Decimal::new(95, 2)).round_dp(2)
    }
}

/// The operations measured, in the order of a round.
const OPERATIONS: [&str; 16] = [
    "place resting limit",
    "place crossing (market)",
    "cancel",
    "book depth 20",
    "book depth 100",
    "best bid/ask",
    "ticker",
    "orders page 1",
    "orders page 100 (keyset)",
    "trade history page 1",
    "recent trades 50",
    "vwap 24h",
    "stats 24h",
    "stats 30d",
    "candles 500 × 1m",
    "candles 500 × 1h",
];

/// How many candles the candle lines read.
const CANDLES: i64 = 500;

/// What `market::candles` sends for the newest candles (no `start`, no
/// `end`) of the two lines' intervals, `1m` and `1h`: each bucket is one
/// stored candle.
static NEWEST_CANDLES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| raw::candles_statement("", false, true));

struct Queues {
    service: VecDeque<(Uuid, Uuid)>,
    raw: VecDeque<Uuid>,
}

/// Runs `rounds` rounds and returns, per operation, the service line (with
/// its ratio) followed by the raw line.
pub async fn run(
    db: &DatabaseConnection,
    fixture: &Fixture,
    rounds: usize,
) -> Result<Vec<Measurement>> {
    let pool = db.get_postgres_connection_pool().clone();
    let mut service_samples = vec![Samples::default(); OPERATIONS.len()];
    let mut raw_samples = vec![Samples::default(); OPERATIONS.len()];
    let mut queues = Queues {
        service: VecDeque::new(),
        raw: VecDeque::new(),
    };
    // Warm-up: plans cached, pages in memory; not recorded.
    for round in 0..rounds.div_ceil(10).max(3) {
        for op in 0..OPERATIONS.len() {
            service_op(db, fixture, op, round, &mut queues).await?;
            raw_op(&pool, fixture, op, round, &mut queues).await?;
        }
    }
    for round in 0..rounds {
        for op in 0..OPERATIONS.len() {
            for first_service in [round.is_multiple_of(2), !round.is_multiple_of(2)] {
                let started = Instant::now();
                if first_service {
                    service_op(db, fixture, op, round, &mut queues).await?;
                    service_samples[op].record(started.elapsed());
                } else {
                    raw_op(&pool, fixture, op, round, &mut queues).await?;
                    raw_samples[op].record(started.elapsed());
                }
            }
        }
    }
    let mut lines = Vec::new();
    for (op, name) in OPERATIONS.iter().enumerate() {
        let raw_line = raw_samples[op].measurement(format!("{name} [raw SQL]"));
        let mut line = service_samples[op].measurement(*name);
        line.ratio_vs_raw = Some(round3(
            service_samples[op].quantile(0.5) / raw_samples[op].quantile(0.5).max(1e-9),
        ));
        lines.push(line);
        lines.push(raw_line);
    }
    Ok(lines)
}

/// The size of every benchmarked placement.
pub(super) fn quantity() -> Decimal {
    Decimal::new(1, 3)
}

async fn service_op(
    db: &DatabaseConnection,
    fixture: &Fixture,
    op: usize,
    round: usize,
    queues: &mut Queues,
) -> Result<()> {
    let symbol = fixture.symbol;
    match op {
        0 => {
            let user = Uuid::new_v4();
            let order =
                NewOrder::limit(user, symbol, Side::Buy, quantity(), fixture.resting_price());
            let placed = orders::place(db, order).await?;
            queues.service.push_back((user, placed.order.order_id));
        }
        1 => {
            let side = if round.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            };
            orders::place(
                db,
                NewOrder::market(Uuid::new_v4(), symbol, side, quantity()),
            )
            .await?;
        }
        2 => {
            let (user, order_id) = queues
                .service
                .pop_front()
                .context("a resting order to cancel")?;
            orders::cancel(db, user, order_id).await?;
        }
        3 => {
            market::depth(db, symbol, 20).await?;
        }
        4 => {
            market::depth(db, symbol, 100).await?;
        }
        5 => {
            market::best_bid_ask(db, symbol).await?;
        }
        6 => {
            market::ticker(db, symbol).await?;
        }
        7 => {
            orders::list(
                db,
                fixture.whale,
                &OrderFilter::default(),
                Page::first(PAGE as u64),
            )
            .await?;
        }
        8 => {
            let page = Page::After {
                limit: PAGE as u64,
                cursor: fixture.page_100,
            };
            orders::list(db, fixture.whale, &OrderFilter::default(), page).await?;
        }
        9 => {
            trades::user_history(db, fixture.whale, None, Page::first(PAGE as u64)).await?;
        }
        10 => {
            trades::recent(db, symbol, 50).await?;
        }
        11 => {
            market::vwap(db, symbol, Period::OneDay).await?;
        }
        12 => {
            market::stats(db, symbol, Period::OneDay).await?;
        }
        13 => {
            market::stats(db, symbol, Period::ThirtyDays).await?;
        }
        _ => {
            let interval = if op == 14 {
                Interval::OneMinute
            } else {
                Interval::OneHour
            };
            let query = CandleQuery {
                interval,
                start: None,
                end: None,
                limit: CANDLES as u64,
            };
            market::candles(db, symbol, query).await?;
        }
    }
    Ok(())
}

async fn raw_op(
    pool: &PgPool,
    fixture: &Fixture,
    op: usize,
    round: usize,
    queues: &mut Queues,
) -> Result<()> {
    let symbol = fixture.symbol;
    let whale = fixture.whale;
    match op {
        0 => {
            let price = Some(fixture.resting_price());
            let (order_id, _) =
                raw::place(pool, Uuid::new_v4(), symbol, true, quantity(), price).await?;
            queues.raw.push_back(order_id);
        }
        1 => {
            raw::place(
                pool,
                Uuid::new_v4(),
                symbol,
                round.is_multiple_of(2),
                quantity(),
                None,
            )
            .await?;
        }
        2 => {
            let order_id = queues
                .raw
                .pop_front()
                .context("a resting order to cancel")?;
            raw::cancel(pool, order_id).await?;
        }
        3 => {
            raw::read::<raw::Level>(pool, raw::DEPTH, Binds::SymbolLevels(symbol, 20)).await?;
        }
        4 => {
            raw::read::<raw::Level>(pool, raw::DEPTH, Binds::SymbolLevels(symbol, 100)).await?;
        }
        5 => {
            raw::read::<raw::Top>(pool, raw::BEST_BID_ASK, Binds::Symbol(symbol)).await?;
        }
        6 => {
            raw::read::<raw::TickerRow>(pool, raw::TICKER, Binds::Symbol(symbol)).await?;
        }
        7 => {
            let page = &fixture.orders_page_1;
            raw::read::<raw::OrderRow>(pool, &page.sql, Binds::Values(raw::values(page))).await?;
        }
        8 => {
            let page = &fixture.orders_page_100;
            raw::read::<raw::OrderRow>(pool, &page.sql, Binds::Values(raw::values(page))).await?;
        }
        9 => {
            raw::read::<raw::HistoryRow>(
                pool,
                &fixture.trade_history,
                Binds::History(whale, PAGE, PAGE, 0),
            )
            .await?;
        }
        10 => {
            let tape = &fixture.recent_trades;
            raw::read::<raw::TradeRow>(pool, &tape.sql, Binds::Values(raw::values(tape))).await?;
        }
        11 | 12 => {
            raw::read::<raw::StatsRow>(pool, raw::STATS, Binds::SymbolHours(symbol, 24)).await?;
        }
        13 => {
            raw::read::<raw::StatsRow>(pool, raw::STATS, Binds::SymbolHours(symbol, 720)).await?;
        }
        14 | 15 => {
            let (interval, stored) = if op == 14 {
                ("60 seconds", 60)
            } else {
                ("3600 seconds", 3_600)
            };
            raw::read::<raw::CandleRow>(
                pool,
                &NEWEST_CANDLES,
                Binds::Candles(symbol, interval, CANDLES, stored),
            )
            .await?;
        }
        _ => unreachable!("{} operations", OPERATIONS.len()),
    }
    Ok(())
}
