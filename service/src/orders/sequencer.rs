//! A per-symbol sequencer: placements on one symbol that arrive while a batch
//! of that symbol is being written form the next batch, placed by
//! [`place_many`] in one transaction under one book lock (group commit).
//! Cancels are batched the same way, [`cancel_many`](super::cancel_many)'s
//! one statement per batch, in the same queue as the symbol's placements.
//!
//! - A placement on an idle symbol starts a batch of one at once: no added
//!   latency when nothing waits.
//! - Arrival order is priority order: the queue is first come, first placed,
//!   and a batch places its orders in queue order, each as if placed alone
//!   after the previous one. Placements and cancels share a symbol's queue: a
//!   batch is the run of one kind at its head, so a cancel queued before a
//!   placement is written before it, and after the placements queued before it.
//! - A batch holds at most [`SequencerSettings::max_batch`] orders (or
//!   cancels); the rest wait for the next.
//! - Lock ahead ([`SequencerSettings::lock_ahead`]): a batch of placements
//!   that waits behind another opens its transaction and asks for the book
//!   lock while the other commits, and takes its orders when the lock is
//!   granted, so BEGIN and the lock's round trip are off the symbol's
//!   critical path. Its orders' client order ids are then locked only if
//!   free at once; otherwise it gives the book lock back and its orders are
//!   placed the usual way (ids first, then the book), before any later batch.
//! - A batch the database fails is placed again order by order, so one order
//!   that cannot be stored fails alone and nothing is half-stored; a cancel
//!   the batch's statement did not make is tried again alone.
//! - Several processes stay correct: their batches serialize on the same
//!   book lock in the database, as single placements do.
//! - [`Sequencer::shutdown`] refuses new placements and cancels and waits
//!   until every queued one is written.
//!
//! A placement or cancel on an idle symbol is written by its caller, at once,
//! as a batch of one. The batches of what queued meanwhile run on tasks of
//! the Tokio runtime the sequencer is used from (the `sequencer` feature), so
//! a caller that goes away (a client that closed its connection) stops at
//! most its own lone placement or cancel (all of it or nothing, as without a
//! sequencer), never a batch that carries other callers' orders.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use entity::orders;
use sea_orm::{DbErr, TransactionTrait};
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use super::lifecycle::{Cancellable, cancel_found, cancellable};
use super::matching::{client_ids, place_many_locked};
use super::{NewOrder, Placement, PlacementLimits, place_many, store};
use crate::error::{Result, ServiceError};
use crate::pooling::Pool;

/// How the sequencer batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerSettings {
    /// The most orders one batch places, or cancels (at least 1). Default 64.
    pub max_batch: usize,
    /// Whether a batch of placements that waits behind another opens its
    /// transaction and asks for the book lock while the other commits, so
    /// it starts the moment the lock is free (its orders are the queue's
    /// when the lock is granted). It takes one more connection of the pool
    /// per symbol whose queue is not empty. Default `true`.
    pub lock_ahead: bool,
}

impl Default for SequencerSettings {
    fn default() -> SequencerSettings {
        SequencerSettings {
            max_batch: 64,
            lock_ahead: true,
        }
    }
}

/// What the sequencer has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequencerStats {
    /// Batches of placements written.
    pub batches: u64,
    /// Orders they carried.
    pub orders: u64,
    /// The largest batch of placements.
    pub largest: u64,
    /// Batches of cancels written.
    pub cancel_batches: u64,
    /// Cancels they carried.
    pub cancels: u64,
    /// The largest batch of cancels.
    pub largest_cancel: u64,
    /// Batches of placements whose transaction asked for the book lock
    /// while the batch before them committed
    /// ([`SequencerSettings::lock_ahead`]).
    pub locked_ahead: u64,
}

/// A placement or a cancel waiting in its symbol's queue.
enum Pending {
    Place {
        order: NewOrder,
        reply: oneshot::Sender<Result<Placement>>,
    },
    Cancel {
        order: Cancellable,
        reply: oneshot::Sender<Result<orders::Model>>,
    },
}

impl Pending {
    fn is_cancel(&self) -> bool {
        matches!(self, Pending::Cancel { .. })
    }
}

