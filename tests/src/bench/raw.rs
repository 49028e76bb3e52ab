//! The raw-SQL floor: each hot operation's statements as the service sends
//! them (the service's own `const`s, from `service::statements`, where it has
//! them), run through sqlx on the same pool, rows decoded into plain structs
//! as a hand-written sqlx service would.

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::Value;
use sea_orm::sqlx::error::BoxDynError;
use sea_orm::sqlx::postgres::{PgRow, PgTypeInfo, PgValueRef, Postgres};
use sea_orm::sqlx::{self, PgPool, Row};
use service::Side;
use service::orders::PlacementLimits;
pub use service::statements::{
    BEST_BID_ASK, BOOK_LOCK, CANCEL, DEPTH, HISTORY_PAGE, LAST_PRICE, LOCK_BOOK_READ_CLOCK,
    RESTING_ORDERS, STATS, TICKER, TRIGGERED_STOPS, WRITE_MATCH_AND_TAKER, candles_statement,
    history_last_week, resting_statement,
};
use uuid::Uuid;

/// `service/src/orders/lifecycle.rs`: `find_order`, then `CANCEL`.
const FIND_ORDER: &str = "SELECT * FROM orders WHERE order_id = $1 LIMIT 1";

const SYMBOL: &str = "SELECT * FROM symbols WHERE symbol = $1 LIMIT 1";
const INSERT_ORDER: &str = "INSERT INTO orders (order_id, user_id, symbol, side, order_type,
        status, quantity, filled_quantity, price, average_price, time_in_force, created_at,
        updated_at)
    VALUES ($1, $2, $3, $4::order_side_enum, $5::order_type_enum, $6::order_status_enum, $7, $8,
        $9, $10, 'GTC', $11, $11)
    RETURNING *";

/// The single-row insert of the durable-commit floor (pgbench-style).
pub const FLOOR_INSERT: &str = "INSERT INTO orders (user_id, symbol, side, order_type, status,
        quantity, price)
    VALUES ($1, $2, 'BUY', 'LIMIT', 'OPEN', $3, $4)";

/// A read: the statement's rows, fetched and decoded into `T`, as a
/// hand-written sqlx service would (the service's side decodes them into its
/// models, so both pay for decoding); returns how many.
pub async fn read<T>(pool: &PgPool, sql: &str, bind: Binds<'_>) -> sqlx::Result<usize>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    let query = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql));
    let query = match bind {
        Binds::Symbol(symbol) => query.bind(symbol),
        Binds::SymbolLevels(symbol, levels) => query.bind(symbol).bind(levels),
        Binds::SymbolHours(symbol, hours) => query
            .bind(symbol)
            .bind(hours)
            .bind(service::market::stats_floor(hours)),
        Binds::Values(values) => {
            let mut query = query;
            for value in values {
                query = match value {
                    Value::Uuid(v) => query.bind(*v),
                    Value::String(v) => query.bind(v.clone()),
                    Value::BigUnsigned(v) => query.bind(v.map(|n| n as i64)),
                    Value::ChronoDateTimeWithTimeZone(v) => query.bind(*v),
                    Value::ChronoDateTimeUtc(v) => query.bind(*v),
                    other => {
                        return Err(sqlx::Error::Protocol(format!(
                            "the raw floor binds no {other:?}"
                        )));
                    }
                };
            }
            query
        }
        Binds::Candles(symbol, interval, limit, stored) => query
            .bind(symbol)
            .bind(interval)
            .bind(limit)
            .bind(stored)
            // The 500 buckets of the bench's 1m and 1h lines are 500 stored
            // candles each.
            .bind(limit),
        Binds::History(user, per_branch, limit, offset) => query
            .bind(user)
            .bind(None::<String>)
            .bind(per_branch)
            .bind(limit)
            .bind(offset),
    };
    Ok(query.fetch_all(pool).await?.len())
}

