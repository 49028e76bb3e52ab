//! The statements of a placement: locks, the book walk, stop triggers, and the
//! batched writes. Each is a `const` with binds next to the function that runs it.

use chrono::{DateTime, FixedOffset};
use entity::{orders, symbols, trades};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, Value,
};
use uuid::Uuid;

use crate::error::{Result, ServiceError};
use crate::{OrderStatus, OrderType, Side};

/// Advisory-lock namespaces (the first key of `pg_advisory_xact_lock(int, int)`),
/// apart from the migrator's single-key lock.
pub const BOOK_LOCK: i32 = 0x7465_0001;
const CLIENT_ORDER_ID_LOCK: i32 = 0x7465_0002;

pub(crate) use crate::sql::statement;

async fn lock<C: ConnectionTrait>(db: &C, namespace: i32, key: String) -> Result<()> {
    db.execute_raw(statement(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [namespace.into(), key.into()],
    ))
    .await?;
    Ok(())
}

/// Serializes placements on one symbol until the transaction ends; other
/// symbols go on in parallel.
pub(crate) async fn lock_book<C: ConnectionTrait>(db: &C, symbol: &str) -> Result<()> {
    lock(db, BOOK_LOCK, symbol.to_owned()).await
}

/// Serializes placements that carry the same (user, client_order_id).
pub(crate) async fn lock_client_order_id<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    client_order_id: &str,
) -> Result<()> {
    lock(
        db,
        CLIENT_ORDER_ID_LOCK,
        client_order_id_key(user_id, client_order_id),
    )
    .await
}

/// The key of a (user, client order id) lock in [`CLIENT_ORDER_ID_LOCK`]'s
/// namespace: every taker of that lock names it the same way.
fn client_order_id_key(user_id: Uuid, client_order_id: &str) -> String {
    format!("{user_id}:{client_order_id}")
}

/// Takes the locks of `ids` (user, client order id) if each is free now,
/// without waiting: `false` when one is held by another transaction (the
/// locks that were free stay taken until the transaction ends). For a writer
/// that holds the book lock already, which must not wait for a client order
/// id: a placement alone takes that lock first and then waits for the book.
#[cfg(feature = "sequencer")]
pub(crate) async fn try_lock_client_order_ids<C: ConnectionTrait>(
    db: &C,
    ids: &[(Uuid, &str)],
) -> Result<bool> {
    #[derive(FromQueryResult)]
    struct Locked {
        locked: bool,
    }
    if ids.is_empty() {
        return Ok(true);
    }
    let keys: Vec<String> = ids
        .iter()
        .map(|&(user_id, client_order_id)| client_order_id_key(user_id, client_order_id))
        .collect();
    let locked = Locked::find_by_statement(statement(
        "SELECT coalesce(bool_and(pg_try_advisory_xact_lock($1, hashtext(k))), true) AS locked \
         FROM unnest($2::text[]) AS k",
        [CLIENT_ORDER_ID_LOCK.into(), keys.into()],
    ))
    .one(db)
    .await?;
    Ok(locked.is_some_and(|l| l.locked))
}

#[derive(FromQueryResult)]
struct Found {
    order_id: Uuid,
}

/// The order of user `$user` that used client order id `$client` within 24
/// hours, if any (at most one row).
macro_rules! recent_client_order_id {
    ($client:literal, $user:literal) => {
        concat!(
            "SELECT order_id FROM orders
    WHERE client_order_id = ",
            $client,
            " AND user_id = ",
            $user,
            " AND created_at > now() - interval '24 hours'
    LIMIT 1"
        )
    };
}

const RECENT_CLIENT_ORDER_ID: &str = recent_client_order_id!("$1", "$2");

/// The user's order with this client_order_id from the last 24 hours.
pub(crate) async fn order_with_client_id<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    client_order_id: &str,
) -> Result<Option<Uuid>> {
    let found = Found::find_by_statement(statement(
        RECENT_CLIENT_ORDER_ID,
        [client_order_id.into(), user_id.into()],
    ))
    .one(db)
    .await?;
    Ok(found.map(|f| f.order_id))
}

