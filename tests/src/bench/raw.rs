//! The raw-SQL floor: each hot operation's statements as the service sends
//! them (copied from `service/src`, whose `const`s are private), run through
//! sqlx on the same pool, rows fetched but not mapped into models.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::sqlx::{self, PgPool, Row};
use uuid::Uuid;

/// `service::orders::book::BOOK_LOCK`.
const BOOK_LOCK: i32 = 0x7465_0001;

/// `service/src/market/book.rs`, `DEPTH`.
pub const DEPTH: &str = r#"
(SELECT 'BUY'::text AS side, o.price, sum(o.quantity - o.filled_quantity) AS quantity,
        count(*) AS order_count
 FROM orders o
 WHERE o.symbol = $1 AND o.side = 'BUY' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
   AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
 GROUP BY o.price
 ORDER BY o.price DESC
 LIMIT $2)
UNION ALL
(SELECT 'SELL'::text, o.price, sum(o.quantity - o.filled_quantity), count(*)
 FROM orders o
 WHERE o.symbol = $1 AND o.side = 'SELL' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
   AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
 GROUP BY o.price
 ORDER BY o.price ASC
 LIMIT $2)"#;

/// `service/src/market/book.rs`, `BEST_BID_ASK`.
pub const BEST_BID_ASK: &str = r#"
SELECT bid.price AS best_bid, bid.volume AS best_bid_volume,
       ask.price AS best_ask, ask.volume AS best_ask_volume,
       ask.price - bid.price AS spread,
       round((ask.price - bid.price) / nullif(bid.price, 0) * 100, 4) AS spread_percentage
FROM symbols s
LEFT JOIN LATERAL (
    SELECT o.price, sum(o.quantity - o.filled_quantity) AS volume
    FROM orders o
    WHERE o.symbol = $1 AND o.side = 'BUY' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
      AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
    GROUP BY o.price ORDER BY o.price DESC LIMIT 1
) bid ON true
LEFT JOIN LATERAL (
    SELECT o.price, sum(o.quantity - o.filled_quantity) AS volume
    FROM orders o
    WHERE o.symbol = $1 AND o.side = 'SELL' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
      AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
    GROUP BY o.price ORDER BY o.price ASC LIMIT 1
) ask ON true
WHERE s.symbol = $1"#;

/// `service/src/market/book.rs`, `TICKER`.
pub const TICKER: &str = r#"
SELECT (SELECT t.price FROM trades t WHERE t.symbol = $1
        ORDER BY t.executed_at DESC, t.trade_id DESC LIMIT 1) AS last_price,
       bid.price AS best_bid, bid.volume AS best_bid_volume,
       ask.price AS best_ask, ask.volume AS best_ask_volume,
       ask.price - bid.price AS spread,
       round((ask.price - bid.price) / nullif(bid.price, 0) * 100, 4) AS spread_percentage,
       totals.bids AS total_bids_volume, totals.asks AS total_asks_volume
FROM symbols s
LEFT JOIN LATERAL (
    SELECT o.price, sum(o.quantity - o.filled_quantity) AS volume
    FROM orders o
    WHERE o.symbol = $1 AND o.side = 'BUY' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
      AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
    GROUP BY o.price ORDER BY o.price DESC LIMIT 1
) bid ON true
LEFT JOIN LATERAL (
    SELECT o.price, sum(o.quantity - o.filled_quantity) AS volume
    FROM orders o
    WHERE o.symbol = $1 AND o.side = 'SELL' AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
      AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
    GROUP BY o.price ORDER BY o.price ASC LIMIT 1
) ask ON true
CROSS JOIN LATERAL (
    SELECT sum(o.quantity - o.filled_quantity) FILTER (WHERE o.side = 'BUY') AS bids,
           sum(o.quantity - o.filled_quantity) FILTER (WHERE o.side = 'SELL') AS asks
    FROM orders o
    WHERE o.symbol = $1 AND o.status IN ('OPEN', 'PARTIALLY_FILLED')
      AND o.price IS NOT NULL AND o.order_type = 'LIMIT'
) totals
WHERE s.symbol = $1"#;

/// `service/src/market/stats.rs`, `STATS` (VWAP and stats send the same).
pub const STATS: &str = r#"
SELECT w.period_start, w.period_end, a.trade_count, a.base_volume, a.quote_volume,
       a.vwap, a.high, a.low,
       (SELECT t.price FROM trades t
        WHERE t.symbol = $1 AND t.executed_at >= w.period_start AND t.executed_at <= w.period_end
        ORDER BY t.executed_at DESC, t.trade_id DESC LIMIT 1) AS last
