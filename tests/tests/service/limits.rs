//! The service's production bounds against a real database: the per-user cap
//! on resting orders, the fill bound of one sweep, the stop-trigger bound and
//! the PENDING stops it leaves, bounded retries of serialization failures and
//! deadlocks (forced by a trigger), and the background jobs' lock timeout.
//! BTC/USDT: tick 0.01, sizes 0.0001..100, minimum value 10, band ±10%.

use std::time::Duration;

use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{DatabaseConnection, TransactionTrait};
use service::orders::{self as svc, NewOrder, Placement, PlacementLimits};
use service::pooling::{Pool, PoolMode, Settings};
use service::{CONTENTION_ATTEMPTS, OrderStatus, ServiceError, Side, TimeInForce};
use tests::db::TestDb;
use tests::sql::{column, exec, lines, scalar};
use tests::{dec, user};

const BTC: &str = "BTC/USDT";
const ETH: &str = "ETH/USDT";

async fn place_with(
    db: &DatabaseConnection,
    order: NewOrder,
    limits: &PlacementLimits,
) -> Placement {
    svc::place_with(db, order.clone(), limits)
        .await
        .unwrap_or_else(|err| panic!("placing {order:?}: {err}"))
}

async fn place(db: &DatabaseConnection, order: NewOrder) -> Placement {
    place_with(db, order, &PlacementLimits::default()).await
}

/// A trade at `price` on BTC between users 901 and 902, so the last price is
/// `price`; returns the taker's placement.
async fn trade_at(db: &DatabaseConnection, price: &str, limits: &PlacementLimits) -> Placement {
    place(
        db,
        NewOrder::limit(user(901), BTC, Side::Sell, dec("1"), dec(price)),
    )
    .await;
    let taker = place_with(
        db,
        NewOrder::limit(user(902), BTC, Side::Buy, dec("1"), dec(price)),
        limits,
    )
    .await;
    assert_eq!(taker.trades.len(), 1, "a trade at {price}");
    taker
}

fn refused_for_resting(result: Result<Placement, ServiceError>, who: Uuid, limit: u64) {
    match result {
        Err(ServiceError::TooManyRestingOrders { user_id, limit: l }) => {
            assert_eq!((user_id, l), (who, limit));
        }
        other => panic!("expected TooManyRestingOrders, got {other:?}"),
    }
}

#[test]
fn the_defaults_are_documented_ones() {
    let limits = PlacementLimits::default();
    assert_eq!(limits.max_resting_orders_per_user, 1000);
    assert_eq!(limits.max_fills, 1000);
    assert_eq!(limits.max_triggered_stops, 100);
    assert_eq!(CONTENTION_ATTEMPTS, 3);
}