/// How many batches had each size (index: size), for the mean and p99.
#[derive(Default)]
struct Sizes {
    batches: u64,
    items: u64,
    counts: Vec<u64>,
}

impl Sizes {
    fn add(&mut self, size: usize) {
        self.batches += 1;
        self.items += size as u64;
        if self.counts.len() <= size {
            self.counts.resize(size + 1, 0);
        }
        self.counts[size] += 1;
    }

    /// The histogram grows only as far as the largest batch.
    fn largest(&self) -> u64 {
        self.counts.len().saturating_sub(1) as u64
    }

    /// The mean and the smallest size that at least 99 % of the batches do
    /// not exceed (0 without any).
    fn mean_and_p99(&self) -> (f64, usize) {
        if self.batches == 0 {
            return (0.0, 0);
        }
        let mean = self.items as f64 / self.batches as f64;
        let needed = (self.batches * 99).div_ceil(100);
        let mut seen = 0;
        for (size, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= needed {
                return (mean, size);
            }
        }
        (mean, self.counts.len().saturating_sub(1))
    }
}

#[derive(Default)]
struct State {
    /// Placements and cancels waiting, per symbol; a symbol is present while
    /// a task runs its batches.
    queues: HashMap<String, VecDeque<Pending>>,
    closed: bool,
    placements: Sizes,
    cancels: Sizes,
    locked_ahead: u64,
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

    /// Makes `symbol` idle (under the lock `state` holds): its queue goes,
    /// with any pending replies, which tells their callers; the last symbol
    /// to go wakes [`Sequencer::shutdown`].
    fn retire(&self, state: &mut State, symbol: &str) {
        state.queues.remove(symbol);
        if state.queues.is_empty() {
            self.idle.notify_waiters();
        }
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
            ..settings
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
        let symbol = order.symbol.clone();
        self.submit(
            &symbol,
            Pending::Place { order, reply },
            placed,
            "placement",
        )
        .await
    }

    /// Cancels the user's order with the cancels of its symbol that arrive
    /// meanwhile; the result is the one [`cancel`](super::cancel) would give.
    /// The order is read first (not found, another user's, already over:
    /// answered at once, without queueing).
    ///
    /// Errors: those of a cancel; [`ServiceError::Unavailable`] once
    /// [`shutdown`](Self::shutdown) has begun.
    pub async fn cancel(&self, user_id: Uuid, order_id: Uuid) -> Result<orders::Model> {
        if self.shared.state().closed {
            return Err(closed());
        }
        let order = self
            .shared
            .pool
            .run(async |db| cancellable(db, user_id, order_id).await)
            .await?;
        let (reply, cancelled) = oneshot::channel();
        let symbol = order.symbol.clone();
        self.submit(
            &symbol,
            Pending::Cancel { order, reply },
            cancelled,
            "cancel",
        )
        .await
    }

    /// Queues `pending` (whose reply `answered` receives) on `symbol`, writes
    /// it at once when the symbol was idle, and waits for its answer.
    async fn submit<T>(
        &self,
        symbol: &str,
        pending: Pending,
        answered: oneshot::Receiver<Result<T>>,
        what: &str,
    ) -> Result<T> {
        if self.enqueue(symbol, pending)? {
            self.first(symbol).await;
        }
        answered.await.unwrap_or_else(|_| {
            Err(ServiceError::Unavailable(DbErr::Custom(format!(
                "the {what}'s batch stopped before it finished"
            ))))
        })
    }

    /// Queues `pending` on `symbol`; `true` when the symbol was idle, so
    /// the caller is to write it at once ([`first`](Self::first)).
    fn enqueue(&self, symbol: &str, pending: Pending) -> Result<bool> {
        let mut state = self.shared.state();
        if state.closed {
            return Err(closed());
        }
        let idle = !state.queues.contains_key(symbol);
        state
            .queues
            .entry(symbol.to_owned())
            .or_default()
            .push_back(pending);
        Ok(idle)
    }