/// [`RECENT_CLIENT_ORDER_ID`] for several (user, client_order_id) pairs at
/// once (`$1` users, `$2` ids, pairwise).
const RECENT_CLIENT_ORDER_IDS: &str = concat!(
    "SELECT p.user_id, p.client_order_id, o.order_id
    FROM unnest($1::uuid[], $2::text[]) AS p(user_id, client_order_id)
    CROSS JOIN LATERAL (",
    recent_client_order_id!("p.client_order_id", "p.user_id"),
    ") AS o"
);

#[derive(FromQueryResult)]
struct FoundPair {
    user_id: Uuid,
    client_order_id: String,
    order_id: Uuid,
}

/// Of the `pairs`, those used by an order of the last 24 hours, with that
/// order's id; one round trip (none without pairs).
pub(crate) async fn orders_with_client_ids<C: ConnectionTrait>(
    db: &C,
    pairs: &[(Uuid, &str)],
) -> Result<std::collections::HashMap<(Uuid, String), Uuid>> {
    if pairs.is_empty() {
        return Ok(Default::default());
    }
    let users: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
    let ids: Vec<String> = pairs.iter().map(|p| p.1.to_owned()).collect();
    let found = FoundPair::find_by_statement(statement(
        RECENT_CLIENT_ORDER_IDS,
        [users.into(), ids.into()],
    ))
    .all(db)
    .await?;
    Ok(found
        .into_iter()
        .map(|f| ((f.user_id, f.client_order_id), f.order_id))
        .collect())
}

pub(crate) async fn load_symbol<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
) -> Result<symbols::Model> {
    symbols::Entity::find()
        .filter(symbols::Column::Symbol.eq(symbol))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::UnknownSymbol(symbol.to_owned()))
}

/// What a batch reads once it holds the book lock, in one round trip.
pub(crate) struct BatchStart {
    pub symbol: symbols::Model,
    /// The symbol's newest trade price ([`LAST_PRICE`]).
    pub last_price: Option<Decimal>,
    /// The resting counts of the users asked for, as
    /// [`RESTING_ORDERS`](super::limits::RESTING_ORDERS) counts them.
    pub resting: Vec<(Uuid, i64)>,
    /// Whether any stop order of the symbol waits (OPEN or PENDING: its
    /// watchlist holds it); without one, no trade can trigger a stop.
    pub stops_waiting: bool,
    /// The best prices of the stored book ([`BookTop`]).
    pub top: BookTop,
}

/// The best bid and ask of a symbol's stored book, from the levels the
/// schema's triggers keep (`market_levels`: one row per price with resting
/// LIMIT orders, the walk's own predicate); `None` for an empty side. Read
/// under the book lock, it is exact: only writers holding that lock add
/// resting orders, and the others (cancels, expiry) only take them away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BookTop {
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
}

/// Reads, under the book lock, the symbol (`None` when there is none), its
/// last trade price, the resting counts of `users` (each up to `cap`),
/// whether a stop order waits and the book's best prices, in one statement:
/// the symbol's row as SeaORM selects it (`$1`), with the others (`$2`
/// users, `$3` cap) as more columns.
pub(crate) async fn batch_start<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    users: &[Uuid],
    cap: i64,
) -> Result<Option<BatchStart>> {
    use sea_orm::QueryTrait;
    let select = symbols::Entity::find()
        .filter(symbols::Column::Symbol.eq(symbol))
        .build(sea_orm::DbBackend::Postgres);
    let sql = format!(
        "SELECT q.*, (SELECT price FROM market_last_trade WHERE symbol = $1) AS last_trade_price,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(c.user_id, c.resting)), '[]'::jsonb)
     FROM ({}) AS c) AS resting_counts,
    EXISTS (SELECT 1 FROM stop_orders_watchlist WHERE symbol = $1) AS stops_waiting,
    (SELECT price FROM market_levels WHERE symbol = $1 AND side = 'BUY' AND order_count > 0
     ORDER BY price DESC LIMIT 1) AS best_bid,
    (SELECT price FROM market_levels WHERE symbol = $1 AND side = 'SELL' AND order_count > 0
     ORDER BY price LIMIT 1) AS best_ask
FROM ({}) AS q",
        super::limits::resting_orders_of!("$2", "$3"),
        select.sql
    );
    let mut values: Vec<Value> = select.values.map(|v| v.0).unwrap_or_default();
    if values.len() != 1 {
        return Err(ServiceError::Database(sea_orm::DbErr::Custom(format!(
            "the symbol's select has {} parameters, not 1",
            values.len()
        ))));
    }
    values.extend([users.to_vec().into(), cap.into()]);
    let Some(row) = db.query_one_raw(statement(&sql, values)).await? else {
        return Ok(None);
    };
    let symbol = symbols::Model::from_query_result(&row, "")?;
    let last_price: Option<Decimal> = row.try_get("", "last_trade_price")?;
    let stops_waiting: bool = row.try_get("", "stops_waiting")?;
    let top = BookTop {
        bid: row.try_get("", "best_bid")?,
        ask: row.try_get("", "best_ask")?,
    };
    let counts: serde_json::Value = row.try_get("", "resting_counts")?;
    let resting = serde_json::from_value::<Vec<(Uuid, i64)>>(counts).map_err(|err| {
        ServiceError::Database(sea_orm::DbErr::Custom(format!(
            "the resting counts do not read: {err}"
        )))
    })?;
    Ok(Some(BatchStart {
        symbol,
        last_price,
        resting,
        stops_waiting,
        top,
    }))
}