/// LIMIT GTC/DAY, STOP and STOP_LIMIT orders count and are refused at the cap,
/// over all symbols and with PENDING orders; MARKET, IOC and FOK orders are
/// never refused, and finished orders free the room.
#[tokio::test]
async fn the_resting_cap_counts_every_symbol_and_refuses_only_orders_that_could_rest() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let me = user(1);
    let limits = PlacementLimits {
        max_resting_orders_per_user: 3,
        ..PlacementLimits::default()
    };
    // Two bids on BTC and a waiting stop on ETH: three.
    let first = place_with(
        c,
        NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100")),
        &limits,
    )
    .await;
    place_with(
        c,
        NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("99")),
        &limits,
    )
    .await;
    place_with(
        c,
        NewOrder::stop(me, ETH, Side::Buy, dec("1"), dec("3000")),
        &limits,
    )
    .await;
    for order in [
        NewOrder::limit(me, ETH, Side::Buy, dec("1"), dec("100")),
        NewOrder::limit(me, BTC, Side::Sell, dec("1"), dec("200"))
            .with_time_in_force(TimeInForce::Day),
        NewOrder::stop(me, BTC, Side::Sell, dec("1"), dec("50")),
        NewOrder::stop_limit(me, BTC, Side::Buy, dec("1"), dec("150"), dec("150")),
    ] {
        refused_for_resting(svc::place_with(c, order, &limits).await, me, 3);
    }
    // Orders that never rest go through (and expire on an empty ask side).
    for tif in [TimeInForce::Ioc, TimeInForce::Fok] {
        let placed = place_with(
            c,
            NewOrder::limit(me, BTC, Side::Sell, dec("1"), dec("200")).with_time_in_force(tif),
            &limits,
        )
        .await;
        assert_eq!(placed.order.status, OrderStatus::Expired);
    }
    let market = place_with(c, NewOrder::market(me, ETH, Side::Buy, dec("1")), &limits).await;
    assert_eq!(market.order.status, OrderStatus::Expired);
    // Another user is not affected.
    place_with(
        c,
        NewOrder::limit(user(2), ETH, Side::Buy, dec("1"), dec("100")),
        &limits,
    )
    .await;

    // A finished order frees its room; a PENDING one takes it.
    svc::cancel(c, me, first.order.order_id)
        .await
        .expect("cancel");
    let pending = tests::sql::insert_order(c, me, "ETH/USDT BUY LIMIT PENDING 1 100", "").await;
    refused_for_resting(
        svc::place_with(
            c,
            NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("98")),
            &limits,
        )
        .await,
        me,
        3,
    );
    exec(
        c,
        &format!("UPDATE orders SET status = 'CANCELLED' WHERE order_id = '{pending}'"),
    )
    .await;
    place_with(
        c,
        NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("98")),
        &limits,
    )
    .await;
    let resting: i64 = scalar(
        c,
        &format!(
            "SELECT count(*) FROM orders WHERE user_id = '{me}' \
             AND status IN ('PENDING', 'OPEN', 'PARTIALLY_FILLED')"
        ),
    )
    .await;
    assert_eq!(resting, 3, "the cap was held exactly");
}

/// At the default cap, with a user's book loaded in bulk: the 1000th resting
/// order is placed, the 1001st refused.
#[tokio::test]
async fn the_default_cap_holds_at_a_thousand_resting_orders() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let me = user(7);
    exec(
        c,
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price) \
             SELECT '{me}', 'ETH/USDT', 'BUY', 'LIMIT', 'OPEN', 1, 100 + i * 0.01 \
             FROM generate_series(1, 999) AS i"
        ),
    )
    .await;
    place(c, NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100"))).await;
    refused_for_resting(
        svc::place(c, NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100"))).await,
        me,
        1000,
    );
}

/// `count` asks of `quantity` BTC at 100 from user 500, oldest first by one
/// microsecond each, inserted in one statement.
async fn bulk_asks(c: &DatabaseConnection, count: u32, quantity: &str) {
    exec(
        c,
        &format!(
            "INSERT INTO orders (user_id, symbol, side, order_type, status, quantity, price, created_at) \
             SELECT '{}', 'BTC/USDT', 'SELL', 'LIMIT', 'OPEN', {quantity}, 100, \
                    now() - interval '1 hour' + i * interval '1 microsecond' \
             FROM generate_series(1, {count}) AS i",
            user(500)
        ),
    )
    .await;
}

/// The ids of user 500's asks in time priority.
async fn asks_in_priority(c: &DatabaseConnection) -> Vec<Uuid> {
    column(
        c,
        &format!(
            "SELECT order_id FROM orders WHERE user_id = '{}' ORDER BY created_at, order_id",
            user(500)
        ),
    )
    .await
}

/// A sweep through a book of 3000 resting orders stops at `max_fills` (the
/// default, 1000): it fills the first 1000 in time priority, the LIMIT
/// order's rest expires instead of resting against the asks it could still
/// take, and the book is not crossed.
#[tokio::test]
async fn a_sweep_stops_at_max_fills_and_its_rest_expires() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    bulk_asks(c, 3000, "0.001").await;
    let asks = asks_in_priority(c).await;
    let taker = place(
        c,
        NewOrder::limit(user(1), BTC, Side::Buy, dec("3"), dec("100")),
    )
    .await;
    assert_eq!(taker.trades.len(), 1000);
    assert_eq!(taker.order.status, OrderStatus::Expired);
    assert_eq!(taker.order.filled_quantity, dec("1"));
    let filled: Vec<Uuid> = taker.trades.iter().map(|t| t.seller_order_id).collect();
    assert_eq!(filled, asks[..1000], "the oldest 1000, in time priority");
    let book = lines(
        c,
        "SELECT side, status, count(*) FROM orders GROUP BY side, status ORDER BY side, status",
    )
    .await;
    assert_eq!(
        book,
        ["BUY|EXPIRED|1", "SELL|OPEN|2000", "SELL|FILLED|1000"]
    );
    let stored: Decimal = scalar(
        c,
        &format!(
            "SELECT filled_quantity FROM orders WHERE order_id = '{}'",
            taker.order.order_id
        ),
    )
    .await;
    assert_eq!(stored, dec("1"));
}