    /// On an idle symbol the caller writes its own placement or cancel at
    /// once, as a batch of one on its own task: no hand-over to another task
    /// for a lone order. What arrives meanwhile queues and is handed to a
    /// task of the symbol when this ends ([`Handoff`]).
    async fn first(&self, symbol: &str) {
        let mut handoff = Handoff {
            shared: self.shared.clone(),
            symbol: symbol.to_owned(),
            next: Next(None),
        };
        // Nothing else takes from an idle symbol's queue: its head is ours.
        if let Some(batch) = take_batch(&self.shared, symbol, 1, true) {
            write(&self.shared, symbol, batch, &mut handoff.next).await;
        }
    }

    /// Batches, orders placed and cancels made so far.
    pub fn stats(&self) -> SequencerStats {
        let state = self.shared.state();
        SequencerStats {
            batches: state.placements.batches,
            orders: state.placements.items,
            largest: state.placements.largest(),
            cancel_batches: state.cancels.batches,
            cancels: state.cancels.items,
            largest_cancel: state.cancels.largest(),
            locked_ahead: state.locked_ahead,
        }
    }

    /// The mean and 99th percentile of the placement batches' sizes so far
    /// (0 without any).
    pub fn batch_sizes(&self) -> (f64, usize) {
        self.shared.state().placements.mean_and_p99()
    }

    /// The mean and 99th percentile of the cancel batches' sizes so far (0
    /// without any).
    pub fn cancel_batch_sizes(&self) -> (f64, usize) {
        self.shared.state().cancels.mean_and_p99()
    }

    /// Placements and cancels waiting in the queues (not those of the
    /// batches being written).
    pub fn queued(&self) -> usize {
        self.shared.state().queues.values().map(VecDeque::len).sum()
    }

    /// Starts the counts of [`stats`](Self::stats),
    /// [`batch_sizes`](Self::batch_sizes) and
    /// [`cancel_batch_sizes`](Self::cancel_batch_sizes) again.
    pub fn reset_stats(&self) {
        let mut state = self.shared.state();
        state.placements = Sizes::default();
        state.cancels = Sizes::default();
        state.locked_ahead = 0;
    }

    /// Refuses new placements and cancels and returns once every queued one
    /// is written.
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
            self.shared.retire(&mut state, &self.symbol);
        }
    }
}

/// A symbol's task: waits for the link `next` (if any), then writes batches
/// until its queue is empty.
///
/// With [`SequencerSettings::lock_ahead`], each batch of placements is a
/// [`link`]: when it has written its orders and there are placements at the
/// queue's head, it starts the next link before it commits; that one opens
/// its transaction and waits for the book lock, and takes its batch from the
/// queue when the lock is granted, the moment the previous batch committed.
/// Nothing else takes from the queue meanwhile, so batches still go in queue
/// order.
async fn run(shared: Arc<Shared>, symbol: String, mut next: Next) {
    let mut finish = Finish {
        shared: shared.clone(),
        symbol: symbol.clone(),
        done: false,
    };
    loop {
        while let Some(handle) = next.0.take() {
            // A link that panicked answered nobody: its callers' replies
            // went with it, and they get an error.
            next = handle.await.unwrap_or(Next(None));
        }
        let Some(batch) = take_batch(&shared, &symbol, shared.settings.max_batch, true) else {
            break;
        };
        write(&shared, &symbol, batch, &mut next).await;
    }
    finish.done = true;
}

/// The link started after a batch of placements, if any.
struct Next(Option<tokio::task::JoinHandle<Next>>);

/// Starts the link after the current one, on a task of its own.
fn link_ahead(shared: Arc<Shared>, symbol: String) -> Next {
    Next(Some(tokio::spawn(async move {
        let mut next = Next(None);
        link(&shared, &symbol, None, &mut next).await;
        next
    })))
}

/// How a link's transaction ended.
enum Linked {
    /// Nothing taken from the queue.
    Nothing,
    /// Its batch's orders, not written (rolled back): to be placed with
    /// [`place_many`], which retries and places them one by one.
    Again(Vec<NewOrder>),
    /// Its batch's results, committed.
    Placed(Vec<Result<Placement>>),
}