#[derive(FromQueryResult)]
struct Clock {
    now: DateTime<FixedOffset>,
}

/// Takes the symbol's book lock (`$1` [`BOOK_LOCK`], `$2` symbol), then reads
/// the database's clock, in one round trip. The lock is taken in a subquery
/// the outer select reads from (a volatile call keeps it from being pulled
/// up), so the clock is read after the lock is granted.
///
/// It also sets `plan_cache_mode = force_generic_plan` for the rest of the
/// placement's transaction (`set_config(…, true)`, as `SET LOCAL`): the
/// statement that writes a match names the makers' partitions with
/// `created_at = ANY($n)`, which a custom plan prunes while planning over
/// every `orders` partition at each execution, and which PostgreSQL never
/// trades for its generic plan on its own (the generic plan's estimate
/// counts every partition), although the generic plan prunes the same
/// partitions when it starts. The placement's other statements are written
/// so that their generic plans are as good as custom ones.
pub const LOCK_BOOK_READ_CLOCK: &str = "SELECT clock_timestamp() AS now
    FROM (SELECT pg_advisory_xact_lock($1, hashtext($2)),
                 set_config('plan_cache_mode', 'force_generic_plan', true)) AS locked";

/// Serializes placements on `symbol` until the transaction ends (other
/// symbols go on in parallel) and returns the database's clock (not the
/// transaction's start), read once the lock is held: later than anything an
/// earlier placement on the symbol stamped.
pub(crate) async fn lock_book_and_read_clock<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
) -> Result<DateTime<FixedOffset>> {
    let clock = Clock::find_by_statement(statement(
        LOCK_BOOK_READ_CLOCK,
        [BOOK_LOCK.into(), symbol.into()],
    ))
    .one(db)
    .await?;
    clock
        .map(|c| c.now)
        .ok_or_else(|| ServiceError::Database(sea_orm::DbErr::RecordNotFound("clock".into())))
}

#[derive(FromQueryResult)]
struct LastPrice {
    price: Decimal,
}

/// The symbol's newest trade price, kept by the schema in
/// `market_last_trade` (migration 9): one primary-key read, whatever the
/// trade rate or the time since the symbol last traded.
pub const LAST_PRICE: &str = "SELECT price FROM market_last_trade WHERE symbol = $1";

/// The price of the symbol's newest trade.
pub(crate) async fn last_trade_price<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
) -> Result<Option<Decimal>> {
    Ok(
        LastPrice::find_by_statement(statement(LAST_PRICE, [symbol.into()]))
            .one(db)
            .await?
            .map(|last| last.price),
    )
}

/// A resting LIMIT order, as matching needs it.
#[derive(Clone, Debug, FromQueryResult)]
pub(crate) struct Resting {
    pub order_id: Uuid,
    pub created_at: DateTime<FixedOffset>,
    pub user_id: Uuid,
    pub institution_id: Option<Uuid>,
    pub price: Decimal,
    pub quantity: Decimal,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
}

impl Resting {
    pub fn remaining(&self) -> Decimal {
        self.quantity - self.filled_quantity
    }
}

/// The walk's batch size as a literal, so `concat!` can write it into the
/// statements of [`resting_sql`]; [`BATCH`] is the same number.
macro_rules! batch {
    () => {
        32
    };
}

/// Resting orders read (and locked) per round trip while walking the book
/// past its first page: the `LIMIT` of the walk's statements after a cursor,
/// written into them (a parameter there makes PostgreSQL's estimate for its
/// generic plan worse than for a custom one, so it would plan every
/// execution again).
pub(crate) const BATCH: u64 = batch!();

/// The first page's size as a literal ([`FIRST_PAGE`]).
macro_rules! first_page {
    () => {
        4
    };
}

/// Resting orders read (and locked) by a walk's first round trip. Most
/// takers fill against the best one or two makers, and every row the walk
/// reads it also locks — a write to the row's page and a WAL record each —
/// so the first page reads a few; a taker that needs more reads on in pages
/// of [`BATCH`].
pub(crate) const FIRST_PAGE: u64 = first_page!();

/// One shape of the walk over the resting orders of a side: `$1` symbol, then
/// the shape's own parameters, at most `$limit` rows. Locked, so a concurrent cancel
/// waits for this placement. The predicates are those of
/// `IDX_orders_matching`, which serves the walk.
macro_rules! resting_sql {
    ($side:literal, $order:literal, $bounds:literal, $($limit:tt)+) => {
        concat!(
            "SELECT order_id, created_at, user_id, institution_id, price, quantity,
        filled_quantity, average_price
    FROM orders
    WHERE symbol = $1 AND side = '",
            $side,
            "' AND ",
            $crate::sql::resting!(),
            $bounds,
            "
    ORDER BY price ",
            $order,
            ", created_at ASC, order_id ASC
    LIMIT ",
            $($limit)+,
            "
    FOR UPDATE"
        )
    };
}

