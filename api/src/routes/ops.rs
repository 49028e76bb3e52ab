//! Operations: liveness, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use migration::{Migrator, MigratorTrait};
use serde_json::json;
use service::ServiceError;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "The database answers and no migration is pending"),
        (status = 503, description = "Not ready, with the reason", body = crate::dto::ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .db
        .connection()
        .ping()
        .await
        .map_err(|err| ApiError::from(ServiceError::from(err)))?;
    // The read-only probe never creates the migrations table.
    let pending = state
        .db
        .run(async |db| {
            Migrator::get_pending_migrations_read_only(db)
                .await
                .map_err(ServiceError::from)
        })
        .await?;
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(|m| m.name()).collect();
        return Err(ApiError::NotReady(format!(
            "{} migration(s) pending: {}",
            names.len(),
            names.join(", ")
        )));
    }
    Ok(Json(json!({"status": "ready"})))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.db.connection().get_postgres_connection_pool();
    metrics::gauge!("db_pool_connections").set(f64::from(pool.size()));
    metrics::gauge!("db_pool_idle_connections").set(pool.num_idle() as f64);
    metrics::gauge!("db_pool_max_connections").set(f64::from(pool.options().get_max_connections()));
    // A database that does not answer still gets its request and pool
    // figures out, with trade_engine_gauges_up at 0.
    match state
        .db
        .run(async |db| service::maintenance::gauges(db).await)
        .await
    {
        Ok(gauges) => {
            crate::metrics::record_gauges(&gauges);
            metrics::gauge!("trade_engine_gauges_up").set(1.0);
            // Without a store nothing is archived: everything due is unarchived.
            if state.archiving.is_none() {
                crate::metrics::record_due_for_archiving(&crate::archiving::count_by_table(
                    gauges.tables.iter().flat_map(|t| {
                        std::iter::repeat_n(t.table_name.as_str(), t.due_for_retention as usize)
                    }),
                ));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "metrics: the partition gauges could not be read");
            metrics::gauge!("trade_engine_gauges_up").set(0.0);
        }
    }
    if let Some(archiving) = &state.archiving {
        // A local folder is listed now; a remote store's listing is reused
        // for a while (see `archiving::LISTING_TTL`).
        match state
            .db
            .run(async |db| {
                archiving
                    .due_for_archiving(db)
                    .await
                    .map_err(crate::archiving::CountError::from)
            })
            .await
        {
            Ok(counts) => crate::metrics::record_due_for_archiving(&counts),
            Err(err) => {
                tracing::warn!(error = %err, "metrics: partitions due for archiving could not be counted")
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