FROM symbols s
CROSS JOIN (SELECT now() - make_interval(hours => $2) AS period_start, now() AS period_end) w
CROSS JOIN LATERAL (
    SELECT count(*) AS trade_count,
           coalesce(sum(t.quantity), 0) AS base_volume,
           coalesce(round(sum(t.price * t.quantity), 8), 0) AS quote_volume,
           round(sum(t.price * t.quantity) / nullif(sum(t.quantity), 0), 8) AS vwap,
           max(t.price) AS high,
           min(t.price) AS low
    FROM trades t
    WHERE t.symbol = $1 AND t.executed_at >= w.period_start AND t.executed_at <= w.period_end
) a
WHERE s.symbol = $1"#;

/// `service/src/trades/history.rs`, `HISTORY_PAGE`.
pub const HISTORY_PAGE: &str = r#"
SELECT u.trade_id, u.symbol, u.side, u.price, u.quantity, u.fee, u.fee_asset, u.is_maker,
       u.executed_at, u.order_id
FROM (
    (SELECT t.trade_id, t.symbol, 'BUY'::text AS side, t.price, t.quantity,
            t.buyer_fee AS fee, t.buyer_fee_asset AS fee_asset, t.is_buyer_maker AS is_maker,
            t.executed_at, t.buyer_order_id AS order_id
     FROM trades t
     WHERE t.buyer_user_id = $1 AND ($2::varchar IS NULL OR t.symbol = $2)
     ORDER BY t.executed_at DESC, t.trade_id DESC
     LIMIT $3)
    UNION ALL
    (SELECT t.trade_id, t.symbol, 'SELL'::text, t.price, t.quantity,
            t.seller_fee, t.seller_fee_asset, NOT t.is_buyer_maker,
            t.executed_at, t.seller_order_id
     FROM trades t
     WHERE t.seller_user_id = $1 AND ($2::varchar IS NULL OR t.symbol = $2)
     ORDER BY t.executed_at DESC, t.trade_id DESC
     LIMIT $3)
) u
ORDER BY u.executed_at DESC, u.trade_id DESC
LIMIT $4 OFFSET $5"#;

/// What SeaORM sends for `orders::list` (`Page::Offset`), all columns.
pub const ORDERS_PAGE: &str = "SELECT * FROM orders WHERE user_id = $1
    ORDER BY created_at DESC, order_id DESC LIMIT $2 OFFSET $3";

/// What SeaORM sends for `orders::list` (`Page::After`).
pub const ORDERS_AFTER: &str = "SELECT * FROM orders WHERE user_id = $1
    AND created_at <= $2 AND (created_at, order_id) < ($2, $3)
    ORDER BY created_at DESC, order_id DESC LIMIT $4";

/// What SeaORM sends for `trades::recent`.
pub const RECENT: &str = "SELECT * FROM trades WHERE symbol = $1
    ORDER BY executed_at DESC, trade_id DESC LIMIT $2";

/// `service/src/orders/lifecycle.rs`: `find_order`, then `CANCEL`.
const FIND_ORDER: &str = "SELECT * FROM orders WHERE order_id = $1 LIMIT 1";
const CANCEL: &str = "UPDATE orders SET status = 'CANCELLED'
    WHERE order_id = $1 AND created_at = $2 AND status IN ('PENDING', 'OPEN', 'PARTIALLY_FILLED')
    RETURNING *";

const SYMBOL: &str = "SELECT * FROM symbols WHERE symbol = $1 LIMIT 1";
const RECENT_LAST_PRICE: &str = "SELECT price FROM trades
    WHERE symbol = $1 AND executed_at > now() - interval '1 day'
    ORDER BY executed_at DESC, trade_id DESC LIMIT 1";
const ASKS: &str = "SELECT order_id, created_at, user_id, institution_id, price, quantity,
        filled_quantity, average_price
    FROM orders
    WHERE symbol = $1 AND side = 'SELL' AND status IN ('OPEN', 'PARTIALLY_FILLED')
      AND price IS NOT NULL AND order_type = 'LIMIT'
      AND ($6::numeric IS NULL OR price <= $6)
      AND ($3::numeric IS NULL OR price > $3
           OR (price = $3 AND (created_at, order_id) > ($4, $5)))
    ORDER BY price ASC, created_at ASC, order_id ASC
    LIMIT $2
    FOR UPDATE";