/// The asks, best (lowest) first, oldest first within a price: the first
/// page ([`FIRST_PAGE`]); up to the taker's limit `$2`; after the cursor `($2 price,
/// $3 created_at, $4 order_id)`; both (`$2` limit, cursor `$3`–`$5`).
///
/// Four statements per side rather than one with `($n IS NULL OR …)`
/// branches: without the branches PostgreSQL's cached generic plan is as good
/// as a custom one and is kept, so an execution is not planned again over
/// every `orders` partition (≈ 2 ms of the ≈ 3 ms a resting placement took on
/// the server; see docs/performance.md).
const ASKS_FIRST: &str = resting_sql!("SELL", "ASC", "", first_page!());
const ASKS_UP_TO: &str = resting_sql!("SELL", "ASC", "\n      AND price <= $2", first_page!());
const ASKS_AFTER: &str = resting_sql!(
    "SELL",
    "ASC",
    "\n      AND (price > $2 OR (price = $2 AND (created_at, order_id) > ($3, $4)))",
    batch!()
);
const ASKS_AFTER_UP_TO: &str = resting_sql!(
    "SELL",
    "ASC",
    "\n      AND price <= $2
      AND (price > $3 OR (price = $3 AND (created_at, order_id) > ($4, $5)))",
    batch!()
);

/// The bids, best (highest) first; as the asks otherwise, the limit a floor.
const BIDS_FIRST: &str = resting_sql!("BUY", "DESC", "", first_page!());
const BIDS_DOWN_TO: &str = resting_sql!("BUY", "DESC", "\n      AND price >= $2", first_page!());
const BIDS_AFTER: &str = resting_sql!(
    "BUY",
    "DESC",
    "\n      AND (price < $2 OR (price = $2 AND (created_at, order_id) > ($3, $4)))",
    batch!()
);
const BIDS_AFTER_DOWN_TO: &str = resting_sql!(
    "BUY",
    "DESC",
    "\n      AND price >= $2
      AND (price < $3 OR (price = $3 AND (created_at, order_id) > ($4, $5)))",
    batch!()
);

/// The statement that reads the resting orders of `side`, with or without the
/// taker's limit price, for the first batch or after a cursor. Its parameters:
/// symbol, the limit price if `limited`, then the cursor's price, created_at
/// and order_id if `after`.
pub fn resting_statement(side: Side, limited: bool, after: bool) -> &'static str {
    match (side, limited, after) {
        (Side::Sell, false, false) => ASKS_FIRST,
        (Side::Sell, true, false) => ASKS_UP_TO,
        (Side::Sell, false, true) => ASKS_AFTER,
        (Side::Sell, true, true) => ASKS_AFTER_UP_TO,
        (Side::Buy, false, false) => BIDS_FIRST,
        (Side::Buy, true, false) => BIDS_DOWN_TO,
        (Side::Buy, false, true) => BIDS_AFTER,
        (Side::Buy, true, true) => BIDS_AFTER_DOWN_TO,
    }
}

/// The most rows [`resting_statement`] returns: [`FIRST_PAGE`] for the first
/// page, [`BATCH`] after a cursor. Fewer rows than that: the side holds no
/// more within the limit.
pub fn page_size(after: bool) -> u64 {
    if after { BATCH } else { FIRST_PAGE }
}

/// The next [`page_size`] resting orders of `side` in price-time priority
/// after `after`, priced no worse than `limit` for the taker.
pub(crate) async fn resting<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    side: Side,
    limit: Option<Decimal>,
    after: Option<&Resting>,
) -> Result<Vec<Resting>> {
    let sql = resting_statement(side, limit.is_some(), after.is_some());
    let mut values: Vec<Value> = vec![symbol.into()];
    if let Some(limit) = limit {
        values.push(limit.into());
    }
    if let Some(cursor) = after {
        values.extend([
            cursor.price.into(),
            cursor.created_at.into(),
            cursor.order_id.into(),
        ]);
    }
    Ok(Resting::find_by_statement(statement(sql, values))
        .all(db)
        .await?)
}

/// Stop orders read (and locked) per round trip of the trigger loop, the
/// `LIMIT` of [`TRIGGERED_STOPS`] (a literal, as the walk's [`BATCH`]).
pub(crate) const STOP_BATCH: u64 = batch!();

