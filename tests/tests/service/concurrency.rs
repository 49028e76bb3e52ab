//! The service's invariants under concurrency: many tasks, each on its own
//! database session, place (LIMIT, MARKET, and some STOP and STOP_LIMIT, whose
//! triggers cascade) and cancel random orders on two symbols at once;
//! then every invariant is checked in SQL, and every answer the service gave is
//! checked against what the database holds. Client order ids are checked under
//! a race and in sequence.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::{orders, trades};
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{DatabaseConnection, EntityTrait};
use service::orders::{self as svc, NewOrder, Placement, Sequencer, SequencerSettings};
use service::pooling::{Pool, PoolMode};
use service::{OrderStatus, OrderType, ServiceError, Side, TimeInForce, is_terminal};
use tests::db::TestDb;
use tests::dec;
use tests::sql::{exec, lines, rows, scalar};

const SYMBOLS: [&str; 2] = ["BTC/USDT", "ETH/USDT"];
const TASKS: usize = 12;
const OPERATIONS_PER_TASK: usize = 60;
const USERS: u64 = 6;

/// Prices around 100 on a tick of 0.01, so orders cross often.
const PRICES: [&str; 7] = [
    "99.97", "99.98", "99.99", "100", "100.01", "100.02", "100.03",
];
const QUANTITIES: [&str; 6] = ["0.1", "0.25", "0.5", "1", "1.5", "2.33333333"];

fn user(n: u64) -> Uuid {
    Uuid::from_u128(u128::from(n))
}

/// SplitMix64: a fixed stream per task, so runs differ only by their
/// interleaving (and so by which orders the shared list offers for cancels).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Everything a task was told by the service.
#[derive(Default)]
struct Answers {
    placements: Vec<Placement>,
    cancelled: Vec<orders::Model>,
    /// Answers no rule allows, with what was asked.
    unexpected: Vec<String>,
}

/// Orders any task may try to cancel: (order, owner). Mostly orders that
/// were resting when placed, so that cancels race with the fills of others.
type Placed = Arc<Mutex<Vec<(Uuid, Uuid)>>>;

fn random_order(random: &mut Random) -> NewOrder {
    let symbol = random.pick(&SYMBOLS);
    let who = user(1 + random.next() % USERS);
    let side = random.pick(&[Side::Buy, Side::Sell]);
    let quantity = dec(random.pick(&QUANTITIES));
    let tif = random.pick(&[
        TimeInForce::Gtc,
        TimeInForce::Gtc,
        TimeInForce::Day,
        TimeInForce::Ioc,
        TimeInForce::Fok,
    ]);
    let price = dec(random.pick(&PRICES));
    let order = match random.below(20) {
        0..=3 => NewOrder::market(who, symbol, side, quantity),
        4 => NewOrder::stop(who, symbol, side, quantity, price),
        5 => NewOrder::stop_limit(
            who,
            symbol,
            side,
            quantity,
            price,
            dec(random.pick(&PRICES)),
        ),
        _ => NewOrder::limit(who, symbol, side, quantity, price),
    };
    order.with_time_in_force(tif)
}

/// How a task places and cancels: one transaction each, or through a
/// sequencer.
#[derive(Clone)]
enum Placer {
    Direct,
    Sequenced(Sequencer),
}

