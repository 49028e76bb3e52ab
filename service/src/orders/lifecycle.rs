//! The end of an order's life by request (cancel) or by time (expiry).

use entity::orders;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, TransactionSession};

use crate::pooling::TransactionAware;
use uuid::Uuid;

use crate::error::{Result, ServiceError};
use crate::is_terminal;

/// Looks an order up by id alone (the key is `(order_id, created_at)`): time
/// bounds derived from the id ([`crate::ids::find_by_id`]) let PostgreSQL
/// plan and lock one monthly partition, not all of them.
pub(crate) async fn find_order<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
) -> Result<orders::Model> {
    // A triggered stop order's created_at moves to its trigger time, later
    // than its id says.
    crate::ids::find_by_id::<orders::Entity, _>(
        db,
        orders::Column::OrderId,
        orders::Column::CreatedAt,
        order_id,
        true,
    )
    .await?
    .ok_or_else(|| ServiceError::NotFound {
        entity: "order",
        id: order_id.to_string(),
    })
}

/// The order, if it belongs to `user_id`.
pub(crate) async fn find_own_order<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<orders::Model> {
    let order = find_order(db, order_id).await?;
    if order.user_id != user_id {
        return Err(ServiceError::Forbidden {
            entity: "order",
            id: order_id.to_string(),
        });
    }
    Ok(order)
}

/// The guarded update of a cancel, under the symbol's book lock (`$3`
/// [`BOOK_LOCK`](crate::orders::store::BOOK_LOCK), `$4` the symbol): the join
/// yields no row before the one-row lock subquery has run, so the lock is
/// taken before the order's row. A cancel thus waits for a placement in
/// progress on the symbol as a whole instead of meeting it row by row in the
/// market state (an order row held by the cancel, a side total held by a
/// placement that wants that order: a deadlock).
pub const CANCEL: &str = "UPDATE orders SET status = 'CANCELLED'
    FROM (SELECT pg_advisory_xact_lock($3, hashtext($4))) AS locked
    WHERE order_id = $1 AND created_at = $2 AND status IN ('PENDING', 'OPEN', 'PARTIALLY_FILLED')
    RETURNING orders.*";

/// Cancels the user's order: CANCELLED, with `cancelled_at` set by the schema's
/// trigger; a stop order leaves the watchlist.
///
/// Errors: [`ServiceError::NotFound`], [`ServiceError::Forbidden`] (another
/// user's order), [`ServiceError::TerminalStatus`] (already FILLED, CANCELLED,
/// REJECTED or EXPIRED, also when a match filled it a moment before),
/// [`ServiceError::Contention`] (the order kept moving, or a serialization
/// failure or deadlock, through every attempt).
pub async fn cancel<C: TransactionAware>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<orders::Model> {
    // A placement matching or triggering this order holds its row lock; the
    // update waits for it and then sees the order as the placement left it. A
    // triggered stop order gets a new created_at (its key), so the update can
    // find no row, or PostgreSQL reports the row moved to another partition
    // (40001): then read it again and retry. A deadlock (40P01) is retried
    // the same way.
    let mut contention = None;
    for _ in 0..CANCEL_ATTEMPTS {
        let order = find_own_order(db, user_id, order_id).await?;
        if is_terminal(order.status) {
            return Err(ServiceError::TerminalStatus {
                order_id,
                status: order.status,
            });
        }
        let cancelled = if db.in_transaction() {
            // In the caller's transaction each attempt is a savepoint, so a
            // failed one (40001) leaves that transaction usable for the retry.
            let attempt = db.begin().await?;
            let cancelled = cancel_row(&attempt, order_id, &order).await;
            match &cancelled {
                Ok(Some(_)) => attempt.commit().await?,
                _ => attempt.rollback().await?,
            }
            cancelled
        } else {
            cancel_row(db, order_id, &order).await
        };
        match cancelled {
            Ok(Some(cancelled)) => {
                tracing::debug!(%order_id, "order cancelled");
                return Ok(cancelled);
            }
            Ok(None) => continue,
            // Classified once, in `ServiceError::from`: contention is retried.
            Err(err) => match ServiceError::from(err) {
                ServiceError::Contention { source, .. } => contention = Some(source),
                other => return Err(other),
            },
        }
    }
    let now = find_order(db, order_id).await?;
    if is_terminal(now.status) {
        return Err(ServiceError::TerminalStatus {
            order_id,
            status: now.status,
        });
    }
    Err(ServiceError::Contention {
        attempts: CANCEL_ATTEMPTS,
        source: contention.unwrap_or_else(|| {
            sea_orm::DbErr::Custom(format!(
                "order {order_id} kept changing while it was being cancelled"
            ))
        }),
    })
}

/// The guarded update of one cancel attempt: the row as cancelled, `None` when
/// no row matched the key (the order moved), or the database's error.
async fn cancel_row<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    order: &orders::Model,
) -> std::result::Result<Option<orders::Model>, sea_orm::DbErr> {
    orders::Model::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        CANCEL,
        [
            order_id.into(),
            order.created_at.into(),
            crate::orders::store::BOOK_LOCK.into(),
            order.symbol.clone().into(),
        ],
    ))
    .one(db)
    .await
}

/// Reads and cancel attempts before giving up on an order that keeps moving.
const CANCEL_ATTEMPTS: u32 = crate::CONTENTION_ATTEMPTS;

#[derive(FromQueryResult)]
struct Expired {
    order_id: Uuid,
}

/// Orders still waiting (PENDING, OPEN, PARTIALLY_FILLED) that are due: DAY
/// orders created before today's UTC midnight, and any order past `expires_at`.
const EXPIRE_DUE: &str = "UPDATE orders SET status = 'EXPIRED'
    WHERE status IN ('PENDING', 'OPEN', 'PARTIALLY_FILLED')
      AND ((time_in_force = 'DAY'
            AND created_at < (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'))
           OR expires_at <= now())
    RETURNING order_id";

/// Expires the orders that are due (see above) and returns their ids. Safe to
/// run from a scheduler at any rate; each order is expired once. Runs in a
/// transaction of its own (a savepoint in a caller's), tried again on a
/// serialization failure or deadlock up to
/// [`CONTENTION_ATTEMPTS`](crate::CONTENTION_ATTEMPTS) times in total.
pub async fn expire_due<C>(db: &C) -> Result<Vec<Uuid>>
where
    C: ConnectionTrait + sea_orm::TransactionTrait,
{
    let expired = crate::retry::in_transaction!(db, |txn| {
        let sql = Statement::from_string(DbBackend::Postgres, EXPIRE_DUE);
        Expired::find_by_statement(sql)
            .all(&txn)
            .await
            .map_err(ServiceError::from)
    })?;
    let ids: Vec<Uuid> = expired.into_iter().map(|e| e.order_id).collect();
    if !ids.is_empty() {
        tracing::info!(expired = ids.len(), "orders expired");
    }
    Ok(ids)
}
