//! Model-based test of matching: random sequences of placements and cancels go
//! through `service::orders::{place, cancel}` on a real database and through a
//! small reference matcher written here from the rules of service.md; the same
//! trades and the same orders must come out.
//!
//! The reference knows price-time priority, the maker's price, fees (price ×
//! quantity × maker/taker fee, half-up to 8 places), the volume-weighted average
//! price as the engine keeps it (a taker's is round8(Σ price×qty / filled), a
//! maker's new one round8((old average × old filled + price × qty) / new
//! filled)), statuses, self-trade prevention (expire-taker), IOC and MARKET rests
//! that expire, FOK all-or-nothing, GTC and DAY rests, and who may cancel what.
//!
//! Stop orders are left out of the model on purpose: their triggers depend on
//! the last trade price and cascade, and `service_matching.rs` tests them with
//! exact expectations.
//!
//! One migrated database serves the whole run; each case starts from empty
//! `orders`, `trades` and `stop_orders_watchlist`. Validation is relaxed (a huge
//! price band, a tiny minimum value) so that it never gets in the model's way.
//! A failing case is shrunk by proptest; the message shows the operations with
//! their resolved cancel targets and the first difference.

use std::collections::HashMap;
use std::fmt;

use entity::{orders, trades};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use rust_decimal::RoundingStrategy;
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use service::orders::{self as svc, NewOrder, Placement};
use service::{OrderStatus, OrderType, ServiceError, Side, TimeInForce};
use tests::db::TestDb;
use tests::sql::{exec, scalar};

const BTC: &str = "BTC/USDT";

/// Nine ticks around 100, so that buys and sells cross often.
const PRICES: [&str; 9] = [
    "99.96", "99.97", "99.98", "99.99", "100", "100.01", "100.02", "100.03", "100.04",
];

/// Quantities with up to 8 decimals, so fees and averages need rounding.
const QUANTITIES: [&str; 9] = [
    "0.0001",
    "0.12345678",
    "0.25",
    "0.5",
    "0.7",
    "1",
    "1.33333333",
    "2",
    "3.5",
];

const USERS: u8 = 4;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn user_id(user: u8) -> Uuid {
    Uuid::from_u128(u128::from(user))
}

/// Half-up to 8 places, as the schema stores amounts.
fn round8(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero)
}

/// One step of a scenario. Prices and quantities are indexes into the grids.
#[derive(Clone)]
enum Op {
    Place {
        user: u8,
        side: Side,
        /// `None` for a MARKET order.
        price: Option<usize>,
        tif: TimeInForce,
        quantity: usize,
    },
    /// Cancel the `target % n`-th of the `n` orders placed so far (an unknown
    /// id when there are none yet), as `user`, or as its owner when `None`.
    Cancel { user: Option<u8>, target: usize },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Place {
                user,
                side,
                price,
                tif,
                quantity,
            } => {
                let kind = match price {
                    Some(p) => format!("LIMIT@{}", PRICES[*p]),
                    None => "MARKET".to_owned(),
                };
                write!(
                    f,
                    "u{user} {side:?} {kind} {tif:?} {}",
                    QUANTITIES[*quantity]
                )
            }
            Op::Cancel {
                user: Some(user),
                target,
            } => write!(f, "u{user} cancel {target}"),
            Op::Cancel { user: None, target } => write!(f, "owner cancel {target}"),
        }
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let user = 1..=USERS;
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let price = prop_oneof![
        4 => (0..PRICES.len()).prop_map(Some),
        1 => Just(None),
    ];
    // GTC and DAY more often than IOC and FOK, so the book has depth.
    let tif = prop_oneof![
        3 => Just(TimeInForce::Gtc),
        1 => Just(TimeInForce::Ioc),
        1 => Just(TimeInForce::Fok),
        2 => Just(TimeInForce::Day),
    ];
    let place = (user.clone(), side, price, tif, 0..QUANTITIES.len()).prop_map(
        |(user, side, price, tif, quantity)| Op::Place {
            user,
            side,
            price,
            tif,
            quantity,
        },
    );
    let canceller = prop_oneof![3 => Just(None), 1 => user.prop_map(Some)];
    let cancel = (canceller, 0..64usize).prop_map(|(user, target)| Op::Cancel { user, target });
    prop_oneof![3 => place, 1 => cancel]
}

