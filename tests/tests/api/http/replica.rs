//! Reads on a streaming replica (`DATABASE_READ_URL`): a private primary and
//! a hot standby of it made by `pg_basebackup -R`, both run as the `postgres`
//! account, with the api reading public data on the replica while it is
//! fresh, a user's own data on the primary until the replica has their
//! writes, and everything on the primary when the replica is paused past
//! `REPLICA_MAX_LAG_MS` or stopped.

use std::time::{Duration, Instant};

use api::replica::Freshness;
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use tests::app::{AppDatabase, AppOptions, TestApp};
use tests::faults::PrivateServer;
use tests::sql::scalar;
use uuid::Uuid;

use super::spawn_app;

const RECENT: &str = "/api/v1/trades?symbol=BTC-USDT";
const MY_TRADES: &str = "/api/v1/me/trades";

/// How long a state the test waits for may take to arrive.
const PATIENCE: Duration = Duration::from_secs(30);

fn user(n: u128) -> Uuid {
    Uuid::from_u128(0x5e91_0000 + n)
}

async fn app(primary: &str, replica: &str, max_lag_ms: &str) -> TestApp {
    spawn_app(
        AppOptions::trusted_header()
            .database(AppDatabase::Url(primary.to_owned()))
            .setting("DATABASE_READ_URL", replica)
            .setting("REPLICA_MAX_LAG_MS", max_lag_ms),
    )
    .await
}

/// Polls `probe` until it returns true, or fails the test after [`PATIENCE`].
async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !probe().await {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        // A poll interval, not a guess at how long the state takes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(app: &TestApp, path: &str, caller: Option<Uuid>) -> usize {
    let body: Value = match caller {
        Some(user) => app.get_json(path, user, 200).await,
        None => app.get_public_json(path, 200).await,
    };
    body.as_array()
        .unwrap_or_else(|| panic!("{path} answers an array: {body}"))
        .len()
}

async fn sql(db: &DatabaseConnection, statement: &str) {
    db.execute_unprepared(statement)
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_fresh_replica_and_to_the_primary_otherwise() {
    let primary = PrivateServer::start("replica_primary").await;
    let primary_url = primary.database_url();
    let primary_db = Database::connect(&primary_url).await.expect("primary");
    migration::Migrator::up(&primary_db, None)
        .await
        .expect("the primary is migrated");
    let standby = primary.replica("replica_standby").await;
    let standby_url = standby.database_url();
    let standby_db = Database::connect(&standby_url).await.expect("replica");
    let in_recovery: bool = scalar(&standby_db, "SELECT pg_is_in_recovery()").await;
    assert!(in_recovery, "the replica is a hot standby");

    // One api that trusts the replica up to a minute behind, one up to 300 ms.
    let patient = app(&primary_url, &standby_url, "60000").await;
    let strict = app(&primary_url, &standby_url, "300").await;

    // Streaming: a user reads each of their writes at once.
    let owner = user(1);
    for i in 0..10 {
        let order = patient
            .limit(owner, "BUY", "0.2", &format!("{}", 90 + i))
            .await;
        let id = order["id"].as_str().expect("order id");
        let read = patient
            .get_json(&format!("/api/v1/orders/{id}"), owner, 200)
            .await;
        assert_eq!(read["status"], "OPEN", "read after write {i}");
    }
    assert_eq!(
        count(&patient, "/api/v1/orders?limit=100", Some(owner)).await,
        10
    );

    // The patient api has seen the replica caught up; then replay pauses.
    until("the patient api finds the replica fresh", async || {
        matches!(
            patient.reads().check_now().await,
            Some(Freshness::Behind { lag }) if lag < Duration::from_secs(1)
        )
    })
    .await;
    sql(&standby_db, "SELECT pg_wal_replay_pause()").await;
    until("the replay is paused", async || {
        let state: String = scalar(&standby_db, "SELECT pg_get_wal_replay_pause_state()").await;
        state == "paused"
    })
    .await;

    // A trade on the primary that the paused replica does not have.
    let (maker, taker, bystander) = (user(2), user(3), user(4));
    patient.limit(maker, "SELL", "0.5", "100").await;
    patient.market(taker, "BUY", "0.5").await;
    // The patient api reads public data on the paused replica: no trade yet.
    assert_eq!(
        count(&patient, RECENT, None).await,
        0,
        "public read on the replica"
    );
    assert_eq!(count(&patient, MY_TRADES, Some(bystander)).await, 0);
    // The taker and the maker just wrote: their reads are the primary's.
    assert_eq!(
        count(&patient, MY_TRADES, Some(taker)).await,
        1,
        "read your writes"
    );
    assert_eq!(
        count(&patient, MY_TRADES, Some(maker)).await,
        1,
        "read your writes"
    );
    // The strict api finds the replica more than 300 ms behind and bypasses it.
    until("the strict api reads on the primary", async || {
        count(&strict, RECENT, None).await == 1
    })
    .await;
    let lagging = strict.reads().check_now().await;
    assert!(
        !matches!(lagging, Some(Freshness::Behind { lag }) if lag <= Duration::from_millis(300)),
        "the paused replica is not within 300 ms: {lagging:?}"
    );

    // Replay resumed: the replica catches up and serves the trade.
    sql(&standby_db, "SELECT pg_wal_replay_resume()").await;
    until("the replica replays the trade", async || {
        let trades: i64 = scalar(&standby_db, "SELECT count(*) FROM trades").await;
        trades == 1
    })
    .await;
    until("the patient api reads the trade", async || {
        count(&patient, RECENT, None).await == 1
    })
    .await;

    // The replica stopped: every read is answered by the primary, at once.
    drop(standby_db);
    standby.crash();
    assert_eq!(count(&patient, RECENT, None).await, 1, "replica down");
    assert_eq!(count(&patient, MY_TRADES, Some(bystander)).await, 0);
    assert_eq!(count(&patient, MY_TRADES, Some(taker)).await, 1);
    let book = patient
        .get_public_json("/api/v1/orderbook/BTC-USDT", 200)
        .await;
    assert_eq!(book["bids"].as_array().map(Vec::len), Some(10), "{book}");
    assert_eq!(patient.reads().check_now().await, Some(Freshness::Down));
    patient.shutdown().await;
    strict.shutdown().await;
}
