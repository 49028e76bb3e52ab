//! `bench --years N`: planning and execution time of the hot statements at 60
//! days of history and at N years, measured back to back in one run (D15).
//!
//! Each layout is a database of its own with the partitions maintenance would
//! have created (one call per partition) and a trade a week, an order a month
//! ([`crate::history::build`]), plus a small live book placed through the
//! service. The N-year database is measured twice: with its ~365 × N daily
//! partitions as created, then after `compact_trades` merged the old days into
//! months and `compact_orders` the old months of orders into years. Each statement runs under `EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON)`
//! (writes: `EXPLAIN (SUMMARY)`, planned only) in a transaction of its own; the
//! median of five runs after a warm-up is reported with the partitions the
//! transaction holds locks on afterwards. A statement that fails (out of
//! shared memory) is reported with its error.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{self, PgConnection, Row};
use serde::Serialize;
use service::orders::{self, NewOrder};
use service::pooling::{Pool, PoolMode};
use service::statements::{
    CANCEL, HISTORY_PAGE, LAST_PRICE, STATS, TICKER, history_last_week, history_with_bounds,
    resting_statement,
};
use service::{Side, maintenance};
use uuid::Uuid;

/// What `ids::find_by_id` sends for an order (SeaORM adds `LIMIT 1`).
const ORDER_BY_ID: &str = "SELECT * FROM orders WHERE order_id = $1 AND created_at >= $2
    AND created_at < $3 LIMIT 1";
/// The same for a trade.
const TRADE_BY_ID: &str = "SELECT * FROM trades WHERE trade_id = $1 AND executed_at >= $2
    AND executed_at < $3 LIMIT 1";
/// A lookup by trade id alone, as the service sent it before version 7 ids.
const TRADE_BY_ID_ALONE: &str = "SELECT * FROM trades WHERE trade_id = $1 LIMIT 1";
/// What SeaORM sends for `trades::recent` first (the bound is a constant
/// midnight in the statement).
const RECENT_TAPE_SINCE: &str = "SELECT * FROM trades WHERE symbol = $1 AND executed_at >= $3
    ORDER BY executed_at DESC, trade_id DESC LIMIT $2";
/// … and when the day had fewer trades than asked for, before the older
/// spans: the whole table.
const RECENT_TAPE: &str = "SELECT * FROM trades WHERE symbol = $1
    ORDER BY executed_at DESC, trade_id DESC LIMIT $2";
/// One of the older spans (`$3` inclusive, `$4` exclusive).
const RECENT_TAPE_SPAN: &str = "SELECT * FROM trades WHERE symbol = $1 AND executed_at >= $3
    AND executed_at < $4 ORDER BY executed_at DESC, trade_id DESC LIMIT $2";
/// The oldest span, open below.
const RECENT_TAPE_OLDEST: &str = "SELECT * FROM trades WHERE symbol = $1 AND executed_at < $3
    ORDER BY executed_at DESC, trade_id DESC LIMIT $2";

/// UTC midnight `days` before `now`, as the service writes it.
fn day_before(now: DateTime<Utc>, days: i64) -> String {
    format!(
        "'{} 00:00:00+00'::timestamptz",
        (now - TimeDelta::days(days)).format("%Y-%m-%d")
    )
}

/// One statement's figures on one layout.
#[derive(Clone, Debug, Serialize)]
pub struct PlanMeasurement {
    pub layout: String,
    pub statement: String,
    pub planning_ms: Option<f64>,
    pub execution_ms: Option<f64>,
    /// Partitions of `orders` and `trades` locked by the statement's transaction.
    pub partitions_locked: Option<i64>,
    pub error: Option<String>,
}

/// A statement and its parameters written as SQL literals.
struct Probe {
    name: &'static str,
    sql: String,
    write: bool,
}

fn literal_time(at: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", at.to_rfc3339())
}

/// `sql` with `$1`, `$2`, … replaced by `values` (highest first, so `$1`
/// does not eat the start of `$10`).
fn inline(sql: &str, values: &[String]) -> String {
    let mut text = sql.to_owned();
    for (i, value) in values.iter().enumerate().rev() {
        text = text.replace(&format!("${}", i + 1), value);
    }
    text
}

