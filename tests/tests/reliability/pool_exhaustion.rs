//! Pool exhaustion: more concurrent cancels than pool connections, while the
//! connections in use are held up by a lock: the rest wait up to the acquire
//! timeout and get 503 with the contract's body; none hangs, none is lost,
//! none is answered twice, and the pool recovers. (Writes of one symbol no
//! longer exhaust a pool: the sequencer writes them in batches on one
//! connection, which the second test shows; a cancel still reads its order
//! on a connection of its own before it queues, and that read is what the
//! lock holds up here.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tests::app::wire::{assert_error_body, read};
use tests::app::{AppOptions, spawn_app};
use tests::faults::Invariants;
use tests::sql::{column, exec, waiting_sessions};
use tokio::task::JoinSet;
use uuid::Uuid;

const POOL: u32 = 2;
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(700);
const CLIENTS: usize = 16;
/// How long the test's lock holds the pool's connections up.
const HOLD: Duration = Duration::from_millis(2500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_pool_wait_then_get_503_and_none_is_lost_or_doubled() {
    let app = Arc::new(spawn_app(AppOptions::jwt().pool(POOL, ACQUIRE_TIMEOUT)).await);
    let user = Uuid::new_v4();
    // Resting orders to cancel: each cancel reads its order in a unit of
    // work of its own, which holds a connection while it reads.
    let mut resting = Vec::new();
    for n in 0..CLIENTS {
        let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                           "quantity": "0.01", "price": "40000",
                           "client_order_id": format!("pool-{n}")});
        let placed = app.place_ok(user, &order).await;
        resting.push(
            placed["order"]["id"]
                .as_str()
                .expect("an order id")
                .to_owned(),
        );
    }
    // A session of the test's own blocks every read of orders, so the
    // cancels that got a connection keep it until the lock goes.
    let blocker = app.db().connect_single().await;
    exec(&blocker, "BEGIN").await;
    exec(&blocker, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE").await;
    let mut clients = JoinSet::new();
    for (n, id) in resting.iter().enumerate() {
        let app = Arc::clone(&app);
        let id = id.clone();
        clients.spawn(async move {
            let started = Instant::now();
            let reply = read(app.delete(&format!("/api/v1/orders/{id}"), user).await).await;
            (n, reply, started.elapsed())
        });
    }
    tokio::time::sleep(HOLD).await;
    exec(&blocker, "COMMIT").await;
    let (mut placed, mut refused) = (Vec::new(), Vec::new());
    while let Some(joined) = clients.join_next().await {
        let (n, reply, took) = joined.expect("a client task finishes");
        assert!(
            took < HOLD + Duration::from_secs(10),
            "client {n} waited {took:?}"
        );
        match reply.status {
            200 => placed.push(format!("pool-{n}")),
            503 => {
                assert_error_body(&reply.json(), 503);
                assert!(
                    took >= ACQUIRE_TIMEOUT.mul_f32(0.9),
                    "a 503 only after waiting for the acquire timeout, got one after {took:?}"
                );
                refused.push(format!("pool-{n}"));
            }
            other => panic!("client {n}: {other} {}", reply.text),
        }
    }
    assert_eq!(
        placed.len() + refused.len(),
        CLIENTS,
        "every client got one answer"
    );
    assert!(
        !refused.is_empty(),
        "the pool of {POOL} was exhausted by {CLIENTS} clients"
    );
    assert!(
        !placed.is_empty(),
        "the cancels holding connections completed"
    );
    let mut stored: Vec<String> = column(
        app.db().conn(),
        "SELECT client_order_id FROM orders WHERE status = 'CANCELLED' ORDER BY client_order_id",
    )
    .await;
    placed.sort();
    stored.sort();
    assert_eq!(stored, placed, "exactly the 200s are stored as cancelled");
    // The pool recovers without a restart.
    let after = app.limit(user, "SELL", "0.01", "41000").await;
    assert_eq!(after["status"], "OPEN");
    Invariants::check(app.db().conn()).await.assert_hold();
    println!(
        "pool exhaustion: {CLIENTS} cancels on {POOL} connections: {} done, {} refused with 503, 0 lost, 0 doubled",
        placed.len(),
        refused.len()
    );
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
}

/// Many placements of one symbol at once take one connection: the sequencer
/// queues them behind the batch that waits for the lock, and every one is
/// placed once the lock goes, none refused for want of a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_of_one_symbol_share_a_connection_through_the_sequencer() {
    let app = Arc::new(spawn_app(AppOptions::jwt().pool(POOL, ACQUIRE_TIMEOUT)).await);
    let blocker = app.db().connect_single().await;
    exec(&blocker, "BEGIN").await;
    exec(&blocker, "LOCK TABLE orders IN SHARE MODE").await;
    let user = Uuid::new_v4();
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        let app = Arc::clone(&app);
        clients.spawn(async move {
            let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                               "quantity": "0.01", "price": "40000",
                               "client_order_id": format!("seq-{n}")});
            read(app.place_order(user, &order).await).await
        });
    }
    // Every placement is queued or waiting on the lock before it goes.
    let waiting = app.db().connect_single().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked = waiting_sessions(&waiting, "relation = 'orders'::regclass").await;
        if blocked >= 1 || Instant::now() > deadline {
            break;
        }
        tokio::task::yield_now().await;
    }
    exec(&blocker, "COMMIT").await;
    let mut created = 0;
    while let Some(joined) = clients.join_next().await {
        let reply = joined.expect("a client task finishes");
        assert_eq!(reply.status, 201, "{}", reply.text);
        created += 1;
    }
    assert_eq!(created, CLIENTS);
    let stored: Vec<i64> = column(app.db().conn(), "SELECT count(*) FROM orders").await;
    assert_eq!(stored, [CLIENTS as i64]);
    Invariants::check(app.db().conn()).await.assert_hold();
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
}