/// The symbol's stop orders due to trigger, in trigger order, at most
/// `STOP_BATCH` (32): first those a placement's bound left PENDING (oldest cut
/// first), then the untriggered ones `$2` (the last price) has reached, a BUY
/// stop at or below it, a SELL stop at or above it. Within each, rule 7's
/// order: BUY stops lowest stop price first, SELL stops highest first, equal
/// stop prices oldest first. The OPEN predicates are those of
/// `IDX_orders_stop_monitoring`.
pub const TRIGGERED_STOPS: &str = concat!(
    "SELECT * FROM orders
    WHERE symbol = $1 AND order_type IN ('STOP', 'STOP_LIMIT')
      AND (status = 'PENDING'
           OR (status = 'OPEN'
               AND ((side = 'BUY' AND stop_price <= $2) OR (side = 'SELL' AND stop_price >= $2))))
    ORDER BY status = 'OPEN', CASE WHEN status = 'PENDING' THEN updated_at END,
        CASE WHEN side = 'BUY' THEN stop_price END ASC,
        CASE WHEN side = 'SELL' THEN stop_price END DESC,
        created_at ASC, order_id ASC
    LIMIT ",
    batch!(),
    "
    FOR UPDATE"
);

pub(crate) async fn triggered_stops<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    last: Decimal,
) -> Result<Vec<orders::Model>> {
    Ok(orders::Entity::find()
        .from_raw_sql(statement(TRIGGERED_STOPS, [symbol.into(), last.into()]))
        .all(db)
        .await?)
}

/// Marks the untriggered stop orders `$2` has reached PENDING: reached, not
/// yet triggered. They stay in the watchlist (it drops only finished orders)
/// and [`TRIGGERED_STOPS`] returns them first, whatever the price does next.
const DEFER_REACHED_STOPS: &str = "UPDATE orders SET status = 'PENDING'
    WHERE symbol = $1 AND order_type IN ('STOP', 'STOP_LIMIT') AND status = 'OPEN'
      AND ((side = 'BUY' AND stop_price <= $2) OR (side = 'SELL' AND stop_price >= $2))
    RETURNING order_id";

#[derive(FromQueryResult)]
struct Deferred {
    order_id: Uuid,
}

/// The stops [`DEFER_REACHED_STOPS`] marked.
pub(crate) async fn defer_reached_stops<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    last: Decimal,
) -> Result<Vec<Uuid>> {
    let deferred =
        Deferred::find_by_statement(statement(DEFER_REACHED_STOPS, [symbol.into(), last.into()]))
            .all(db)
            .await?;
    Ok(deferred.into_iter().map(|d| d.order_id).collect())
}

/// A triggered stop order's new state. `created_at` moves to the trigger time
/// (which can move the row to another monthly partition).
const REWRITE_TRIGGERED: &str = "UPDATE orders
    SET created_at = $3, order_type = $4::order_type_enum, status = $5::order_status_enum,
        filled_quantity = $6, average_price = $7
    WHERE order_id = $1 AND created_at = $2
    RETURNING *";

pub(crate) async fn rewrite_triggered<C: ConnectionTrait>(
    db: &C,
    stop: &orders::Model,
    triggered_at: DateTime<FixedOffset>,
    order_type: OrderType,
    status: OrderStatus,
    filled: Decimal,
    average_price: Option<Decimal>,
) -> Result<orders::Model> {
    let row = orders::Model::find_by_statement(statement(
        REWRITE_TRIGGERED,
        [
            stop.order_id.into(),
            stop.created_at.into(),
            triggered_at.into(),
            text(order_type.to_value()).into(),
            text(status.to_value()).into(),
            filled.into(),
            average_price.into(),
        ],
    ))
    .one(db)
    .await?;
    row.ok_or_else(|| {
        ServiceError::Database(sea_orm::DbErr::Custom(format!(
            "triggered order {} vanished",
            stop.order_id
        )))
    })
}

/// A maker's new fill state.
#[derive(Clone, Debug)]
pub(crate) struct MakerUpdate {
    pub order_id: Uuid,
    pub created_at: DateTime<FixedOffset>,
    /// Whose order it is (not written; for the resting counts of a batch).
    pub user_id: Uuid,
    pub filled_quantity: Decimal,
    pub average_price: Decimal,
    pub status: OrderStatus,
}