/// At the bound's edges: an order the bound lets complete is FILLED, one the
/// book runs out for rests, a FOK order past the bound executes nothing, and
/// a MARKET order's rest expires.
#[tokio::test]
async fn the_fill_bound_cuts_only_when_more_of_the_book_is_in_reach() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    bulk_asks(c, 8, "0.1").await;
    let five = PlacementLimits {
        max_fills: 5,
        ..PlacementLimits::default()
    };
    // In order: a FOK past the bound, an order the bound lets complete, and
    // one the remaining three asks cannot fill, which rests.
    let steps = [
        (
            NewOrder::limit(user(1), BTC, Side::Buy, dec("0.6"), dec("100"))
                .with_time_in_force(TimeInForce::Fok),
            0,
            OrderStatus::Expired,
        ),
        (
            NewOrder::limit(user(1), BTC, Side::Buy, dec("0.5"), dec("100")),
            5,
            OrderStatus::Filled,
        ),
        (
            NewOrder::limit(user(2), BTC, Side::Buy, dec("10"), dec("100")),
            3,
            OrderStatus::PartiallyFilled,
        ),
    ];
    for (order, trades, status) in steps {
        let placed = place_with(c, order.clone(), &five).await;
        assert_eq!(
            (placed.trades.len(), placed.order.status),
            (trades, status),
            "{order:?}"
        );
    }
    bulk_asks(c, 8, "0.1").await;
    let market = place_with(
        c,
        NewOrder::market(user(3), BTC, Side::Buy, dec("2")),
        &five,
    )
    .await;
    assert_eq!(
        (market.trades.len(), market.order.status),
        (5, OrderStatus::Expired)
    );
    assert_eq!(market.order.filled_quantity, dec("0.5"));
}

/// `(order_id, status, order_type)` of the given orders, in that order.
async fn states(c: &DatabaseConnection, ids: &[Uuid]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let row = lines(
            c,
            &format!("SELECT status, order_type FROM orders WHERE order_id = '{id}'"),
        )
        .await;
        out.push(row.concat());
    }
    out
}

fn triggered_ids(placement: &Placement) -> Vec<Uuid> {
    placement
        .triggered
        .iter()
        .map(|e| e.order.order_id)
        .collect()
}