/// An order as the reference keeps it.
#[derive(Clone, Debug)]
struct RefOrder {
    user: u8,
    side: Side,
    limit: Option<Decimal>,
    tif: TimeInForce,
    quantity: Decimal,
    filled: Decimal,
    average: Option<Decimal>,
    status: OrderStatus,
}

impl RefOrder {
    fn remaining(&self) -> Decimal {
        self.quantity - self.filled
    }

    fn rests(&self) -> bool {
        self.limit.is_some()
            && matches!(
                self.status,
                OrderStatus::Open | OrderStatus::PartiallyFilled
            )
    }
}

/// A trade as both sides are compared: orders by their index in the scenario.
#[derive(Clone, Debug, PartialEq)]
struct Fill {
    buyer: usize,
    seller: usize,
    price: Decimal,
    quantity: Decimal,
    buyer_fee: Decimal,
    seller_fee: Decimal,
    buyer_maker: bool,
}

impl fmt::Display for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buyer #{} seller #{} {}x{} fees {}/{} {}",
            self.buyer,
            self.seller,
            self.price.normalize(),
            self.quantity.normalize(),
            self.buyer_fee.normalize(),
            self.seller_fee.normalize(),
            if self.buyer_maker {
                "buyer-maker"
            } else {
                "seller-maker"
            }
        )
    }
}

/// What a cancel answers, on both sides.
#[derive(Clone, Debug, PartialEq)]
enum CancelOutcome {
    Cancelled,
    NotFound,
    Forbidden,
    Terminal(OrderStatus),
}

/// The reference matcher: service.md's rules on a vector of orders.
struct Reference {
    maker_fee: Decimal,
    taker_fee: Decimal,
    orders: Vec<RefOrder>,
    fills: Vec<Fill>,
}

impl Reference {
    fn new(maker_fee: Decimal, taker_fee: Decimal) -> Reference {
        Reference {
            maker_fee,
            taker_fee,
            orders: Vec::new(),
            fills: Vec::new(),
        }
    }

    /// Places `order` and returns its index and its trades.
    fn place(&mut self, mut order: RefOrder) -> (usize, Vec<Fill>) {
        let taker = self.orders.len();
        // The book: resting LIMIT orders of the other side, best price first,
        // oldest (lowest index) first within a price.
        let mut book: Vec<usize> = (0..self.orders.len())
            .filter(|&i| self.orders[i].side != order.side && self.orders[i].rests())
            .collect();
        book.sort_by(|&a, &b| {
            let (pa, pb) = (self.orders[a].limit, self.orders[b].limit);
            let by_price = match order.side {
                Side::Buy => pa.cmp(&pb),
                Side::Sell => pb.cmp(&pa),
            };
            by_price.then(a.cmp(&b))
        });
        let mut plan = Vec::new();
        let mut remaining = order.quantity;
        let mut self_trade = false;
        for maker in book {
            if remaining.is_zero() {
                break;
            }
            let resting = &self.orders[maker];
            let price = resting.limit.unwrap_or_default();
            let acceptable = match (order.side, order.limit) {
                (_, None) => true,
                (Side::Buy, Some(limit)) => price <= limit,
                (Side::Sell, Some(limit)) => price >= limit,
            };
            if !acceptable {
                break;
            }
            if resting.user == order.user {
                self_trade = true;
                break;
            }
            let quantity = remaining.min(resting.remaining());
            remaining -= quantity;
            plan.push((maker, quantity));
        }
        if order.tif == TimeInForce::Fok && !remaining.is_zero() {
            plan.clear();
        }
        let mut fills = Vec::new();
        let mut notional = Decimal::ZERO;
        for (maker, quantity) in plan {
            let resting = &mut self.orders[maker];
            let price = resting.limit.unwrap_or_default();
            let value = price * quantity;
            let previous = resting.average.unwrap_or_default() * resting.filled;
            resting.filled += quantity;
            resting.average = Some(round8((previous + value) / resting.filled));
            resting.status = if resting.remaining().is_zero() {
                OrderStatus::Filled
            } else {
                OrderStatus::PartiallyFilled
            };
            order.filled += quantity;
            notional += value;
            let (maker_fee, taker_fee) = (
                round8(value * self.maker_fee),
                round8(value * self.taker_fee),
            );
            fills.push(match order.side {
                Side::Buy => Fill {
                    buyer: taker,
                    seller: maker,
                    price,
                    quantity,
                    buyer_fee: taker_fee,
                    seller_fee: maker_fee,
                    buyer_maker: false,
                },
                Side::Sell => Fill {
                    buyer: maker,
                    seller: taker,
                    price,
                    quantity,
                    buyer_fee: maker_fee,
                    seller_fee: taker_fee,
                    buyer_maker: true,
                },
            });
        }
        order.average = (!order.filled.is_zero()).then(|| round8(notional / order.filled));
        order.status = if order.remaining().is_zero() {
            OrderStatus::Filled
        } else if self_trade
            || order.limit.is_none()
            || matches!(order.tif, TimeInForce::Ioc | TimeInForce::Fok)
        {
            OrderStatus::Expired
        } else if order.filled.is_zero() {
            OrderStatus::Open
        } else {
            OrderStatus::PartiallyFilled
        };
        self.orders.push(order);
        self.fills.extend(fills.iter().cloned());
        (taker, fills)
    }

