//! Database restart under load: clients place and cancel
//! orders through the api while the test's own PostgreSQL is stopped with
//! `pg_ctl stop -m immediate` and started again on the same port. Every write
//! answered 2xx is in the database afterwards; requests during the outage get
//! 503 with the contract's body and none hangs; the api recovers without a
//! restart; the service's invariants hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tests::app::wire::{assert_error_body, read};
use tests::app::{AppDatabase, AppOptions, TestApp, spawn_app};
use tests::faults::{Invariants, PrivateServer};
use tests::sql::column;
use tokio::task::JoinSet;
use uuid::Uuid;

const CLIENTS: usize = 4;
/// Load before the crash, length of the outage, load after the restart.
const BEFORE: Duration = Duration::from_millis(1500);
const OUTAGE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(3);
/// No answer may take longer than this (the pool's acquire timeout is 1 s,
/// its connect timeout 5 s).
const ANSWER_BOUND: Duration = Duration::from_secs(12);

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// client_order_ids answered 201.
    placed: Vec<String>,
    /// Order ids whose cancel was answered 200.
    cancelled: Vec<String>,
    unavailable: usize,
    cancels_too_late: usize,
    requests: usize,
}

async fn client(app: Arc<TestApp>, n: usize, stop: Arc<AtomicBool>) -> Seen {
    let user = Uuid::new_v4();
    let http = reqwest::Client::builder()
        .timeout(ANSWER_BOUND)
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mut seen = Seen::default();
    let mut resting: Vec<String> = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let cancel = i.is_multiple_of(3) && !resting.is_empty();
        let started = Instant::now();
        let request = if cancel {
            let id = resting.remove(0);
            (
                id.clone(),
                http.delete(app.url(&format!("/api/v1/orders/{id}"))),
            )
        } else {
            // Buyers bid 49 000–49 990, sellers ask 49 500–50 490: they cross.
            let (side, price) = if (n + i as usize).is_multiple_of(2) {
                ("BUY", 49_000 + (i * 37) % 1000)
            } else {
                ("SELL", 49_500 + (i * 53) % 1000)
            };
            let client_order_id = format!("c{n}-{i}");
            let order = json!({"symbol": "BTC/USDT", "side": side, "type": "LIMIT",
                               "quantity": "0.01", "price": price.to_string(),
                               "client_order_id": client_order_id});
            (
                client_order_id,
                http.post(app.url("/api/v1/orders")).json(&order),
            )
        };
        let (key, builder) = request;
        let response = app
            .authorize(builder, user)
            .send()
            .await
            .unwrap_or_else(|err| panic!("client {n}: no answer for {key}: {err}"));
        let reply = read(response).await;
        let took = started.elapsed();
        assert!(took < ANSWER_BOUND, "client {n}: {key} took {took:?}");
        seen.requests += 1;
        match reply.status {
            201 => {
                let body = reply.json();
                if matches!(
                    body["order"]["status"].as_str(),
                    Some("OPEN" | "PARTIALLY_FILLED")
                ) {
                    resting.push(body["order"]["id"].as_str().unwrap_or_default().to_owned());
                }
                seen.placed.push(key);
            }
            200 => seen.cancelled.push(key),
            503 => {
                assert_error_body(&reply.json(), 503);
                seen.unavailable += 1;
            }
            // A cancel that lost the race with a fill (a 404 would mean an
            // acknowledged order went missing).
            409 => {
                assert_error_body(&reply.json(), 409);
                seen.cancels_too_late += 1;
            }
            other => panic!("client {n}: {key}: {other} {}", reply.text),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_an_immediate_shutdown_and_the_api_recovers() {
    let server = PrivateServer::start("restart").await;
    let url = server.database_url();
    let admin = sea_orm::Database::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    migration::run(
        &admin,
        migration::Operation::Up(None),
        migration::DataLoss::Refuse,
    )
    .await
    .unwrap_or_else(|err| panic!("migrations on the private server: {err}"));
    admin.close().await.ok();
    let app = Arc::new(
        spawn_app(
            AppOptions::jwt()
                .pool(5, Duration::from_secs(1))
                .database(AppDatabase::Url(url.clone())),
        )
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        clients.spawn(client(Arc::clone(&app), n, Arc::clone(&stop)));
    }
    tokio::time::sleep(BEFORE).await;
    tokio::task::block_in_place(|| server.crash());
    tokio::time::sleep(OUTAGE).await;
    tokio::task::block_in_place(|| server.restart());
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    while let Some(joined) = clients.join_next().await {
        let one = joined.expect("a client finishes without panicking");
        seen.placed.extend(one.placed);
        seen.cancelled.extend(one.cancelled);
        seen.unavailable += one.unavailable;
        seen.cancels_too_late += one.cancels_too_late;
        seen.requests += one.requests;
    }
    assert!(seen.unavailable > 0, "the outage was seen as 503s");
    // The api recovered by itself: a placement works now.
    let user = Uuid::new_v4();
    let placed = app.limit(user, "BUY", "0.01", "45000").await;
    assert_eq!(placed["status"], "OPEN");
    // Every acknowledged write is there.
    let check = sea_orm::Database::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let stored: Vec<String> = column(
        &check,
        "SELECT client_order_id FROM orders WHERE client_order_id IS NOT NULL",
    )
    .await;
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    let lost: Vec<&String> = seen
        .placed
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged placements lost: {lost:?}");
    let cancelled: Vec<String> = column(
        &check,
        "SELECT order_id::text FROM orders WHERE status = 'CANCELLED'",
    )
    .await;
    let cancelled: std::collections::HashSet<String> = cancelled.into_iter().collect();
    let undone: Vec<&String> = seen
        .cancelled
        .iter()
        .filter(|id| !cancelled.contains(*id))
        .collect();
    assert!(undone.is_empty(), "acknowledged cancels lost: {undone:?}");
    let invariants = Invariants::check(&check).await;
    invariants.assert_hold();
    println!(
        "db restart: {} requests ({} placed, {} cancelled, {} answered 503, {} cancels of filled orders 409), \
         1 immediate shutdown and restart; {} placements and {} cancels \
         checked, 0 lost; {invariants:?}",
        seen.requests,
        seen.placed.len(),
        seen.cancelled.len(),
        seen.unavailable,
        seen.cancels_too_late,
        seen.placed.len(),
        seen.cancelled.len()
    );
    check.close().await.ok();
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
    drop(server);
}