/// Places a batch of placements of `symbol` in a transaction that takes the
/// book lock first: `batch`, or the placements at the queue's head when the
/// lock is granted. Client order ids are then locked without waiting (their
/// locks come before the book's elsewhere); when one is taken, or anything
/// fails before the commit, the transaction is rolled back and the batch is
/// placed by [`place_many`] instead, before any later batch starts. The link
/// it starts before committing goes to `next` (the caller's, so that it is
/// not lost when the caller goes away).
async fn link(shared: &Arc<Shared>, symbol: &str, batch: Option<Vec<Pending>>, next: &mut Next) {
    let mut given = batch;
    let mut replies: Vec<oneshot::Sender<Result<Placement>>> = Vec::new();
    let limits = &shared.limits;
    let linked = shared
        .pool
        .run(async |db| {
            let txn = db.begin().await?;
            let now = store::lock_book_and_read_clock(&txn, symbol).await?;
            let batch = match given.take() {
                Some(batch) => Some(batch),
                None => take_ahead(shared, symbol),
            };
            let orders = batch.map(|b| placements(b, &mut replies)).unwrap_or_default();
            if orders.is_empty() {
                let _ = txn.rollback().await;
                return Ok(Linked::Nothing);
            }
            let placed = async {
                if !store::try_lock_client_order_ids(&txn, &client_ids(&orders)).await? {
                    return Ok(None);
                }
                place_many_locked(&txn, orders.clone(), limits, now)
                    .await
                    .map(Some)
            };
            let results = match placed.await {
                Ok(Some(results)) => results,
                outcome => {
                    if let Err(err) = outcome {
                        tracing::debug!(error = %err, orders = orders.len(), "a batch that took the lock ahead failed; placing it again");
                    }
                    let _ = txn.rollback().await;
                    return Ok(Linked::Again(orders));
                }
            };
            if queue_starts_with_placement(shared, symbol) {
                *next = link_ahead(shared.clone(), symbol.to_owned());
            }
            txn.commit().await?;
            Ok::<_, ServiceError>(Linked::Placed(results))
        })
        .await;
    match linked {
        Ok(Linked::Nothing) => {}
        Ok(Linked::Placed(results)) => answer(replies, Ok(results), "placements"),
        Ok(Linked::Again(orders)) => place_and_answer(shared, orders, replies).await,
        Err(err) => match given.take() {
            // No transaction or no lock for the batch given: without a
            // connection every order gets that answer (as from
            // `place_many`); otherwise the batch is placed the usual way.
            Some(batch) => {
                let orders = placements(batch, &mut replies);
                if matches!(err, ServiceError::Unavailable(_)) {
                    answer(replies, Err(err), "placements");
                } else {
                    place_and_answer(shared, orders, replies).await;
                }
            }
            // A link started ahead that could not take the lock took
            // nothing: the task takes the queue's head again.
            None if replies.is_empty() => {
                tracing::debug!(error = %err, "a batch could not take the book lock ahead");
            }
            // The commit failed (or, behind a transaction-mode pooler, the
            // unit of work's): nothing of the batch is stored.
            None => answer(replies, Err(err), "placements"),
        },
    }
}

/// The orders of a batch of placements, their replies put in `replies`.
fn placements(
    batch: Vec<Pending>,
    replies: &mut Vec<oneshot::Sender<Result<Placement>>>,
) -> Vec<NewOrder> {
    let mut orders = Vec::with_capacity(batch.len());
    for pending in batch {
        if let Pending::Place { order, reply } = pending {
            orders.push(order);
            replies.push(reply);
        }
    }
    orders
}

/// The batch of a link started ahead, once it holds the book lock (`None`:
/// nothing queued, which the task finds out again).
fn take_ahead(shared: &Shared, symbol: &str) -> Option<Vec<Pending>> {
    let batch = take_batch(shared, symbol, shared.settings.max_batch, false)?;
    shared.state().locked_ahead += 1;
    Some(batch)
}

/// Whether the next batch of `symbol` would be placements.
fn queue_starts_with_placement(shared: &Shared, symbol: &str) -> bool {
    shared
        .state()
        .queues
        .get(symbol)
        .and_then(VecDeque::front)
        .is_some_and(|p| !p.is_cancel())
}