/// The hot statements with the ids and times of `fixture`.
fn probes(fixture: &Fixture) -> Vec<Probe> {
    let now = Utc::now();
    let margin = service::ids::MARGIN;
    let sym = "'BTC/USDT'".to_owned();
    let at = |t: DateTime<Utc>| literal_time(t);
    let id = |u: Uuid| format!("'{u}'::uuid");
    let probe = |name, sql: &str, values: Vec<String>, write| Probe {
        name,
        sql: inline(sql, &values),
        write,
    };
    // A user's first page of 50: user, no symbol, 50 per branch, limit, offset.
    let history = vec![
        id(fixture.user_id),
        "NULL".to_owned(),
        "50".to_owned(),
        "50".to_owned(),
        "0".to_owned(),
    ];
    vec![
        probe(
            "order by id (v7 bounds)",
            ORDER_BY_ID,
            vec![
                id(fixture.order_id),
                at(fixture.order_at - margin),
                at(fixture.order_at + margin),
            ],
            false,
        ),
        probe(
            "trade by id (v7 bounds)",
            TRADE_BY_ID,
            vec![
                id(fixture.trade_id),
                at(fixture.trade_at - margin),
                at(fixture.trade_at + margin),
            ],
            false,
        ),
        probe(
            "trade by id alone (before)",
            TRADE_BY_ID_ALONE,
            vec![id(fixture.trade_id)],
            false,
        ),
        probe(
            "cancel (update by key)",
            CANCEL,
            vec![
                id(fixture.order_id),
                at(fixture.order_at),
                service::statements::BOOK_LOCK.to_string(),
                sym.clone(),
            ],
            true,
        ),
        probe(
            "last price (placement)",
            LAST_PRICE,
            vec![sym.clone()],
            false,
        ),
        probe(
            "book walk (placement)",
            resting_statement(Side::Sell, true, false),
            vec![sym.clone(), "1000000".to_owned()],
            false,
        ),
        probe(
            "recent trades since yesterday",
            RECENT_TAPE_SINCE,
            vec![
                sym.clone(),
                "50".to_owned(),
                format!(
                    "'{} 00:00:00+00'::timestamptz",
                    (now - TimeDelta::days(1)).format("%Y-%m-%d")
                ),
            ],
            false,
        ),
        probe(
            "recent trades, whole table (before)",
            RECENT_TAPE,
            vec![sym.clone(), "50".to_owned()],
            false,
        ),
        probe(
            "recent trades, span 61–91 days",
            RECENT_TAPE_SPAN,
            vec![
                sym.clone(),
                "50".to_owned(),
                day_before(now, 91),
                day_before(now, 61),
            ],
            false,
        ),
        probe(
            "recent trades, span 122–400 days",
            RECENT_TAPE_SPAN,
            vec![
                sym.clone(),
                "50".to_owned(),
                day_before(now, 400),
                day_before(now, 122),
            ],
            false,
        ),
        probe(
            "recent trades, oldest span (800+ days)",
            RECENT_TAPE_OLDEST,
            vec![sym.clone(), "50".to_owned(), day_before(now, 800)],
            false,
        ),
        probe("ticker", TICKER, vec![sym.clone()], false),
        probe(
            "stats 24h",
            STATS,
            vec![
                sym.clone(),
                "24".to_owned(),
                at(service::market::stats_floor(24)),
            ],
            false,
        ),
        probe(
            "user history, last week",
            &history_last_week(HISTORY_PAGE, now),
            history.clone(),
            false,
        ),
        probe(
            "user history, whole table (before)",
            HISTORY_PAGE,
            history.clone(),
            false,
        ),
        probe(
            "user history, span 61–91 days",
            &history_with_bounds(
                HISTORY_PAGE,
                &format!(
                    "\n       AND t.executed_at >= {} AND t.executed_at < {}",
                    day_before(now, 91),
                    day_before(now, 61)
                ),
            ),
            history.clone(),
            false,
        ),
        probe(
            "user history, oldest span (800+ days)",
            &history_with_bounds(
                HISTORY_PAGE,
                &format!("\n       AND t.executed_at < {}", day_before(now, 800)),
            ),
            history.clone(),
            false,
        ),
        probe(
            "trades of the last day (now())",
            "SELECT count(*) FROM trades WHERE executed_at > now() - interval '1 day'",
            vec![],
            false,
        ),
        probe(
            "v_symbol_stats_24h",
            "SELECT * FROM v_symbol_stats_24h",
            vec![],
            false,
        ),
        probe(
            "get_user_trade_history()",
            "SELECT * FROM get_user_trade_history($1)",
            vec![id(fixture.user_id)],
            false,
        ),
    ]
}

/// Ids and times of rows the probes look up.
struct Fixture {
    order_id: Uuid,
    order_at: DateTime<Utc>,
    trade_id: Uuid,
    trade_at: DateTime<Utc>,
    user_id: Uuid,
}

/// A small live book: a resting sell, a crossing buy (one trade).
async fn live_book(db: &DatabaseConnection) -> Result<Fixture> {
    let (maker, taker) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let price = Decimal::new(100, 0);
    let resting = orders::place(
        db,
        NewOrder::limit(maker, "BTC/USDT", Side::Sell, Decimal::new(2, 0), price),
    )
    .await?;
    let crossing = orders::place(
        db,
        NewOrder::limit(taker, "BTC/USDT", Side::Buy, Decimal::ONE, price),
    )
    .await?;
    let trade = crossing
        .trades
        .first()
        .context("the crossing order traded")?;
    Ok(Fixture {
        order_id: resting.order.order_id,
        order_at: resting.order.created_at.with_timezone(&Utc),
        trade_id: trade.trade_id,
        trade_at: trade.executed_at.with_timezone(&Utc),
        user_id: taker,
    })
}