/// Plain structs with what `#[derive(sqlx::FromRow)]` would write for them:
/// each column read by name into its field's type.
macro_rules! rows {
    ($($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? })*) => {$(
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            $(pub $field: $ty),*
        }

        impl<'r> sqlx::FromRow<'r, PgRow> for $name {
            fn from_row(row: &'r PgRow) -> sqlx::Result<$name> {
                Ok($name {
                    $($field: row.try_get(stringify!($field))?),*
                })
            }
        }
    )*};
}

/// Plain enums for the schema's enum types, with what `#[derive(sqlx::Type)]`
/// would write for them: decoded from their label (also when a statement
/// casts the column to text).
macro_rules! pg_enums {
    ($($name:ident = $type_name:literal { $($variant:ident = $label:literal),* $(,)? })*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant),*
        }

        impl sqlx::Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                PgTypeInfo::with_name($type_name)
            }

            /// Also the label as text (SeaORM's statements cast enums to text).
            fn compatible(ty: &PgTypeInfo) -> bool {
                *ty == PgTypeInfo::with_name($type_name)
                    || <&str as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<$name, BoxDynError> {
                match <&str as sqlx::Decode<'r, Postgres>>::decode(value)? {
                    $($label => Ok($name::$variant),)*
                    other => Err(format!("{other:?} is not a {}", $type_name).into()),
                }
            }
        }
    )*};
}

pg_enums! {
    OrderSide = "order_side_enum" { Buy = "BUY", Sell = "SELL" }
    OrderType = "order_type_enum" {
        Market = "MARKET", Limit = "LIMIT", Stop = "STOP", StopLimit = "STOP_LIMIT",
        TrailingStop = "TRAILING_STOP",
    }
    OrderStatus = "order_status_enum" {
        Pending = "PENDING", Open = "OPEN", PartiallyFilled = "PARTIALLY_FILLED",
        Filled = "FILLED", Cancelled = "CANCELLED", Rejected = "REJECTED", Expired = "EXPIRED",
    }
    TimeInForce = "time_in_force_enum" { Gtc = "GTC", Ioc = "IOC", Fok = "FOK", Day = "DAY" }
}

rows! {
    /// A row of [`DEPTH`].
    Level { side: String, price: Decimal, quantity: Decimal, order_count: i64 }
    /// The row of [`BEST_BID_ASK`].
    Top {
        symbol: String,
        best_bid: Option<Decimal>,
        best_bid_volume: Option<Decimal>,
        best_ask: Option<Decimal>,
        best_ask_volume: Option<Decimal>,
        spread: Option<Decimal>,
        spread_percentage: Option<Decimal>,
    }
    /// The row of [`TICKER`].
    TickerRow {
        symbol: String,
        last_price: Option<Decimal>,
        best_bid_price: Option<Decimal>,
        best_bid_volume: Option<Decimal>,
        best_ask_price: Option<Decimal>,
        best_ask_volume: Option<Decimal>,
        spread: Option<Decimal>,
        spread_percentage: Option<Decimal>,
        total_bids_volume: Option<Decimal>,
        total_asks_volume: Option<Decimal>,
        timestamp: DateTime<Utc>,
    }
    /// A row of `orders`.
    OrderRow {
        order_id: Uuid,
        user_id: Uuid,
        institution_id: Option<Uuid>,
        symbol: String,
        side: OrderSide,
        order_type: OrderType,
        status: OrderStatus,
        quantity: Decimal,
        filled_quantity: Decimal,
        price: Option<Decimal>,
        average_price: Option<Decimal>,
        stop_price: Option<Decimal>,
        time_in_force: TimeInForce,
        client_order_id: Option<String>,
        order_source: Option<String>,
        fee_profile_id: Option<Uuid>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        filled_at: Option<DateTime<Utc>>,
        cancelled_at: Option<DateTime<Utc>>,
        expires_at: Option<DateTime<Utc>>,
    }
    /// A row of `trades`.
    TradeRow {
        trade_id: Uuid,
        symbol: String,
        buyer_order_id: Uuid,
        seller_order_id: Uuid,
        buyer_user_id: Uuid,
        seller_user_id: Uuid,
        buyer_institution_id: Option<Uuid>,
        seller_institution_id: Option<Uuid>,
        price: Decimal,
        quantity: Decimal,
        buyer_fee: Decimal,
        seller_fee: Decimal,
        buyer_fee_asset: Option<String>,
        seller_fee_asset: Option<String>,
        is_buyer_maker: bool,
        trade_source: Option<String>,
        execution_venue: Option<String>,
        executed_at: DateTime<Utc>,
        settled_at: Option<DateTime<Utc>>,
    }
    /// A row of [`HISTORY_PAGE`]: one side of a trade.
    HistoryRow {
        trade_id: Uuid,
        symbol: String,
        side: String,
        price: Decimal,
        quantity: Decimal,
        fee: Decimal,
        fee_asset: Option<String>,
        is_maker: bool,
        executed_at: DateTime<Utc>,
        order_id: Uuid,
    }
    /// The row of [`STATS`].
    StatsRow {
        symbol: String,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        trade_count: i64,
        base_volume: Decimal,
        quote_volume: Decimal,
        vwap: Option<Decimal>,
        high: Option<Decimal>,
        low: Option<Decimal>,
        last: Option<Decimal>,
    }
    /// A row of the candles statement.
    CandleRow {
        open_time: DateTime<Utc>,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
        quote_volume: Decimal,
        trade_count: i64,
    }
}

