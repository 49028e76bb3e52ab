//! The README's examples of *Using the API* (JWT and trusted-header), run as
//! written: each shell block is taken from README.md and run by bash against a
//! test database, with `cargo run -p api` standing for the api built for the
//! tests (`reliability_api`, which serves and mints tokens as `api` does). The
//! blocks' own commands — `openssl`, the wait for `/ready`, every `curl` — run
//! unchanged, on the port they name (8080).

use std::net::TcpListener;
use std::process::Command;

use tests::db::TestDb;
use tests::readme::{readme, shell_block};

/// `cargo run -p api` and `cargo run -q -p api -- token …` as the README
/// writes them, mapped to the test build of the api; any other cargo call
/// fails the script.
const CARGO_STANDS_IN: &str = r#"
cargo() {
  case "$*" in
    "run -p api") exec "$API_BIN" ;;
    "run -q -p api -- token "*) shift 5; "$API_BIN" "$@" ;;
    *) echo "the README ran an unexpected cargo $*" >&2; return 1 ;;
  esac
}
"#;

/// Runs the README's block after `marker` against `db` and returns what it
/// printed; panics when the block fails or an answer is an error.
async fn run_block(db: &TestDb, readme: &str, marker: &str) -> String {
    let block = shell_block(readme, marker);
    assert!(
        TcpListener::bind("127.0.0.1:8080").is_ok(),
        "the README's example serves on 127.0.0.1:8080, which something else holds: free it to run this test"
    );
    let script = format!("{CARGO_STANDS_IN}\n{block}\nkill %1\nwait\n");
    let output = tokio::task::spawn_blocking({
        let url = db.url().to_owned();
        move || {
            Command::new("bash")
                .arg("-c")
                .arg(script)
                .env("API_BIN", env!("CARGO_BIN_EXE_reliability_api"))
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .env_remove("AUTH_MODE")
                .env_remove("BIND_ADDR")
                .output()
                .expect("bash runs")
        }
    })
    .await
    .expect("the script's thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the block failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("\"error\""),
        "a request of the README was refused:\n{stdout}"
    );
    stdout.into_owned()
}

/// Both examples of *Using the API*, one after the other (they serve on the
/// same port).
#[tokio::test]
async fn the_readmes_examples_run_as_written() {
    let db = TestDb::migrated().await;
    let readme = readme();
    let stdout = run_block(&db, &readme, "JWT mode (the default)").await;
    // Alice's resting sell, filled by Bob's market buy; her bid, read and
    // cancelled; the market data and Bob's own trade.
    for expected in [
        r#""type":"MARKET","status":"FILLED""#,
        r#""status":"CANCELLED""#,
        r#""symbol":"BTC/USDT","bids":"#,
        r#""period":"24h""#,
        r#""taker_side":"BUY""#,
        "HTTP/1.1 200 OK",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} is in the answers:\n{stdout}"
        );
    }
    // Behind a gateway: the user's id in X-User-ID.
    let stdout = run_block(&db, &readme, "Trusted-header mode, behind a gateway").await;
    for expected in [r#""symbol":"ETH/USDT""#, r#""status":"OPEN""#] {
        assert!(
            stdout.contains(expected),
            "{expected} is in the answers:\n{stdout}"
        );
    }
}
