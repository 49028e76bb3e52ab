//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use crate::auth::Auth;

/// The api's shared state: the pool, the authenticator, the metrics.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub auth: Arc<Auth>,
    pub metrics: PrometheusHandle,
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Arc<Auth> {
        state.auth.clone()
    }
}
