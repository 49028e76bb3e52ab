//! The relay: publishes the outbox in order, then marks what was delivered.
//!
//! The relay works in sessions. A session is one transaction that takes the
//! relay lock (`pg_try_advisory_xact_lock`, so of several api processes one
//! relays at a time and the others stand by) and then keeps claiming what is
//! committed and unpublished (up to [`BATCH`] events a statement, oldest
//! first), publishes each batch without waiting for the broker, and marks a
//! batch published as soon as the broker confirmed it and every batch before
//! it (to the broker with `RABBITMQ_URL`; to this process's hub otherwise),
//! with the time the confirm came (or the hub took it) as `published_at`.
//! So an event waits for the broker's confirm of its own batch, not for the
//! batches before it. A session ends once every batch is marked and its last
//! claim took all there was and (when it published anything) no write of
//! this process followed within [`LINGER`], or after [`SESSION`] (the next
//! then starts at once). It commits without waiting for the disk
//! (`synchronous_commit = off`: a mark lost in a crash only means the events
//! go out again), and plans its claims and marks once per connection
//! ([`SESSION_SETTINGS`]). A failure anywhere rolls the session back: its
//! events stay unpublished and the next session sends them again. Delivery
//! is at least once, and every message carries an id for dropping a repeat.
//! Sessions start when this process committed a write, and every
//! `EVENTS_POLL_MS` for the writes of other processes and jobs. Claims read
//! from a little below the newest event seen ([`CLAIM_WINDOW`]; from the
//! first one every [`FULL_CLAIM_EVERY`]), not through every event published
//! since the table was last vacuumed. Every [`PRUNE_EVERY`] the published
//! events past retention are deleted, one short statement between two
//! sessions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use sea_orm::DbErr;
use service::pooling::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Hub;
use super::broker::{Confirms, Publisher};
use super::wire;

/// The most events one claim takes.
pub const BATCH: u32 = 1000;

/// How long a session claims new events before it settles and commits.
const SESSION: Duration = Duration::from_millis(250);

/// How far below the newest event it has seen the relay claims from: a write
/// that commits this many events after the ones written after it is still
/// claimed at once.
const CLAIM_WINDOW: i64 = 20_000;

/// A session's own settings, sent with its `BEGIN` in one round trip. It
/// commits without waiting for the disk (a mark lost in a crash only sends
/// those events again), and it runs its claims and marks on the generic plans
/// PostgreSQL keeps per connection: under `auto` it planned every claim
/// afresh, two thirds of the claim's own execution time again for the same
/// plan, and a relay under load claims hundreds of times a second.
const SESSION_SETTINGS: [&str; 2] = [
    "SET LOCAL synchronous_commit = off",
    "SET LOCAL plan_cache_mode = force_generic_plan",
];

/// How often the relay claims from the first event instead, for a write
/// that committed later still.
const FULL_CLAIM_EVERY: Duration = Duration::from_secs(5);

/// Where the relay claims from ([`service::events::claim`]'s `after`).
struct Cursor {
    /// The newest event this process has seen while it held the relay lock,
    /// with every committed event before it claimed (but for a late write).
    newest: Option<i64>,
    /// When it last claimed from the first event.
    full_at: Option<Instant>,
}

impl Cursor {
    /// The `after` of the next claim.
    fn after(&mut self) -> i64 {
        match self.newest {
            Some(newest)
                if self
                    .full_at
                    .is_some_and(|at| at.elapsed() < FULL_CLAIM_EVERY) =>
            {
                newest.saturating_sub(CLAIM_WINDOW).max(0)
            }
            _ => {
                self.full_at = Some(Instant::now());
                0
            }
        }
    }

    /// After a claim: the newest event it took, or, when it took all there
    /// was above its `after` (fewer than [`BATCH`]), the newest event of the
    /// outbox (an idle relay then claims from near it too).
    fn claimed(&mut self, claim: &service::events::Claim) {
        let took = claim.events.iter().map(|e| e.event_id).max();
        let seen = if claim.events.len() < BATCH as usize {
            took.max(claim.newest)
        } else {
            took
        };
        if let Some(seen) = seen {
            self.newest = Some(self.newest.map_or(seen, |n| n.max(seen)));
        }
    }

    /// Another relay held the lock: what it published is unknown here.
    fn lost(&mut self) {
        self.newest = None;
    }
}

/// How long a drained session waits for the next write of this process
/// before it commits.
const LINGER: Duration = Duration::from_millis(20);

/// How often a session looks for new events while batches await the broker.
const CLAIM_EVERY: Duration = Duration::from_millis(2);

/// The most batches awaiting the broker at once.
const MAX_IN_FLIGHT: usize = 16;

