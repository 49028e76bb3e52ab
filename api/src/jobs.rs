//! Background jobs: partition maintenance (then the merge of old trades days
//! into months) at start and hourly, order expiry every minute. Each run (each
//! merge step) is one transaction without the statement timeout (a large
//! backlog may take long); it is logged, and a failed run is logged and
//! retried at the next tick.

use std::time::Duration;

use service::pooling::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

pub fn spawn(db: Pool, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let maintenance = {
        let db = db.clone();
        every(MAINTENANCE_EVERY, stop.clone(), move || {
            let db = db.clone();
            async move {
                match db
                    .run_unbounded(async |db| service::maintenance::maintain_partitions(db).await)
                    .await
                {
                    Ok(health) => {
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
                    Err(err) => tracing::warn!(job = "maintain_partitions", error = %err, "failed"),
                }
                // D15: old days into monthly partitions, each step its own transaction.
                if let Err(err) = service::maintenance::compact_trades(&db, None).await {
                    tracing::warn!(job = "compact_trades", error = %err, "failed");
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
                Ok(expired) => tracing::info!(
                    job = "expire_orders",
                    expired = expired.len(),
                    "orders expired"
                ),
                Err(err) => tracing::warn!(job = "expire_orders", error = %err, "failed"),
            }
        }
    });
    vec![maintenance, expiry]
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
