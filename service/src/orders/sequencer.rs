//! A per-symbol sequencer: placements on one symbol that arrive while a batch
//! of that symbol is being written form the next batch, placed by
//! [`place_many`] in one transaction under one book lock (group commit).
//!
//! - A placement on an idle symbol starts a batch of one at once: no added
//!   latency when nothing waits.
//! - Arrival order is priority order: the queue is first come, first placed,
//!   and a batch places its orders in queue order, each as if placed alone
//!   after the previous one.
//! - A batch holds at most [`SequencerSettings::max_batch`] orders; the rest
//!   wait for the next.
//! - A batch the database fails is placed again order by order, so one order
//!   that cannot be stored fails alone and nothing is half-stored.
//! - Several processes stay correct: their batches serialize on the same
//!   book lock in the database, as single placements do.
//! - [`Sequencer::shutdown`] refuses new placements and waits until every
//!   queued one is placed.
//!
//! Batches run on tasks of the Tokio runtime the sequencer is used from (the
//! `sequencer` feature), so a caller that goes away (a client that closed its
//! connection) never stops a batch that carries other callers' orders.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use sea_orm::DbErr;
use tokio::sync::{Notify, oneshot};

use super::{NewOrder, Placement, PlacementLimits, place_many};
use crate::error::{Result, ServiceError};
use crate::pooling::Pool;

/// How the sequencer batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerSettings {
    /// The most orders one batch places (at least 1). Default 64.
    pub max_batch: usize,
}

impl Default for SequencerSettings {
    fn default() -> SequencerSettings {
        SequencerSettings { max_batch: 64 }
    }
}

/// What the sequencer has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequencerStats {
    /// Batches written.
    pub batches: u64,
    /// Orders they carried.
    pub orders: u64,
    /// The largest batch.
    pub largest: u64,
}

struct Pending {
    order: NewOrder,
    reply: oneshot::Sender<Result<Placement>>,
}

#[derive(Default)]
struct State {
    /// Orders waiting, per symbol; a symbol is present while a task runs its
    /// batches.
    queues: HashMap<String, VecDeque<Pending>>,
    closed: bool,
    stats: SequencerStats,
    /// How many batches had each size (index: size), for the mean and p99.
    sizes: Vec<u64>,
}

struct Shared {
    pool: Pool,
    limits: PlacementLimits,
    settings: SequencerSettings,
    state: Mutex<State>,
    /// Signalled when the last symbol's task ends.
    idle: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Cheap to clone; every clone feeds the same queues.
#[derive(Clone)]
pub struct Sequencer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

fn closed() -> ServiceError {
    ServiceError::Unavailable(DbErr::Custom(
        "placements are closed: the service is shutting down".into(),
    ))
}

impl Sequencer {
    /// A sequencer placing through `pool` (each batch is one unit of work of
    /// [`Pool::run`], so it also works behind a transaction-mode pooler)
    /// within `limits`.
    pub fn new(pool: Pool, limits: PlacementLimits, settings: SequencerSettings) -> Sequencer {
        let settings = SequencerSettings {
            max_batch: settings.max_batch.max(1),
        };
        Sequencer {
            shared: Arc::new(Shared {
                pool,
                limits,
                settings,
                state: Mutex::new(State::default()),
                idle: Notify::new(),
            }),
        }
    }

    /// Places `order` with the orders of its symbol that arrive meanwhile;
    /// the result is the one [`place_with`](super::place_with) would give.
    ///
    /// Errors: those of a placement; [`ServiceError::Unavailable`] once
    /// [`shutdown`](Self::shutdown) has begun.
    pub async fn place(&self, order: NewOrder) -> Result<Placement> {
        let (reply, placed) = oneshot::channel();
        {
            let mut state = self.shared.state();
            if state.closed {
                return Err(closed());
            }
            let symbol = order.symbol.clone();
            let start = !state.queues.contains_key(&symbol);
            state
                .queues
                .entry(symbol.clone())
                .or_default()
                .push_back(Pending { order, reply });
            if start {
                tokio::spawn(run(self.shared.clone(), symbol));
            }
        }
        placed.await.unwrap_or_else(|_| {
            Err(ServiceError::Unavailable(DbErr::Custom(
                "the placement's batch stopped before it finished".into(),
            )))
        })
    }

