//! Reads on a streaming replica (`DATABASE_READ_URL`).
//!
//! Public market data and the users' order and trade history are read on the
//! replica while it is fresh enough; everything else, and every read the
//! replica cannot serve, goes to the primary.
//!
//! How fresh the replica is comes from a checker that, every
//! `REPLICA_MAX_LAG_MS / 4` (at least 10 ms, at most 1 s), samples the
//! primary's WAL position (`pg_current_wal_lsn()`) with the instant just
//! before it, then asks the replica how far it has replayed
//! (`pg_last_wal_replay_lsn()`). A sample at or below the replayed position
//! means that every transaction the primary had committed by the sample's
//! instant is visible on the replica: the newest such instant is the
//! replica's *replayed-through* time. The replica serves
//!
//! - public reads while `now − replayed-through ≤ REPLICA_MAX_LAG_MS` (so a
//!   replica that is paused, far behind, down, or no longer checked is
//!   bypassed, and the primary serves);
//! - a user's own reads only when, in addition, the user's last write through
//!   this process was acknowledged before the replayed-through time: a user
//!   reads their own writes at once (from the primary until the replica has
//!   them), with no extra round trip on the write.
//!
//! A read on the replica that fails because the replica is unreachable, or is
//! cancelled by a conflict with recovery, is run again on the primary, and
//! the replica is bypassed until the next successful check.
//!
//! The writes are remembered per process: behind a load balancer, send a
//! user's requests to the same process (or accept that a user's write made
//! through one process may take up to the replica's lag to show in a read
//! through another).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use service::ServiceError;
use service::pooling::{Pool, Scope};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Users whose last write is remembered; past this many the map is cleared
/// and every user's reads go to the primary until the replica has replayed
/// past the moment of clearing, so memory stays bounded.
const MAX_TRACKED_WRITERS: usize = 100_000;

/// Primary samples kept while the replica is behind; the oldest go first
/// (that only makes the replayed-through time later to advance, never wrong).
const MAX_SAMPLES: usize = 10_000;

const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn";
const REPLICA_POSITION: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS lsn";

/// Where the api's reads go: the primary's pool and, when configured, a
/// replica's.
#[derive(Clone, Debug)]
pub struct Reads {
    primary: Pool,
    replica: Option<Arc<Replica>>,
}

#[derive(Debug)]
struct Replica {
    pool: Pool,
    max_lag: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every transaction the primary had committed by this instant is
    /// visible on the replica; `None` until a check succeeds, and after the
    /// replica failed a read or a check.
    replayed_through: Option<Instant>,
    /// When each user's last write through this process was acknowledged.
    writes: HashMap<Uuid, Instant>,
    /// When [`MAX_TRACKED_WRITERS`] overflowed: no user read goes to the
    /// replica before it has replayed past this.
    overflow: Option<Instant>,
}

/// The readings of one check, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Freshness {
    /// Replayed through everything the primary had committed `lag` ago.
    Behind { lag: Duration },
    /// Answering and replaying, but not yet past anything sampled since it
    /// was last bypassed.
    CatchingUp,
    /// The replica did not answer, or is not a replica.
    Down,
    /// The primary did not answer: nothing to compare with.
    Unknown,
}

impl Reads {
    /// Every read on `primary`.
    pub fn primary_only(primary: Pool) -> Reads {
        Reads {
            primary,
            replica: None,
        }
    }

    /// Reads on `replica` while it is at most `max_lag` behind `primary`;
    /// [`Reads::spawn_checker`] keeps that figure.
    pub fn with_replica(primary: Pool, replica: Pool, max_lag: Duration) -> Reads {
        Reads {
            primary,
            replica: Some(Arc::new(Replica {
                pool: replica,
                max_lag,
                state: Mutex::new(State::default()),
            })),
        }
    }

    /// Runs a read of public data (market data, a trade by id). `work` may
    /// run twice: on the replica, then on the primary if the replica failed.
    pub async fn public<T>(
        &self,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, ServiceError> + Clone,
    ) -> Result<T, ServiceError> {
        self.run(None, work).await
    }

    /// Runs a read of `user`'s own orders or trades (like [`Reads::public`]).
    pub async fn of_user<T>(
        &self,
        user: Uuid,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, ServiceError> + Clone,
    ) -> Result<T, ServiceError> {
        self.run(Some(user), work).await
    }

    /// Records that a write of `user` was just acknowledged (or failed, which
    /// may still have written): their reads stay on the primary until the
    /// replica has it.
    pub fn wrote(&self, user: Uuid) {
        let Some(replica) = &self.replica else {
            return;
        };
        let now = Instant::now();
        let mut state = replica.lock();
        if state.writes.len() >= MAX_TRACKED_WRITERS && !state.writes.contains_key(&user) {
            state.writes.clear();
            state.overflow = Some(now);
        }
        state.writes.insert(user, now);
    }