/// How often published events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The oldest events one pruning statement looks at (and deletes at most),
/// one statement between two sessions.
const PRUNE_BATCH: u32 = 2_000;

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
    /// Sends `messages`; the answer is the broker's pending confirms, or
    /// `None` when they are delivered already (the hub).
    async fn send(&mut self, messages: &[wire::Message]) -> Result<Option<Confirms>, RelayError> {
        match self {
            Sink::Broker(publisher) => publisher
                .send(messages)
                .await
                .map(Some)
                .map_err(RelayError::Broker),
            Sink::Local(hub) => {
                for message in messages {
                    hub.deliver(&message.message_id, &message.body);
                }
                Ok(None)
            }
        }
    }

    /// Whether the messages of the events are wanted: always by the broker;
    /// by the hub while a WebSocket connection is open.
    fn wants_messages(&self) -> bool {
        match self {
            Sink::Broker(_) => true,
            Sink::Local(hub) => hub.has_connections(),
        }
    }

    /// After a failed session: a broker connection starts over.
    fn reset(&mut self) {
        if let Sink::Broker(publisher) = self {
            publisher.reset();
        }
    }
}

/// A batch sent and not yet marked.
struct InFlight {
    ids: Vec<i64>,
    created: Vec<DateTime<FixedOffset>>,
    /// The broker's pending answer (`None`: delivered already).
    confirms: Option<Confirms>,
    /// When the batch was delivered: handed to the hub, or confirmed by the
    /// broker (its `published_at`).
    delivered_at: DateTime<Utc>,
}

