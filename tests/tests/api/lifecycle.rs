//! The api's lifecycle: graceful shutdown finishes requests in flight, and the
//! background jobs run partition maintenance and order expiry from the start.

use std::time::{Duration, Instant};

use api::auth::{Auth, Caller};
use api::config::{AuthMode, Config};
use api::server::{Server, connect, random_secret};
use sea_orm::DatabaseConnection;
use tests::app::{AppOptions, spawn_app};
use tests::db::TestDb;
use tests::sql::{exec, scalar};

/// Polls `query` until it returns true, for at most `within`.
async fn eventually(db: &DatabaseConnection, query: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if scalar::<bool>(db, query).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_finishes_the_requests_in_flight() {
    let app = spawn_app(AppOptions::jwt()).await;
    let blocker = app.db().connect_single().await;
    // A request that waits on a lock this test holds.
    exec(
        &blocker,
        "BEGIN; LOCK TABLE symbols IN ACCESS EXCLUSIVE MODE;",
    )
    .await;
    let in_flight = {
        let client = app.client.clone();
        let url = app.url("/api/v1/symbols");
        tokio::spawn(async move { client.get(url).send().await })
    };
    let waiting = "SELECT count(*) = 1 FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    assert!(
        eventually(app.db().conn(), waiting, Duration::from_secs(10)).await,
        "the request waits on the lock"
    );
    let base = app.url("/health");
    let client = app.client.clone();
    let stopping = tokio::spawn(app.shutdown());
    // Synchronized on the listener: once it refuses connections the server
    // is stopping, and the request in flight still holds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(&base).send().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "new connections are still accepted after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    exec(&blocker, "COMMIT").await;
    let answer = in_flight
        .await
        .expect("the request task")
        .expect("the request in flight is answered");
    assert_eq!(answer.status(), 200);
    let symbols: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(symbols.as_array().map(Vec::len), Some(10));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops once the request is answered")
        .expect("the shutdown task");
    blocker.close().await.ok();
}

#[tokio::test]
async fn background_jobs_maintain_partitions_and_expire_orders_from_the_start() {
    let db = TestDb::migrated().await;
    let c = db.conn();
    let partition: String = scalar(
        c,
        "SELECT 'orders_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months', 'YYYY_MM')",
    )
    .await;
    exec(c, &format!("DROP TABLE {partition}")).await;
    exec(
        c,
        "INSERT INTO orders (order_id, user_id, symbol, side, order_type, status, quantity, price, expires_at)
         VALUES ('00000000-0000-0000-0000-0000000000e1', gen_random_uuid(), 'BTC/USDT', 'BUY', 'LIMIT',
                 'OPEN', 1, 100, now() - interval '1 second')",
    )
    .await;

    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(db.url().to_owned()),
        "BIND_ADDR" => Some("127.0.0.1:0".to_owned()),
        "BACKGROUND_JOBS" => Some("true".to_owned()),
        _ => None,
    })
    .expect("configuration");
    let pool = connect(db.url(), &config).await.expect("pool");
    let server = Server::start(
        pool.clone(),
        Auth::new(AuthMode::Jwt, &random_secret()),
        &config,
    )
    .await
    .expect("the api starts");

    let recreated = format!("SELECT to_regclass('{partition}') IS NOT NULL");
    assert!(
        eventually(c, &recreated, Duration::from_secs(15)).await,
        "partition maintenance ran at start"
    );
    let expired = "SELECT status = 'EXPIRED' FROM orders
                   WHERE order_id = '00000000-0000-0000-0000-0000000000e1'";
    assert!(
        eventually(c, expired, Duration::from_secs(15)).await,
        "order expiry ran at start"
    );
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("the jobs stop with the server")
        .expect("a clean stop");
    pool.close().await.ok();
}

/// The api's process as `api` reads its settings: from the environment
/// (clap, each argument bound to its variable), a blank variable counting as
/// unset and a bad one named in one line.
#[test]
fn settings_come_from_the_environment_and_a_bad_one_is_named_in_one_line() {
    let api = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reliability_api"));
        command.args(["token", "00000000-0000-0000-0000-00000000000a"]);
        for name in ["DATABASE_URL", "BIND_ADDR", "AUTH_MODE", "JWT_SECRET"] {
            command.env_remove(name);
        }
        let output = command.envs(vars.iter().copied()).output().expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let secret = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");
    // Read from the environment: a token signed with the secret given there.
    let (ok, token, _) = api(&[secret]);
    assert!(ok);
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", token.trim());
    headers.insert("authorization", bearer.parse().expect("a header value"));
    assert_eq!(
        Auth::new(AuthMode::Jwt, secret.1).caller(&headers, None),
        Caller::User(
            "00000000-0000-0000-0000-00000000000a"
                .parse()
                .expect("uuid")
        ),
        "signed with JWT_SECRET"
    );
    // A blank BIND_ADDR is unset (the loopback default, which needs no
    // secret rule), a non-loopback one without a secret is refused.
    let (ok, _, stderr) = api(&[secret, ("BIND_ADDR", "  ")]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = api(&[("BIND_ADDR", "0.0.0.0:8080")]);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: JWT_SECRET=\"\" is invalid: must be set when BIND_ADDR"),
        "{stderr}"
    );
    for (vars, line) in [
        (
            vec![secret, ("DB_MAX_CONNECTIONS", "0")],
            "error: DB_MAX_CONNECTIONS=\"0\" is invalid: expected a whole number from 1 to 1000\n",
        ),
        (
            vec![secret, ("AUTH_MODE", "basic")],
            "error: AUTH_MODE=\"basic\" is invalid: expected jwt or trusted-header\n",
        ),
        (
            vec![("JWT_SECRET", "too short")],
            "error: JWT_SECRET=\"(hidden)\" is invalid: must be at least 32 bytes, e.g. the output of `openssl rand -hex 32`\n",
        ),
        (
            vec![secret, ("RABBITMQ_URL", "https://user:pw@broker")],
            "error: RABBITMQ_URL=\"(hidden)\" is invalid: expected amqp://user:password@host:5672/vhost (amqps:// is not built in: terminate TLS in front of the broker, e.g. with a sidecar)\n",
        ),
    ] {
        let (ok, _, stderr) = api(&vars);
        assert!(!ok, "{vars:?}");
        assert_eq!(stderr, line);
    }
}