    fn cancel(&mut self, user: u8, target: Option<usize>) -> CancelOutcome {
        let Some(order) = target.and_then(|i| self.orders.get_mut(i)) else {
            return CancelOutcome::NotFound;
        };
        if order.user != user {
            CancelOutcome::Forbidden
        } else if service::is_terminal(order.status) {
            CancelOutcome::Terminal(order.status)
        } else {
            order.status = OrderStatus::Cancelled;
            CancelOutcome::Cancelled
        }
    }
}

/// A scenario: 20 to 40 slots, each an operation. A slot shrinks to `None`
/// (skipped), so a failing scenario shrinks below 20 operations.
#[derive(Clone)]
struct Scenario(Vec<Option<Op>>);

impl Scenario {
    fn ops(&self) -> Vec<Op> {
        self.0.iter().flatten().cloned().collect()
    }
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().flatten()).finish()
    }
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    prop::collection::vec(prop::option::weighted(0.99, op_strategy()), 20..=40).prop_map(Scenario)
}

/// The scenario with every cancel's target resolved, for failure messages.
fn script(ops: &[Op]) -> String {
    let mut placed = 0usize;
    let mut lines = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let line = match op {
            Op::Place { .. } => {
                placed += 1;
                format!("{step:>2}: {op:?} -> order #{}", placed - 1)
            }
            Op::Cancel { user, target } => {
                let who = user.map_or("the owner".to_owned(), |u| format!("u{u}"));
                match target_of(*target, placed) {
                    Some(order) => format!("{step:>2}: {who} cancels order #{order}"),
                    None => format!("{step:>2}: {who} cancels an unknown order"),
                }
            }
        };
        lines.push(line);
    }
    lines.join("\n")
}

fn target_of(target: usize, placed: usize) -> Option<usize> {
    (placed > 0).then(|| target % placed)
}

/// A trade of the database as a [`Fill`], orders by their scenario index.
fn fill_of(trade: &trades::Model, index: &HashMap<Uuid, usize>) -> Result<Fill, String> {
    let of = |id: Uuid| {
        index
            .get(&id)
            .copied()
            .ok_or_else(|| format!("trade {} names unknown order {id}", trade.trade_id))
    };
    Ok(Fill {
        buyer: of(trade.buyer_order_id)?,
        seller: of(trade.seller_order_id)?,
        price: trade.price,
        quantity: trade.quantity,
        buyer_fee: trade.buyer_fee,
        seller_fee: trade.seller_fee,
        buyer_maker: trade.is_buyer_maker,
    })
}

fn compare_fills(what: &str, actual: &[Fill], expected: &[Fill]) -> Result<(), String> {
    let first = (0..actual.len().max(expected.len()))
        .find(|&i| actual.get(i) != expected.get(i))
        .map(|i| (i, actual.get(i), expected.get(i)));
    match first {
        None => Ok(()),
        Some((i, got, want)) => {
            let show = |f: Option<&Fill>| f.map_or("nothing".to_owned(), Fill::to_string);
            Err(format!(
                "{what}: trade {i} differs: service {}, reference {} ({} vs {} trades)",
                show(got),
                show(want),
                actual.len(),
                expected.len()
            ))
        }
    }
}

/// The state of the order that the model predicts, as `status filled average`.
fn state(status: OrderStatus, filled: Decimal, average: Option<Decimal>) -> String {
    format!(
        "{status:?} filled {} average {}",
        filled.normalize(),
        average.map_or("none".to_owned(), |a| a.normalize().to_string())
    )
}