/// Seven BUY stops reached at once with `max_triggered_stops = 3`: three
/// trigger in rule 7's order, four wait PENDING (in the watchlist). The price
/// then moves back below them; the next trading placement still triggers
/// the next three in order, and the maintenance entry point the last one.
#[tokio::test]
async fn stops_past_the_trigger_bound_wait_pending_and_trigger_later_in_order() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let three = PlacementLimits {
        max_triggered_stops: 3,
        ..PlacementLimits::default()
    };
    trade_at(c, "100", &three).await;
    // Placed out of price order; the two at 102 oldest first.
    let mut stops = Vec::new();
    for (n, stop) in ["104", "101", "102", "102", "106", "103", "105"]
        .into_iter()
        .enumerate()
    {
        let placed = place(
            c,
            NewOrder::stop(user(10 + n as u128), BTC, Side::Buy, dec("1"), dec(stop)),
        )
        .await;
        assert_eq!(placed.order.status, OrderStatus::Open);
        stops.push(placed.order.order_id);
    }
    let by_price = [
        stops[1], stops[2], stops[3], stops[5], stops[0], stops[6], stops[4],
    ];

    let spike = trade_at(c, "110", &three).await;
    assert_eq!(triggered_ids(&spike), by_price[..3]);
    let watched: i64 = scalar(c, "SELECT count(*) FROM stop_orders_watchlist").await;
    assert_eq!(watched, 4);
    assert_eq!(
        states(c, &by_price[3..]).await,
        [
            "PENDING|STOP",
            "PENDING|STOP",
            "PENDING|STOP",
            "PENDING|STOP"
        ]
    );
    // The price falls back to 100, under every remaining stop price.
    let back = trade_at(c, "100", &three).await;
    assert_eq!(triggered_ids(&back), by_price[3..6]);
    assert_eq!(states(c, &by_price[6..]).await, ["PENDING|STOP"]);

    // A quiet market: the job triggers the last, then finds nothing.
    let triggered = service::maintenance::trigger_reached_stops_with(c, &three)
        .await
        .expect("the job");
    assert_eq!(triggered, 1);
    // Triggered into MARKET orders that found no asks.
    assert_eq!(
        states(c, &by_price).await,
        vec!["EXPIRED|MARKET"; 7],
        "every stop triggered once"
    );
    assert_eq!(
        service::maintenance::trigger_reached_stops(c)
            .await
            .expect("again"),
        0
    );
    let watched: i64 = scalar(c, "SELECT count(*) FROM stop_orders_watchlist").await;
    assert_eq!(watched, 0);
}

/// SELL stops trigger highest stop price first (the order a falling price
/// reaches them), across the bound too.
#[tokio::test]
async fn sell_stops_trigger_highest_first_across_the_bound() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let two = PlacementLimits {
        max_triggered_stops: 2,
        ..PlacementLimits::default()
    };
    trade_at(c, "100", &two).await;
    let mut stops = Vec::new();
    for (n, stop) in ["96", "98", "97"].into_iter().enumerate() {
        let placed = place(
            c,
            NewOrder::stop(user(20 + n as u128), BTC, Side::Sell, dec("1"), dec(stop)),
        )
        .await;
        stops.push(placed.order.order_id);
    }
    let fall = trade_at(c, "95", &two).await;
    assert_eq!(triggered_ids(&fall), [stops[1], stops[2]]);
    assert_eq!(states(c, &stops[..1]).await, ["PENDING|STOP"]);
    assert_eq!(
        service::maintenance::trigger_reached_stops(c)
            .await
            .expect("job"),
        1
    );
    assert_eq!(states(c, &stops[..1]).await, ["EXPIRED|MARKET"]);
}

/// A stop order placed while earlier reached stops wait PENDING queues behind
/// them, and reports itself PENDING when the bound leaves it waiting; a
/// PENDING stop can still be cancelled.
#[tokio::test]
async fn a_stop_placed_behind_pending_stops_waits_and_can_be_cancelled() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let none = PlacementLimits {
        max_triggered_stops: 0,
        ..PlacementLimits::default()
    };
    trade_at(c, "100", &none).await;
    let early = place(
        c,
        NewOrder::stop(user(30), BTC, Side::Buy, dec("1"), dec("105")),
    )
    .await;
    trade_at(c, "106", &none).await;
    assert_eq!(states(c, &[early.order.order_id]).await, ["PENDING|STOP"]);
    // Already reached at 106, but the bound triggers nothing: it waits too.
    let late = place_with(
        c,
        NewOrder::stop(user(31), BTC, Side::Buy, dec("1"), dec("104")),
        &none,
    )
    .await;
    assert_eq!(late.order.status, OrderStatus::Pending);
    assert!(late.triggered.is_empty());
    let cancelled = svc::cancel(c, user(31), late.order.order_id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        service::maintenance::trigger_reached_stops(c)
            .await
            .expect("job"),
        1
    );
    assert_eq!(states(c, &[early.order.order_id]).await, ["EXPIRED|MARKET"]);
}