    async fn run<T>(
        &self,
        user: Option<Uuid>,
        work: impl AsyncFnOnce(&Scope<'_>) -> Result<T, ServiceError> + Clone,
    ) -> Result<T, ServiceError> {
        let Some(replica) = self.replica.as_ref().filter(|r| r.serves(user)) else {
            metrics::counter!("trade_engine_reads_total", "target" => "primary").increment(1);
            return self.primary.run(work).await;
        };
        match replica.pool.run(work.clone()).await {
            // Unreachable, or cancelled by a conflict with recovery (40001):
            // the primary answers, and the replica waits for its next check.
            Err(err @ (ServiceError::Unavailable(_) | ServiceError::Contention { .. })) => {
                tracing::warn!(error = %err, "the read replica failed a read; reading on the primary");
                replica.lock().replayed_through = None;
                metrics::counter!("trade_engine_reads_total", "target" => "primary").increment(1);
                self.primary.run(work).await
            }
            outcome => {
                metrics::counter!("trade_engine_reads_total", "target" => "replica").increment(1);
                outcome
            }
        }
    }

    /// Checks the replica's freshness until `stop` turns true; `None`
    /// without a replica.
    pub fn spawn_checker(&self, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        let replica = self.replica.clone()?;
        let primary = self.primary.connection().clone();
        let interval =
            (replica.max_lag / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        Some(tokio::spawn(async move {
            let mut samples = VecDeque::new();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
                let freshness = replica.check(&primary, &mut samples).await;
                record(freshness);
            }
        }))
    }

    /// One check now (what the checker does at every tick), for tests and
    /// for a caller that runs its own schedule.
    pub async fn check_now(&self) -> Option<Freshness> {
        let replica = self.replica.as_ref()?;
        let mut samples = VecDeque::new();
        let freshness = replica.check(self.primary.connection(), &mut samples).await;
        record(freshness);
        Some(freshness)
    }
}

fn record(freshness: Freshness) {
    match freshness {
        Freshness::Behind { lag } => {
            metrics::gauge!("trade_engine_replica_up").set(1.0);
            metrics::gauge!("trade_engine_replica_lag_seconds").set(lag.as_secs_f64());
        }
        Freshness::CatchingUp => metrics::gauge!("trade_engine_replica_up").set(1.0),
        Freshness::Down => metrics::gauge!("trade_engine_replica_up").set(0.0),
        Freshness::Unknown => {}
    }
}

impl Replica {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent
        // (every update is a single assignment), so a poisoned lock is used.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the replica may serve a public read (`user` None) or a read of
    /// `user`'s own data now.
    fn serves(&self, user: Option<Uuid>) -> bool {
        let state = self.lock();
        let Some(through) = state.replayed_through else {
            return false;
        };
        if Instant::now().saturating_duration_since(through) > self.max_lag {
            return false;
        }
        match user {
            None => true,
            Some(user) => {
                state.overflow.is_none_or(|at| at < through)
                    && state.writes.get(&user).is_none_or(|at| *at < through)
            }
        }
    }

    async fn check(
        &self,
        primary: &DatabaseConnection,
        samples: &mut VecDeque<(Instant, i64)>,
    ) -> Freshness {
        let at = Instant::now();
        let sampled = match position(primary, PRIMARY_POSITION).await {
            Ok((_, Some(lsn))) => lsn,
            Ok((_, None)) | Err(_) => return Freshness::Unknown,
        };
        samples.push_back((at, sampled));
        if samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
        let replayed = match position(self.pool.connection(), REPLICA_POSITION).await {
            Ok((Some(true), Some(lsn))) => lsn,
            Ok((Some(false), _)) => {
                tracing::warn!(
                    "DATABASE_READ_URL is not a server in recovery (not a streaming replica); reading on the primary"
                );
                self.lock().replayed_through = None;
                return Freshness::Down;
            }
            Ok(_) | Err(_) => {
                self.lock().replayed_through = None;
                return Freshness::Down;
            }
        };
        let mut through = None;
        while let Some(&(sampled, lsn)) = samples.front() {
            if lsn > replayed {
                break;
            }
            through = Some(sampled);
            samples.pop_front();
        }
        let mut state = self.lock();
        if let Some(through) = through {
            state.replayed_through =
                Some(state.replayed_through.map_or(through, |t| t.max(through)));
            // Writes the replica has are visible there for good.
            state.writes.retain(|_, at| *at >= through);
            if state.overflow.is_some_and(|overflow| overflow < through) {
                state.overflow = None;
            }
        }
        match state.replayed_through {
            Some(through) => Freshness::Behind {
                lag: Instant::now().saturating_duration_since(through),
            },
            None => Freshness::CatchingUp,
        }
    }
}

/// `in_recovery` (when asked) and a WAL position in bytes.
async fn position(
    db: &DatabaseConnection,
    sql: &str,
) -> Result<(Option<bool>, Option<i64>), DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("no row".to_owned()))?;
    let in_recovery = row
        .try_get::<Option<bool>>("", "in_recovery")
        .ok()
        .flatten();
    let lsn = row.try_get::<Option<i64>>("", "lsn")?;
    Ok((in_recovery, lsn))
}