const BIDS: &str = "SELECT order_id, created_at, user_id, institution_id, price, quantity,
        filled_quantity, average_price
    FROM orders
    WHERE symbol = $1 AND side = 'BUY' AND status IN ('OPEN', 'PARTIALLY_FILLED')
      AND price IS NOT NULL AND order_type = 'LIMIT'
      AND ($6::numeric IS NULL OR price >= $6)
      AND ($3::numeric IS NULL OR price < $3
           OR (price = $3 AND (created_at, order_id) > ($4, $5)))
    ORDER BY price DESC, created_at ASC, order_id ASC
    LIMIT $2
    FOR UPDATE";
const INSERT_ORDER: &str = "INSERT INTO orders (order_id, user_id, symbol, side, order_type,
        status, quantity, filled_quantity, price, average_price, time_in_force, created_at,
        updated_at)
    VALUES ($1, $2, $3, $4::order_side_enum, $5::order_type_enum, $6::order_status_enum, $7, $8,
        $9, $10, 'GTC', $11, $11)
    RETURNING *";
const INSERT_TRADE: &str = "INSERT INTO trades (trade_id, symbol, buyer_order_id,
        seller_order_id, buyer_user_id, seller_user_id, price, quantity, buyer_fee, seller_fee,
        buyer_fee_asset, seller_fee_asset, is_buyer_maker, executed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'USDT', $12, $13)
    RETURNING *";
const UPDATE_MAKERS: &str = "UPDATE orders AS o
    SET filled_quantity = v.filled_quantity,
        average_price = v.average_price,
        status = v.status::order_status_enum
    FROM unnest($1::uuid[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::text[])
        AS v(order_id, created_at, filled_quantity, average_price, status)
    WHERE o.order_id = v.order_id AND o.created_at = v.created_at";
const TRIGGERED_STOPS: &str = "SELECT * FROM orders
    WHERE symbol = $1 AND order_type IN ('STOP', 'STOP_LIMIT') AND status = 'OPEN'
      AND ((side = 'BUY' AND stop_price <= $2) OR (side = 'SELL' AND stop_price >= $2))
    ORDER BY stop_price ASC, created_at ASC, order_id ASC
    FOR UPDATE";

/// The single-row insert of the durable-commit floor (pgbench-style).
pub const FLOOR_INSERT: &str = "INSERT INTO orders (user_id, symbol, side, order_type, status,
        quantity, price)
    VALUES ($1, $2, 'BUY', 'LIMIT', 'OPEN', $3, $4)";

/// A read: the statement's rows, fetched.
pub async fn read(pool: &PgPool, sql: &'static str, bind: Binds<'_>) -> sqlx::Result<usize> {
    let query = sqlx::query(sql);
    let query = match bind {
        Binds::Symbol(symbol) => query.bind(symbol),
        Binds::SymbolLevels(symbol, levels) => query.bind(symbol).bind(levels),
        Binds::SymbolHours(symbol, hours) => query.bind(symbol).bind(hours),
        Binds::UserPage(user, limit, offset) => query.bind(user).bind(limit).bind(offset),
        Binds::UserAfter(user, at, id, limit) => query.bind(user).bind(at).bind(id).bind(limit),
        Binds::History(user, per_branch, limit, offset) => query
            .bind(user)
            .bind(None::<String>)
            .bind(per_branch)
            .bind(limit)
            .bind(offset),
    };
    Ok(query.fetch_all(pool).await?.len())
}