/// Installs a trigger that fails the first `failures` rows of `event` on
/// `table` with SQLSTATE `code`. It counts with a sequence, which a rollback
/// does not reset, so exactly the first `failures` attempts fail.
async fn fail_first(c: &DatabaseConnection, failures: u32, code: &str, event: &str, table: &str) {
    exec(
        c,
        &format!(
            "CREATE SEQUENCE fault_seq;
             CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('fault_seq') <= {failures} THEN
                     RAISE EXCEPTION 'forced' USING ERRCODE = '{code}';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER fault BEFORE {event} ON {table}
                 FOR EACH ROW EXECUTE FUNCTION fault();"
        ),
    )
    .await;
}

/// The next `nextval` returns 1: every attempt fails again.
const FAIL_ALL_AGAIN: &str = "SELECT setval('fault_seq', 1, false)";

/// The next `nextval` returns the last failing value: one more failure.
const FAIL_ONCE_MORE: &str = "SELECT setval('fault_seq', 3, false)";

async fn faults_fired(c: &DatabaseConnection) -> i64 {
    scalar(c, "SELECT last_value FROM fault_seq").await
}

async fn orders_of(c: &DatabaseConnection, who: Uuid) -> i64 {
    scalar(
        c,
        &format!("SELECT count(*) FROM orders WHERE user_id = '{who}'"),
    )
    .await
}

fn assert_contention<T: std::fmt::Debug>(result: Result<T, ServiceError>, code: &str) {
    match result {
        Err(ServiceError::Contention { attempts, source }) => {
            assert_eq!(attempts, CONTENTION_ATTEMPTS);
            assert_eq!(tests::sql::sql_error(&source).0, code);
        }
        other => panic!("expected Contention, got {other:?}"),
    }
}

#[tokio::test]
async fn a_placement_is_tried_again_after_serialization_failures() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    fail_first(c, CONTENTION_ATTEMPTS - 1, "40001", "INSERT", "orders").await;
    let me = user(1);
    let placed = place(c, NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100"))).await;
    assert_eq!(placed.order.status, OrderStatus::Open);
    assert_eq!(orders_of(c, me).await, 1, "exactly one order");
    assert_eq!(faults_fired(c).await, i64::from(CONTENTION_ATTEMPTS));
}

#[tokio::test]
async fn a_placement_gives_up_after_its_attempts_and_stores_nothing() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    fail_first(c, CONTENTION_ATTEMPTS, "40001", "INSERT", "orders").await;
    let me = user(1);
    let result = svc::place(c, NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100"))).await;
    assert_contention(result, "40001");
    assert_eq!(orders_of(c, me).await, 0);
    assert_eq!(faults_fired(c).await, i64::from(CONTENTION_ATTEMPTS));
}

/// A deadlock in the trades insert of a matching placement: the whole
/// placement, maker updates included, is rolled back and done again once.
#[tokio::test]
async fn a_deadlocked_match_is_done_again_from_the_start() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let maker = place(
        c,
        NewOrder::limit(user(1), BTC, Side::Sell, dec("1"), dec("100")),
    )
    .await;
    fail_first(c, 1, "40P01", "INSERT", "trades").await;
    let taker = place(
        c,
        NewOrder::limit(user(2), BTC, Side::Buy, dec("0.4"), dec("100")),
    )
    .await;
    assert_eq!(taker.trades.len(), 1);
    let rows = lines(
        c,
        &format!(
            "SELECT status, filled_quantity FROM orders WHERE order_id = '{}'",
            maker.order.order_id
        ),
    )
    .await;
    assert_eq!(
        rows,
        ["PARTIALLY_FILLED|0.40000000"],
        "filled once, not twice"
    );
    let trades: i64 = scalar(c, "SELECT count(*) FROM trades").await;
    assert_eq!(trades, 1);
}

