//! Model-based test of matching: random sequences of placements and cancels go
//! through `service::orders::{place, cancel}` on a real database and through a
//! small reference matcher written here from the service's matching rules; the same
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
//! the last trade price and cascade, and `service/matching.rs` tests them with
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
use tests::dec;
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

/// The reference matcher: the matching rules on a vector of orders.
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

/// A one-thread runtime for a proptest run against the database, and the
/// runner: `PROPTEST_CASES` cases (`default_cases` unset), bounded shrinking
/// (each case is dozens of round trips), failures kept beside this file and
/// replayed first next time.
fn database_runner(default_cases: u32) -> (tokio::runtime::Runtime, TestRunner, u32) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => panic!("cannot start a runtime: {err}"),
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default_cases);
    let runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 400,
        max_shrink_time: 60_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..Config::default()
    });
    (runtime, runner, cases)
}

#[test]
fn matching_agrees_with_the_reference_model() {
    let (runtime, mut runner, _) = database_runner(64);
    // One database for the whole run, alive until the runner is done.
    let (db, fees) = runtime.block_on(model_database());
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

// ------------------------------------------------- batches equal one by one

/// What a placement of the batch scenarios is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Limit(usize),
    Market,
    /// A STOP at the price index.
    Stop(usize),
    /// A STOP_LIMIT: limit index, stop index.
    StopLimit(usize, usize),
}

