//! The relay: publishes the outbox in order, then marks what was delivered.
//!
//! Each round is one transaction that takes the relay lock
//! (`pg_try_advisory_xact_lock`, so of several api processes one relays at a
//! time and the others stand by), reads up to [`BATCH`] unpublished events
//! oldest first, publishes their messages (to the broker, waiting for its
//! confirms; or to this process's hub), marks them published and commits. A
//! failure anywhere leaves them unpublished and the next round sends them
//! again: delivery is at least once, and every message carries an id for
//! dropping a repeat. Rounds run when this process committed a write, and
//! every `EVENTS_POLL_MS` for the writes of other processes and jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::DbErr;
use service::pooling::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Hub;
use super::broker::Publisher;
use super::wire;

/// The most events one round publishes.
pub const BATCH: u32 = 1000;

/// How often the outbox's backlog is measured for the gauges.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// How often published events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most published events one pruning statement deletes.
const PRUNE_BATCH: u32 = 10_000;

/// The longest pause after a failed round.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the relay delivers.
pub enum Sink {
    /// The broker (`RABBITMQ_URL`).
    Broker(Box<Publisher>),
    /// This process's WebSocket hub.
    Local(Arc<Hub>),
}

impl Sink {
    async fn publish(&mut self, messages: &[wire::Message]) -> Result<(), RelayError> {
        match self {
            Sink::Broker(publisher) => publisher
                .publish(messages)
                .await
                .map_err(RelayError::Broker),
            Sink::Local(hub) => {
                for message in messages {
                    hub.deliver(&message.message_id, &message.body);
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(String),
    #[error("broker: {0}")]
    Broker(String),
}

impl From<DbErr> for RelayError {
    fn from(error: DbErr) -> RelayError {
        RelayError::Database(error.to_string())
    }
}

impl From<service::ServiceError> for RelayError {
    fn from(error: service::ServiceError) -> RelayError {
        RelayError::Database(error.to_string())
    }
}

/// Starts the relay; it stops after a last round once `stop` turns true.
pub fn spawn(
    db: Pool,
    hub: Arc<Hub>,
    mut sink: Sink,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let poll = hub.settings.poll;
        let retention = hub.settings.retention;
        let mut pruned_at: Option<Instant> = None;
        let mut measured_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            let stopping = *stop.borrow();
            let failed = loop {
                match round(&db, &mut sink).await {
                    Ok(n) if n as u32 == BATCH => continue,
                    Ok(_) => break false,
                    Err(error) => {
                        metrics::counter!("trade_engine_relay_failures_total").increment(1);
                        tracing::warn!(%error, "event relay round failed; the events stay queued");
                        break true;
                    }
                }
            };
            if stopping {
                break;
            }
            if measured_at.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                measured_at = Some(Instant::now());
                measure_backlog(&db).await;
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                prune(&db, retention).await;
            }
            let pause = if failed {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                backoff
            } else {
                backoff = Duration::from_millis(50);
                poll
            };
            tokio::select! {
                () = hub.wake.notified(), if !failed => {}
                () = tokio::time::sleep(pause) => {}
                () = crate::server::stopped(&mut stop) => {}
            }
        }
    })
}

/// One round; returns how many events it published (0 also when another
/// process holds the relay lock).
async fn round(db: &Pool, sink: &mut Sink) -> Result<usize, RelayError> {
    db.run_unbounded(async |scope| {
        let Some(events) = service::events::claim(scope, BATCH).await? else {
            return Ok(0);
        };
        if events.is_empty() {
            return Ok(0);
        }
        let mut messages = Vec::with_capacity(events.len() * 2);
        for event in &events {
            match wire::messages(event) {
                Ok(more) => messages.extend(more),
                // It would block every event after it forever: logged,
                // counted and passed over.
                Err(reason) => {
                    metrics::counter!("trade_engine_events_unreadable_total").increment(1);
                    tracing::error!(event_id = event.event_id, %reason, "an outbox event cannot be published; skipped");
                }
            }
        }
        sink.publish(&messages).await?;
        let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        service::events::mark_published(scope, &ids).await?;
        let now = Utc::now();
        for event in &events {
            let lag = (now - event.created_at.with_timezone(&Utc))
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("trade_engine_event_publish_lag_seconds").record(lag.as_secs_f64());
        }
        metrics::counter!("trade_engine_events_published_total").increment(events.len() as u64);
        Ok(events.len())
    })
    .await
}

/// Sets the backlog gauges: unpublished events and the oldest one's age
/// (the alert on a relay that stopped relaying reads the age).
async fn measure_backlog(db: &Pool) {
    match db
        .run(async |scope| service::events::backlog(scope).await)
        .await
    {
        Ok((pending, oldest)) => {
            metrics::gauge!("trade_engine_events_pending").set(pending as f64);
            metrics::gauge!("trade_engine_events_oldest_pending_seconds").set(oldest);
        }
        Err(error) => tracing::warn!(%error, "the outbox's backlog could not be read"),
    }
}

/// Deletes published events older than `retention`, a batch at a time.
async fn prune(db: &Pool, retention: Duration) {
    let before = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    loop {
        let outcome = db
            .run_unbounded(async |scope| service::events::prune(scope, before, PRUNE_BATCH).await)
            .await;
        match outcome {
            Ok(n) if n == u64::from(PRUNE_BATCH) => continue,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(%error, "pruning published events failed; next time");
                break;
            }
        }
    }
}