/// Every order in the database against the reference.
async fn compare_orders(
    db: &DatabaseConnection,
    reference: &Reference,
    ids: &[Uuid],
) -> Result<(), String> {
    let stored: HashMap<Uuid, orders::Model> = orders::Entity::find()
        .all(db)
        .await
        .map_err(|err| format!("reading orders: {err}"))?
        .into_iter()
        .map(|o| (o.order_id, o))
        .collect();
    if stored.len() != ids.len() {
        return Err(format!(
            "{} orders stored, {} placed",
            stored.len(),
            ids.len()
        ));
    }
    for (i, (id, expected)) in ids.iter().zip(&reference.orders).enumerate() {
        let Some(row) = stored.get(id) else {
            return Err(format!("order #{i} ({id}) is not stored"));
        };
        let (got, want) = (
            state(row.status, row.filled_quantity, row.average_price),
            state(expected.status, expected.filled, expected.average),
        );
        if got != want {
            return Err(format!("order #{i}: service {got}, reference {want}"));
        }
    }
    Ok(())
}

/// Runs one scenario on both sides; the first difference is the error.
async fn run_case(
    db: &DatabaseConnection,
    fees: (Decimal, Decimal),
    ops: &[Op],
) -> Result<(), String> {
    // DELETE, not TRUNCATE: with a few dozen rows it takes milliseconds, where
    // TRUNCATE of the partitioned tables (hundreds of partitions and indexes)
    // takes about 170 ms, which is most of a case.
    exec(
        db,
        "DELETE FROM stop_orders_watchlist; DELETE FROM trades; DELETE FROM orders;",
    )
    .await;
    let mut reference = Reference::new(fees.0, fees.1);
    let mut ids: Vec<Uuid> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (step, op) in ops.iter().enumerate() {
        let at = |what: String| format!("step {step} ({op:?}): {what}");
        match *op {
            Op::Place {
                user,
                side,
                price,
                tif,
                quantity,
            } => {
                let quantity = dec(QUANTITIES[quantity]);
                let limit = price.map(|p| dec(PRICES[p]));
                let order = match limit {
                    Some(limit) => NewOrder::limit(user_id(user), BTC, side, quantity, limit),
                    None => NewOrder::market(user_id(user), BTC, side, quantity),
                }
                .with_time_in_force(tif);
                let placed: Placement = svc::place(db, order)
                    .await
                    .map_err(|err| at(format!("the service refused the order: {err}")))?;
                let (taker, expected) = reference.place(RefOrder {
                    user,
                    side,
                    limit,
                    tif,
                    quantity,
                    filled: Decimal::ZERO,
                    average: None,
                    status: OrderStatus::Open,
                });
                ids.push(placed.order.order_id);
                index.insert(placed.order.order_id, taker);
                if !placed.triggered.is_empty() {
                    return Err(at("a placement without stop orders triggered some".into()));
                }
                let actual = placed
                    .trades
                    .iter()
                    .map(|t| fill_of(t, &index))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(at)?;
                compare_fills("the placement's trades", &actual, &expected).map_err(at)?;
                let want = &reference.orders[taker];
                let (got, want) = (
                    state(
                        placed.order.status,
                        placed.order.filled_quantity,
                        placed.order.average_price,
                    ),
                    state(want.status, want.filled, want.average),
                );
                if got != want {
                    return Err(at(format!(
                        "the placed order #{taker}: service {got}, reference {want}"
                    )));
                }
                let expected_type = if limit.is_some() {
                    OrderType::Limit
                } else {
                    OrderType::Market
                };
                if placed.order.order_type != expected_type {
                    return Err(at(format!(
                        "the placed order is a {:?}",
                        placed.order.order_type
                    )));
                }
            }
            Op::Cancel { user, target } => {
                let target = target_of(target, ids.len());
                let id = target.map_or(Uuid::from_u128(u128::MAX), |i| ids[i]);
                let user = user
                    .or_else(|| target.map(|i| reference.orders[i].user))
                    .unwrap_or(1);
                let actual = match svc::cancel(db, user_id(user), id).await {
                    Ok(row) if row.status == OrderStatus::Cancelled => CancelOutcome::Cancelled,
                    Ok(row) => {
                        return Err(at(format!("cancel answered Ok with {:?}", row.status)));
                    }
                    Err(ServiceError::NotFound { .. }) => CancelOutcome::NotFound,
                    Err(ServiceError::Forbidden { .. }) => CancelOutcome::Forbidden,
                    Err(ServiceError::TerminalStatus { status, .. }) => {
                        CancelOutcome::Terminal(status)
                    }
                    Err(err) => return Err(at(format!("cancel failed: {err}"))),
                };
                let expected = reference.cancel(user, target);
                if actual != expected {
                    return Err(at(format!(
                        "cancel: service {actual:?}, reference {expected:?}"
                    )));
                }
            }
        }
        compare_orders(db, &reference, &ids).await.map_err(at)?;
        // The market state the triggers keep equals a recomputation after
        // every operation.
        let drift = tests::faults::market_state_drift(db).await;
        if !drift.is_empty() {
            return Err(at(format!("market state drifted: {drift:?}")));
        }
    }
    let stored = trades::Entity::find()
        .order_by_asc(trades::Column::ExecutedAt)
        .all(db)
        .await
        .map_err(|err| format!("reading trades: {err}"))?
        .iter()
        .map(|t| fill_of(t, &index))
        .collect::<Result<Vec<_>, _>>()?;
    compare_fills(
        "the stored trades, in execution order",
        &stored,
        &reference.fills,
    )
}