const LOCKED: &str = "SELECT count(*) FROM pg_locks l
    JOIN pg_inherits i ON i.inhrelid = l.relation
    JOIN pg_class p ON p.oid = i.inhparent
    WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
      AND p.relname IN ('orders', 'trades')";

/// Runs of each statement after the warm-up; the median is reported.
const RUNS: usize = 5;

async fn measure(conn: &mut PgConnection, layout: &str, probe: &Probe) -> PlanMeasurement {
    let explain = if probe.write {
        format!("EXPLAIN (SUMMARY, FORMAT JSON) {}", probe.sql)
    } else {
        format!("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) {}", probe.sql)
    };
    let mut planning = Vec::new();
    let mut execution = Vec::new();
    let mut locked = None;
    let mut error = None;
    for run in 0..=RUNS {
        match explain_once(conn, &explain).await {
            Ok((plan_ms, exec_ms, held)) => {
                if run > 0 {
                    planning.push(plan_ms);
                    execution.extend(exec_ms);
                }
                locked = Some(held);
            }
            Err(err) => {
                error = Some(err.to_string());
                break;
            }
        }
    }
    PlanMeasurement {
        layout: layout.to_owned(),
        statement: probe.name.to_owned(),
        planning_ms: median(&mut planning),
        execution_ms: median(&mut execution),
        partitions_locked: if error.is_some() { None } else { locked },
        error,
    }
}

async fn explain_once(conn: &mut PgConnection, explain: &str) -> Result<(f64, Option<f64>, i64)> {
    let mut txn = sqlx::Connection::begin(conn).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(explain.to_owned()))
        .fetch_one(&mut *txn)
        .await?;
    let plan: serde_json::Value = row.try_get(0)?;
    let top = &plan[0];
    let planning = top["Planning Time"]
        .as_f64()
        .context("EXPLAIN reported no planning time")?;
    let execution = top["Execution Time"].as_f64();
    let held: i64 = sqlx::query_scalar(LOCKED).fetch_one(&mut *txn).await?;
    txn.rollback().await?;
    Ok((planning, execution, held))
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

async fn measure_layout(
    db: &DatabaseConnection,
    fixture: &Fixture,
    layout: &str,
) -> Vec<PlanMeasurement> {
    // One connection for every probe, so each is measured on a session that
    // has planned it before (a pool would hand some runs a session whose
    // relation cache is cold).
    let pool = db.get_postgres_connection_pool().clone();
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(err) => {
            return vec![PlanMeasurement {
                layout: layout.to_owned(),
                statement: "connect".to_owned(),
                planning_ms: None,
                execution_ms: None,
                partitions_locked: None,
                error: Some(err.to_string()),
            }];
        }
    };
    let mut out = Vec::new();
    for probe in probes(fixture) {
        out.push(measure(&mut conn, layout, &probe).await);
    }
    out.push(place_quiet(db, layout).await);
    out.extend(service_paths(db, fixture, layout).await);
    out
}

/// Calls of each service path timed; the median is reported. Prepared
/// statements are cached per connection, so after PostgreSQL's first five
/// custom plans a statement may run on a cached generic plan: these figures are
/// what the service pays in steady state, planning included.
const CALLS: usize = 20;

/// [`CALLS`] runs of `$call` (an expression evaluated anew each time, a
/// future of a `Result`), reported as the median of their times, or the first
/// error.
macro_rules! time_calls {
    ($layout:expr, $statement:expr, $call:expr) => {{
        let mut times = Vec::with_capacity(CALLS);
        let mut error = None;
        for _ in 0..CALLS {
            let started = std::time::Instant::now();
            match $call.await {
                Ok(_) => times.push(started.elapsed().as_secs_f64() * 1000.0),
                Err(err) => {
                    error = Some(err.to_string());
                    break;
                }
            }
        }
        PlanMeasurement {
            layout: $layout.to_owned(),
            statement: $statement.to_owned(),
            planning_ms: None,
            execution_ms: if error.is_some() {
                None
            } else {
                median(&mut times)
            },
            partitions_locked: None,
            error,
        }
    }};
}

