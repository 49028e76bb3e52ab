//! Background jobs: partition maintenance (then the merge of old trades days
//! into months and of old orders months into years, each merge step its own
//! transaction) at start and hourly;
//! order expiry and the stop orders a placement's trigger bound left waiting,
//! every minute. With `ARCHIVE_ON_SCHEDULE` and an archive store, the hourly
//! run then archives, verifies and drops the partitions past retention
//! (`archive_partitions`; each step its own transaction, see
//! `service::archive`).
//! Each run is one transaction without the statement timeout (a large backlog
//! may take long) but with `JOB_LOCK_TIMEOUT_MS` as its lock timeout, so a job
//! never queues behind a lock for long; it is logged, and a failed run is
//! logged and retried at the next tick. Each run sets
//! `trade_engine_job_last_run_timestamp_seconds` and
//! `trade_engine_job_last_run_success` for its job on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use service::orders::PlacementLimits;
use service::pooling::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::archiving::Archiving;

const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

pub fn spawn(
    db: Pool,
    limits: PlacementLimits,
    archiving: Option<Arc<Archiving>>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    // Archiving on schedule only: otherwise retention stays a manual step.
    let archiving = archiving.filter(|a| a.on_schedule());
    let maintenance = {
        let db = db.clone();
        every(MAINTENANCE_EVERY, stop.clone(), move || {
            let db = db.clone();
            let archiving = archiving.clone();
            async move {
                match db
                    .run_unbounded(async |db| service::maintenance::maintain_partitions(db).await)
                    .await
                {
                    Ok(health) => {
                        crate::metrics::record_job("maintain_partitions", true);
                        for table in health {
                            tracing::info!(
                                job = "maintain_partitions",
                                table = %table.parent_table,
                                partitions = table.partition_count,
                                newest = ?table.newest_partition,
                                "partitions maintained"
                            );
                        }
                    }
                    Err(err) => {
                        crate::metrics::record_job("maintain_partitions", false);
                        tracing::warn!(job = "maintain_partitions", error = %err, "failed");
                    }
                }
                // D15: old days into monthly partitions, each step its own transaction.
                let compacted = service::maintenance::compact_trades(&db, None).await;
                crate::metrics::record_job("compact_trades", compacted.is_ok());
                if let Err(err) = compacted {
                    tracing::warn!(job = "compact_trades", error = %err, "failed");
                }
                // and old months of orders into yearly ones.
                let pruned = db
                    .run_unbounded(async |db| service::maintenance::prune_trade_candles(db).await)
                    .await;
                crate::metrics::record_job("prune_trade_candles", pruned.is_ok());
                if let Err(err) = pruned {
                    tracing::warn!(job = "prune_trade_candles", error = %err, "failed");
                }
                let compacted = service::maintenance::compact_orders(&db, None).await;
                crate::metrics::record_job("compact_orders", compacted.is_ok());
                if let Err(err) = compacted {
                    tracing::warn!(job = "compact_orders", error = %err, "failed");
                }
                // Last: what retention makes due, archived, verified, dropped.
                if let Some(archiving) = archiving {
                    let archived = archiving.run(db.connection()).await;
                    crate::metrics::record_job("archive_partitions", archived.is_ok());
                    match archived {
                        Ok(done) => tracing::info!(
                            job = "archive_partitions",
                            dropped = done.len(),
                            "partitions past retention archived and dropped"
                        ),
                        Err(err) => {
                            tracing::warn!(job = "archive_partitions", error = %err, "failed")
                        }
                    }
                }
            }
        })
    };
    let stops = {
        let db = db.clone();
        every(EXPIRY_EVERY, stop.clone(), move || {
            let db = db.clone();
            async move {
                match db
                    .run_unbounded(async |db| {
                        service::maintenance::trigger_reached_stops_with(db, &limits).await
                    })
                    .await
                {
                    Ok(0) => crate::metrics::record_job("trigger_reached_stops", true),
                    Ok(triggered) => {
                        crate::metrics::record_job("trigger_reached_stops", true);
                        tracing::info!(
                            job = "trigger_reached_stops",
                            triggered,
                            "waiting stop orders triggered"
                        )
                    }
                    Err(err) => {
                        crate::metrics::record_job("trigger_reached_stops", false);
                        tracing::warn!(job = "trigger_reached_stops", error = %err, "failed")
                    }
                }
            }
        })
    };
    let expiry = every(EXPIRY_EVERY, stop, move || {
        let db = db.clone();
        async move {
            match db
                .run_unbounded(async |db| service::maintenance::expire_orders(db).await)
                .await
            {
                Ok(expired) => {
                    crate::metrics::record_job("expire_orders", true);
                    tracing::info!(
                        job = "expire_orders",
                        expired = expired.len(),
                        "orders expired"
                    )
                }
                Err(err) => {
                    crate::metrics::record_job("expire_orders", false);
                    tracing::warn!(job = "expire_orders", error = %err, "failed")
                }
            }
        }
    });
    vec![maintenance, stops, expiry]
}

/// Runs `job` now and then every `period` until `stop` turns true.
fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, job: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => job().await,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
    })
}