/// One step of a batch scenario; `split` ends the batch after a placement.
#[derive(Clone, Debug)]
enum Step {
    Place {
        user: u8,
        side: Side,
        kind: Kind,
        tif: TimeInForce,
        quantity: usize,
        /// A client order id out of three per user, so some collide.
        client: Option<u8>,
        split: bool,
    },
    Cancel {
        user: Option<u8>,
        target: usize,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let price = 0..PRICES.len();
    let kind = prop_oneof![
        6 => price.clone().prop_map(Kind::Limit),
        2 => Just(Kind::Market),
        1 => price.clone().prop_map(Kind::Stop),
        1 => (price.clone(), price).prop_map(|(p, s)| Kind::StopLimit(p, s)),
    ];
    let tif = prop_oneof![
        3 => Just(TimeInForce::Gtc),
        1 => Just(TimeInForce::Ioc),
        1 => Just(TimeInForce::Fok),
        2 => Just(TimeInForce::Day),
    ];
    let client = prop_oneof![3 => Just(None), 1 => (0u8..3).prop_map(Some)];
    let place = (
        1..=USERS,
        prop_oneof![Just(Side::Buy), Just(Side::Sell)],
        kind,
        tif,
        0..QUANTITIES.len(),
        client,
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(user, side, kind, tif, quantity, client, split)| Step::Place {
                user,
                side,
                kind,
                tif,
                quantity,
                client,
                split,
            },
        );
    let canceller = prop_oneof![3 => Just(None), 1 => (1..=USERS).prop_map(Some)];
    let cancel = (canceller, 0..64usize).prop_map(|(user, target)| Step::Cancel { user, target });
    prop_oneof![8 => place, 1 => cancel]
}

fn new_order(step: &Step) -> Option<NewOrder> {
    let Step::Place {
        user,
        side,
        kind,
        tif,
        quantity,
        client,
        ..
    } = *step
    else {
        return None;
    };
    let (user_id, quantity) = (user_id(user), dec(QUANTITIES[quantity]));
    let order = match kind {
        Kind::Limit(p) => NewOrder::limit(user_id, BTC, side, quantity, dec(PRICES[p])),
        Kind::Market => NewOrder::market(user_id, BTC, side, quantity),
        Kind::Stop(s) => NewOrder::stop(user_id, BTC, side, quantity, dec(PRICES[s])),
        Kind::StopLimit(p, s) => {
            NewOrder::stop_limit(user_id, BTC, side, quantity, dec(PRICES[p]), dec(PRICES[s]))
        }
    }
    .with_time_in_force(tif);
    Some(match client {
        Some(c) => order.with_client_order_id(format!("c{c}")),
        None => order,
    })
}

/// A refusal by kind (its message may name ids that differ between runs).
fn refusal(err: &ServiceError) -> String {
    match err {
        ServiceError::DuplicateClientOrderId {
            client_order_id, ..
        } => format!("duplicate client order id {client_order_id}"),
        ServiceError::InvalidOrder { field, .. } => format!("invalid order: {field}"),
        ServiceError::TerminalStatus { status, .. } => format!("terminal: {status:?}"),
        ServiceError::NotFound { entity, .. } => format!("{entity} not found"),
        ServiceError::Forbidden { entity, .. } => format!("{entity} of another user"),
        other => other.to_string(),
    }
}

/// Everything a run leaves, with orders named by their placement's step.
#[derive(Debug, PartialEq)]
struct Outcome {
    answers: Vec<String>,
    orders: Vec<String>,
    trades: Vec<String>,
}

/// The first difference between two runs' answers, orders or trades.
fn outcome_difference(one: &Outcome, other: &Outcome) -> Option<String> {
    [
        ("answers", &one.answers, &other.answers),
        ("orders", &one.orders, &other.orders),
        ("trades", &one.trades, &other.trades),
    ]
    .into_iter()
    .find_map(|(what, a, b)| {
        first_difference(a, b).map(|difference| format!("{what} differ:\n{difference}"))
    })
}

/// Runs `steps` one by one (`batched` false) or through `place_many` in the
/// batches the steps' `split` flags and the cancels delimit.
async fn run_steps(
    db: &DatabaseConnection,
    steps: &[Step],
    batched: bool,
) -> Result<Outcome, String> {
    exec(
        db,
        "DELETE FROM stop_orders_watchlist; DELETE FROM trades; DELETE FROM orders;",
    )
    .await;
    let limits = svc::PlacementLimits::default();
    // Per step: the placement's result, or a cancel's answer.
    let mut answers: Vec<Option<Result<Placement, String>>> = vec![None; steps.len()];
    let mut cancel_answers: HashMap<usize, String> = HashMap::new();
    let mut placed: Vec<(usize, Uuid, u8)> = Vec::new();
    let mut pending: Vec<(usize, NewOrder)> = Vec::new();
    async fn flush(
        db: &DatabaseConnection,
        limits: &svc::PlacementLimits,
        batched: bool,
        pending: &mut Vec<(usize, NewOrder)>,
        answers: &mut [Option<Result<Placement, String>>],
    ) {
        let batch: Vec<(usize, NewOrder)> = std::mem::take(pending);
        if batched {
            let (at, orders): (Vec<usize>, Vec<NewOrder>) = batch.into_iter().unzip();
            let results = svc::place_many(db, orders, limits).await;
            for (i, result) in at.into_iter().zip(results) {
                answers[i] = Some(result.map_err(|e| refusal(&e)));
            }
        } else {
            for (i, order) in batch {
                answers[i] = Some(
                    svc::place_with(db, order, limits)
                        .await
                        .map_err(|e| refusal(&e)),
                );
            }
        }
    }
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Place { split, .. } => {
                let order = new_order(step).ok_or("a placement step")?;
                pending.push((i, order));
                if *split || !batched {
                    flush(db, &limits, batched, &mut pending, &mut answers).await;
                }
            }
            Step::Cancel { user, target } => {
                flush(db, &limits, batched, &mut pending, &mut answers).await;
                placed.clear();
                for (j, answer) in answers.iter().enumerate() {
                    if let (Some(Ok(p)), Step::Place { user, .. }) = (answer, &steps[j]) {
                        placed.push((j, p.order.order_id, *user));
                    }
                }
                let target = target_of(*target, placed.len()).map(|t| placed[t]);
                let id = target.map_or(Uuid::from_u128(u128::MAX), |t| t.1);
                let who = user.or(target.map(|t| t.2)).unwrap_or(1);
                let answer = match svc::cancel(db, user_id(who), id).await {
                    Ok(row) => format!("cancelled: {:?}", row.status),
                    Err(err) => refusal(&err),
                };
                cancel_answers.insert(i, answer);
            }
        }
    }
    flush(db, &limits, batched, &mut pending, &mut answers).await;

    // Every order id named by the step that placed it.
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (i, answer) in answers.iter().enumerate() {
        if let Some(Ok(p)) = answer {
            index.insert(p.order.order_id, i);
        }
    }
    let name = |id: Uuid| {
        index
            .get(&id)
            .map_or(format!("unknown {id}"), |i| format!("#{i}"))
    };
    let shown = answers
        .iter()
        .enumerate()
        .map(|(i, answer)| match answer {
            Some(Ok(p)) => format!(
                "#{i} {:?} {:?} filled {} avg {:?}, {} trades, triggered [{}]",
                p.order.order_type,
                p.order.status,
                p.order.filled_quantity.normalize(),
                p.order.average_price.map(|d| d.normalize()),
                p.trades.len(),
                p.triggered
                    .iter()
                    .map(|t| format!(
                        "{} {:?} {}",
                        name(t.order.order_id),
                        t.order.status,
                        t.trades.len()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(Err(refused)) => format!("#{i} refused: {refused}"),
            None => cancel_answers
                .get(&i)
                .map_or(format!("#{i} no answer"), |a| format!("#{i} {a}")),
        })
        .collect();
    let mut orders: Vec<(usize, String)> = orders::Entity::find()
        .all(db)
        .await
        .map_err(|e| format!("reading orders: {e}"))?
        .into_iter()
        .map(|o| {
            let at = index.get(&o.order_id).copied().unwrap_or(usize::MAX);
            (
                at,
                format!(
                    "{} {:?} {:?} {:?} q {} filled {} avg {:?} price {:?} stop {:?} {:?} client {:?}",
                    name(o.order_id),
                    o.order_type,
                    o.side,
                    o.status,
                    o.quantity.normalize(),
                    o.filled_quantity.normalize(),
                    o.average_price.map(|d| d.normalize()),
                    o.price.map(|d| d.normalize()),
                    o.stop_price.map(|d| d.normalize()),
                    o.time_in_force,
                    o.client_order_id
                ),
            )
        })
        .collect();
    orders.sort();
    let trades = trades::Entity::find()
        .order_by_asc(trades::Column::ExecutedAt)
        .order_by_asc(trades::Column::TradeId)
        .all(db)
        .await
        .map_err(|e| format!("reading trades: {e}"))?
        .into_iter()
        .map(|t| {
            format!(
                "buyer {} seller {} {} × {} fees {} / {} buyer maker {}",
                name(t.buyer_order_id),
                name(t.seller_order_id),
                t.price.normalize(),
                t.quantity.normalize(),
                t.buyer_fee.normalize(),
                t.seller_fee.normalize(),
                t.is_buyer_maker
            )
        })
        .collect();
    let drift = tests::faults::market_state_drift(db).await;
    if !drift.is_empty() {
        return Err(format!("market state drifted: {drift:?}"));
    }
    Ok(Outcome {
        answers: shown,
        orders: orders.into_iter().map(|(_, o)| o).collect(),
        trades,
    })
}

fn first_difference(one: &[String], other: &[String]) -> Option<String> {
    (0..one.len().max(other.len()))
        .find(|&i| one.get(i) != other.get(i))
        .map(|i| {
            format!(
                "one by one: {:?}\nbatched:    {:?}",
                one.get(i),
                other.get(i)
            )
        })
}

/// Each generated scenario (limits, markets, stops and stop-limits, IOC, FOK,
/// DAY, client order ids that collide, also within a batch, and cancels) run
/// one order at a time and through `place_many` in random batches gives the
/// same answers, orders, trades and fees, ids and timestamps aside.
#[test]
fn placing_in_batches_equals_placing_one_by_one() {
    let (runtime, mut runner, cases) = database_runner(48);
    let (db, _) = runtime.block_on(model_database());
    let batches_seen = std::cell::Cell::new(0usize);
    let strategy = prop::collection::vec(step_strategy(), 20..=40);
    let outcome = runner.run(&strategy, |steps| {
        let batched_steps = steps
            .windows(2)
            .filter(|w| {
                matches!(w[0], Step::Place { split: false, .. })
                    && matches!(w[1], Step::Place { .. })
            })
            .count();
        batches_seen.set(batches_seen.get() + batched_steps);
        runtime.block_on(async {
            let one = run_steps(db.conn(), &steps, false)
                .await
                .map_err(TestCaseError::fail)?;
            let other = run_steps(db.conn(), &steps, true)
                .await
                .map_err(TestCaseError::fail)?;
            if let Some(difference) = outcome_difference(&one, &other) {
                return Err(TestCaseError::fail(format!(
                    "{difference}\nsteps: {steps:#?}"
                )));
            }
            Ok(())
        })
    });
    runtime.block_on(async move { drop(db) });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert!(
        batches_seen.get() > cases as usize,
        "the scenarios batched orders together"
    );
}

/// A GTC placement without a client order id, for the hand-written batch
/// scenarios.
fn gtc(user: u8, side: Side, kind: Kind, quantity: usize, split: bool) -> Step {
    Step::Place {
        user,
        side,
        kind,
        tif: TimeInForce::Gtc,
        quantity,
        client: None,
        split,
    }
}

/// Runs `steps` one order at a time, then in batches; panics at the first
/// difference, returns the batched run's outcome.
async fn one_by_one_and_batched(db: &DatabaseConnection, steps: &[Step]) -> Outcome {
    let one = run_steps(db, steps, false).await.expect("one by one");
    let other = run_steps(db, steps, true).await.expect("batched");
    if let Some(difference) = outcome_difference(&one, &other) {
        panic!("{difference}");
    }
    other
}

/// A batch skips reading the stored book for an order whose limit does not
/// reach the best prices it read at its start; once it has stored orders of
/// its own (a stop order sends what is pending), those prices are old and the
/// book is read again, so a later order of the batch finds a bid stored
/// mid-batch.
#[tokio::test]
async fn a_batch_reads_the_book_again_after_storing_orders_mid_batch() {
    let (db, _) = model_database().await;
    let place = |user, side, kind, split| gtc(user, side, kind, 0, split);
    let steps = [
        // Before the batch: one ask, far up; no bid.
        place(2, Side::Sell, Kind::Limit(8), true),
        // The batch: a bid that rests (nothing reaches it), a stop order
        // (stored at once, with the bid before it), then an ask under the
        // bid, which must take it.
        place(3, Side::Buy, Kind::Limit(4), false),
        place(4, Side::Sell, Kind::Stop(0), false),
        place(5, Side::Sell, Kind::Limit(3), true),
    ];
    let other = one_by_one_and_batched(db.conn(), &steps).await;
    assert_eq!(
        other.trades.len(),
        1,
        "the ask took the bid: {:?}",
        other.trades
    );
}

/// A batch whose orders sweep past the first page of the book its start read
/// (more resting orders than one page holds) on both sides, a taker stopped
/// by its own order, and a resting order of the batch taken by a later one:
/// the same as placing them one by one.
#[tokio::test]
async fn a_batch_sweeping_past_its_first_page_equals_one_by_one() {
    let (db, _) = model_database().await;
    let worst = PRICES.len() - 1;
    // 45 asks of 0.0001 at 100 and up by u2 and u3, in batches of 9, then
    // u4's ask last at the worst price; 40 bids under 100 by the same two.
    let mut steps: Vec<Step> = (0..45)
        .map(|i| {
            let price = 4 + i % 5;
            gtc(
                2 + (i % 2) as u8,
                Side::Sell,
                Kind::Limit(price),
                0,
                i % 9 == 8,
            )
        })
        .collect();
    steps.push(gtc(4, Side::Sell, Kind::Limit(worst), 0, true));
    steps.extend((0..40).map(|i| {
        gtc(
            2 + (i % 2) as u8,
            Side::Buy,
            Kind::Limit(i % 4),
            0,
            i % 10 == 9,
        )
    }));
    // One batch: u4 sweeps the 45 asks and stops at its own; a MARKET buy
    // takes that one; a MARKET sell sweeps the 40 bids; u4's LIMIT sell then
    // rests, and a later bid of the batch takes it; a MARKET sell finds
    // nothing left.
    steps.extend([
        gtc(4, Side::Buy, Kind::Limit(worst), 1, false),
        gtc(1, Side::Buy, Kind::Market, 0, false),
        gtc(1, Side::Sell, Kind::Market, 1, false),
        gtc(4, Side::Sell, Kind::Limit(0), 0, false),
        gtc(1, Side::Buy, Kind::Limit(2), 1, false),
        gtc(3, Side::Sell, Kind::Market, 0, true),
    ]);
    let widest = "SELECT least((SELECT max(n) FROM (SELECT count(*) AS n FROM trades
        GROUP BY buyer_order_id) b), (SELECT max(n) FROM (SELECT count(*) AS n FROM trades
        GROUP BY seller_order_id) s))";
    let one = run_steps(db.conn(), &steps, false)
        .await
        .expect("one by one");
    let widest_one: i64 = scalar(db.conn(), widest).await;
    let other = run_steps(db.conn(), &steps, true).await.expect("batched");
    let widest_batched: i64 = scalar(db.conn(), widest).await;
    if let Some(difference) = outcome_difference(&one, &other) {
        panic!("{difference}");
    }
    assert!(
        widest_one > 32 && widest_batched > 32,
        "a buy and a sell each swept more than a page of the book ({widest_one}, {widest_batched})"
    );
}

