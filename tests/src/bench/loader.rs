//! The bulk loader: fills a migrated database with [`generate`]d orders and
//! trades through `COPY … FROM STDIN`, one connection per table, while the
//! generator runs on a blocking thread.
//!
//! For speed it creates the past partitions first (so no row lands in a
//! default partition), drops the secondary indexes of `orders` and `trades`
//! and builds them again after the load (a sorted build beats 10 M random
//! index inserts), copies with `session_replication_role = replica` (no
//! per-row triggers: the data has no stop orders, and its symbols exist),
//! then runs `VACUUM (ANALYZE)`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sea_orm::sqlx::{self, PgPool, Row};
use tokio::sync::mpsc;

use super::generate::{self, Counts, ORDER_COLUMNS, Plan, Sink, TRADE_COLUMNS};

/// What a load did and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Loaded {
    pub counts: Counts,
    pub copy_seconds: f64,
    pub index_seconds: f64,
    pub analyze_seconds: f64,
    pub total_seconds: f64,
}

impl Loaded {
    /// One line: rows, time, rate and phases.
    pub fn summary(&self) -> String {
        format!(
            "loaded {} orders and {} trades in {:.1} s ({:.0} rows/s): copy {:.1} s, indexes {:.1} s, vacuum analyze {:.1} s",
            self.counts.orders,
            self.counts.trades,
            self.total_seconds,
            self.rows_per_second(),
            self.copy_seconds,
            self.index_seconds,
            self.analyze_seconds,
        )
    }

    pub fn rows_per_second(&self) -> f64 {
        (self.counts.orders + self.counts.trades) as f64 / self.total_seconds.max(1e-9)
    }
}

struct ChannelSink {
    orders: mpsc::Sender<(Vec<u8>, u64)>,
    trades: mpsc::Sender<(Vec<u8>, u64)>,
}

impl Sink for ChannelSink {
    fn orders(&mut self, rows: Vec<u8>, count: u64) {
        // A closed channel means the COPY failed; its error is reported there.
        let _ = self.orders.blocking_send((rows, count));
    }

    fn trades(&mut self, rows: Vec<u8>, count: u64) {
        let _ = self.trades.blocking_send((rows, count));
    }
}

/// Loads `plan` into the migrated database behind `pool`, with a progress bar
/// when `progress` (else silently).
pub async fn load(pool: &PgPool, plan: Plan, progress: bool) -> Result<Loaded> {
    let started = Instant::now();
    create_partitions(pool, &plan).await?;
    let indexes = drop_secondary_indexes(pool).await?;

    let bar = if progress {
        ProgressBar::new(plan.orders + plan.trades)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows, {per_sec} {msg}",
        )
        .context("progress template")?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    bar.set_message("copying");

    let (order_tx, order_rx) = mpsc::channel(4);
    let (trade_tx, trade_rx) = mpsc::channel(4);
    let generator = tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink {
            orders: order_tx,
            trades: trade_tx,
        };
        generate::generate(plan, &mut sink)
    });
    let orders = copy(pool.clone(), "orders", ORDER_COLUMNS, order_rx, bar.clone());
    let trades = copy(pool.clone(), "trades", TRADE_COLUMNS, trade_rx, bar.clone());
    let (orders, trades) = tokio::try_join!(orders, trades)?;
    let counts = generator.await.context("the generator panicked")?;
    anyhow::ensure!(
        orders == counts.orders && trades == counts.trades,
        "copied {orders} orders and {trades} trades, generated {counts:?}"
    );
    let copy_seconds = started.elapsed().as_secs_f64();

    bar.set_message("building indexes");
    let indexed = Instant::now();
    rebuild_indexes(pool, indexes).await?;
    let index_seconds = indexed.elapsed().as_secs_f64();

    // The copies ran without triggers (session_replication_role = replica),
    // so the maintained market state is computed once from the loaded rows.
    bar.set_message("market state");
    sqlx::query("SELECT rebuild_market_state()")
        .execute(pool)
        .await
        .context("rebuild_market_state()")?;

    bar.set_message("vacuum analyze");
    let analyzed = Instant::now();
    sqlx::query("VACUUM (ANALYZE) orders").execute(pool).await?;
    sqlx::query("VACUUM (ANALYZE) trades").execute(pool).await?;
    let analyze_seconds = analyzed.elapsed().as_secs_f64();
    bar.finish_with_message("loaded");
    Ok(Loaded {
        counts,
        copy_seconds,
        index_seconds,
        analyze_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The monthly `orders` and daily `trades` partitions the data covers.
async fn create_partitions(pool: &PgPool, plan: &Plan) -> Result<()> {
    sqlx::query(
        "SELECT create_orders_partition((date_trunc('month', now() AT TIME ZONE 'UTC')
                 - make_interval(months => m))::date)
         FROM generate_series(1, $1) m",
    )
    .bind((plan.order_days / 28 + 1) as i32)
    .execute(pool)
    .await
    .context("creating past orders partitions")?;
    sqlx::query(
        "SELECT create_trades_partition(((now() AT TIME ZONE 'UTC')::date - d))
         FROM generate_series(0, $1) d",
    )
    .bind((plan.trade_days + 1) as i32)
    .execute(pool)
    .await
    .context("creating past trades partitions")?;
    Ok(())
}

/// Drops the non-key indexes of `orders` and `trades`; returns their definitions.
async fn drop_secondary_indexes(pool: &PgPool) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i
         WHERE i.schemaname = current_schema() AND i.tablename IN ('orders', 'trades')
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
         ORDER BY i.tablename, i.indexname",
    )
    .fetch_all(pool)
    .await?;
    let mut indexes = Vec::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let definition: String = row.try_get(1)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX \"{name}\"")))
            .execute(pool)
            .await?;
        indexes.push((name, definition));
    }
    Ok(indexes)
}

/// Builds the dropped indexes again, two at a time (one per core).
async fn rebuild_indexes(pool: &PgPool, indexes: Vec<(String, String)>) -> Result<()> {
    let (orders, trades): (Vec<_>, Vec<_>) = indexes
        .into_iter()
        .partition(|(_, definition)| definition.contains(" public.orders "));
    let build = |list: Vec<(String, String)>| {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await?;
            sqlx::query("SET maintenance_work_mem = '512MB'")
                .execute(&mut *conn)
                .await?;
            sqlx::query("SET max_parallel_maintenance_workers = 0")
                .execute(&mut *conn)
                .await?;
            for (name, definition) in list {
                // pg_indexes shows a partitioned index as `ON ONLY parent`,
                // which would build no partition's index.
                let definition = definition.replacen(" ON ONLY ", " ON ", 1);
                sqlx::query(sqlx::AssertSqlSafe(definition))
                    .execute(&mut *conn)
                    .await
                    .with_context(|| format!("rebuilding {name}"))?;
            }
            anyhow::Ok(())
        }
    };
    tokio::try_join!(build(orders), build(trades))?;
    Ok(())
}

async fn copy(
    pool: PgPool,
    table: &str,
    columns: &str,
    mut rows: mpsc::Receiver<(Vec<u8>, u64)>,
    bar: ProgressBar,
) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await
        .with_context(|| format!("COPY {table}"))?;
    let mut total = 0;
    while let Some((chunk, count)) = rows.recv().await {
        copy.send(chunk)
            .await
            .with_context(|| format!("COPY {table}"))?;
        total += count;
        bar.inc(count);
    }
    copy.finish()
        .await
        .with_context(|| format!("COPY {table}"))?;
    sqlx::query("SET session_replication_role = DEFAULT")
        .execute(&mut *conn)
        .await?;
    Ok(total)
}