/// The writes of one match in one statement, before `$main`: the makers' new
/// fill state (`makers`: `$1`–`$5`, one array per column) and the trades
/// (`fills`: `$6` symbol, `$7` fee asset, `$8` trade source, `$9`–`$21` one
/// array per varying column; an institution id is text, `''` for none, as
/// arrays of binds cannot hold NULL). One round trip instead of one per
/// table, and the schema's statement triggers run once per table. The
/// `= ANY($2)` repeats the join on `created_at` so each execution's plan
/// prunes to the makers' partitions at plan time instead of planning the
/// update over every partition.
macro_rules! match_writes {
    ($main:expr) => {
        concat!(
            "WITH makers AS (
    UPDATE orders AS o
    SET filled_quantity = v.filled_quantity,
        average_price = v.average_price,
        status = v.status::order_status_enum
    FROM unnest($1::uuid[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::text[])
        AS v(order_id, created_at, filled_quantity, average_price, status)
    WHERE o.order_id = v.order_id AND o.created_at = v.created_at
      AND o.created_at = ANY($2::timestamptz[])
    RETURNING 1
), fills AS (
    INSERT INTO trades (trade_id, symbol, buyer_order_id, seller_order_id, buyer_user_id,
        seller_user_id, buyer_institution_id, seller_institution_id, price, quantity,
        buyer_fee, seller_fee, buyer_fee_asset, seller_fee_asset, is_buyer_maker,
        trade_source, execution_venue, executed_at, settled_at)
    SELECT t.trade_id, $6, t.buyer_order_id, t.seller_order_id, t.buyer_user_id,
        t.seller_user_id, nullif(t.buyer_institution_id, '')::uuid,
        nullif(t.seller_institution_id, '')::uuid, t.price, t.quantity,
        t.buyer_fee, t.seller_fee, $7, $7, t.is_buyer_maker, $8, NULL, t.executed_at, NULL
    FROM unnest($9::uuid[], $10::uuid[], $11::uuid[], $12::uuid[], $13::uuid[],
        $14::text[], $15::text[], $16::numeric[], $17::numeric[], $18::numeric[],
        $19::numeric[], $20::bool[], $21::timestamptz[])
        AS t(trade_id, buyer_order_id, seller_order_id, buyer_user_id, seller_user_id,
             buyer_institution_id, seller_institution_id, price, quantity, buyer_fee,
             seller_fee, is_buyer_maker, executed_at)
    RETURNING 1
)
",
            $main
        )
    };
}

/// A match's makers and trades ([`match_writes`]), when the order that took
/// them is already stored (a triggered stop order).
pub const WRITE_MATCH: &str = match_writes!(
    "SELECT (SELECT count(*) FROM makers) AS makers_updated,
    (SELECT count(*) FROM fills) AS trades_inserted"
);

/// A match's makers and trades ([`match_writes`]) and the new order that took
/// them (`$22`–`$42`, every column of `orders` in table order).
pub const WRITE_MATCH_AND_TAKER: &str = match_writes!(
    "INSERT INTO orders (order_id, user_id, institution_id, symbol, side, order_type, status,
    quantity, filled_quantity, price, average_price, stop_price, time_in_force,
    client_order_id, order_source, fee_profile_id, created_at, updated_at, filled_at,
    cancelled_at, expires_at)
VALUES ($22, $23, $24, $25, $26::order_side_enum, $27::order_type_enum,
    $28::order_status_enum, $29, $30, $31, $32, $33, $34::time_in_force_enum, $35, $36, $37,
    $38, $39, $40, $41, $42)
RETURNING *, (SELECT count(*) FROM makers) AS makers_updated,
    (SELECT count(*) FROM fills) AS trades_inserted"
);

/// The insert of new orders from a `jsonb` array of row objects, the
/// parameter `$rows` ([`WRITE_ORDERS`], and within
/// [`WRITE_MATCH_AND_ORDERS`]).
macro_rules! insert_orders {
    ($rows:literal) => {
        concat!(
            "INSERT INTO orders
SELECT * FROM jsonb_populate_recordset(NULL::orders, ",
            $rows,
            "::jsonb)"
        )
    };
}

/// New orders of a batch, every column of `orders`, from one `jsonb` array of
/// row objects (`$1`): one statement for all of them, so the schema's
/// statement triggers run once for the batch. JSON carries NULLs, the enums'
/// text and decimals as strings exactly, where arrays of binds cannot.
pub const WRITE_ORDERS: &str = insert_orders!("$1");

/// A batch's makers and trades ([`match_writes`]) and its new orders (`$22`,
/// as [`WRITE_ORDERS`]), in one statement.
pub const WRITE_MATCH_AND_ORDERS: &str = match_writes!(concat!(
    ", placed AS (
",
    insert_orders!("$22"),
    "
    RETURNING 1
)
SELECT (SELECT count(*) FROM makers) AS makers_updated,
    (SELECT count(*) FROM fills) AS trades_inserted,
    (SELECT count(*) FROM placed) AS orders_inserted"
));

/// The database text of an enum value, as the generated enum names it (the
/// binds of the enum columns are text, cast in the statement).
fn text(value: sea_orm::sea_query::Enum) -> String {
    value.value.into_owned()
}

