//! Placement: validation, then price-time matching inside one transaction that
//! holds the symbol's book lock. The rules are in the [module docs](super).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, FixedOffset, Utc};
use entity::{orders, stop_orders_watchlist, symbols, trades};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, TransactionTrait};
use uuid::Uuid;

use super::limits::{self, PlacementLimits};
use super::store::{self, MakerUpdate, Resting};
use super::{Execution, NewOrder, Placement, validate};
use crate::error::{Result, ServiceError};
use crate::retry;
use crate::{OrderStatus, OrderType, Side, TimeInForce};

/// Places `order` within the default [`PlacementLimits`]; see [`place_with`].
pub async fn place<C>(db: &C, order: NewOrder) -> Result<Placement>
where
    C: ConnectionTrait + TransactionTrait,
{
    place_with(db, order, &PlacementLimits::default()).await
}

/// Places `order`: validates it, matches it, triggers the stop orders its
/// trades reach, and commits, all or nothing, within `limits`.
///
/// Runs in a transaction of its own (a savepoint when `db` is a transaction),
/// tried again from the start on a serialization failure or deadlock, up to
/// [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS) times in total. Its
/// statements run with `plan_cache_mode = force_generic_plan`, set for the
/// transaction by the statement that takes the book lock (PostgreSQL would
/// otherwise plan some of them afresh over every `orders` partition at each
/// execution): in a caller's transaction the setting stays for the rest of
/// it.
pub async fn place_with<C>(db: &C, order: NewOrder, limits: &PlacementLimits) -> Result<Placement>
where
    C: ConnectionTrait + TransactionTrait,
{
    validate::shape(&order)?;
    let placement =
        retry::in_transaction!(db, |txn| { placement(&txn, order.clone(), limits).await })?;
    tracing::debug!(
        order_id = %placement.order.order_id,
        symbol = %placement.order.symbol,
        status = ?placement.order.status,
        trades = placement.trades.len(),
        triggered = placement.triggered.len(),
        "order placed"
    );
    Ok(placement)
}

/// One attempt of [`place_with`], in its transaction `txn`.
async fn placement<T: ConnectionTrait>(
    txn: &T,
    order: NewOrder,
    limits: &PlacementLimits,
) -> Result<Placement> {
    let symbol = store::load_symbol(txn, &order.symbol).await?;
    validate::against_symbol(&order, &symbol)?;
    if let Some(client_order_id) = &order.client_order_id {
        store::lock_client_order_id(txn, order.user_id, client_order_id).await?;
        if let Some(existing) =
            store::order_with_client_id(txn, order.user_id, client_order_id).await?
        {
            return Err(ServiceError::DuplicateClientOrderId {
                client_order_id: client_order_id.clone(),
                existing_order_id: existing,
            });
        }
    }
    let now = store::lock_book_and_read_clock(txn, &symbol.symbol).await?;
    validate::expiry(&order, now)?;
    let last_price = store::last_trade_price(txn, &symbol.symbol).await?;
    validate::price_band(&order, &symbol, last_price)?;
    limits::check_resting(txn, &order, limits).await?;

    let mut engine = Engine::new(txn, &symbol, now, last_price, limits);
    let placed = engine.place(order).await?;
    engine.flush().await?;
    Ok(placed)
}

/// Places `orders`, all on one symbol, in one transaction under one book lock,
/// in list order, each exactly as if placed alone after the previous one
/// (matching, self-trade prevention, IOC/FOK, DAY, stop triggers and their
/// cascades, client order ids, also between two orders of the list), within
/// `limits` (each order gets its own `max_fills` and `max_triggered_stops`).
///
/// Every order gets its own result, in list order. An order that is refused
/// (a validation error, a client order id already used, the resting-order
/// limit) is refused before anything of it is written and does not affect
/// the others; an order on another symbol than the first is refused too.
/// When the transaction fails (the database, or an error while writing), no
/// order of it is stored and the orders are placed again one by one with
/// [`place_with`], so an order that cannot be stored fails alone; when no
/// connection could be had ([`ServiceError::Unavailable`]) every order gets
/// that answer at once. As in [`place_with`], its statements run with
/// generic plans, also for the rest of a caller's transaction.
///
/// The writes are set-based: the batch's new orders, trades and makers' fills
/// go in one statement at its end (a stop order, or a trade that reaches
/// one, sends what is pending first), so the schema's statement triggers
/// run once for the batch. An order placed and filled within one batch is
/// therefore written, and published, once in its final state; a maker
/// filled by several orders of a batch, once in its last.
///
/// The batch reads the book's best bid and ask from the levels the schema's
/// triggers keep (`market_levels`), and an order whose limit does not reach
/// them does not read the stored book: the levels must be maintained (after a
/// load that bypassed the triggers, `rebuild_market_state()` first).
pub async fn place_many<C>(
    db: &C,
    orders: Vec<NewOrder>,
    limits: &PlacementLimits,
) -> Vec<Result<Placement>>
where
    C: ConnectionTrait + TransactionTrait,
{
    let (mut results, valid) = checked(orders);
    if !valid.is_empty() {
        let batch = retry::in_transaction!(db, |txn| { batch(&txn, &valid, limits).await });
        match batch {
            Ok(placed) => {
                for (i, result) in placed {
                    results[i] = Some(result);
                }
            }
            // No connection: placing the orders one by one would wait for
            // one again per order; each gets the batch's answer instead.
            Err(ServiceError::Unavailable(err)) => {
                for (i, _) in valid {
                    results[i] = Some(Err(ServiceError::Unavailable(sea_orm::DbErr::Custom(
                        err.to_string(),
                    ))));
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, orders = valid.len(), "batch failed; placing its orders one by one");
                for (i, order) in valid {
                    results[i] = Some(place_with(db, order, limits).await);
                }
            }
        }
    }
    collected(results)
}