async fn service_paths(
    db: &DatabaseConnection,
    fixture: &Fixture,
    layout: &str,
) -> Vec<PlanMeasurement> {
    use service::{Page, market, trades};
    let symbol = "BTC/USDT";
    let mut out = Vec::new();
    macro_rules! timed {
        ($name:expr, $call:expr) => {
            out.push(time_calls!(layout, format!("service: {}", $name), $call))
        };
    }
    timed!(
        "get order",
        orders::get(db, Uuid::from_u128(1), fixture.order_id)
    );
    timed!("get trade", trades::get(db, fixture.trade_id));
    timed!("recent trades", trades::recent(db, symbol, 50));
    timed!("ticker", market::ticker(db, symbol));
    timed!(
        "stats 24h",
        market::stats(db, symbol, market::Period::OneDay)
    );
    timed!(
        "user history",
        trades::user_history(db, fixture.user_id, None, Page::first(50))
    );
    timed!(
        "place a resting order",
        orders::place(
            db,
            NewOrder::limit(
                Uuid::from_u128(4),
                symbol,
                Side::Sell,
                Decimal::ONE,
                Decimal::new(105, 0),
            ),
        )
    );
    timed!("depth", market::depth(db, symbol, 20));
    out
}

/// A placement through the service on a symbol without a trade: its last
/// price is one read of `market_last_trade` (before the maintained state it
/// walked the older spans of `trades`, and before those the whole table).
async fn place_quiet(db: &DatabaseConnection, layout: &str) -> PlanMeasurement {
    // Resting buys that never cross: the symbol stays without a trade, so
    // every call finds no last trade.
    time_calls!(
        layout,
        "place an order (service, quiet symbol)",
        orders::place(
            db,
            NewOrder::limit(
                Uuid::from_u128(3),
                "ETH/USDT",
                Side::Buy,
                Decimal::ONE,
                Decimal::new(10, 0),
            ),
        )
    )
}

/// Builds the two layouts on the server of `server_url` and measures them.
/// The live book is placed before the history is built (on the daily
/// five-year layout a placement itself may run out of locks).
pub async fn run(server_url: &str, years: u32) -> Result<Vec<PlanMeasurement>> {
    let days = i64::from(years) * 365;
    let mut measurements = Vec::new();

    let recent = super::fresh_database(server_url, "te_bench_plans_60d").await?;
    let fixture = live_book(&recent).await?;
    crate::history::build(&recent, 60, 7).await?;
    measurements.extend(measure_layout(&recent, &fixture, "60 days").await);
    recent.close().await?;

    let old = super::fresh_database(server_url, &format!("te_bench_plans_{years}y")).await?;
    let fixture = live_book(&old).await?;
    eprintln!("creating {days} daily trades partitions");
    crate::history::build(&old, days, 7).await?;
    measurements.extend(measure_layout(&old, &fixture, &format!("{days} days, daily")).await);
    eprintln!("merging the months before the daily window, and the old years of orders");
    let pool = Pool::new(old.clone(), PoolMode::Direct);
    let started = std::time::Instant::now();
    let merged = maintenance::compact_trades(&pool, None).await?;
    let years = maintenance::compact_orders(&pool, None).await?;
    eprintln!(
        "merged {} months of trades and {} years of orders in {:.1} s",
        merged.len(),
        years.len(),
        started.elapsed().as_secs_f64()
    );
    measurements.extend(measure_layout(&old, &fixture, &format!("{days} days, merged")).await);
    old.close().await?;
    Ok(measurements)
}

/// The measurements as a Markdown table: one row per statement, planning /
/// execution ms and partitions locked per layout.
pub fn table(measurements: &[PlanMeasurement]) -> String {
    let mut layouts: Vec<&str> = Vec::new();
    let mut statements: Vec<&str> = Vec::new();
    for m in measurements {
        if !layouts.contains(&m.layout.as_str()) {
            layouts.push(&m.layout);
        }
        if !statements.contains(&m.statement.as_str()) {
            statements.push(&m.statement);
        }
    }
    let mut out = String::from("| statement |");
    for layout in &layouts {
        let _ = write!(out, " {layout}: plan / exec ms, partitions |");
    }
    out.push_str("\n|---|");
    for _ in &layouts {
        out.push_str("---|");
    }
    out.push('\n');
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
    for statement in statements {
        let _ = write!(out, "| {statement} |");
        for layout in &layouts {
            let cell = measurements
                .iter()
                .find(|m| m.layout == *layout && m.statement == statement)
                .map_or_else(String::new, |m| match &m.error {
                    Some(err) => format!(" fails: {} |", short(err)),
                    None => format!(
                        " {} / {}, {} |",
                        ms(m.planning_ms),
                        ms(m.execution_ms),
                        m.partitions_locked.unwrap_or(0)
                    ),
                });
            out.push_str(&cell);
        }
        out.push('\n');
    }
    out
}

fn short(err: &str) -> String {
    if err.contains("out of shared memory") {
        "out of shared memory".to_owned()
    } else {
        err.chars().take(60).collect()
    }
}