/// Inside a caller's transaction each attempt is a savepoint: the failed one
/// is rolled back to, and the caller's transaction commits the retry.
#[tokio::test]
async fn a_placement_in_a_callers_transaction_retries_in_a_savepoint() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    fail_first(c, 1, "40001", "INSERT", "orders").await;
    let me = user(1);
    let txn = c.begin().await.expect("begin");
    svc::place(
        &txn,
        NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100")),
    )
    .await
    .expect("the second attempt");
    txn.commit().await.expect("commit");
    assert_eq!(orders_of(c, me).await, 1);
}

#[tokio::test]
async fn cancel_and_expiry_retry_contention_and_report_it_when_it_persists() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let me = user(1);
    let bid = place(c, NewOrder::limit(me, BTC, Side::Buy, dec("1"), dec("100"))).await;
    let due = tests::sql::insert_order(
        c,
        me,
        "BTC/USDT BUY LIMIT OPEN 1 99",
        "expires_at = now() - interval '1 minute'",
    )
    .await;
    fail_first(c, CONTENTION_ATTEMPTS, "40P01", "UPDATE", "orders").await;
    assert_contention(svc::cancel(c, me, bid.order.order_id).await, "40P01");
    exec(c, FAIL_ALL_AGAIN).await;
    assert_contention(svc::expire_due(c).await, "40P01");
    assert_eq!(
        states(c, &[bid.order.order_id, due]).await,
        ["OPEN|LIMIT", "OPEN|LIMIT"],
        "nothing changed"
    );
    // One failure each: the second attempt goes through.
    exec(c, FAIL_ONCE_MORE).await;
    let cancelled = svc::cancel(c, me, bid.order.order_id)
        .await
        .expect("second attempt");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    exec(c, FAIL_ONCE_MORE).await;
    assert_eq!(svc::expire_due(c).await.expect("second attempt"), [due]);
    assert_eq!(faults_fired(c).await, i64::from(CONTENTION_ATTEMPTS) + 1);
}