/// The parameters of a [`read`].
#[derive(Clone, Copy, Debug)]
pub enum Binds<'a> {
    Symbol(&'a str),
    SymbolLevels(&'a str, i64),
    SymbolHours(&'a str, i32),
    UserPage(Uuid, i64, i64),
    UserAfter(Uuid, DateTime<Utc>, Uuid, i64),
    History(Uuid, i64, i64, i64),
}

/// A raw placement: what `orders::place` sends for a LIMIT or MARKET order
/// that fills at most against the first resting order. Returns the new
/// order's key.
pub async fn place(
    pool: &PgPool,
    user: Uuid,
    symbol: &str,
    buy: bool,
    quantity: Decimal,
    limit: Option<Decimal>,
) -> sqlx::Result<(Uuid, DateTime<Utc>)> {
    let mut tx = pool.begin().await?;
    sqlx::query(SYMBOL).bind(symbol).fetch_one(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(BOOK_LOCK)
        .bind(symbol)
        .execute(&mut *tx)
        .await?;
    let now: DateTime<Utc> = sqlx::query("SELECT clock_timestamp() AS now")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    let last = sqlx::query(RECENT_LAST_PRICE)
        .bind(symbol)
        .fetch_optional(&mut *tx)
        .await?;
    let _ = last;
    let makers = sqlx::query(if buy { ASKS } else { BIDS })
        .bind(symbol)
        .bind(32i64)
        .bind(None::<Decimal>)
        .bind(None::<DateTime<Utc>>)
        .bind(None::<Uuid>)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let order_id = Uuid::new_v4();
    let mut filled = Decimal::ZERO;
    let mut notional = Decimal::ZERO;
    let mut updates = (vec![], vec![], vec![], vec![], vec![]);
    let mut fills = vec![];
    for maker in &makers {
        let remaining = quantity - filled;
        if remaining.is_zero() {
            break;
        }
        let maker_id: Uuid = maker.try_get("order_id")?;
        let maker_at: DateTime<Utc> = maker.try_get("created_at")?;
        let maker_user: Uuid = maker.try_get("user_id")?;
        let price: Decimal = maker.try_get("price")?;
        let maker_quantity: Decimal = maker.try_get("quantity")?;
        let maker_filled: Decimal = maker.try_get("filled_quantity")?;
        let take = remaining.min(maker_quantity - maker_filled);
        filled += take;
        notional += price * take;
        let now_filled = maker_filled + take;
        updates.0.push(maker_id);
        updates.1.push(maker_at);
        updates.2.push(now_filled);
        updates.3.push(price);
        updates.4.push(if now_filled == maker_quantity {
            "FILLED".to_owned()
        } else {
            "PARTIALLY_FILLED".to_owned()
        });
        fills.push((maker_id, maker_user, price, take));
    }
    let status = if filled == quantity {
        "FILLED"
    } else if limit.is_none() {
        "EXPIRED"
    } else if filled.is_zero() {
        "OPEN"
    } else {
        "PARTIALLY_FILLED"
    };
    let average = (!filled.is_zero()).then(|| (notional / filled).round_dp(8));
    sqlx::query(INSERT_ORDER)
        .bind(order_id)
        .bind(user)
        .bind(symbol)
        .bind(if buy { "BUY" } else { "SELL" })
        .bind(if limit.is_some() { "LIMIT" } else { "MARKET" })
        .bind(status)
        .bind(quantity)
        .bind(filled)
        .bind(limit)
        .bind(average)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    for (maker_id, maker_user, price, take) in &fills {
        let (buyer_order, seller_order, buyer, seller) = if buy {
            (order_id, *maker_id, user, *maker_user)
        } else {
            (*maker_id, order_id, *maker_user, user)
        };
        sqlx::query(INSERT_TRADE)
            .bind(Uuid::new_v4())
            .bind(symbol)
            .bind(buyer_order)
            .bind(seller_order)
            .bind(buyer)
            .bind(seller)
            .bind(*price)
            .bind(*take)
            .bind((*take * Decimal::new(1, 3)).round_dp(8))
            .bind((*take * *price * Decimal::new(5, 4)).round_dp(8))
            .bind(symbol.split('/').next().unwrap_or(symbol))
            .bind(!buy)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
    }
    if !fills.is_empty() {
        sqlx::query(UPDATE_MAKERS)
            .bind(&updates.0)
            .bind(&updates.1)
            .bind(&updates.2)
            .bind(&updates.3)
            .bind(&updates.4)
            .execute(&mut *tx)
            .await?;
        sqlx::query(TRIGGERED_STOPS)
            .bind(symbol)
            .bind(fills[fills.len() - 1].2)
            .fetch_all(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((order_id, now))
}

/// A raw cancel: look the order up, then the guarded update.
pub async fn cancel(pool: &PgPool, order_id: Uuid) -> sqlx::Result<()> {
    let order = sqlx::query(FIND_ORDER)
        .bind(order_id)
        .fetch_one(pool)
        .await?;
    let created_at: DateTime<Utc> = order.try_get("created_at")?;
    sqlx::query(CANCEL)
        .bind(order_id)
        .bind(created_at)
        .fetch_optional(pool)
        .await?;
    Ok(())
}
