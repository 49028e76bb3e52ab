//! The api as a process of its own, for the fault suite's kill test
//! (`tests/tests/reliability/api_kill.rs`): configuration from the
//! environment as `api serve` reads it, then it prints `listening on
//! <addr>` on stdout and serves until SIGTERM or SIGINT. A test may SIGKILL it.

use std::io::Write as _;
use std::process::ExitCode;

use api::auth::Auth;
use api::config::Config;
use api::server::{Server, connect, random_secret, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string()),
    };
    let Some(url) = config.database_url.clone() else {
        return fail("DATABASE_URL is not set");
    };
    let db = match connect(&url, &config).await {
        Ok(db) => db,
        Err(err) => return fail(&format!("cannot open the pool: {err}")),
    };
    let secret = config.jwt_secret.clone().unwrap_or_else(random_secret);
    let server = match Server::start(db, Auth::new(config.auth_mode, &secret), &config).await {
        Ok(server) => server,
        Err(err) => return fail(&format!("cannot listen on {}: {err}", config.bind_addr)),
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "listening on {}", server.addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return fail("stdout is closed");
    }
    shutdown_signal().await;
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("shutting down: {err}")),
    }
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {message}");
    ExitCode::FAILURE
}
