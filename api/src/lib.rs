//! The trade engine's HTTP API over the `service` crate: axum on tokio, JWT or
//! trusted-header authentication, OpenAPI 3.1 at `/api/v1/openapi.json` (the
//! contract), Prometheus metrics, background maintenance, and an embedded
//! local PostgreSQL for a zero-setup start.

pub mod archiving;
pub mod auth;
pub mod config;
pub mod dto;
pub mod embedded;
pub mod error;
pub mod events;
pub mod extract;
mod jobs;
pub mod metrics;
pub mod openapi;
pub mod replica;
pub mod routes;
pub mod server;
pub mod state;
pub mod throttle;
pub mod wire;
