//! Placement: validation, then price-time matching inside one transaction that
//! holds the symbol's book lock. The rules are in the [module docs](super).

use chrono::{DateTime, Duration, FixedOffset};
use entity::{orders, stop_orders_watchlist, symbols, trades};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, TransactionTrait};
use uuid::Uuid;

use super::limits::{self, PlacementLimits};
use super::store::{self, BATCH, MakerUpdate, Resting};
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
/// [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS) times in total.
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
    engine.place(order).await
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
/// that answer at once.
pub async fn place_many<C>(
    db: &C,
    orders: Vec<NewOrder>,
    limits: &PlacementLimits,
) -> Vec<Result<Placement>>
where
    C: ConnectionTrait + TransactionTrait,
{
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

/// One attempt of [`place_many`] in its transaction `txn`: the refusals and
/// placements of `orders` (index, order), or the error that fails them all.
async fn batch<T: ConnectionTrait>(
    txn: &T,
    orders: &[(usize, NewOrder)],
    limits: &PlacementLimits,
) -> Result<Vec<(usize, Result<Placement>)>> {
    let Some((_, first)) = orders.first() else {
        return Ok(Vec::new());
    };
    let symbol = store::load_symbol(txn, &first.symbol).await?;
    let mut refused: Vec<Option<ServiceError>> = orders
        .iter()
        .map(|(_, order)| validate::against_symbol(order, &symbol).err())
        .collect();
    // Client order ids are locked before the book, as a placement alone
    // locks its own, in one order, so batches and single placements never
    // wait for each other in a cycle.
    let mut client_ids: Vec<(Uuid, &str)> = orders
        .iter()
        .zip(&refused)
        .filter(|(_, refusal)| refusal.is_none())
        .filter_map(|((_, o), _)| o.client_order_id.as_deref().map(|c| (o.user_id, c)))
        .collect();
    client_ids.sort_unstable();
    client_ids.dedup();
    for (user_id, client_order_id) in client_ids {
        store::lock_client_order_id(txn, user_id, client_order_id).await?;
    }
    let now = store::lock_book_and_read_clock(txn, &symbol.symbol).await?;
    let last_price = store::last_trade_price(txn, &symbol.symbol).await?;
    let mut engine = Engine::new(txn, &symbol, now, last_price, limits);
    let mut placed = Vec::with_capacity(orders.len());
    for ((i, order), refusal) in orders.iter().zip(refused.iter_mut()) {
        if let Some(err) = refusal.take() {
            placed.push((*i, Err(err)));
            continue;
        }
        if let Some(client_order_id) = &order.client_order_id
            && let Some(existing) =
                store::order_with_client_id(txn, order.user_id, client_order_id).await?
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
        match limits::check_resting(txn, order, limits).await {
            Ok(()) => {}
            Err(err @ ServiceError::TooManyRestingOrders { .. }) => {
                placed.push((*i, Err(err)));
                continue;
            }
            Err(err) => return Err(err),
        }
        engine.next_order();
        placed.push((*i, Ok(engine.place(order.clone()).await?)));
    }
    Ok(placed)
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
        }
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
        let placed = self.insert_taker(&order, &matched).await?;
        let trades = matched.trades;
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

    /// Walks the book in priority order and decides the fills.
    async fn plan(&self, taker: &Taker) -> Result<Plan> {
        let mut fills = Vec::new();
        let mut remaining = taker.remaining();
        let mut after: Option<Resting> = None;
        loop {
            let batch = store::resting(
                self.txn,
                &self.symbol.symbol,
                crate::opposite(taker.side),
                taker.limit,
                after.as_ref(),
            )
            .await?;
            let exhausted = (batch.len() as u64) < BATCH;
            for maker in batch {
                if remaining.is_zero() {
                    break;
                }
                if maker.user_id == taker.user_id || fills.len() >= self.limits.max_fills {
                    return Ok(Plan {
                        fills,
                        cut_short: true,
                    });
                }
                let quantity = remaining.min(maker.remaining());
                remaining -= quantity;
                after = Some(maker.clone());
                fills.push((maker, quantity));
            }
            if remaining.is_zero() || exhausted {
                return Ok(Plan {
                    fills,
                    cut_short: false,
                });
            }
        }
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

    /// A stop order waits OPEN; the watchlist trigger picks it up.
    async fn insert_stop(
        &self,
        order: &NewOrder,
        created_at: DateTime<FixedOffset>,
    ) -> Result<orders::Model> {
        let row = self.new_row(order, created_at);
        Ok(row.into_active_model().reset_all().insert(self.txn).await?)
    }

    /// Stores a new order that was matched, with its match (one statement)
    /// when it traded.
    async fn insert_taker(&self, order: &NewOrder, matched: &Matched) -> Result<orders::Model> {
        let Matched {
            taker,
            status,
            trades,
            makers,
        } = matched;
        let mut row = self.new_row(order, taker.created_at);
        row.order_id = taker.order_id;
        row.status = *status;
        row.filled_quantity = taker.filled;
        row.average_price = taker.average_price();
        // The filled_at trigger fires on updates only.
        row.filled_at = (*status == OrderStatus::Filled).then_some(self.now);
        if trades.is_empty() {
            Ok(row.into_active_model().reset_all().insert(self.txn).await?)
        } else {
            store::write_match_and_taker(self.txn, makers, trades, row).await
        }
    }

    /// Triggers the stop orders the last trade price has reached (first those
    /// an earlier placement left PENDING), matching each in turn, until no more
    /// are reached or `max_triggered_stops` have triggered.
    async fn trigger_stops(&mut self) -> Result<Vec<Execution>> {
        let mut executions = Vec::new();
        while let Some(last) = self.last_price {
            let symbol = &self.symbol.symbol;
            let budget = self
                .limits
                .max_triggered_stops
                .saturating_sub(self.stops_triggered);
            if budget == 0 {
                // Past the bound: what the price reached waits, PENDING, for
                // the next placement that trades or the maintenance job.
                self.deferred
                    .extend(store::defer_reached_stops(self.txn, symbol, last).await?);
                break;
            }
            let stops = store::triggered_stops(self.txn, symbol, last).await?;
            if stops.is_empty() {
                break;
            }
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