/// The binds `$1`–`$21` of [`match_writes`]. The trades of one match share
/// their symbol, fee asset and source (the engine makes them so); a trade
/// that does not is an error, not a silent rewrite.
fn match_values(makers: &[MakerUpdate], trades: &[trades::Model]) -> Result<Vec<Value>> {
    let first = trades.first().ok_or_else(|| {
        ServiceError::Database(sea_orm::DbErr::Custom("a match without trades".into()))
    })?;
    if let Some(odd) = trades.iter().find(|t| {
        t.symbol != first.symbol
            || t.buyer_fee_asset != first.buyer_fee_asset
            || t.seller_fee_asset != first.buyer_fee_asset
            || t.trade_source != first.trade_source
            || t.execution_venue.is_some()
            || t.settled_at.is_some()
    }) {
        return Err(ServiceError::Database(sea_orm::DbErr::Custom(format!(
            "trade {} differs from its match's symbol, fee asset or source",
            odd.trade_id
        ))));
    }
    fn column<T, V: Into<Value>>(rows: &[T], get: impl Fn(&T) -> V) -> Vec<V> {
        rows.iter().map(get).collect()
    }
    let institution = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    Ok(vec![
        column(makers, |m| m.order_id).into(),
        column(makers, |m| m.created_at).into(),
        column(makers, |m| m.filled_quantity).into(),
        column(makers, |m| m.average_price).into(),
        column(makers, |m| text(m.status.to_value())).into(),
        first.symbol.clone().into(),
        first.buyer_fee_asset.clone().into(),
        first.trade_source.clone().into(),
        column(trades, |t| t.trade_id).into(),
        column(trades, |t| t.buyer_order_id).into(),
        column(trades, |t| t.seller_order_id).into(),
        column(trades, |t| t.buyer_user_id).into(),
        column(trades, |t| t.seller_user_id).into(),
        column(trades, |t| institution(t.buyer_institution_id)).into(),
        column(trades, |t| institution(t.seller_institution_id)).into(),
        column(trades, |t| t.price).into(),
        column(trades, |t| t.quantity).into(),
        column(trades, |t| t.buyer_fee).into(),
        column(trades, |t| t.seller_fee).into(),
        column(trades, |t| t.is_buyer_maker).into(),
        column(trades, |t| t.executed_at).into(),
    ])
}

#[derive(FromQueryResult)]
struct Written {
    makers_updated: i64,
    trades_inserted: i64,
}

impl Written {
    /// Every maker found and every trade stored, or an error that says what not.
    fn check(&self, makers: usize, trades: usize) -> Result<()> {
        if self.makers_updated != makers as i64 || self.trades_inserted != trades as i64 {
            return Err(ServiceError::Database(sea_orm::DbErr::Custom(format!(
                "updated {} of {} matched orders, stored {} of {} trades",
                self.makers_updated, makers, self.trades_inserted, trades
            ))));
        }
        Ok(())
    }
}

/// Stores a match: the makers' new state and the trades, in one statement.
pub(crate) async fn write_match<C: ConnectionTrait>(
    db: &C,
    makers: &[MakerUpdate],
    trades: &[trades::Model],
) -> Result<()> {
    let written = Written::find_by_statement(statement(WRITE_MATCH, match_values(makers, trades)?))
        .one(db)
        .await?;
    written
        .ok_or_else(|| ServiceError::Database(sea_orm::DbErr::RecordNotFound("match".into())))?
        .check(makers.len(), trades.len())
}

/// Stores a match and the new order that took it, in one statement; returns
/// the order as stored.
pub(crate) async fn write_match_and_taker<C: ConnectionTrait>(
    db: &C,
    makers: &[MakerUpdate],
    trades: &[trades::Model],
    taker: orders::Model,
) -> Result<orders::Model> {
    let mut values = match_values(makers, trades)?;
    values.extend([
        taker.order_id.into(),
        taker.user_id.into(),
        taker.institution_id.into(),
        taker.symbol.into(),
        text(taker.side.to_value()).into(),
        text(taker.order_type.to_value()).into(),
        text(taker.status.to_value()).into(),
        taker.quantity.into(),
        taker.filled_quantity.into(),
        taker.price.into(),
        taker.average_price.into(),
        taker.stop_price.into(),
        text(taker.time_in_force.to_value()).into(),
        taker.client_order_id.into(),
        taker.order_source.into(),
        taker.fee_profile_id.into(),
        taker.created_at.into(),
        taker.updated_at.into(),
        taker.filled_at.into(),
        taker.cancelled_at.into(),
        taker.expires_at.into(),
    ]);
    let row = db
        .query_one_raw(statement(WRITE_MATCH_AND_TAKER, values))
        .await?
        .ok_or_else(|| ServiceError::Database(sea_orm::DbErr::RecordNotFound("taker".into())))?;
    Written::from_query_result(&row, "")?.check(makers.len(), trades.len())?;
    Ok(orders::Model::from_query_result(&row, "")?)
}