/// Takes the next batch of `symbol`: the run of one kind at its queue's
/// head, at most `most` long. `None` when the queue is empty: the symbol is
/// then removed (if `retire`), under the lock, so that what arrives next
/// starts anew.
fn take_batch(shared: &Shared, symbol: &str, most: usize, retire: bool) -> Option<Vec<Pending>> {
    let mut state = shared.state();
    let queue = state.queues.get_mut(symbol)?;
    if queue.is_empty() {
        if retire {
            shared.retire(&mut state, symbol);
        }
        return None;
    }
    let cancels = queue.front().is_some_and(Pending::is_cancel);
    let take = queue
        .iter()
        .take(most)
        .take_while(|p| p.is_cancel() == cancels)
        .count();
    let batch: Vec<Pending> = queue.drain(..take).collect();
    if cancels {
        state.cancels.add(take);
    } else {
        state.placements.add(take);
    }
    Some(batch)
}

/// Writes a batch and answers each of its callers; a batch of placements
/// with lock ahead is a [`link`], whose successor goes to `next`.
async fn write(shared: &Arc<Shared>, symbol: &str, batch: Vec<Pending>, next: &mut Next) {
    if batch.first().is_some_and(Pending::is_cancel) {
        cancel_batch(shared, symbol, batch).await;
    } else if shared.settings.lock_ahead {
        link(shared, symbol, Some(batch), next).await;
    } else {
        place_batch(shared, batch).await;
    }
}

/// Hands a symbol over after its caller wrote its own placement or cancel
/// at once ([`Sequencer::first`]): what queued meanwhile goes to a task of
/// the symbol; with nothing queued the symbol is idle again. Runs also when
/// the caller went away mid-way (its future dropped), so nobody else's
/// placement waits on the caller's task.
struct Handoff {
    shared: Arc<Shared>,
    symbol: String,
    /// The link the caller's batch started before it committed.
    next: Next,
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        let Some(queue) = state.queues.get(&self.symbol) else {
            return;
        };
        // A link started ahead may have taken the queue already: the task
        // waits for it. Without a runtime left to run them on, the pending
        // replies go with the queue.
        if (!queue.is_empty() || self.next.0.is_some())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let next = Next(self.next.0.take());
            runtime.spawn(run(self.shared.clone(), self.symbol.clone(), next));
            return;
        }
        self.shared.retire(&mut state, &self.symbol);
    }
}

/// Places a batch of placements and answers each caller.
async fn place_batch(shared: &Shared, batch: Vec<Pending>) {
    let mut replies = Vec::with_capacity(batch.len());
    let orders = placements(batch, &mut replies);
    place_and_answer(shared, orders, replies).await;
}

/// Places `orders` with [`place_many`] and answers each with its reply.
async fn place_and_answer(
    shared: &Shared,
    orders: Vec<NewOrder>,
    replies: Vec<oneshot::Sender<Result<Placement>>>,
) {
    let limits = &shared.limits;
    let outcome = shared
        .pool
        .run(async move |db| Ok::<_, ServiceError>(place_many(db, orders, limits).await))
        .await;
    answer(replies, outcome, "placements");
}

/// Cancels a batch of cancels of `symbol` and answers each caller.
async fn cancel_batch(shared: &Shared, symbol: &str, batch: Vec<Pending>) {
    let (orders, replies): (Vec<Cancellable>, Vec<_>) = batch
        .into_iter()
        .filter_map(|p| match p {
            Pending::Cancel { order, reply } => Some((order, reply)),
            Pending::Place { .. } => None,
        })
        .unzip();
    let outcome = shared
        .pool
        .run(async |db| Ok::<_, ServiceError>(cancel_found(db, symbol, &orders).await))
        .await;
    answer(replies, outcome, "cancels");
}

/// Gives each caller of a batch its own result; when the batch's unit of work
/// failed as a whole (its commit, behind a transaction-mode pooler: nothing
/// of the batch is stored), the batch's error.
fn answer<T>(
    replies: Vec<oneshot::Sender<Result<T>>>,
    outcome: Result<Vec<Result<T>>>,
    what: &str,
) {
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away still had its order written.
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, count = replies.len(), "a batch of {what} failed");
            for reply in replies {
                let _ = reply.send(Err(ServiceError::Unavailable(DbErr::Custom(format!(
                    "the batch of {what} failed: {err}"
                )))));
            }
        }
    }
}