/// A batch walks what it read of the stored book again for its later orders
/// of the same side, instead of reading it again: a later order with a
/// tighter limit stops where its own limit does, one with a wider limit (or
/// none) than the walk was read within reads afresh, and one that needs
/// more than was read reads on after it — each as if placed alone after the
/// previous one.
#[tokio::test]
async fn a_batch_walks_what_it_read_of_the_book_again_within_its_limit() {
    let (db, _) = model_database().await;
    // Before the batch: asks of 0.0001 at 100, 100.01 and 100.02, by u2 and
    // u3, two at each price.
    let mut steps: Vec<Step> = (0..6)
        .map(|i| {
            gtc(
                2 + (i % 2) as u8,
                Side::Sell,
                Kind::Limit(4 + i / 2),
                0,
                i == 5,
            )
        })
        .collect();
    steps.extend([
        // One batch: a buy limited to 100 takes the first ask (the walk is
        // read within 100); a buy limited to 99.99 reaches none of it and
        // rests; a MARKET buy (wider: read again, a first page of four)
        // takes the second; a bigger buy limited to 100.01 (within the
        // unlimited walk) takes both asks at 100.01, reads on past that
        // page, stops at 100.02 and rests the rest; a bigger MARKET buy
        // takes both asks at 100.02 and expires the rest.
        gtc(1, Side::Buy, Kind::Limit(4), 0, false),
        gtc(1, Side::Buy, Kind::Limit(3), 0, false),
        gtc(4, Side::Buy, Kind::Market, 0, false),
        gtc(1, Side::Buy, Kind::Limit(5), 1, false),
        gtc(4, Side::Buy, Kind::Market, 1, true),
    ]);
    let other = one_by_one_and_batched(db.conn(), &steps).await;
    assert_eq!(
        other.trades.len(),
        6,
        "every ask was taken, once: {:?}",
        other.trades
    );
}