/// An order row as a JSON object for [`WRITE_ORDERS`]: every column by
/// name, decimals and times as text (times to the microsecond, as stored).
fn order_json(row: &orders::Model) -> serde_json::Value {
    use chrono::SecondsFormat;
    let time = |t: &DateTime<FixedOffset>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let decimal = |d: &Decimal| d.to_string();
    serde_json::json!({
        "order_id": row.order_id,
        "user_id": row.user_id,
        "institution_id": row.institution_id,
        "symbol": row.symbol,
        "side": text(row.side.to_value()),
        "order_type": text(row.order_type.to_value()),
        "status": text(row.status.to_value()),
        "quantity": decimal(&row.quantity),
        "filled_quantity": decimal(&row.filled_quantity),
        "price": row.price.as_ref().map(decimal),
        "average_price": row.average_price.as_ref().map(decimal),
        "stop_price": row.stop_price.as_ref().map(decimal),
        "time_in_force": text(row.time_in_force.to_value()),
        "client_order_id": row.client_order_id,
        "order_source": row.order_source,
        "fee_profile_id": row.fee_profile_id,
        "created_at": time(&row.created_at),
        "updated_at": time(&row.updated_at),
        "filled_at": row.filled_at.as_ref().map(time),
        "cancelled_at": row.cancelled_at.as_ref().map(time),
        "expires_at": row.expires_at.as_ref().map(time),
    })
}

/// The parameter of [`insert_orders`]: `rows` as a JSON array.
fn orders_json(rows: &[orders::Model]) -> serde_json::Value {
    serde_json::Value::Array(rows.iter().map(order_json).collect())
}

#[derive(FromQueryResult)]
struct WrittenWithOrders {
    makers_updated: i64,
    trades_inserted: i64,
    orders_inserted: i64,
}

/// Every one of a batch's `expected` new orders stored, or an error that
/// says how many were.
fn all_stored(inserted: u64, expected: usize) -> Result<()> {
    if inserted != expected as u64 {
        return Err(ServiceError::Database(sea_orm::DbErr::Custom(format!(
            "stored {inserted} of {expected} new orders"
        ))));
    }
    Ok(())
}

/// Stores what a batch decided: the new orders `rows` (in their final
/// state), the makers' new state and the trades. One order goes by the
/// statements a single placement sends ([`WRITE_MATCH_AND_TAKER`], or an
/// insert of the row); more go by one multi-row statement
/// ([`WRITE_MATCH_AND_ORDERS`], or [`WRITE_ORDERS`] without trades).
pub(crate) async fn write_batch<C: ConnectionTrait>(
    db: &C,
    makers: &[MakerUpdate],
    trades: &[trades::Model],
    rows: &[orders::Model],
) -> Result<()> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    match (rows, trades.is_empty()) {
        ([], true) if makers.is_empty() => Ok(()),
        ([row], true) if makers.is_empty() => {
            row.clone()
                .into_active_model()
                .reset_all()
                .insert(db)
                .await?;
            Ok(())
        }
        ([row], false) => {
            write_match_and_taker(db, makers, trades, row.clone()).await?;
            Ok(())
        }
        (_, true) if makers.is_empty() => {
            let inserted = db
                .execute_raw(statement(WRITE_ORDERS, [orders_json(rows).into()]))
                .await?
                .rows_affected();
            all_stored(inserted, rows.len())
        }
        _ => {
            let mut values = match_values(makers, trades)?;
            values.push(orders_json(rows).into());
            let written =
                WrittenWithOrders::find_by_statement(statement(WRITE_MATCH_AND_ORDERS, values))
                    .one(db)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Database(sea_orm::DbErr::RecordNotFound("batch".into()))
                    })?;
            Written {
                makers_updated: written.makers_updated,
                trades_inserted: written.trades_inserted,
            }
            .check(makers.len(), trades.len())?;
            all_stored(
                u64::try_from(written.orders_inserted).unwrap_or(0),
                rows.len(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_walk_statement_reads_one_batch() {
        for side in [Side::Buy, Side::Sell] {
            for limited in [false, true] {
                for after in [false, true] {
                    let sql = resting_statement(side, limited, after);
                    let page = page_size(after);
                    assert!(sql.contains(&format!("LIMIT {page}\n")), "{sql}");
                    let params = 1 + usize::from(limited) + 3 * usize::from(after);
                    assert!(sql.contains(&format!("${params}")), "{sql}");
                    assert!(!sql.contains(&format!("${}", params + 1)), "{sql}");
                }
            }
        }
    }
}
