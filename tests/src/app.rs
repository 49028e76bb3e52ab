//! The api on a free port over a database of its own: [`spawn_app`].
//!
//! Zero To Production's `spawn_app()` habit: each test starts the real server
//! (router, extractors, pool, authentication) on `127.0.0.1:0` against a fresh
//! database and talks real HTTP to it through the typed methods of
//! [`TestApp`], so a test reads like a client's story. Background jobs are off,
//! so nothing changes rows behind the test's back.
//!
//! ```no_run
//! use serde_json::json;
//! use tests::app::{AppOptions, spawn_app, wire};
//! use uuid::Uuid;
//!
//! # async fn example() {
//! let app = spawn_app(AppOptions::jwt()).await;
//! let alice = Uuid::new_v4();
//! let placed = app
//!     .place_order(alice, &json!({"symbol": "BTC-USDT", "side": "SELL", "type": "LIMIT",
//!                                 "quantity": "1", "price": "50000.00"}))
//!     .await;
//! let body = wire::expect_json(placed, 201).await;
//! assert_eq!(body["order"]["price"], "50000");
//! app.shutdown().await;
//! # }
//! ```

pub mod wire;

use std::time::Duration;

use api::auth::Auth;
use api::config::{AuthMode, Config};
use api::server::{Server, connect};
use api::state::AppState;
use axum::Router;
use reqwest::{RequestBuilder, Response};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db::TestDb;
use crate::faults::{PoolMode, Pooler};

/// How long one request may take before the test fails instead of hanging.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long starting or stopping the server may take.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database the api's pool opens.
#[derive(Clone, Debug)]
pub enum AppDatabase {
    /// A fresh database with every migration applied (the usual case).
    Migrated,
    /// A fresh empty database: every migration is pending.
    Empty,
    /// This URL, and no test database (e.g. a closed port, for an outage).
    Url(String),
}

/// What [`spawn_app`] starts: the authentication mode, the pool, the database,
/// and whether a PgBouncer in transaction mode stands between them.
#[derive(Clone, Debug)]
pub struct AppOptions {
    pub auth_mode: AuthMode,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub database: AppDatabase,
    /// Through PgBouncer in transaction mode (`DB_POOL_MODE=transaction`).
    pub transaction_pooler: bool,
    /// `DB_STATEMENT_TIMEOUT_MS`; `None` leaves the api's default.
    pub statement_timeout: Option<Duration>,
    /// More settings by their README names (`REQUEST_TIMEOUT_MS`, …), over
    /// the test defaults. The rate limits are off unless set here: the tests
    /// send requests far faster than any client should.
    pub settings: Vec<(&'static str, String)>,
    /// Routes served beside the contract's, under the same layers (e.g. a
    /// handler that panics, for the panic guard).
    pub extra_routes: Router<AppState>,
}

/// Server connections of the PgBouncer [`AppOptions::through_transaction_pooler`]
/// starts: fewer than the api's client connections, so transactions of
/// different clients share server connections.
const POOLER_SERVER_CONNECTIONS: u32 = 2;

impl Default for AppOptions {
    /// JWT, five connections, a 5 s acquire timeout, a migrated database.
    fn default() -> AppOptions {
        AppOptions {
            auth_mode: AuthMode::Jwt,
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
            database: AppDatabase::Migrated,
            transaction_pooler: false,
            statement_timeout: None,
            settings: Vec::new(),
            extra_routes: Router::new(),
        }
    }
}

impl AppOptions {
    /// `AUTH_MODE=jwt`: `Authorization: Bearer <token>`.
    pub fn jwt() -> AppOptions {
        AppOptions::default()
    }

    /// `AUTH_MODE=trusted-header`: `X-User-ID: <uuid>`.
    pub fn trusted_header() -> AppOptions {
        AppOptions {
            auth_mode: AuthMode::TrustedHeader,
            ..AppOptions::default()
        }
    }

    /// `DB_MAX_CONNECTIONS` and `DB_ACQUIRE_TIMEOUT_MS`.
    pub fn pool(mut self, max_connections: u32, acquire_timeout: Duration) -> AppOptions {
        self.max_connections = max_connections;
        self.acquire_timeout = acquire_timeout;
        self
    }

    /// The database the pool opens.
    pub fn database(mut self, database: AppDatabase) -> AppOptions {
        self.database = database;
        self
    }

