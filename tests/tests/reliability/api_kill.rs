//! The api killed mid-flight: the api runs as a process
//! of its own (`src/bin/reliability_api.rs`) and gets SIGKILL while
//! placements that sweep several price levels are in flight. After a
//! restart: every placement answered 201 is stored with exactly the trades it
//! reported, no order is half-matched (each placement committed whole or not
//! at all), the symbol is not left locked, and the invariants hold.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api::auth::Auth;
use api::config::AuthMode;
use serde_json::{Value, json};
use tests::db::TestDb;
use tests::faults::Invariants;
use tests::sql::{column, lines};
use tokio::task::JoinSet;
use uuid::Uuid;

const CLIENTS: usize = 6;
/// Load before the kill.
const BEFORE_KILL: Duration = Duration::from_millis(1200);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Per client_order_id, the trades its order executed as the taker.
const TAKER_TRADES: &str = "\
    SELECT o.client_order_id, count(t.trade_id) FROM orders o \
    LEFT JOIN trades t \
      ON (t.buyer_order_id = o.order_id AND NOT t.is_buyer_maker) \
      OR (t.seller_order_id = o.order_id AND t.is_buyer_maker) \
    WHERE o.client_order_id IS NOT NULL GROUP BY o.client_order_id";

/// A running api process and its address.
struct ApiProcess {
    child: Child,
    address: String,
}

impl ApiProcess {
    /// Starts the binary on a free port and waits for its `listening on` line.
    fn start(database_url: &str, secret: &str) -> ApiProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reliability_api"))
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("AUTH_MODE", "jwt")
            .env("JWT_SECRET", secret)
            .env("MIGRATE_ON_START", "false")
            .env("BACKGROUND_JOBS", "false")
            .env("DB_MAX_CONNECTIONS", "8")
            .env("DB_ACQUIRE_TIMEOUT_MS", "5000")
            // Each client places as fast as it can: no rate limit.
            .env("RATE_LIMIT_PER_SECOND", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("the api binary starts: {err}"));
        let stdout = child.stdout.take().expect("a piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|_| panic!("the api said where it listens within {START_TIMEOUT:?}"));
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the api: {line:?}"));
        ApiProcess {
            address: format!("http://{addr}"),
            child,
        }
    }

    /// SIGKILL: no graceful shutdown, in-flight transactions cut off.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one client saw before the api died.
#[derive(Default)]
struct Seen {
    /// (client_order_id, trades reported) of the placements answered 201.
    placed: Vec<(String, usize)>,
    requests: usize,
    cut_off: usize,
}

async fn client(address: String, token: String, n: usize, stop: Arc<AtomicBool>) -> Seen {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mut seen = Seen::default();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let client_order_id = format!("k{n}-{i}");
        // Makers refill the book, takers sweep several levels at once.
        let order = if n.is_multiple_of(2) {
            json!({"symbol": "ETH/USDT", "side": "SELL", "type": "LIMIT", "quantity": "0.5",
                   "price": format!("{}", 3000 + (i % 20)), "client_order_id": client_order_id})
        } else {
            json!({"symbol": "ETH/USDT", "side": "BUY", "type": "MARKET", "quantity": "2.2",
                   "client_order_id": client_order_id})
        };
        let sent = http
            .post(format!("{address}/api/v1/orders"))
            .bearer_auth(&token)
            .json(&order)
            .send()
            .await;
        seen.requests += 1;
        let response = match sent {
            Ok(response) => response,
            Err(_) => {
                // The api is gone: this request's fate is unknown.
                seen.cut_off += 1;
                break;
            }
        };
        let status = response.status().as_u16();
        let Ok(body) = response.json::<Value>().await else {
            seen.cut_off += 1;
            break;
        };
        assert!(status == 201, "client {n}: {status} {body}");
        let trades = body["trades"].as_array().map_or(0, Vec::len);
        seen.placed.push((client_order_id, trades));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_api_leaves_every_placement_whole_and_a_restart_serves_again() {
    let db = TestDb::migrated().await;
    let secret = api::server::random_secret();
    let auth = Auth::new(AuthMode::Jwt, &secret);
    let mut api = ApiProcess::start(db.url(), &secret);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        let token = auth
            .mint(Uuid::new_v4(), Duration::from_secs(600))
            .expect("a token");
        clients.spawn(client(api.address.clone(), token, n, Arc::clone(&stop)));
    }
    tokio::time::sleep(BEFORE_KILL).await;
    tokio::task::block_in_place(|| api.kill());
    let mut seen = Seen::default();
    while let Some(joined) = clients.join_next().await {
        let one = joined.expect("a client finishes without panicking");
        seen.placed.extend(one.placed);
        seen.requests += one.requests;
        seen.cut_off += one.cut_off;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(seen.cut_off > 0, "the kill cut requests off");

    // Every acknowledged placement is stored, with exactly the trades it
    // executed as the taker (later fills against it as a maker come on top).
    let stored: std::collections::HashMap<String, i64> = lines(db.conn(), TAKER_TRADES)
        .await
        .iter()
        .filter_map(|line| {
            let (id, count) = line.split_once('|')?;
            Some((id.to_owned(), count.parse().ok()?))
        })
        .collect();
    let mut checked = 0;
    for (client_order_id, reported) in &seen.placed {
        let found = stored.get(client_order_id).copied();
        assert_eq!(
            found,
            Some(*reported as i64),
            "{client_order_id}: answered 201 with {reported} trades"
        );
        checked += 1;
    }
    // No placement left half done: nothing PENDING, a market order never
    // rests, and every order's fills equal its trades (the invariants).
    let pending: Vec<String> = column(
        db.conn(),
        "SELECT client_order_id FROM orders WHERE status = 'PENDING' \
            OR (order_type = 'MARKET' AND status IN ('OPEN', 'PARTIALLY_FILLED'))",
    )
    .await;
    assert!(pending.is_empty(), "half-placed orders: {pending:?}");
    let invariants = Invariants::check(db.conn()).await;
    invariants.assert_hold();

    // A new api process serves the same symbol at once: no lock was left behind.
    let restarted = ApiProcess::start(db.url(), &secret);
    let token = auth
        .mint(Uuid::new_v4(), Duration::from_secs(600))
        .expect("a token");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let response = http
        .post(format!("{}/api/v1/orders", restarted.address))
        .bearer_auth(&token)
        .json(&json!({"symbol": "ETH/USDT", "side": "BUY", "type": "MARKET", "quantity": "0.5"}))
        .send()
        .await
        .unwrap_or_else(|err| panic!("the restarted api answers: {err}"));
    assert_eq!(response.status().as_u16(), 201);
    Invariants::check(db.conn()).await.assert_hold();
    println!(
        "api kill: {} requests, {} answered 201 before SIGKILL, {} cut off; {checked} placements \
         checked whole, 0 half-matched; {invariants:?}",
        seen.requests,
        seen.placed.len(),
        seen.cut_off
    );
    drop(restarted);
}