impl InFlight {
    fn is_settled(&self) -> bool {
        self.confirms.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the broker's answer (cancel-safe: the handle stays until
    /// it answered), and keeps when it came.
    async fn confirmed(&mut self) -> Result<(), RelayError> {
        let Some(confirms) = self.confirms.as_mut() else {
            return Ok(());
        };
        let outcome = match confirms.await {
            Ok(outcome) => outcome.map_err(RelayError::Broker),
            Err(join) => Err(RelayError::Broker(join.to_string())),
        };
        self.confirms = None;
        self.delivered_at = outcome?;
        Ok(())
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

/// Starts the relay on a thread of its own with a runtime of its own, so
/// the requests and streams of a busy api never delay it; `pool` opens its
/// connections there. It stops after a last session once `stop` turns true;
/// the handle ends with it.
pub fn spawn(
    pool: impl FnOnce() -> Pool + Send + 'static,
    hub: Arc<Hub>,
    sink: Sink,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let started = std::thread::Builder::new()
        .name("event-relay".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                // The pool is opened inside the runtime: its upkeep tasks
                // and connections belong to it.
                Ok(runtime) => runtime.block_on(async move { run(pool(), hub, sink, stop).await }),
                Err(error) => tracing::error!(%error, "the event relay's runtime did not start"),
            }
            let _ = done.send(());
        });
    if let Err(error) = started {
        tracing::error!(%error, "the event relay's thread did not start");
    }
    tokio::spawn(async move {
        // The sender is dropped without a send only if the relay panicked.
        if finished.await.is_err() {
            metrics::counter!("trade_engine_relay_failures_total").increment(1);
            tracing::error!(
                "the event relay stopped on a panic; events wait in the outbox until the api restarts"
            );
        }
    })
}

async fn run(db: Pool, hub: Arc<Hub>, mut sink: Sink, mut stop: watch::Receiver<bool>) {
    {
        let poll = hub.settings.poll;
        let retention = hub.settings.retention;
        let mut pruned_at: Option<Instant> = None;
        // Whether pruning has more to delete: one statement between
        // sessions, so that pruning a large backlog never holds events up.
        let mut pruning = false;
        let mut backoff = Duration::from_millis(50);
        let mut cursor = Cursor {
            newest: None,
            full_at: None,
        };
        loop {
            let stopping = *stop.borrow();
            let failed = loop {
                let linger = (!stopping).then_some(hub.wake.as_ref());
                match session(&db, &mut sink, &mut cursor, linger).await {
                    // Stopping: until a session finds nothing. Otherwise a
                    // session that ended before it drained what it saw goes
                    // on at once; one that drained it waits for the next
                    // wake-up (a write of this process) or poll.
                    Ok(Session { published, more }) if more || (stopping && published > 0) => {
                        continue;
                    }
                    Ok(_) => break false,
                    Err(error) => {
                        sink.reset();
                        cursor.lost();
                        metrics::counter!("trade_engine_relay_failures_total").increment(1);
                        tracing::warn!(%error, "event relay session failed; its events stay queued");
                        break true;
                    }
                }
            };
            if stopping {
                break;
            }
            if !pruning && pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                pruning = true;
            }
            if pruning {
                pruning = prune(&db, retention).await;
            }
            let pause = if failed {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                backoff
            } else if pruning {
                Duration::ZERO
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
    }
}

/// What a session did.
struct Session {
    /// Events published (0 also when another process holds the relay lock).
    published: usize,
    /// Whether it stopped before it had drained the outbox as it found it:
    /// its time was up, or its last claim was full.
    more: bool,
}

/// One session: claims, publishes and marks until the outbox is drained as
/// its last claim found it (a claim of fewer than [`BATCH`] events, every
/// batch marked) and, once it published anything, no write of this process
/// woke `linger` within [`LINGER`]; or until its time is up. A write that
/// commits while the session lingers is claimed in the same transaction:
/// under a steady load a session costs a claim and a mark per wake-up, not
/// a transaction of its own.
async fn session(
    db: &Pool,
    sink: &mut Sink,
    cursor: &mut Cursor,
    linger: Option<&tokio::sync::Notify>,
) -> Result<Session, RelayError> {
    db.run_unbounded_with(&SESSION_SETTINGS, async |scope| {
        let started = Instant::now();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut published = 0;
        // Whether the last claim took everything that was waiting.
        let mut drained = false;
        loop {
            let claiming = started.elapsed() < SESSION && in_flight.len() < MAX_IN_FLIGHT;
            let mut claimed = 0;
            if claiming {
                let excluded: Vec<i64> = in_flight
                    .iter()
                    .flat_map(|b| b.ids.iter().copied())
                    .collect();
                let after = cursor.after();
                let Some(claim) = service::events::claim(scope, BATCH, &excluded, after).await?
                else {
                    cursor.lost();
                    return Ok(Session {
                        published: 0,
                        more: false,
                    });
                };
                cursor.claimed(&claim);
                let events = claim.events;
                claimed = events.len();
                drained = claimed < BATCH as usize;
                if claimed > 0 {
                    let messages = if sink.wants_messages() {
                        render(&events)
                    } else {
                        Vec::new()
                    };
                    let confirms = sink.send(&messages).await?;
                    in_flight.push_back(InFlight {
                        ids: events.iter().map(|e| e.event_id).collect(),
                        created: events.iter().map(|e| e.created_at).collect(),
                        confirms,
                        delivered_at: Utc::now(),
                    });
                }
            }
            // Mark, in order, every batch the broker has answered; when there
            // is nothing new to claim, wait a little for the oldest one.
            while let Some(front) = in_flight.front_mut() {
                if !front.is_settled() {
                    if claimed > 0 && claiming {
                        break;
                    }
                    if claiming {
                        match tokio::time::timeout(CLAIM_EVERY, front.confirmed()).await {
                            Ok(outcome) => outcome?,
                            Err(_) => break,
                        }
                    }
                }
                front.confirmed().await?;
                let done = in_flight.pop_front().expect("the front batch");
                service::events::mark_published(scope, &done.ids, done.delivered_at).await?;
                record(&done.created, done.delivered_at);
                published += done.ids.len();
            }
            // Everything claimed is marked: done when the last claim took
            // all there was (a new claim would most likely find nothing:
            // what commits meanwhile wakes the relay again) or the time is
            // up.
            if in_flight.is_empty() && (drained || !claiming) {
                let left = SESSION.saturating_sub(started.elapsed());
                if let Some(wake) = linger
                    && drained
                    && published > 0
                    && !left.is_zero()
                    && tokio::time::timeout(left.min(LINGER), wake.notified())
                        .await
                        .is_ok()
                {
                    continue;
                }
                return Ok(Session {
                    published,
                    more: !drained,
                });
            }
        }
    })
    .await
}

/// The messages of `events`; an event that cannot be rendered is logged,
/// counted and passed over (it would block every event after it forever).
fn render(events: &[service::events::OutboxEvent]) -> Vec<wire::Message> {
    let mut messages = Vec::with_capacity(events.len() * 2);
    for event in events {
        match wire::messages(event) {
            Ok(more) => messages.extend(more),
            Err(reason) => {
                metrics::counter!("trade_engine_events_unreadable_total").increment(1);
                tracing::error!(event_id = event.event_id, %reason, "an outbox event cannot be published; skipped");
            }
        }
    }
    messages
}

/// The publish lag of each event just marked (written → delivered).
fn record(created: &[DateTime<FixedOffset>], delivered_at: DateTime<Utc>) {
    for at in created {
        let lag = (delivered_at - at.with_timezone(&Utc))
            .to_std()
            .unwrap_or_default();
        metrics::histogram!("trade_engine_event_publish_lag_seconds").record(lag.as_secs_f64());
    }
    metrics::counter!("trade_engine_events_published_total").increment(created.len() as u64);
}

/// How often the outbox's backlog is measured for the gauges.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Measures the outbox's backlog every [`BACKLOG_EVERY`] for the gauges:
/// unpublished events and the oldest one's age (the alert on events nobody
/// relays reads the age). Apart from the relay, so a relay that stopped is
/// seen too.
pub fn spawn_backlog_gauges(db: Pool, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
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
            tokio::select! {
                () = tokio::time::sleep(BACKLOG_EVERY) => {}
                () = crate::server::stopped(&mut stop) => break,
            }
        }
    })
}

/// Deletes published events older than `retention` among the oldest
/// [`PRUNE_BATCH`]; whether there may be more (all of them went).
async fn prune(db: &Pool, retention: Duration) -> bool {
    let before = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let outcome = db
        .run_unbounded(async |scope| service::events::prune(scope, before, PRUNE_BATCH).await)
        .await;
    match outcome {
        Ok(n) => n == u64::from(PRUNE_BATCH),
        Err(error) => {
            tracing::warn!(%error, "pruning published events failed; next time");
            false
        }
    }
}