async fn worker(task: usize, db: DatabaseConnection, placer: Placer, placed: Placed) -> Answers {
    let mut random = Random(0x5eed_0000 + task as u64);
    let mut answers = Answers::default();
    for _ in 0..OPERATIONS_PER_TASK {
        let target = {
            let placed = placed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (random.below(4) == 0 && !placed.is_empty()).then(|| random.pick(&placed))
        };
        match target {
            Some((order_id, owner)) => {
                // Mostly the owner; sometimes someone else, who must be refused.
                let as_owner = random.below(5) != 0;
                let who = if as_owner {
                    owner
                } else {
                    user(1 + (owner.as_u128() as u64 % USERS))
                };
                let cancelled = match &placer {
                    Placer::Direct => svc::cancel(&db, who, order_id).await,
                    Placer::Sequenced(sequencer) => sequencer.cancel(who, order_id).await,
                };
                match cancelled {
                    Ok(row) if as_owner && row.status == OrderStatus::Cancelled => {
                        answers.cancelled.push(row)
                    }
                    Err(ServiceError::TerminalStatus { status, .. })
                        if as_owner && is_terminal(status) => {}
                    Err(ServiceError::Forbidden { .. }) if !as_owner => {}
                    other => answers.unexpected.push(format!(
                        "cancel of {order_id} by {who} (owner {owner}): {other:?}"
                    )),
                }
            }
            None => {
                let order = random_order(&mut random);
                let outcome = match &placer {
                    Placer::Direct => svc::place(&db, order.clone()).await,
                    Placer::Sequenced(sequencer) => sequencer.place(order.clone()).await,
                };
                match outcome {
                    Ok(placement) => {
                        if !is_terminal(placement.order.status) || random.below(8) == 0 {
                            placed
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .push((placement.order.order_id, placement.order.user_id));
                        }
                        answers.placements.push(placement);
                    }
                    Err(err) => answers.unexpected.push(format!("placing {order:?}: {err}")),
                }
            }
        }
    }
    answers
}

/// Crossed books, one line per symbol: `symbol|best bid|best ask`.
const CROSSED_BOOKS: &str = "SELECT symbol,
        max(price) FILTER (WHERE side = 'BUY') AS best_bid,
        min(price) FILTER (WHERE side = 'SELL') AS best_ask
    FROM orders
    WHERE order_type = 'LIMIT' AND status IN ('OPEN', 'PARTIALLY_FILLED')
    GROUP BY symbol
    HAVING max(price) FILTER (WHERE side = 'BUY') >= min(price) FILTER (WHERE side = 'SELL')";

/// Every terminal order's whole row, as JSON text.
const TERMINAL_ROWS: &str = "SELECT order_id::text, row_to_json(o)::text FROM orders o
    WHERE status IN ('FILLED', 'CANCELLED', 'REJECTED', 'EXPIRED')";

async fn terminal_rows(db: &DatabaseConnection) -> HashMap<String, String> {
    rows(db, TERMINAL_ROWS)
        .await
        .iter()
        .map(|row| {
            (
                tests::sql::get::<String>(row, 0, TERMINAL_ROWS),
                tests::sql::get::<String>(row, 1, TERMINAL_ROWS),
            )
        })
        .collect()
}