    /// `DB_STATEMENT_TIMEOUT_MS`.
    pub fn statement_timeout(mut self, timeout: Duration) -> AppOptions {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets `name` (a README variable) to `value` for this app.
    pub fn setting(mut self, name: &'static str, value: impl Into<String>) -> AppOptions {
        self.settings.push((name, value.into()));
        self
    }

    /// Serves `routes` beside the contract's, under the same layers.
    pub fn extra_routes(mut self, routes: Router<AppState>) -> AppOptions {
        self.extra_routes = routes;
        self
    }

    /// The api reaches its test database through a PgBouncer (the Debian
    /// package, started for this app) in transaction mode, with
    /// `DB_POOL_MODE=transaction`. Not for [`AppDatabase::Url`], which is
    /// used as given.
    pub fn through_transaction_pooler(mut self) -> AppOptions {
        self.transaction_pooler = true;
        self
    }
}

/// A running api and what a test needs to talk to it. Dropping it stops the
/// server and then drops the database; [`TestApp::shutdown`] stops it
/// gracefully and checks that it stopped.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub client: reqwest::Client,
    /// The secret the server verifies tokens with.
    pub jwt_secret: String,
    pub auth_mode: AuthMode,
    /// The api's own pool (not the test's).
    pub pool: DatabaseConnection,
    auth: Auth,
    server: Option<Server>,
    // Declared after the server so they are dropped after it is told to stop.
    pooler: Option<Pooler>,
    db: Option<TestDb>,
}

/// Starts the api on `127.0.0.1:0` with background jobs off, over a database
/// chosen by `options` (a fresh migrated one by default).
///
/// Panics with the reason when the database or the server cannot be set up.
pub async fn spawn_app(options: AppOptions) -> TestApp {
    let db = match &options.database {
        AppDatabase::Migrated => Some(TestDb::migrated().await),
        AppDatabase::Empty => Some(TestDb::empty().await),
        AppDatabase::Url(_) => None,
    };
    let pooler = match &db {
        Some(db) if options.transaction_pooler => Some(Pooler::start(
            PoolMode::Transaction,
            server_port(db.url()),
            POOLER_SERVER_CONNECTIONS,
        )),
        _ => None,
    };
    let database_url = match (&options.database, &db, &pooler) {
        (AppDatabase::Url(url), _, _) => url.clone(),
        (_, Some(db), Some(pooler)) => pooler.url_for(db.url()),
        (_, Some(db), None) => db.url().to_owned(),
        (_, None, _) => unreachable!("a test database exists unless a URL was given"),
    };
    let pool_mode = if pooler.is_some() {
        "transaction"
    } else {
        "direct"
    };
    let jwt_secret = api::server::random_secret();
    let mode = match options.auth_mode {
        AuthMode::Jwt => "jwt",
        AuthMode::TrustedHeader => "trusted-header",
    };
    // Through the README's variable names, so the test also covers them. The
    // test's own settings come first: the first match wins.
    let mut settings = options.settings.clone();
    settings.extend([
        ("DATABASE_URL", database_url.clone()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_MODE", mode.to_owned()),
        ("JWT_SECRET", jwt_secret.clone()),
        ("MIGRATE_ON_START", "false".to_owned()),
        ("DB_MAX_CONNECTIONS", options.max_connections.to_string()),
        (
            "DB_ACQUIRE_TIMEOUT_MS",
            options.acquire_timeout.as_millis().to_string(),
        ),
        ("BACKGROUND_JOBS", "false".to_owned()),
        ("DB_POOL_MODE", pool_mode.to_owned()),
        ("RATE_LIMIT_PER_SECOND", "0".to_owned()),
        ("ANONYMOUS_RATE_LIMIT_PER_SECOND", "0".to_owned()),
    ]);
    if let Some(timeout) = options.statement_timeout {
        settings.push(("DB_STATEMENT_TIMEOUT_MS", timeout.as_millis().to_string()));
    }
    let config = Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap_or_else(|err| panic!("the test configuration is valid: {err}"));
    let pool = connect(&database_url, &config)
        .await
        .unwrap_or_else(|err| panic!("the api's pool opens on {database_url}: {err}"));
    let server = tokio::time::timeout(
        LIFECYCLE_TIMEOUT,
        Server::start_with_routes(
            pool.clone(),
            Auth::new(options.auth_mode, &jwt_secret),
            &config,
            options.extra_routes.clone(),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("the api starts within {LIFECYCLE_TIMEOUT:?}"))
    .unwrap_or_else(|err| panic!("the api binds 127.0.0.1:0: {err}"));
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap_or_else(|err| panic!("the HTTP client builds: {err}"));
    TestApp {
        address: format!("http://{}", server.addr()),
        client,
        auth: Auth::new(options.auth_mode, &jwt_secret),
        jwt_secret,
        auth_mode: options.auth_mode,
        pool,
        server: Some(server),
        pooler,
        db,
    }
}

/// The port of the server behind `url` (5432 when it names none).
pub fn server_port(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(5432)
}

impl TestApp {
    /// Where the api's reads go (to check a replica's freshness now).
    pub fn reads(&self) -> &api::replica::Reads {
        self.server
            .as_ref()
            .unwrap_or_else(|| panic!("the server runs until shutdown"))
            .reads()
    }

    /// The api's WebSocket hub (e.g. to wait until it consumes the broker).
    pub fn events(&self) -> &std::sync::Arc<api::events::Hub> {
        self.server
            .as_ref()
            .expect("the server runs until shutdown")
            .events()
    }

    /// The test's database (its own pool, apart from the api's). Panics for an
    /// app started on [`AppDatabase::Url`].
    pub fn db(&self) -> &TestDb {
        self.db
            .as_ref()
            .unwrap_or_else(|| panic!("this app was started on a URL, without a test database"))
    }

    /// PgBouncer's log, when the app runs through one (for failure messages).
    pub fn pooler_log(&self) -> Option<String> {
        self.pooler.as_ref().map(Pooler::log_text)
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A token for `user` signed with the server's secret, valid for an hour.
    pub fn token(&self, user: Uuid) -> String {
        self.auth
            .mint(user, Duration::from_secs(3600))
            .unwrap_or_else(|err| panic!("a token is minted: {err}"))
    }

    /// `request` with `user`'s credentials, as the app's mode wants them.
    pub fn authorize(&self, request: RequestBuilder, user: Uuid) -> RequestBuilder {
        match self.auth_mode {
            AuthMode::Jwt => request.bearer_auth(self.token(user)),
            AuthMode::TrustedHeader => request.header("X-User-ID", user.to_string()),
        }
    }

    /// Sends `request`; panics (with the request) when no answer comes in
    /// [`REQUEST_TIMEOUT`] or the connection fails.
    pub async fn send(&self, request: RequestBuilder) -> Response {
        let described = format!("{request:?}");
        match request.send().await {
            Ok(response) => response,
            Err(err) => panic!("no HTTP answer to {described}: {err}"),
        }
    }

    /// `GET path` as `user`.
    pub async fn get(&self, path: &str, user: Uuid) -> Response {
        self.send(self.authorize(self.client.get(self.url(path)), user))
            .await
    }

    /// `GET path` without credentials.
    pub async fn get_public(&self, path: &str) -> Response {
        self.send(self.client.get(self.url(path))).await
    }

    /// `GET path` with exactly these headers (no credentials added).
    pub async fn get_raw(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// `DELETE path` as `user`.
    pub async fn delete(&self, path: &str, user: Uuid) -> Response {
        self.send(self.authorize(self.client.delete(self.url(path)), user))
            .await
    }

    /// `POST /api/v1/orders` with `order` as `user`.
    pub async fn place_order(&self, user: Uuid, order: &Value) -> Response {
        let request = self.client.post(self.url("/api/v1/orders")).json(order);
        self.send(self.authorize(request, user)).await
    }

    /// `POST path` with exactly these headers and this body (no credentials
    /// or content type added).
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Places `order` as `user`, expects 201, and returns `{"order", "trades"}`.
    pub async fn place_ok(&self, user: Uuid, order: &Value) -> Value {
        wire::expect_json(self.place_order(user, order).await, 201).await
    }

    /// A GTC limit order on BTC/USDT; returns the order after matching.
    pub async fn limit(&self, user: Uuid, side: &str, quantity: &str, price: &str) -> Value {
        let placed = self
            .place_ok(
                user,
                &json!({"symbol": "BTC/USDT", "side": side, "type": "LIMIT",
                        "quantity": quantity, "price": price}),
            )
            .await;
        placed["order"].clone()
    }

    /// A market order on BTC/USDT; returns `{"order", "trades"}`.
    pub async fn market(&self, user: Uuid, side: &str, quantity: &str) -> Value {
        self.place_ok(
            user,
            &json!({"symbol": "BTC/USDT", "side": side, "type": "MARKET", "quantity": quantity}),
        )
        .await
    }

    /// `GET path` as `user`, expecting `status`; returns the JSON body.
    pub async fn get_json(&self, path: &str, user: Uuid, status: u16) -> Value {
        wire::expect_json(self.get(path, user).await, status).await
    }

    /// `GET path` without credentials, expecting `status`; returns the JSON body.
    pub async fn get_public_json(&self, path: &str, status: u16) -> Value {
        wire::expect_json(self.get_public(path).await, status).await
    }

    /// Stops accepting, lets in-flight requests finish, and checks the server
    /// stopped within the lifecycle timeout.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(LIFECYCLE_TIMEOUT, server.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => panic!("the api stopped with an error: {err}"),
                Err(_) => panic!("the api did not stop within {LIFECYCLE_TIMEOUT:?}"),
            }
        }
    }
}

impl Drop for TestApp {
    /// Tells the server to stop (on the test's runtime, when there still is
    /// one; a runtime that is shutting down drops the server's task anyway).
    fn drop(&mut self) {
        if let Some(server) = self.server.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(LIFECYCLE_TIMEOUT, server.shutdown()).await;
            });
        }
    }
}
