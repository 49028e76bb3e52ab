//! The benchmark at a CI size, end to end: the loader fills a fresh database
//! with consistent data, and a short benchmark produces a report of the
//! documented shape. No timing is asserted.

use std::time::Duration;

use sea_orm::sqlx::{self, Row};
use tests::bench::{self, Scale, generate, loader, report};

fn server_url() -> String {
    let _ = dotenvy::dotenv();
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Drops the bench database when the test ends, passed or not.
struct Dropped {
    server: String,
    name: String,
}

impl Drop for Dropped {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // A runtime of its own: the test's runtime may be gone or panicking.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(bench::drop_database(&server, &name));
            }
        })
        .join();
    }
}

async fn scalar(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get::<i64, _>(0))
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_scale_loads_consistent_data_and_reports_every_operation() {
    let server = server_url();
    let name = format!("te_bench_test_{}", std::process::id());
    let _dropped = Dropped {
        server: server.clone(),
        name: name.clone(),
    };
    let mut settings = Scale::Small.settings();
    settings.rounds = 5;
    settings.throughput = Duration::from_millis(300);
    settings.concurrency = vec![1, 4];
    settings.progress = false;

    let db = bench::fresh_database(&server, &name)
        .await
        .expect("the bench database is created and migrated");
    let pool = db.get_postgres_connection_pool().clone();
    let loaded = loader::load(&pool, settings.plan, false)
        .await
        .expect("the loader fills the database");

    // Counts: exactly what was asked for.
    assert_eq!(loaded.counts.orders, settings.plan.orders);
    assert_eq!(loaded.counts.trades, settings.plan.trades);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM orders").await as u64,
        settings.plan.orders
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM trades").await as u64,
        settings.plan.trades
    );
    // Every row in a ranged partition, none in the defaults.
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM orders_default").await,
        0
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM trades_default").await,
        0
    );
    // The rebuilt indexes are valid and cover every partition.
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        0
    );
    let per_partition = scalar(
        &pool,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass",
    )
    .await;
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE c.relname LIKE 'orders_20%' AND c.relkind = 'i'"
        )
        .await
            % per_partition,
        0,
        "each orders partition has the parent's {per_partition} indexes"
    );

    // Every status the loader promises is there.
    let statuses: Vec<String> = sqlx::query("SELECT DISTINCT status::text FROM orders ORDER BY 1")
        .fetch_all(&pool)
        .await
        .expect("statuses")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for status in ["CANCELLED", "EXPIRED", "FILLED", "OPEN", "PARTIALLY_FILLED"] {
        assert!(
            statuses.iter().any(|s| s == status),
            "no {status} order in {statuses:?}"
        );
    }

    // filled_quantity is the sum of the order's trades, for a sample of
    // orders that traded and for those that did not.
    let mismatched = scalar(
        &pool,
        "WITH sample AS (
             SELECT order_id, side, filled_quantity FROM orders
             WHERE status IN ('FILLED', 'PARTIALLY_FILLED', 'CANCELLED', 'OPEN')
             ORDER BY order_id LIMIT 5000)
         SELECT count(*) FROM sample s
         WHERE s.filled_quantity <> coalesce((
             SELECT sum(t.quantity) FROM trades t
             WHERE (s.side = 'BUY' AND t.buyer_order_id = s.order_id)
                OR (s.side = 'SELL' AND t.seller_order_id = s.order_id)), 0)",
    )
    .await;
    assert_eq!(
        mismatched, 0,
        "orders whose filled_quantity is not the sum of their trades"
    );
    // Every trade references real orders of its symbol, priced within both limits.
    let orphans = scalar(
        &pool,
        "SELECT count(*) FROM (SELECT * FROM trades ORDER BY trade_id LIMIT 5000) t
         WHERE NOT EXISTS (SELECT 1 FROM orders b WHERE b.order_id = t.buyer_order_id
                             AND b.side = 'BUY' AND b.symbol = t.symbol AND b.price >= t.price
                             AND b.user_id = t.buyer_user_id AND b.created_at <= t.executed_at)
            OR NOT EXISTS (SELECT 1 FROM orders s WHERE s.order_id = t.seller_order_id
                             AND s.side = 'SELL' AND s.symbol = t.symbol AND s.price <= t.price
                             AND s.user_id = t.seller_user_id AND s.created_at <= t.executed_at)",
    )
    .await;
    assert_eq!(
        orphans, 0,
        "trades not backed by a crossing buy and sell order"
    );
    // The book does not cross, and prices sit on the tick.
    let crossed = scalar(
        &pool,
        "SELECT count(*) FROM symbols s
         WHERE (SELECT max(price) FROM orders WHERE symbol = s.symbol AND side = 'BUY'
                  AND status IN ('OPEN', 'PARTIALLY_FILLED'))
            >= (SELECT min(price) FROM orders WHERE symbol = s.symbol AND side = 'SELL'
                  AND status IN ('OPEN', 'PARTIALLY_FILLED'))",
    )
    .await;
    assert_eq!(crossed, 0, "symbols whose best bid reaches the best ask");
    let off_tick = scalar(
        &pool,
        "SELECT count(*) FROM orders o JOIN symbols s USING (symbol)
         WHERE o.price % s.tick_size <> 0",
    )
    .await;
    assert_eq!(off_tick, 0, "order prices off the tick");
    // The heavy user has the hundred pages the benchmark reads.
    let whale_orders: i64 = sqlx::query("SELECT count(*) FROM orders WHERE user_id = $1")
        .bind(generate::user_id(0))
        .fetch_one(&pool)
        .await
        .and_then(|row| row.try_get(0))
        .expect("whale count");
    assert!(
        whale_orders >= 5_000,
        "the heavy user has {whale_orders} orders"
    );

    // A short benchmark: every operation, both concurrencies, the JSON shape.
    let measurements = bench::benchmark(&db, &server, &name, &settings)
        .await
        .expect("the benchmark runs");
    let path = std::env::temp_dir().join(format!("{name}.json"));
    report::write_json(&path, &measurements).expect("the report is written");
    let text = std::fs::read_to_string(&path).expect("the report is readable");
    let _ = std::fs::remove_file(&path);
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let lines = json.as_array().expect("the report is an array");
    assert_eq!(
        lines.len(),
        16 * 2 + 4 + 2 * 9,
        "16 latency pairs, 4 market-state lines, 9 lines per concurrency"
    );
    for line in lines {
        let operation = line["operation"].as_str().expect("operation is a string");
        for field in ["p50_us", "p99_us", "ops_per_s"] {
            let value = line[field].as_f64().unwrap_or(-1.0);
            assert!(value > 0.0, "{operation}: {field} = {value}");
        }
        let is_raw = operation.ends_with("[raw SQL]");
        let is_throughput = operation.contains(" x");
        let is_upkeep = operation.contains(", market state ");
        if is_raw || is_upkeep || operation.starts_with("single-row insert floor") {
            assert!(line.get("ratio_vs_raw").is_none(), "{operation}");
        } else if is_throughput {
            assert!(line["share_of_floor"].as_f64().is_some(), "{operation}");
            // The sequencer's lines say how large its batches were.
            let batched = operation.contains("sequencer") || operation.contains("HTTP");
            assert_eq!(
                line["batch_mean"].as_f64().is_some_and(|mean| mean >= 1.0),
                batched,
                "{operation}"
            );
        } else {
            assert!(line["ratio_vs_raw"].as_f64().is_some(), "{operation}");
        }
    }
    for operation in [
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
        "vwap 24h",
        "stats 24h",
        "stats 30d",
        "candles 500 × 1m",
        "candles 500 × 1h",
        "place resting, service x4",
        "place crossing, service x4",
        "place resting, HTTP api x4",
        "place crossing, HTTP api x4",
        "place resting, sequencer x4",
        "place crossing, sequencer x4",
        "cancel resting, service x4",
        "cancel resting, sequencer x4",
        "single-row insert floor x4",
        "place resting limit, market state off",
        "place resting limit, market state on",
        "place crossing (market), market state off",
        "place crossing (market), market state on",
    ] {
        assert!(
            lines.iter().any(|line| line["operation"] == operation),
            "no line for {operation}"
        );
    }
    // The blocks with the market-state triggers off left them on and the
    // state rebuilt.
    let drift = scalar(&pool, "SELECT count(*) FROM market_state_differences()").await;
    assert_eq!(drift, 0, "the market state after the benchmark");
    let disabled = scalar(
        &pool,
        "SELECT count(*) FROM pg_trigger
         WHERE (tgname LIKE 'trg_market%' OR tgname LIKE 'trg_trade_candles%') AND tgenabled = 'D'",
    )
    .await;
    assert_eq!(disabled, 0, "market-state triggers left disabled");
    db.close().await.expect("the pool closes");
}
