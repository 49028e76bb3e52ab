//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use service::orders::{PlacementLimits, Sequencer};
use service::pooling::Pool;
use tokio::sync::watch;

use crate::archiving::Archiving;
use crate::auth::Auth;
use crate::events::Hub;
use crate::replica::Reads;
use crate::throttle::Throttle;

/// The api's shared state: the pool, the authenticator, the metrics.
#[derive(Clone)]
pub struct AppState {
    /// Each handler's database work runs in `db.run(..)`: on the pool, or in
    /// one transaction per request behind a transaction-mode pooler
    /// (`DB_POOL_MODE`).
    pub db: Pool,
    /// Where reads go: the primary, or a streaming replica while it is fresh
    /// (`DATABASE_READ_URL`).
    pub reads: Reads,
    pub auth: Arc<Auth>,
    pub metrics: PrometheusHandle,
    /// The per-user and per-address request rate limits.
    pub throttle: Arc<Throttle>,
    /// The bounds of one placement (the per-user resting cap among them).
    pub placement: PlacementLimits,
    /// Places `POST /api/v1/orders` in per-symbol batches (group commit).
    pub sequencer: Sequencer,
    /// The archive store (`ARCHIVE_DIR` / `ARCHIVE_URL`), when configured.
    pub archiving: Option<Arc<Archiving>>,
    /// The WebSocket streams' hub (and the relay's wake-up).
    pub events: Arc<Hub>,
    /// Turns true when the server stops (open WebSocket connections close).
    pub stop: watch::Receiver<bool>,
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Arc<Auth> {
        state.auth.clone()
    }
}