    /// Batches and orders placed so far.
    pub fn stats(&self) -> SequencerStats {
        let state = self.shared.state();
        SequencerStats {
            // The histogram grows only as far as the largest batch.
            largest: state.sizes.len().saturating_sub(1) as u64,
            ..state.stats
        }
    }

    /// The mean and 99th percentile of the batch sizes so far (0 without any).
    pub fn batch_sizes(&self) -> (f64, usize) {
        let state = self.shared.state();
        let batches = state.stats.batches;
        if batches == 0 {
            return (0.0, 0);
        }
        let mean = state.stats.orders as f64 / batches as f64;
        // The smallest size that at least 99 % of the batches do not exceed.
        let needed = (batches * 99).div_ceil(100);
        let mut seen = 0;
        for (size, &count) in state.sizes.iter().enumerate() {
            seen += count;
            if seen >= needed {
                return (mean, size);
            }
        }
        (mean, state.sizes.len().saturating_sub(1))
    }

    /// Starts the counts of [`stats`](Self::stats) and
    /// [`batch_sizes`](Self::batch_sizes) again.
    pub fn reset_stats(&self) {
        let mut state = self.shared.state();
        state.stats = SequencerStats::default();
        state.sizes.clear();
    }

    /// Refuses new placements and returns once every queued one is placed.
    pub async fn shutdown(&self) {
        loop {
            let mut idle = std::pin::pin!(self.shared.idle.notified());
            idle.as_mut().enable();
            {
                let mut state = self.shared.state();
                state.closed = true;
                if state.queues.is_empty() {
                    return;
                }
            }
            idle.await;
        }
    }
}

/// Ends a symbol's task that did not end normally (a panic): the callers
/// waiting on its queue get an error instead of waiting forever.
struct Finish {
    shared: Arc<Shared>,
    symbol: String,
    done: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.shared.state();
            // Dropping the pending replies tells their callers.
            state.queues.remove(&self.symbol);
            if state.queues.is_empty() {
                self.shared.idle.notify_waiters();
            }
        }
    }
}

/// A symbol's task: batches until its queue is empty.
async fn run(shared: Arc<Shared>, symbol: String) {
    let mut finish = Finish {
        shared: shared.clone(),
        symbol: symbol.clone(),
        done: false,
    };
    loop {
        let batch: Vec<Pending> = {
            let mut state = shared.state();
            let Some(queue) = state.queues.get_mut(&symbol) else {
                finish.done = true;
                return;
            };
            if queue.is_empty() {
                // Under the lock: an order arriving after this starts a new task.
                state.queues.remove(&symbol);
                if state.queues.is_empty() {
                    shared.idle.notify_waiters();
                }
                finish.done = true;
                return;
            }
            let take = queue.len().min(shared.settings.max_batch);
            let batch: Vec<Pending> = queue.drain(..take).collect();
            let size = batch.len() as u64;
            state.stats.batches += 1;
            state.stats.orders += size;
            if state.sizes.len() <= take {
                state.sizes.resize(take + 1, 0);
            }
            state.sizes[take] += 1;
            batch
        };
        let (orders, replies): (Vec<NewOrder>, Vec<_>) =
            batch.into_iter().map(|p| (p.order, p.reply)).unzip();
        let count = orders.len();
        let limits = &shared.limits;
        let outcome = shared
            .pool
            .run(async move |db| Ok::<_, ServiceError>(place_many(db, orders, limits).await))
            .await;
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that went away still had its order placed.
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                // The unit of work failed as a whole (its commit, behind a
                // transaction-mode pooler): nothing of the batch is stored.
                tracing::warn!(error = %err, orders = count, "a batch of placements failed");
                for reply in replies {
                    let _ = reply.send(Err(ServiceError::Unavailable(DbErr::Custom(format!(
                        "the batch of placements failed: {err}"
                    )))));
                }
            }
        }
    }
}