/// The background jobs' lock timeout: an expiry blocked by a row lock gives up
/// with `Timeout` instead of waiting, and succeeds once the lock is gone.
#[tokio::test]
async fn a_job_blocked_by_a_lock_times_out_and_succeeds_later() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let due = tests::sql::insert_order(
        c,
        user(1),
        "BTC/USDT BUY LIMIT OPEN 1 99",
        "expires_at = now() - interval '1 minute'",
    )
    .await;
    let holder = db.connect_single().await;
    exec(&holder, "BEGIN").await;
    // Returns once the row lock is held: no waiting needed.
    exec(
        &holder,
        &format!("SELECT 1 FROM orders WHERE order_id = '{due}' FOR UPDATE"),
    )
    .await;

    let pool = Settings {
        job_lock_timeout: Duration::from_millis(200),
        ..Settings::default()
    }
    .pool(c.clone());
    let blocked = pool
        .run_unbounded(async |db| service::maintenance::expire_orders(db).await)
        .await;
    match blocked {
        Err(ServiceError::Timeout(err)) => assert_eq!(tests::sql::sql_error(&err).0, "55P03"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(states(c, &[due]).await, ["OPEN|LIMIT"]);

    exec(&holder, "ROLLBACK").await;
    let expired = pool
        .run_unbounded(async |db| service::maintenance::expire_orders(db).await)
        .await
        .expect("the lock is gone");
    assert_eq!(expired, [due]);
}

/// The timeout is the job's own: it is set in the job's transaction only, and
/// a plain unit of work on the same pool keeps the session's setting.
#[tokio::test]
async fn the_job_lock_timeout_is_local_to_the_jobs_transaction() {
    let db = TestDb::migrated().await;
    let single = db.connect_single().await;
    let pool = Settings {
        job_lock_timeout: Duration::from_millis(1234),
        ..Settings::default()
    }
    .pool(single);
    let inside: String = pool
        .run_unbounded(async |db| Ok::<_, ServiceError>(scalar(db, "SHOW lock_timeout").await))
        .await
        .expect("show");
    assert_eq!(inside, "1234ms");
    let statement: String = pool
        .run_unbounded(async |db| Ok::<_, ServiceError>(scalar(db, "SHOW statement_timeout").await))
        .await
        .expect("show");
    assert_eq!(statement, "0");
    let after: String = scalar(pool.connection(), "SHOW lock_timeout").await;
    assert_eq!(after, "0");
    let default: String = Pool::new(pool.connection().clone(), PoolMode::Direct)
        .run_unbounded(async |db| Ok::<_, ServiceError>(scalar(db, "SHOW lock_timeout").await))
        .await
        .expect("show");
    assert_eq!(default, "5s");
}

/// The status-transition trigger's refusal (a terminal order changing status,
/// as a writer racing the engine would try) is its own variant, a conflict.
#[tokio::test]
async fn a_status_change_the_trigger_refuses_is_transition_refused() {
    let db = TestDb::migrated().await;
    let order =
        tests::sql::insert_order(db.conn(), user(1), "BTC/USDT BUY LIMIT FILLED 1 50000", "").await;
    let refused = tests::sql::try_exec(
        db.conn(),
        &format!("UPDATE orders SET status = 'OPEN' WHERE order_id = '{order}'"),
    )
    .await
    .expect_err("a filled order cannot reopen");
    match ServiceError::from(refused) {
        err @ ServiceError::TransitionRefused { .. } => {
            assert!(err.is_conflict(), "{err}");
            assert!(err.to_string().contains("filled order"), "{err}");
        }
        other => panic!("expected TransitionRefused, got {other:?}"),
    }
}

/// A batch counts its own orders against the cap as it places them: one that
/// rests takes room for the next of its user, one its batch fills frees
/// room, also when the user's stored count was at the cap when the batch
/// read it, and not when it was over the cap.
#[tokio::test]
async fn a_batch_counts_its_own_orders_against_the_resting_cap() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let me = user(1);
    let limits = PlacementLimits {
        max_resting_orders_per_user: 2,
        ..PlacementLimits::default()
    };
    let ask = |price: &str| NewOrder::limit(me, BTC, Side::Sell, dec("1"), dec(price));
    let take = || NewOrder::market(user(2), BTC, Side::Buy, dec("1"));
    place_with(c, ask("100"), &limits).await;
    // One stored: the first ask of the batch rests (two), the second is
    // refused, a buy fills the stored one (one again), the third rests.
    let [first, second, taken, third]: [_; 4] =
        svc::place_many(c, vec![ask("101"), ask("102"), take(), ask("103")], &limits)
            .await
            .try_into()
            .expect("four results");
    assert_eq!(
        first.as_ref().map(|p| p.order.status).ok(),
        Some(OrderStatus::Open)
    );
    refused_for_resting(second, me, 2);
    assert_eq!(taken.as_ref().map(|p| p.trades.len()).ok(), Some(1));
    assert_eq!(
        third.as_ref().map(|p| p.order.status).ok(),
        Some(OrderStatus::Open)
    );
    // Two stored, at the cap: a buy of the batch fills one, so the next ask
    // of the batch has room.
    let [taken, room, refused]: [_; 3] =
        svc::place_many(c, vec![take(), ask("104"), ask("105")], &limits)
            .await
            .try_into()
            .expect("three results");
    assert_eq!(taken.as_ref().map(|p| p.trades.len()).ok(), Some(1));
    assert_eq!(
        room.as_ref().map(|p| p.order.status).ok(),
        Some(OrderStatus::Open)
    );
    refused_for_resting(refused, me, 2);
    // Three stored, over the cap (placed within a wider one): the count the
    // batch reads stops at the cap, so after its fill only a fresh count
    // shows the user still at the cap.
    place_with(c, ask("106"), &PlacementLimits::default()).await;
    let [taken, refused]: [_; 2] = svc::place_many(c, vec![take(), ask("107")], &limits)
        .await
        .try_into()
        .expect("two results");
    assert_eq!(taken.as_ref().map(|p| p.trades.len()).ok(), Some(1));
    refused_for_resting(refused, me, 2);
    let resting: i64 = scalar(
        c,
        &format!("SELECT count(*) FROM orders WHERE user_id = '{me}' AND status = 'OPEN'"),
    )
    .await;
    assert_eq!(resting, 2);
}
