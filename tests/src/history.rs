//! Years of partition history, built the way maintenance builds it (one daily
//! `trades` partition per `create_trades_partition` call, a monthly `orders`
//! partition per `create_orders_partition` call), for the five-year tests and
//! the benchmark's `--years` layout.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

/// Days of trades partitions per statement: each statement is one transaction
/// and holds the locks of the partitions it creates (8 relations each) until it
/// commits, so a batch stays well inside the default lock table.
pub const DAYS_PER_BATCH: i64 = 100;

/// The daily partitions of the `days` days before today (UTC), oldest first.
const TRADES_DAYS: &str = "SELECT count(create_trades_partition(d::date))
    FROM generate_series((now() AT TIME ZONE 'UTC')::date - $1::integer,
                         (now() AT TIME ZONE 'UTC')::date - $2::integer, interval '1 day') d";

/// The monthly partitions of the `$1` months before this one.
const ORDERS_MONTHS: &str = "SELECT count(create_orders_partition(
        (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m))::date))
    FROM generate_series(1, $1::integer) m";

/// One trade every `$2` days over the `$1` days before now, with ids that are
/// not version 7 (as imported rows would be).
const TRADE_ROWS: &str = "
INSERT INTO trades (symbol, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
    price, quantity, buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker,
    executed_at)
SELECT 'BTC/USDT', gen_random_uuid(), gen_random_uuid(),
       '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000b2',
       100 + i % 7, 1, 0, 0, 'USDT', 'USDT', i % 2 = 0, now() - make_interval(days => i)
FROM generate_series(1, $1::integer, $2::integer) i";

/// One filled order a month over the `$1` days before now.
const ORDER_ROWS: &str = "
INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, filled_quantity, price,
    created_at)
SELECT '00000000-0000-0000-0000-0000000000b1', 'BTC/USDT', 'BUY', 'LIMIT', 'FILLED', 1, 1, 100,
       now() - make_interval(days => i)
FROM generate_series(1, $1::integer, 30) i";

fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Creates the daily `trades` partitions of the `days` days before today and
/// the monthly `orders` partitions of those months, and writes one trade every
/// `every` days and one order a month.
pub async fn build(db: &impl ConnectionTrait, days: i64, every: i64) -> Result<(), DbErr> {
    let mut oldest = days;
    while oldest >= 1 {
        let newest = (oldest - DAYS_PER_BATCH + 1).max(1);
        let (from, to) = (i32::try_from(oldest), i32::try_from(newest));
        let (Ok(from), Ok(to)) = (from, to) else {
            return Err(DbErr::Custom(format!("{days} days is too much history")));
        };
        db.execute_raw(statement(TRADES_DAYS, [from.into(), to.into()]))
            .await?;
        oldest = newest - 1;
    }
    let months = i32::try_from(days / 28 + 1).unwrap_or(i32::MAX);
    db.execute_raw(statement(ORDERS_MONTHS, [months.into()]))
        .await?;
    let (days, every) = (
        i32::try_from(days).unwrap_or(i32::MAX),
        i32::try_from(every.max(1)).unwrap_or(1),
    );
    db.execute_raw(statement(TRADE_ROWS, [days.into(), every.into()]))
        .await?;
    db.execute_raw(statement(ORDER_ROWS, [days.into()])).await?;
    Ok(())
}
