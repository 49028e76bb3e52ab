//! Pool exhaustion (issue 7, part 1): more concurrent placements than pool
//! connections, while the connections in use are held up by a lock: the rest
//! wait up to the acquire timeout and get 503 with the contract's body; none
//! hangs, none is lost, none is answered twice, and the pool recovers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tests::app::wire::{assert_error_body, read};
use tests::app::{AppOptions, spawn_app};
use tests::faults::Invariants;
use tests::sql::{column, exec};
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
    // A session of the test's own blocks every insert into orders, so the
    // placements that got a connection keep it until the lock goes.
    let blocker = app.db().connect_single().await;
    exec(&blocker, "BEGIN").await;
    exec(&blocker, "LOCK TABLE orders IN SHARE MODE").await;
    let user = Uuid::new_v4();
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        let app = Arc::clone(&app);
        clients.spawn(async move {
            let started = Instant::now();
            let order = json!({"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                               "quantity": "0.01", "price": "40000",
                               "client_order_id": format!("pool-{n}")});
            let reply = read(app.place_order(user, &order).await).await;
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
            201 => placed.push(format!("pool-{n}")),
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
        "the placements holding connections completed"
    );
    let mut stored: Vec<String> = column(
        app.db().conn(),
        "SELECT client_order_id FROM orders ORDER BY client_order_id",
    )
    .await;
    placed.sort();
    stored.sort();
    assert_eq!(stored, placed, "exactly the 201s are stored, once each");
    // The pool recovers without a restart.
    let after = app.limit(user, "SELL", "0.01", "41000").await;
    assert_eq!(after["status"], "OPEN");
    Invariants::check(app.db().conn()).await.assert_hold();
    println!(
        "pool exhaustion: {CLIENTS} clients on {POOL} connections: {} placed, {} refused with 503, 0 lost, 0 doubled",
        placed.len(),
        refused.len()
    );
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
}