/// While the tasks run: the book is never seen crossed, and a terminal order,
/// once seen, never changes. Returns what it saw and what went wrong.
async fn monitor(
    db: DatabaseConnection,
    done: Arc<AtomicBool>,
) -> (HashMap<String, String>, Vec<String>, usize) {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut violations = Vec::new();
    let mut rounds = 0;
    while !done.load(Ordering::Acquire) {
        rounds += 1;
        for crossed in lines(&db, CROSSED_BOOKS).await {
            violations.push(format!("crossed book seen mid-run: {crossed}"));
        }
        for (id, row) in terminal_rows(&db).await {
            match seen.get(&id) {
                Some(before) if *before != row => violations.push(format!(
                    "terminal order {id} changed:\n  before {before}\n  after  {row}"
                )),
                Some(_) => {}
                None => {
                    seen.insert(id, row);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    (seen, violations, rounds)
}

/// Statuses an order returned in `from` may be in later.
fn later_or_same(from: OrderStatus, to: OrderStatus) -> bool {
    match from {
        OrderStatus::Open => true,
        OrderStatus::PartiallyFilled => matches!(
            to,
            OrderStatus::PartiallyFilled | OrderStatus::Filled | OrderStatus::Cancelled
        ),
        terminal => terminal == to,
    }
}

/// The type an order returned as `from` may have later: its own, or the one
/// a stop order becomes when it triggers.
fn later_type(from: OrderType, to: OrderType) -> bool {
    from == to
        || matches!(
            (from, to),
            (OrderType::Stop, OrderType::Market) | (OrderType::StopLimit, OrderType::Limit)
        )
}

/// What the database holds of the order the service returned, or why not.
fn check_returned(returned: &orders::Model, stored: Option<&orders::Model>) -> Option<String> {
    let id = returned.order_id;
    let Some(stored) = stored else {
        return Some(format!("returned order {id} is not stored"));
    };
    let fixed = |o: &orders::Model| {
        (
            o.user_id,
            o.symbol.clone(),
            o.side,
            o.quantity,
            o.price,
            o.stop_price,
            o.time_in_force,
        )
    };
    // A stop order that triggered since takes the trigger time as its
    // created_at (its place in the queue); any other order keeps its own.
    let triggered_since = returned.order_type != stored.order_type;
    let created_ok = if triggered_since {
        stored.created_at >= returned.created_at
    } else {
        stored.created_at == returned.created_at
    };
    if fixed(returned) != fixed(stored)
        || !later_type(returned.order_type, stored.order_type)
        || !created_ok
    {
        return Some(format!(
            "order {id} was returned as {returned:?} but is stored as {stored:?}"
        ));
    }
    if is_terminal(returned.status) && returned != stored {
        return Some(format!(
            "order {id} was returned terminal as {returned:?} but is stored as {stored:?}"
        ));
    }
    if !later_or_same(returned.status, stored.status)
        || stored.filled_quantity < returned.filled_quantity
        || (stored.filled_quantity == returned.filled_quantity
            && stored.average_price != returned.average_price)
    {
        return Some(format!(
            "order {id} was returned {:?} filled {} average {:?}, but is stored {:?} filled {} average {:?}",
            returned.status,
            returned.filled_quantity,
            returned.average_price,
            stored.status,
            stored.filled_quantity,
            stored.average_price
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_under_concurrent_placements_and_cancels() {
    invariants_hold(false).await;
}

/// The same through two sequencers on two pools (two api processes): their
/// batches serialize on the same book locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_when_placing_through_sequencers() {
    invariants_hold(true).await;
}

async fn invariants_hold(sequenced: bool) {
    let started = Instant::now();
    let db = TestDb::migrated().await;
    // Validation is not under test here: a wide band and no minimum value keep
    // every random order placeable.
    exec(
        db.conn(),
        "UPDATE symbols SET price_band_percentage = 999.99, min_order_value = 0.00000001
         WHERE symbol IN ('BTC/USDT', 'ETH/USDT')",
    )
    .await;

    let placed: Placed = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(monitor(db.connect_single().await, done.clone()));
    let mut sequencers = Vec::new();
    if sequenced {
        for _ in 0..2 {
            let pool = Pool::new(db.connect().await, PoolMode::Direct);
            sequencers.push(Sequencer::new(
                pool,
                svc::PlacementLimits::default(),
                SequencerSettings {
                    max_batch: 8,
                    ..SequencerSettings::default()
                },
            ));
        }
    }
    let mut workers = Vec::new();
    for task in 0..TASKS {
        let session = db.connect_single().await;
        let placer = match sequencers.get(task % 2) {
            Some(sequencer) => Placer::Sequenced(sequencer.clone()),
            None => Placer::Direct,
        };
        workers.push(tokio::spawn(worker(task, session, placer, placed.clone())));
    }
    let mut answers = Answers::default();
    for handle in workers {
        let Answers {
            placements,
            cancelled,
            unexpected,
        } = handle.await.expect("a worker panicked");
        answers.placements.extend(placements);
        answers.cancelled.extend(cancelled);
        answers.unexpected.extend(unexpected);
    }
    let mut batched = 0;
    for sequencer in &sequencers {
        sequencer.shutdown().await;
        let stats = sequencer.stats();
        batched += stats.orders - stats.batches;
    }
    done.store(true, Ordering::Release);
    let (seen_terminal, mut violations, rounds) = watcher.await.expect("the monitor panicked");
    let c = db.conn();

    // The invariants, in SQL; and the market state the triggers kept equals
    // a recomputation from orders and trades.
    let drift = tests::faults::market_state_drift(c).await;
    violations.extend(drift.iter().map(|l| format!("market state: {l}")));
    let overfilled = lines(
        c,
        "SELECT order_id, quantity, filled_quantity FROM orders WHERE filled_quantity > quantity",
    )
    .await;
    violations.extend(overfilled.iter().map(|l| format!("overfilled: {l}")));
    let unbalanced = lines(
        c,
        "SELECT o.order_id, o.filled_quantity, coalesce(t.traded, 0)
         FROM orders o
         LEFT JOIN (SELECT order_id, sum(quantity) AS traded FROM (
                        SELECT buyer_order_id AS order_id, quantity FROM trades
                        UNION ALL
                        SELECT seller_order_id, quantity FROM trades) sides
                    GROUP BY order_id) t ON t.order_id = o.order_id
         WHERE o.filled_quantity <> coalesce(t.traded, 0)",
    )
    .await;
    violations.extend(
        unbalanced
            .iter()
            .map(|l| format!("filled_quantity is not the sum of its trades: {l}")),
    );
    let orphan_trades = lines(
        c,
        "SELECT trade_id FROM trades t
         WHERE NOT EXISTS (SELECT 1 FROM orders WHERE order_id = t.buyer_order_id)
            OR NOT EXISTS (SELECT 1 FROM orders WHERE order_id = t.seller_order_id)",
    )
    .await;
    violations.extend(
        orphan_trades
            .iter()
            .map(|l| format!("trade of an unknown order: {l}")),
    );
    let self_trades = lines(
        c,
        "SELECT trade_id, buyer_user_id FROM trades WHERE buyer_user_id = seller_user_id",
    )
    .await;
    violations.extend(self_trades.iter().map(|l| format!("self-trade: {l}")));
    let crossed = lines(c, CROSSED_BOOKS).await;
    violations.extend(
        crossed
            .iter()
            .map(|l| format!("crossed book at the end: {l}")),
    );
    // A terminal order seen mid-run is unchanged at the end. (Comparing
    // cancelled_at with trade times instead would be unsound: cancelled_at is
    // the cancel's transaction start, which may precede the commit of a fill
    // the cancel then waited for.)
    let at_end = terminal_rows(c).await;
    for (id, row) in &seen_terminal {
        match at_end.get(id) {
            Some(now) if now == row => {}
            now => violations.push(format!(
                "terminal order {id} changed after the run:\n  seen  {row}\n  now   {now:?}"
            )),
        }
    }

    // Every answer against the database.
    let stored_orders: HashMap<Uuid, orders::Model> = orders::Entity::find()
        .all(c)
        .await
        .expect("orders")
        .into_iter()
        .map(|o| (o.order_id, o))
        .collect();
    let stored_trades: HashMap<Uuid, trades::Model> = trades::Entity::find()
        .all(c)
        .await
        .expect("trades")
        .into_iter()
        .map(|t| (t.trade_id, t))
        .collect();
    let mut returned_trades = 0;
    let mut triggered = 0;
    for placement in &answers.placements {
        let executions = std::iter::once((&placement.order, &placement.trades)).chain(
            placement
                .triggered
                .iter()
                .map(|execution| (&execution.order, &execution.trades)),
        );
        triggered += placement.triggered.len();
        for (order, trades) in executions {
            violations.extend(check_returned(order, stored_orders.get(&order.order_id)));
            for trade in trades {
                returned_trades += 1;
                if stored_trades.get(&trade.trade_id) != Some(trade) {
                    violations.push(format!(
                        "returned trade {trade:?} is stored as {:?}",
                        stored_trades.get(&trade.trade_id)
                    ));
                }
            }
        }
    }
    if returned_trades != stored_trades.len() {
        violations.push(format!(
            "{} trades stored, {returned_trades} returned by placements",
            stored_trades.len()
        ));
    }
    for cancelled in &answers.cancelled {
        let stored = stored_orders.get(&cancelled.order_id);
        if stored != Some(cancelled) {
            violations.push(format!(
                "cancel returned {cancelled:?}, the database holds {stored:?}"
            ));
        }
    }
    if answers.placements.len() != stored_orders.len() {
        violations.push(format!(
            "{} orders stored, {} placements answered Ok",
            stored_orders.len(),
            answers.placements.len()
        ));
    }
    violations.extend(answers.unexpected.iter().cloned());

    let statuses = lines(
        c,
        "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status",
    )
    .await;
    eprintln!(
        "{} placements, {} cancels, {} trades, {triggered} stop triggers, {} monitor rounds, \
         statuses {statuses:?}, {:.1?}",
        answers.placements.len(),
        answers.cancelled.len(),
        stored_trades.len(),
        rounds,
        started.elapsed()
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    // The run did something worth checking.
    assert!(
        stored_trades.len() > 50,
        "only {} trades",
        stored_trades.len()
    );
    assert!(!answers.cancelled.is_empty(), "no cancel succeeded");
    assert!(triggered > 0, "no stop order triggered");
    if sequenced {
        assert!(batched > 0, "no batch carried more than one order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_order_id_placed_concurrently_creates_one_order() {
    const RACERS: usize = 8;
    let db = TestDb::migrated().await;
    let mut sessions = Vec::new();
    for _ in 0..RACERS {
        sessions.push(Arc::new(db.connect_single().await));
    }
    for round in 0..5 {
        let client_order_id = format!("race-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut racers = Vec::new();
        for session in &sessions {
            let (session, barrier) = (session.clone(), barrier.clone());
            let order = NewOrder::limit(
                user(1),
                "BTC/USDT",
                Side::Buy,
                dec("1"),
                Decimal::from(50 + round),
            )
            .with_client_order_id(client_order_id.clone());
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                svc::place(session.as_ref(), order).await
            }));
        }
        let mut outcomes = Vec::new();
        for racer in racers {
            outcomes.push(racer.await.expect("a racer panicked"));
        }
        let winners: Vec<&Placement> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        let winner = winners[0].order.order_id;
        for outcome in &outcomes {
            match outcome {
                Ok(_) => {}
                Err(ServiceError::DuplicateClientOrderId {
                    client_order_id: named,
                    existing_order_id,
                }) if *named == client_order_id && *existing_order_id == winner => {}
                Err(other) => {
                    panic!("round {round}: expected a duplicate naming {winner}: {other}")
                }
            }
        }
        let stored: i64 = scalar(
            db.conn(),
            &format!("SELECT count(*) FROM orders WHERE client_order_id = '{client_order_id}'"),
        )
        .await;
        assert_eq!(stored, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_client_order_id_used_again_names_the_first_order() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let order = NewOrder::limit(user(1), "BTC/USDT", Side::Sell, dec("1"), dec("100"))
        .with_client_order_id("retry-1");
    let first = svc::place(c, order.clone())
        .await
        .expect("the first placement");
    let err = svc::place(c, order.clone())
        .await
        .expect_err("the retry is refused");
    match &err {
        ServiceError::DuplicateClientOrderId {
            client_order_id,
            existing_order_id,
        } => {
            assert_eq!(client_order_id, "retry-1");
            assert_eq!(*existing_order_id, first.order.order_id);
        }
        other => panic!("expected DuplicateClientOrderId: {other}"),
    }
    assert!(err.is_conflict());
    assert!(
        err.to_string().contains(&first.order.order_id.to_string()),
        "{err}"
    );
    // Once the first order is terminal, the id is still taken.
    svc::place(
        c,
        NewOrder::limit(user(2), "BTC/USDT", Side::Buy, dec("1"), dec("100")),
    )
    .await
    .expect("a buy that fills the first order");
    let err = svc::place(c, order.clone().with_time_in_force(TimeInForce::Ioc))
        .await
        .expect_err("still refused");
    assert!(
        matches!(err, ServiceError::DuplicateClientOrderId { existing_order_id, .. } if existing_order_id == first.order.order_id),
        "{err}"
    );
    // Another user may use the same id.
    let other = svc::place(
        c,
        NewOrder::limit(user(3), "BTC/USDT", Side::Buy, dec("1"), dec("90"))
            .with_client_order_id("retry-1"),
    )
    .await
    .expect("another user's order");
    assert_ne!(other.order.order_id, first.order.order_id);
    let stored: i64 = scalar(
        c,
        "SELECT count(*) FROM orders WHERE client_order_id = 'retry-1'",
    )
    .await;
    assert_eq!(stored, 2);
}

/// A placement reads the clock it stamps once it holds the symbol's book lock
/// (lock and clock are one statement): one that waited for another
/// transaction's lock is stamped after that transaction let go, never before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_that_waited_for_the_book_lock_is_stamped_after_it() {
    use sea_orm::prelude::DateTimeWithTimeZone;

    let db = TestDb::migrated().await;
    let (holder, placing) = a_placement_waiting_for_the_btc_book(&db).await;
    assert!(!placing.is_finished(), "the placement waits for the lock");
    let released: DateTimeWithTimeZone = scalar(&holder, "SELECT clock_timestamp()").await;
    holder.commit().await.expect("commit");
    let placed = placing
        .await
        .expect("the task ran")
        .unwrap_or_else(|err| panic!("the placement: {err}"));
    assert!(
        placed.order.created_at > released,
        "stamped {} though the lock was held until {released}",
        placed.order.created_at
    );
}

/// A transaction holding BTC/USDT's book lock (not ended) and a placement of
/// a BUY 1 @ 100 on BTC/USDT that waits for it (seen in `pg_locks`).
async fn a_placement_waiting_for_the_btc_book(
    db: &TestDb,
) -> (
    sea_orm::DatabaseTransaction,
    tokio::task::JoinHandle<Result<Placement, ServiceError>>,
) {
    use sea_orm::TransactionTrait;

    let holder = db.connect().await.begin().await.expect("a transaction");
    exec(
        &holder,
        "SELECT pg_advisory_xact_lock(x'74650001'::int, hashtext('BTC/USDT'))",
    )
    .await;
    let pool = db.conn().clone();
    let placing = tokio::spawn(async move {
        svc::place(
            &pool,
            NewOrder::limit(user(1), "BTC/USDT", Side::Buy, dec("1"), dec("100")),
        )
        .await
    });
    waiting_for_an_advisory_lock(db.conn()).await;
    (holder, placing)
}

/// Returns once a session waits for an advisory lock (a book lock held
/// elsewhere), read from `pg_locks`; fails after ten seconds.
pub(crate) async fn waiting_for_an_advisory_lock(db: &DatabaseConnection) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = tests::sql::waiting_sessions(db, "locktype = 'advisory'").await;
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no session waits for the book lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn placements_on_different_symbols_do_not_wait_for_each_other() {
    let db = TestDb::migrated().await;
    let (holder, on_btc) = a_placement_waiting_for_the_btc_book(&db).await;
    // ETH/USDT places, rests and trades while BTC/USDT's placement waits.
    let eth =
        |who, side, qty: &str| NewOrder::limit(user(who), "ETH/USDT", side, dec(qty), dec("3000"));
    let placed = tokio::time::timeout(Duration::from_secs(10), async {
        svc::place(db.conn(), eth(2, Side::Sell, "2")).await?;
        svc::place(db.conn(), eth(3, Side::Buy, "1.5")).await
    })
    .await
    .expect("ETH/USDT does not wait for BTC/USDT's book")
    .unwrap_or_else(|err| panic!("the ETH/USDT placements: {err}"));
    assert_eq!(placed.trades.len(), 1);
    assert_eq!(placed.order.status, OrderStatus::Filled);
    assert!(!on_btc.is_finished(), "BTC/USDT's placement still waits");
    holder.commit().await.expect("commit");
    let btc = on_btc
        .await
        .expect("the task ran")
        .unwrap_or_else(|err| panic!("the BTC/USDT placement: {err}"));
    assert_eq!(btc.order.status, OrderStatus::Open);
}