/// [`place_many`]'s work in a transaction `txn` of the caller's that already
/// holds the symbol's book lock, taken when the database's clock read `now`
/// (and, for `orders` that carry client order ids, their locks): the same
/// results, without a savepoint and without placing the orders again one by
/// one. On `Err` nothing of the batch may be kept: the caller rolls `txn`
/// back and places the orders with [`place_many`].
#[cfg(feature = "sequencer")]
pub(crate) async fn place_many_locked<T: ConnectionTrait>(
    txn: &T,
    orders: Vec<NewOrder>,
    limits: &PlacementLimits,
    now: DateTime<FixedOffset>,
) -> Result<Vec<Result<Placement>>> {
    let (mut results, valid) = checked(orders);
    if !valid.is_empty() {
        for (i, result) in batch_locked(txn, &valid, limits, now).await? {
            results[i] = Some(result);
        }
    }
    Ok(collected(results))
}

/// The orders a batch places (index, order) and, at their index, the
/// refusals of those it does not: an order whose shape is wrong, or on
/// another symbol than the first.
#[allow(clippy::type_complexity)]
fn checked(orders: Vec<NewOrder>) -> (Vec<Option<Result<Placement>>>, Vec<(usize, NewOrder)>) {
    let mut results: Vec<Option<Result<Placement>>> = Vec::with_capacity(orders.len());
    let mut valid: Vec<(usize, NewOrder)> = Vec::with_capacity(orders.len());
    let symbol = orders.first().map(|o| o.symbol.clone());
    for (i, order) in orders.into_iter().enumerate() {
        let checked = validate::shape(&order).and_then(|()| {
            if Some(&order.symbol) == symbol.as_ref() {
                Ok(())
            } else {
                Err(ServiceError::argument(
                    "symbol",
                    format!(
                        "a batch places orders of one symbol, {}; this order is on {}",
                        symbol.as_deref().unwrap_or_default(),
                        order.symbol
                    ),
                ))
            }
        });
        match checked {
            Ok(()) => {
                results.push(None);
                valid.push((i, order));
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }
    (results, valid)
}

/// Every order's result, in order (one left without is an error).
fn collected(results: Vec<Option<Result<Placement>>>) -> Vec<Result<Placement>> {
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ServiceError::Database(sea_orm::DbErr::Custom(
                    "an order of the batch got no result".into(),
                )))
            })
        })
        .collect()
}

