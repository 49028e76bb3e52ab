//! The api as a process of its own, for the fault suite's kill test
//! (`tests/tests/reliability/api_kill.rs`) and the README's examples
//! (`tests/tests/api/readme.rs`): configuration from the environment as
//! `api serve` reads it, then it prints `listening on <addr>` on stdout and
//! serves until SIGTERM or SIGINT. A test may SIGKILL it. `token <user-uuid>
//! [--hours N]` prints a token as `api token` does (24 hours by default).

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "token") {
        return token(&config, &args[1..]);
    }
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

/// `token <user-uuid> [--hours N]`, signed with `JWT_SECRET`.
fn token(config: &Config, args: &[String]) -> ExitCode {
    let Some(secret) = &config.jwt_secret else {
        return fail("JWT_SECRET is not set");
    };
    let (user, hours) = match args {
        [user] => (user, 24),
        [user, flag, hours] if flag == "--hours" => match hours.parse::<u64>() {
            Ok(hours) => (user, hours),
            Err(_) => return fail(&format!("--hours {hours:?} is not a whole number")),
        },
        _ => return fail("usage: token <user-uuid> [--hours N]"),
    };
    let Ok(user) = uuid::Uuid::try_parse(user) else {
        return fail(&format!("{user:?} is not a UUID"));
    };
    match Auth::new(api::config::AuthMode::Jwt, secret).mint(
        user,
        std::time::Duration::from_secs(hours.saturating_mul(3600)),
    ) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(&format!("cannot sign the token: {err}")),
    }
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {message}");
    ExitCode::FAILURE
}