/// The values bound to a statement SeaORM built.
pub fn values(statement: &sea_orm::Statement) -> &[Value] {
    statement.values.as_ref().map_or(&[], |values| &values.0)
}

/// The parameters of a [`read`].
#[derive(Clone, Copy, Debug)]
pub enum Binds<'a> {
    Symbol(&'a str),
    SymbolLevels(&'a str, i64),
    SymbolHours(&'a str, i32),
    /// The values of a statement the service builds with SeaORM, bound as
    /// plain sqlx binds.
    Values(&'a [Value]),
    History(Uuid, i64, i64, i64),
    /// Symbol, interval (`'60 seconds'`), how many, stored width (60 or 3600).
    Candles(&'a str, &'static str, i64, i32),
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
    let market = sqlx::query(SYMBOL).bind(symbol).fetch_one(&mut *tx).await?;
    let maker_fee: Decimal = market.try_get("maker_fee")?;
    let taker_fee: Decimal = market.try_get("taker_fee")?;
    let quote_asset: String = market.try_get("quote_asset")?;
    let now: DateTime<Utc> = sqlx::query(LOCK_BOOK_READ_CLOCK)
        .bind(BOOK_LOCK)
        .bind(symbol)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    let last = sqlx::query(LAST_PRICE)
        .bind(symbol)
        .fetch_optional(&mut *tx)
        .await?;
    let _ = last;
    if limit.is_some() {
        // A LIMIT order could rest: the per-user cap (the service's default).
        sqlx::query(RESTING_ORDERS)
            .bind(user)
            .bind(PlacementLimits::default().max_resting_orders_per_user as i64)
            .fetch_one(&mut *tx)
            .await?;
    }
    let makers_side = if buy { Side::Sell } else { Side::Buy };
    let mut makers =
        sqlx::query(resting_statement(makers_side, limit.is_some(), false)).bind(symbol);
    if let Some(limit) = limit {
        makers = makers.bind(limit);
    }
    let makers = makers.fetch_all(&mut *tx).await?;
    let order_id = Uuid::new_v4();
    let mut filled = Decimal::ZERO;
    let mut notional = Decimal::ZERO;
    let mut updates = (vec![], vec![], vec![], vec![], vec![]);
    let mut fills = Fills::default();
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
        let (buyer_order, seller_order, buyer, seller) = if buy {
            (order_id, maker_id, user, maker_user)
        } else {
            (maker_id, order_id, maker_user, user)
        };
        let fee = |rate: Decimal| {
            (price * take * rate).round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero)
        };
        let (buyer_fee, seller_fee) = if buy {
            (fee(taker_fee), fee(maker_fee))
        } else {
            (fee(maker_fee), fee(taker_fee))
        };
        fills.push(
            [buyer_order, seller_order, buyer, seller],
            [price, take, buyer_fee, seller_fee],
            !buy,
            now,
        );
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
    if fills.ids.is_empty() {
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
    } else {
        // The makers, the trades and the taker in one statement, as the service.
        let last_price = fills.prices[fills.prices.len() - 1];
        let no_institution = vec![String::new(); fills.ids.len()];
        sqlx::query(WRITE_MATCH_AND_TAKER)
            .bind(&updates.0)
            .bind(&updates.1)
            .bind(&updates.2)
            .bind(&updates.3)
            .bind(&updates.4)
            .bind(symbol)
            .bind(&quote_asset)
            .bind("INTERNAL")
            .bind(&fills.ids)
            .bind(&fills.orders[0])
            .bind(&fills.orders[1])
            .bind(&fills.orders[2])
            .bind(&fills.orders[3])
            .bind(&no_institution)
            .bind(&no_institution)
            .bind(&fills.prices)
            .bind(&fills.amounts[0])
            .bind(&fills.amounts[1])
            .bind(&fills.amounts[2])
            .bind(&fills.buyer_maker)
            .bind(&fills.at)
            .bind(order_id)
            .bind(user)
            .bind(None::<Uuid>)
            .bind(symbol)
            .bind(if buy { "BUY" } else { "SELL" })
            .bind(if limit.is_some() { "LIMIT" } else { "MARKET" })
            .bind(status)
            .bind(quantity)
            .bind(filled)
            .bind(limit)
            .bind(average)
            .bind(None::<Decimal>)
            .bind("GTC")
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<Uuid>)
            .bind(now)
            .bind(now)
            .bind((status == "FILLED").then_some(now))
            .bind(None::<DateTime<Utc>>)
            .bind(None::<DateTime<Utc>>)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(TRIGGERED_STOPS)
            .bind(symbol)
            .bind(last_price)
            .fetch_all(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((order_id, now))
}

/// The trades of a raw placement, one array per column that varies.
#[derive(Default)]
struct Fills {
    ids: Vec<Uuid>,
    /// Buyer order, seller order, buyer user, seller user.
    orders: [Vec<Uuid>; 4],
    prices: Vec<Decimal>,
    /// Quantity, buyer fee, seller fee.
    amounts: [Vec<Decimal>; 3],
    buyer_maker: Vec<bool>,
    at: Vec<DateTime<Utc>>,
}

impl Fills {
    fn push(
        &mut self,
        orders: [Uuid; 4],
        [price, quantity, buyer_fee, seller_fee]: [Decimal; 4],
        buyer_maker: bool,
        at: DateTime<Utc>,
    ) {
        self.ids.push(Uuid::new_v4());
        for (column, id) in self.orders.iter_mut().zip(orders) {
            column.push(id);
        }
        self.prices.push(price);
        for (column, amount) in self
            .amounts
            .iter_mut()
            .zip([quantity, buyer_fee, seller_fee])
        {
            column.push(amount);
        }
        self.buyer_maker.push(buyer_maker);
        self.at.push(at);
    }
}

/// A raw cancel: look the order up, then the guarded update.
pub async fn cancel(pool: &PgPool, order_id: Uuid) -> sqlx::Result<()> {
    let order = sqlx::query(FIND_ORDER)
        .bind(order_id)
        .fetch_one(pool)
        .await?;
    let created_at: DateTime<Utc> = order.try_get("created_at")?;
    let symbol: String = order.try_get("symbol")?;
    sqlx::query(CANCEL)
        .bind(order_id)
        .bind(created_at)
        .bind(BOOK_LOCK)
        .bind(symbol)
        .fetch_optional(pool)
        .await?;
    Ok(())
}