/// A migrated database where validation keeps out of the model's way, and
/// the symbol's (maker, taker) fees.
async fn model_database() -> (TestDb, (Decimal, Decimal)) {
    let db = TestDb::migrated().await;
    exec(
        db.conn(),
        "UPDATE symbols SET price_band_percentage = 999.99, min_order_value = 0.00000001
         WHERE symbol = 'BTC/USDT'",
    )
    .await;
    let maker: Decimal = scalar(
        db.conn(),
        "SELECT maker_fee FROM symbols WHERE symbol = 'BTC/USDT'",
    )
    .await;
    let taker: Decimal = scalar(
        db.conn(),
        "SELECT taker_fee FROM symbols WHERE symbol = 'BTC/USDT'",
    )
    .await;
    (db, (maker, taker))
}

#[test]
fn matching_agrees_with_the_reference_model() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => panic!("cannot start a runtime: {err}"),
    };
    // One database for the whole run, alive until the runner is done.
    let (db, fees) = runtime.block_on(model_database());
    // PROPTEST_CASES runs more (or fewer) cases, as with proptest's own macro.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        // Each case is a few dozen round trips to the database: bound the shrinking.
        max_shrink_iters: 400,
        max_shrink_time: 60_000,
        // A failing case is kept beside this file and replayed first next time.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..Config::default()
    });
    let outcome = runner.run(&scenario_strategy(), |scenario| {
        let ops = scenario.ops();
        runtime
            .block_on(run_case(db.conn(), fees, &ops))
            .map_err(|difference| {
                TestCaseError::fail(format!("{difference}\nscenario:\n{}", script(&ops)))
            })
    });
    // Dropped inside the runtime it was opened on.
    runtime.block_on(async move { drop(db) });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// More resting orders than the engine reads per round trip (32): a sweep
/// across batches that ends at the taker's own order agrees with the
/// reference too. Random scenarios rarely build a book that deep.
#[tokio::test]
async fn a_sweep_across_several_batches_agrees_with_the_reference() {
    let (db, fees) = model_database().await;
    let worst = PRICES.len() - 1;
    let place = |user: u8, side, price, tif, quantity| Op::Place {
        user,
        side,
        price,
        tif,
        quantity,
    };
    // 40 asks of 0.0001 by three users over every price, then u4's own ask,
    // last in priority.
    let mut ops: Vec<Op> = (0..40)
        .map(|i| {
            place(
                1 + (i % 3) as u8,
                Side::Sell,
                Some(i % PRICES.len()),
                TimeInForce::Gtc,
                0,
            )
        })
        .collect();
    ops.push(place(4, Side::Sell, Some(worst), TimeInForce::Gtc, 0));
    // u4 buys 0.12345678: all 40 asks, then its own ask stops it (EXPIRED).
    ops.push(place(4, Side::Buy, Some(worst), TimeInForce::Gtc, 1));
    // A MARKET FOK that the rest of the book (u4's ask alone) cannot fill, then
    // one it can.
    ops.push(place(1, Side::Buy, None, TimeInForce::Fok, 1));
    ops.push(place(1, Side::Buy, None, TimeInForce::Fok, 0));
    if let Err(difference) = run_case(db.conn(), fees, &ops).await {
        panic!("{difference}\nscenario:\n{}", script(&ops));
    }
    let widest: i64 = scalar(
        db.conn(),
        "SELECT max(n) FROM (SELECT count(*) AS n FROM trades GROUP BY buyer_order_id) per_buyer",
    )
    .await;
    assert_eq!(widest, 40, "one placement swept the 40 asks");
}