/// The distinct (user, client order id) pairs of `orders`, sorted: the order
/// their locks are taken in.
pub(crate) fn client_ids<'a>(
    orders: impl IntoIterator<Item = &'a NewOrder>,
) -> Vec<(Uuid, &'a str)> {
    let mut ids: Vec<(Uuid, &str)> = orders
        .into_iter()
        .filter_map(|o| o.client_order_id.as_deref().map(|c| (o.user_id, c)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One attempt of [`place_many`] in its transaction `txn`: the refusals and
/// placements of `orders` (index, order), or the error that fails them all.
///
/// What the batch reads once for all its orders (the client order ids in
/// use, the users' resting counts) it keeps up to date in memory as its
/// orders are placed, and what its orders write it sends at the end in one
/// statement ([`Engine::flush`]), so each order is as if placed alone after
/// the previous one.
async fn batch<T: ConnectionTrait>(
    txn: &T,
    orders: &[(usize, NewOrder)],
    limits: &PlacementLimits,
) -> Result<Vec<(usize, Result<Placement>)>> {
    let Some((_, first)) = orders.first() else {
        return Ok(Vec::new());
    };
    // Client order ids are locked before the book, as a placement alone
    // locks its own, in one order, so batches and single placements never
    // wait for each other in a cycle.
    for (user_id, client_order_id) in client_ids(orders.iter().map(|(_, o)| o)) {
        store::lock_client_order_id(txn, user_id, client_order_id).await?;
    }
    let now = store::lock_book_and_read_clock(txn, &first.symbol).await?;
    batch_locked(txn, orders, limits, now).await
}

/// [`batch`] once the locks are held and the clock read `now`.
async fn batch_locked<T: ConnectionTrait>(
    txn: &T,
    orders: &[(usize, NewOrder)],
    limits: &PlacementLimits,
    now: DateTime<FixedOffset>,
) -> Result<Vec<(usize, Result<Placement>)>> {
    let Some((_, first)) = orders.first() else {
        return Ok(Vec::new());
    };
    let client_ids = client_ids(orders.iter().map(|(_, o)| o));
    let mut users: Vec<Uuid> = orders
        .iter()
        .filter(|(_, o)| limits::could_rest(o))
        .map(|(_, o)| o.user_id)
        .collect();
    users.sort_unstable();
    users.dedup();
    let Some(start) = store::batch_start(txn, &first.symbol, &users, limits::cap(limits)).await?
    else {
        return Ok(orders
            .iter()
            .map(|(i, o)| (*i, Err(ServiceError::UnknownSymbol(o.symbol.clone()))))
            .collect());
    };
    let symbol = start.symbol;
    let mut refused: Vec<Option<ServiceError>> = orders
        .iter()
        .map(|(_, order)| validate::against_symbol(order, &symbol).err())
        .collect();
    // The ids in use, read once; the batch's own placements join them.
    let mut used = store::orders_with_client_ids(txn, &client_ids).await?;
    let mut engine = Engine::new(txn, &symbol, now, start.last_price, limits);
    engine.stored_resting.extend(start.resting);
    engine.stops_waiting = start.stops_waiting;
    engine.stored_top = Some(start.top);
    let mut placed = Vec::with_capacity(orders.len());
    for ((i, order), refusal) in orders.iter().zip(refused.iter_mut()) {
        if let Some(err) = refusal.take() {
            placed.push((*i, Err(err)));
            continue;
        }
        if let Some(client_order_id) = &order.client_order_id
            && let Some(&existing) = used.get(&(order.user_id, client_order_id.clone()))
        {
            placed.push((
                *i,
                Err(ServiceError::DuplicateClientOrderId {
                    client_order_id: client_order_id.clone(),
                    existing_order_id: existing,
                }),
            ));
            continue;
        }
        let checked = validate::expiry(order, engine.clock())
            .and_then(|()| validate::price_band(order, &symbol, engine.last_price));
        if let Err(err) = checked {
            placed.push((*i, Err(err)));
            continue;
        }
        match engine.check_resting(order).await {
            Ok(()) => {}
            Err(err @ ServiceError::TooManyRestingOrders { .. }) => {
                placed.push((*i, Err(err)));
                continue;
            }
            Err(err) => return Err(err),
        }
        engine.next_order();
        let placement = engine.place(order.clone()).await?;
        if let Some(client_order_id) = &order.client_order_id {
            used.insert(
                (order.user_id, client_order_id.clone()),
                placement.order.order_id,
            );
        }
        placed.push((*i, Ok(placement)));
    }
    engine.flush().await?;
    Ok(placed)
}

/// Whether a resting order at `price` on `side` is within a taker's `limit`.
fn reachable(side: Side, price: Decimal, limit: Option<Decimal>) -> bool {
    match (side, limit) {
        (_, None) => true,
        (Side::Sell, Some(limit)) => price <= limit,
        (Side::Buy, Some(limit)) => price >= limit,
    }
}

/// Triggers the symbol's PENDING stop orders (those a placement's
/// `max_triggered_stops` left waiting) and what their trades reach in turn,
/// under the symbol's book lock, within `limits`; returns how many triggered.
pub(crate) async fn continue_stops<T: ConnectionTrait>(
    txn: &T,
    symbol: &str,
    limits: &PlacementLimits,
) -> Result<usize> {
    let symbol = store::load_symbol(txn, symbol).await?;
    let now = store::lock_book_and_read_clock(txn, &symbol.symbol).await?;
    let last_price = store::last_trade_price(txn, &symbol.symbol).await?;
    let mut engine = Engine::new(txn, &symbol, now, last_price, limits);
    Ok(engine.trigger_stops().await?.len())
}

/// Half-up to the 8 places the schema stores.
pub(crate) fn round8(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(validate::SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// The order being matched: a new one, or a stop order just triggered.
struct Taker {
    order_id: Uuid,
    created_at: DateTime<FixedOffset>,
    user_id: Uuid,
    institution_id: Option<Uuid>,
    side: Side,
    order_type: OrderType,
    time_in_force: TimeInForce,
    limit: Option<Decimal>,
    quantity: Decimal,
    filled: Decimal,
    notional: Decimal,
}

impl Taker {
    fn remaining(&self) -> Decimal {
        self.quantity - self.filled
    }

    fn average_price(&self) -> Option<Decimal> {
        (!self.filled.is_zero()).then(|| round8(self.notional / self.filled))
    }

    /// The status matching leaves it in; `cut_short` when matching stopped
    /// before the book ran out (self-trade prevention, the fill bound).
    fn status(&self, cut_short: bool) -> OrderStatus {
        if self.remaining().is_zero() {
            OrderStatus::Filled
        } else if cut_short
            || self.order_type == OrderType::Market
            || matches!(self.time_in_force, TimeInForce::Ioc | TimeInForce::Fok)
        {
            OrderStatus::Expired
        } else if self.filled.is_zero() {
            OrderStatus::Open
        } else {
            OrderStatus::PartiallyFilled
        }
    }
}

/// A taker's match, decided but not yet stored.
struct Matched {
    taker: Taker,
    status: OrderStatus,
    trades: Vec<trades::Model>,
    makers: Vec<MakerUpdate>,
}

/// The fills matching would make, before anything is written.
struct Plan {
    fills: Vec<(Resting, Decimal)>,
    /// Matching stopped at an order it may not trade with (the taker's own)
    /// or at `max_fills`, with more of the book in reach: the rest expires,
    /// since resting it would cross the book.
    cut_short: bool,
}

/// What the engine decided to write and has not sent yet: the orders a
/// batch places (each in its latest state: a later order of the batch may
/// fill one), the trades, and the stored orders they filled (each once, in
/// its latest state). [`Engine::flush`] sends them in one statement.
///
/// An order's events are written when it is sent, so an order placed and
/// filled within one batch has one event with its final state, and a maker
/// filled by several orders of a batch one event with its last; every trade
/// has its own, and the book's change is one event for the batch.
#[derive(Default)]
struct Unsent {
    orders: Vec<orders::Model>,
    /// Positions in `orders`, by order id.
    order_at: HashMap<Uuid, usize>,
    trades: Vec<trades::Model>,
    makers: Vec<MakerUpdate>,
    /// Positions in `makers`, by order id.
    maker_at: HashMap<Uuid, usize>,
    /// Per user, how the unsent writes change their resting orders' count.
    resting: HashMap<Uuid, i64>,
}

impl Unsent {
    /// The batch's own orders resting on `side` within `limit` (for a taker
    /// of the other side), in priority order.
    fn resting(&self, side: Side, limit: Option<Decimal>) -> VecDeque<Resting> {
        let mut own: Vec<Resting> = self
            .orders
            .iter()
            .filter(|o| o.side == side && rests(o))
            .filter_map(|o| {
                let price = o.price?;
                reachable(side, price, limit).then_some(Resting {
                    order_id: o.order_id,
                    created_at: o.created_at,
                    user_id: o.user_id,
                    institution_id: o.institution_id,
                    price,
                    quantity: o.quantity,
                    filled_quantity: o.filled_quantity,
                    average_price: o.average_price,
                })
            })
            .collect();
        own.sort_by(|a, b| priority(side, a, b));
        own.into()
    }

    /// A stored resting order as the unsent writes leave it: `None` when
    /// they filled it.
    fn current(&self, mut maker: Resting) -> Option<Resting> {
        if let Some(&at) = self.maker_at.get(&maker.order_id) {
            let update = &self.makers[at];
            if update.status == OrderStatus::Filled {
                return None;
            }
            maker.filled_quantity = update.filled_quantity;
            maker.average_price = Some(update.average_price);
        }
        Some(maker)
    }

    /// Records a maker's fill: on the batch's own order, or as the stored
    /// order's update.
    fn fill(
        &mut self,
        update: MakerUpdate,
        at: DateTime<FixedOffset>,
        filled_at: DateTime<FixedOffset>,
    ) {
        if update.status == OrderStatus::Filled {
            *self.resting.entry(update.user_id).or_default() -= 1;
        }
        if let Some(&i) = self.order_at.get(&update.order_id) {
            let row = &mut self.orders[i];
            row.filled_quantity = update.filled_quantity;
            row.average_price = Some(update.average_price);
            row.status = update.status;
            row.updated_at = at;
            if update.status == OrderStatus::Filled {
                row.filled_at = Some(filled_at);
            }
        } else if let Some(&i) = self.maker_at.get(&update.order_id) {
            self.makers[i] = update;
        } else {
            self.maker_at.insert(update.order_id, self.makers.len());
            self.makers.push(update);
        }
    }

    /// Records a new order.
    fn add(&mut self, row: orders::Model) {
        if rests(&row) {
            *self.resting.entry(row.user_id).or_default() += 1;
        }
        self.order_at.insert(row.order_id, self.orders.len());
        self.orders.push(row);
    }

    fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.trades.is_empty() && self.makers.is_empty()
    }
}

/// Whether `row` rests in the book (the walk's predicate, `sql::resting!`).
fn rests(row: &orders::Model) -> bool {
    row.order_type == OrderType::Limit
        && row.price.is_some()
        && matches!(row.status, OrderStatus::Open | OrderStatus::PartiallyFilled)
}

/// The order of resting orders on `side` of the book: the better price first
/// (lower ask, higher bid), then the older, then the lower id (the walk's
/// `ORDER BY`).
fn priority(side: Side, a: &Resting, b: &Resting) -> std::cmp::Ordering {
    let price = match side {
        Side::Sell => a.price.cmp(&b.price),
        Side::Buy => b.price.cmp(&a.price),
    };
    price.then_with(|| (a.created_at, a.order_id).cmp(&(b.created_at, b.order_id)))
}

/// Whether resting order `a` comes before `b` on `side` of the book.
fn ahead(side: Side, a: &Resting, b: &Resting) -> bool {
    priority(side, a, b).is_lt()
}

/// A row as PostgreSQL returns it once stored: decimals at the columns'
/// scale of 8, times in UTC to the microsecond.
fn as_stored(mut row: orders::Model) -> orders::Model {
    fn scale(d: &mut Decimal) {
        d.rescale(validate::SCALE);
    }
    fn micros(t: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        DateTime::<Utc>::from_timestamp_micros(t.timestamp_micros())
            .map_or(t, |utc| utc.fixed_offset())
    }
    scale(&mut row.quantity);
    scale(&mut row.filled_quantity);
    for d in [&mut row.price, &mut row.average_price, &mut row.stop_price]
        .into_iter()
        .flatten()
    {
        scale(d);
    }
    row.created_at = micros(row.created_at);
    row.updated_at = micros(row.updated_at);
    row.filled_at = row.filled_at.map(micros);
    row.cancelled_at = row.cancelled_at.map(micros);
    row.expires_at = row.expires_at.map(micros);
    row
}

struct Engine<'a, T> {
    txn: &'a T,
    symbol: &'a symbols::Model,
    now: DateTime<FixedOffset>,
    ticks: i64,
    last_price: Option<Decimal>,
    limits: &'a PlacementLimits,
    /// Stops this placement triggered, against `limits.max_triggered_stops`.
    stops_triggered: usize,
    /// Stops this placement left PENDING past that bound.
    deferred: Vec<Uuid>,
    /// Writes decided, not yet sent.
    unsent: Unsent,
    /// Per user, the resting count as stored when last read (a batch reads
    /// them once; sending writes makes them stale, so they are read again).
    stored_resting: HashMap<Uuid, i64>,
    /// Whether a stop order of the symbol may wait: `false` only when the
    /// batch read that none does and placed none since, so its trades need
    /// no look for stops to trigger.
    stops_waiting: bool,
    /// The stored book's best prices as the batch read them, while nothing
    /// was sent since: unsent fills only take stored orders away, so an
    /// order whose limit does not reach them needs no read of the stored
    /// book. `None` (a lone placement, or after a write) reads it.
    stored_top: Option<store::BookTop>,
    /// Per side (bids, asks), what this transaction read of the stored side
    /// since its last write: a later order of the batch walks it again
    /// without a round trip.
    walks: [Option<StoredWalk>; 2],
}

/// A side of the stored book as a transaction read (and locked) it, from
/// its best order on, since its last write. The rows stay exact while
/// nothing is written: adding resting orders takes the book lock this
/// transaction holds, and taking these away (a cancel, an expiry) waits for
/// their row locks; the batch's own unsent fills apply on top
/// ([`Unsent::current`]).
struct StoredWalk {
    /// The limit the rows were read within (`None`: none).
    limit: Option<Decimal>,
    /// The side's resting orders in priority order, as stored.
    rows: Vec<Resting>,
    /// No stored order within `limit` after `rows`.
    complete: bool,
}

impl StoredWalk {
    /// Whether every stored order a taker with `limit` could reach on
    /// `side` is within this walk's limit.
    fn covers(&self, side: Side, limit: Option<Decimal>) -> bool {
        match (self.limit, limit) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(own), Some(limit)) => reachable(side, limit, Some(own)),
        }
    }
}

/// The slot of `side` in [`Engine::walks`].
fn walk_slot(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

impl<'a, T: ConnectionTrait> Engine<'a, T> {
    fn new(
        txn: &'a T,
        symbol: &'a symbols::Model,
        now: DateTime<FixedOffset>,
        last_price: Option<Decimal>,
        limits: &'a PlacementLimits,
    ) -> Engine<'a, T> {
        Engine {
            txn,
            symbol,
            now,
            ticks: 0,
            last_price,
            limits,
            stops_triggered: 0,
            deferred: Vec::new(),
            unsent: Unsent::default(),
            stored_resting: HashMap::new(),
            stops_waiting: true,
            stored_top: None,
            walks: [None, None],
        }
    }

    /// The user's stored resting count (read when not known since the last
    /// write) and how the unsent writes change it.
    async fn resting_count(&mut self, user: Uuid) -> Result<(i64, i64)> {
        let stored = match self.stored_resting.get(&user) {
            Some(&stored) => stored,
            None => {
                let stored = limits::stored_count(self.txn, user, self.limits).await?;
                self.stored_resting.insert(user, stored);
                stored
            }
        };
        Ok((stored, self.unsent.resting.get(&user).copied().unwrap_or(0)))
    }

    /// [`limits::check_resting`] within the batch: the stored count and what
    /// the batch's unsent writes change of it.
    async fn check_resting(&mut self, order: &NewOrder) -> Result<()> {
        if !limits::could_rest(order) {
            return Ok(());
        }
        let user = order.user_id;
        let cap = limits::cap(self.limits);
        let (mut stored, mut change) = self.resting_count(user).await?;
        // A count read at the cap is "at least the cap": with the batch's
        // fills taking some away, only a count with them stored tells.
        if stored >= cap && change < 0 {
            self.flush().await?;
            (stored, change) = self.resting_count(user).await?;
        }
        if stored + change >= cap {
            return Err(limits::refuse_resting(user, self.limits));
        }
        Ok(())
    }

    /// Sends the unsent writes ([`store::write_batch`]); the stored resting
    /// counts read before are stale afterwards.
    ///
    /// Every write a batch sends at once (a stop order, a trigger) comes
    /// after a flush, so it also forgets the stored book's best prices here,
    /// with nothing to send: the stored book is about to hold more.
    async fn flush(&mut self) -> Result<()> {
        self.stored_top = None;
        if self.unsent.is_empty() {
            return Ok(());
        }
        let unsent = std::mem::take(&mut self.unsent);
        self.wrote();
        store::write_batch(self.txn, &unsent.makers, &unsent.trades, &unsent.orders).await
    }

    /// The stored resting counts, best prices and walks read before a write
    /// are stale.
    fn wrote(&mut self) {
        self.stored_resting.clear();
        self.stored_top = None;
        self.walks = [None, None];
    }

    /// The time the next [`tick`](Self::tick) returns.
    fn clock(&self) -> DateTime<FixedOffset> {
        self.now + Duration::microseconds(self.ticks)
    }

    /// Starts the next order of a batch: its own stop-trigger budget.
    fn next_order(&mut self) {
        self.stops_triggered = 0;
        self.deferred.clear();
    }

    /// A fresh timestamp: the clock read under the lock plus one microsecond per
    /// call, so trades of one placement keep their order.
    fn tick(&mut self) -> DateTime<FixedOffset> {
        let at = self.now + Duration::microseconds(self.ticks);
        self.ticks += 1;
        at
    }

    async fn place(&mut self, order: NewOrder) -> Result<Placement> {
        let created_at = self.tick();
        if matches!(order.order_type, OrderType::Stop | OrderType::StopLimit) {
            let stop = self.insert_stop(&order, created_at).await?;
            let mut triggered = self.trigger_stops().await?;
            // A stop the last price had already reached triggers at once.
            if let Some(at) = triggered
                .iter()
                .position(|e| e.order.order_id == stop.order_id)
            {
                let own = triggered.remove(at);
                return Ok(Placement {
                    order: own.order,
                    trades: own.trades,
                    triggered,
                });
            }
            let mut stop = stop;
            if self.deferred.contains(&stop.order_id) {
                stop.status = OrderStatus::Pending;
            }
            return Ok(Placement {
                order: stop,
                trades: Vec::new(),
                triggered,
            });
        }
        let taker = Taker {
            order_id: crate::ids::new_id(created_at),
            created_at,
            user_id: order.user_id,
            institution_id: None,
            side: order.side,
            order_type: order.order_type,
            time_in_force: order.time_in_force,
            limit: order.price,
            quantity: order.quantity,
            filled: Decimal::ZERO,
            notional: Decimal::ZERO,
        };
        let matched = self.execute(taker).await?;
        let trades = matched.trades.clone();
        let placed = self.defer_taker(&order, matched);
        let triggered = if trades.is_empty() {
            Vec::new()
        } else {
            self.trigger_stops().await?
        };
        Ok(Placement {
            order: placed,
            trades,
            triggered,
        })
    }

    /// Walks the book in priority order and decides the fills: the stored
    /// resting orders (as the unsent writes leave them) merged with the
    /// batch's own unsent resting orders. What it reads of the stored side
    /// it keeps for the batch's next walk of that side ([`StoredWalk`]).
    async fn plan(&mut self, taker: &Taker) -> Result<Plan> {
        let side = crate::opposite(taker.side);
        let slot = walk_slot(side);
        let mut walk = match self.walks[slot].take() {
            Some(walk) if walk.covers(side, taker.limit) => walk,
            _ => StoredWalk {
                limit: taker.limit,
                rows: Vec::new(),
                // No stored order within reach: nothing to read.
                complete: self.stored_top.is_some_and(|top| {
                    let best = match side {
                        Side::Buy => top.bid,
                        Side::Sell => top.ask,
                    };
                    best.is_none_or(|best| !reachable(side, best, taker.limit))
                }),
            },
        };
        let plan = self.walk(taker, side, &mut walk).await;
        self.walks[slot] = Some(walk);
        plan
    }

    /// [`plan`](Self::plan)'s walk of `side`, reading on where `walk` ends.
    async fn walk(&self, taker: &Taker, side: Side, walk: &mut StoredWalk) -> Result<Plan> {
        let mut own = self.unsent.resting(side, taker.limit);
        let mut next = 0;
        let mut fills = Vec::new();
        let mut remaining = taker.remaining();
        loop {
            if remaining.is_zero() {
                break;
            }
            if next == walk.rows.len() && !walk.complete {
                let after = walk.rows.last();
                let page_size = store::page_size(after.is_some());
                let page =
                    store::resting(self.txn, &self.symbol.symbol, side, walk.limit, after).await?;
                walk.complete = (page.len() as u64) < page_size;
                walk.rows.extend(page);
            }
            // The walk may have been read within a wider limit than this
            // taker's: past the taker's, the stored side is exhausted.
            let stored = walk
                .rows
                .get(next)
                .filter(|row| reachable(side, row.price, taker.limit));
            let stored_first = match (own.front(), stored) {
                (Some(mine), Some(stored)) => !ahead(side, mine, stored),
                (None, stored) => stored.is_some(),
                (Some(_), None) => false,
            };
            let maker = if stored_first {
                next += 1;
                stored.cloned()
            } else {
                own.pop_front()
            };
            // Both exhausted.
            let Some(maker) = maker else { break };
            let Some(maker) = self.unsent.current(maker) else {
                // Filled by an earlier order of the batch.
                continue;
            };
            if maker.user_id == taker.user_id || fills.len() >= self.limits.max_fills {
                return Ok(Plan {
                    fills,
                    cut_short: true,
                });
            }
            let quantity = remaining.min(maker.remaining());
            remaining -= quantity;
            fills.push((maker, quantity));
        }
        Ok(Plan {
            fills,
            cut_short: false,
        })
    }

    /// Matches `taker`: the trades and the makers' new state, for the caller
    /// to store with the taker's own row ([`store::write_match_and_taker`]) or
    /// its update ([`store::write_match`]).
    async fn execute(&mut self, mut taker: Taker) -> Result<Matched> {
        let mut plan = self.plan(&taker).await?;
        let filled: Decimal = plan.fills.iter().map(|(_, q)| *q).sum();
        if taker.time_in_force == TimeInForce::Fok && filled < taker.remaining() {
            // Fill or kill: all at once, or nothing at all.
            plan.fills.clear();
        }
        let mut trades = Vec::with_capacity(plan.fills.len());
        let mut makers = Vec::with_capacity(plan.fills.len());
        for (maker, quantity) in plan.fills {
            let notional = maker.price * quantity;
            trades.push(self.trade(&taker, &maker, quantity));
            let maker_filled = maker.filled_quantity + quantity;
            let previous = maker.average_price.unwrap_or(Decimal::ZERO) * maker.filled_quantity;
            makers.push(MakerUpdate {
                order_id: maker.order_id,
                created_at: maker.created_at,
                user_id: maker.user_id,
                filled_quantity: maker_filled,
                average_price: round8((previous + notional) / maker_filled),
                status: if maker_filled == maker.quantity {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                },
            });
            taker.filled += quantity;
            taker.notional += notional;
        }
        if let Some(last) = trades.last() {
            self.last_price = Some(last.price);
        }
        let status = taker.status(plan.cut_short);
        Ok(Matched {
            taker,
            status,
            trades,
            makers,
        })
    }

    /// One trade at the maker's price; fees rounded half-up to 8 places.
    fn trade(&mut self, taker: &Taker, maker: &Resting, quantity: Decimal) -> trades::Model {
        let notional = maker.price * quantity;
        let maker_fee = round8(notional * self.symbol.maker_fee);
        let taker_fee = round8(notional * self.symbol.taker_fee);
        let (buyer, seller) = match taker.side {
            Side::Buy => (
                (
                    taker.order_id,
                    taker.user_id,
                    taker.institution_id,
                    taker_fee,
                ),
                (
                    maker.order_id,
                    maker.user_id,
                    maker.institution_id,
                    maker_fee,
                ),
            ),
            Side::Sell => (
                (
                    maker.order_id,
                    maker.user_id,
                    maker.institution_id,
                    maker_fee,
                ),
                (
                    taker.order_id,
                    taker.user_id,
                    taker.institution_id,
                    taker_fee,
                ),
            ),
        };
        let executed_at = self.tick();
        trades::Model {
            trade_id: crate::ids::new_id(executed_at),
            symbol: self.symbol.symbol.clone(),
            buyer_order_id: buyer.0,
            seller_order_id: seller.0,
            buyer_user_id: buyer.1,
            seller_user_id: seller.1,
            buyer_institution_id: buyer.2,
            seller_institution_id: seller.2,
            price: maker.price,
            quantity,
            buyer_fee: buyer.3,
            seller_fee: seller.3,
            buyer_fee_asset: self.symbol.quote_asset.clone(),
            seller_fee_asset: self.symbol.quote_asset.clone(),
            is_buyer_maker: taker.side == Side::Sell,
            trade_source: Some("INTERNAL".to_owned()),
            execution_venue: None,
            executed_at,
            settled_at: None,
        }
    }

    fn new_row(&self, order: &NewOrder, created_at: DateTime<FixedOffset>) -> orders::Model {
        orders::Model {
            order_id: crate::ids::new_id(created_at),
            user_id: order.user_id,
            institution_id: None,
            symbol: self.symbol.symbol.clone(),
            side: order.side,
            order_type: order.order_type,
            status: OrderStatus::Open,
            quantity: order.quantity,
            filled_quantity: Decimal::ZERO,
            price: order.price,
            average_price: None,
            stop_price: order.stop_price,
            time_in_force: order.time_in_force,
            client_order_id: order.client_order_id.clone(),
            order_source: order.order_source.clone(),
            fee_profile_id: None,
            created_at,
            updated_at: created_at,
            filled_at: None,
            cancelled_at: None,
            expires_at: order.expires_at,
        }
    }

    /// A stop order waits OPEN; the watchlist trigger picks it up. Written at
    /// once, after what the batch has not sent yet.
    async fn insert_stop(
        &mut self,
        order: &NewOrder,
        created_at: DateTime<FixedOffset>,
    ) -> Result<orders::Model> {
        self.flush().await?;
        let row = self.new_row(order, created_at);
        let stored = row.into_active_model().reset_all().insert(self.txn).await?;
        self.wrote();
        self.stops_waiting = true;
        Ok(stored)
    }

    /// Records a new order that was matched, with its match, for
    /// [`flush`](Self::flush); returns the order as it will be stored.
    fn defer_taker(&mut self, order: &NewOrder, matched: Matched) -> orders::Model {
        let Matched {
            taker,
            status,
            trades,
            makers,
        } = matched;
        let mut row = self.new_row(order, taker.created_at);
        row.order_id = taker.order_id;
        row.status = status;
        row.filled_quantity = taker.filled;
        row.average_price = taker.average_price();
        // The filled_at trigger fires on updates only.
        row.filled_at = (status == OrderStatus::Filled).then_some(self.now);
        let row = as_stored(row);
        let at = trades.last().map_or(taker.created_at, |t| t.executed_at);
        for maker in makers {
            self.unsent.fill(maker, at, self.now);
        }
        self.unsent.trades.extend(trades);
        self.unsent.add(row.clone());
        row
    }

    /// Triggers the stop orders the last trade price has reached (first those
    /// an earlier placement left PENDING), matching each in turn, until no more
    /// are reached or `max_triggered_stops` have triggered.
    async fn trigger_stops(&mut self) -> Result<Vec<Execution>> {
        let mut executions = Vec::new();
        if !self.stops_waiting {
            return Ok(executions);
        }
        let model: &'a symbols::Model = self.symbol;
        let symbol = model.symbol.as_str();
        while let Some(last) = self.last_price {
            let budget = self
                .limits
                .max_triggered_stops
                .saturating_sub(self.stops_triggered);
            if budget == 0 {
                // Past the bound: what the price reached waits, PENDING, for
                // the next placement that trades or the maintenance job.
                self.flush().await?;
                let deferred = store::defer_reached_stops(self.txn, symbol, last).await?;
                self.wrote();
                self.deferred.extend(deferred);
                break;
            }
            // The unsent writes hold no stop order: this reads what they
            // would leave.
            let stops = store::triggered_stops(self.txn, symbol, last).await?;
            if stops.is_empty() {
                break;
            }
            // Triggering writes at once, after the unsent writes.
            self.flush().await?;
            if stops.len() as u64 == store::STOP_BATCH || stops.len() > budget {
                // More may be reached than this batch triggers: pin them all
                // PENDING now, or a later price moving away would strand them.
                self.deferred
                    .extend(store::defer_reached_stops(self.txn, symbol, last).await?);
            }
            for stop in stops.into_iter().take(budget) {
                executions.push(self.trigger(stop).await?);
                self.stops_triggered += 1;
            }
            self.wrote();
        }
        Ok(executions)
    }

    /// A STOP_LIMIT becomes a LIMIT at its price, a STOP becomes a MARKET order;
    /// it leaves the watchlist and is matched as if just placed.
    async fn trigger(&mut self, stop: orders::Model) -> Result<Execution> {
        let order_type = match stop.order_type {
            OrderType::StopLimit => OrderType::Limit,
            _ => OrderType::Market,
        };
        stop_orders_watchlist::Entity::delete_by_id(stop.order_id)
            .exec(self.txn)
            .await?;
        let taker = Taker {
            order_id: stop.order_id,
            created_at: stop.created_at,
            user_id: stop.user_id,
            institution_id: stop.institution_id,
            side: stop.side,
            order_type,
            time_in_force: stop.time_in_force,
            limit: if order_type == OrderType::Limit {
                stop.price
            } else {
                None
            },
            quantity: stop.quantity,
            filled: stop.filled_quantity,
            notional: Decimal::ZERO,
        };
        let Matched {
            taker,
            status,
            trades,
            makers,
        } = self.execute(taker).await?;
        // Its match and its new state are written at once, not through the
        // unsent writes: what the walks read of the stored book goes stale.
        self.walks = [None, None];
        if !trades.is_empty() {
            store::write_match(self.txn, &makers, &trades).await?;
        }
        // Matched as if just placed: if it rests, it queues behind the orders
        // already resting at its price, so its time (the book's priority key,
        // and the partition key) becomes the trigger time.
        let triggered_at = self.tick();
        let order = store::rewrite_triggered(
            self.txn,
            &stop,
            triggered_at,
            order_type,
            status,
            taker.filled,
            taker.average_price(),
        )
        .await?;
        Ok(Execution { order, trades })
    }
}
