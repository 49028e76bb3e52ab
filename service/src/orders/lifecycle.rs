//! The end of an order's life by request (cancel) or by time (expiry).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset};
use entity::orders;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, TransactionSession};
use uuid::Uuid;

use crate::error::{Result, ServiceError};
use crate::is_terminal;
use crate::pooling::TransactionAware;

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

/// The guarded update of a batch of cancels on one symbol, as [`CANCEL`] for
/// each order: `$1` the orders' ids and `$2` their `created_at`, pair by pair;
/// an order named twice is cancelled (and returned) once. The join alone
/// would plan and start a scan of every `orders` partition (2.7 ms against
/// 1.0 ms for one order at the benchmark's small scale); `created_at =
/// ANY($2)` lets the plan keep only the partitions the orders are in.
pub const CANCEL_MANY: &str = "UPDATE orders SET status = 'CANCELLED'
    FROM (SELECT pg_advisory_xact_lock($3, hashtext($4))) AS locked,
         unnest($1::uuid[], $2::timestamptz[]) AS wanted (order_id, created_at)
    WHERE orders.order_id = wanted.order_id AND orders.created_at = wanted.created_at
      AND orders.created_at = ANY($2::timestamptz[])
      AND orders.status IN ('PENDING', 'OPEN', 'PARTIALLY_FILLED')
    RETURNING orders.*";

/// An order a cancel found still cancellable, and who asked.
#[derive(Clone, Debug)]
pub(crate) struct Cancellable {
    pub user_id: Uuid,
    pub order_id: Uuid,
    pub created_at: DateTime<FixedOffset>,
    pub symbol: String,
}

/// The user's order, if it can still be cancelled: what a cancel checks
/// before it takes the book lock.
pub(crate) async fn cancellable<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<Cancellable> {
    let order = find_own_order(db, user_id, order_id).await?;
    if is_terminal(order.status) {
        return Err(ServiceError::TerminalStatus {
            order_id,
            status: order.status,
        });
    }
    Ok(Cancellable {
        user_id,
        order_id,
        created_at: order.created_at,
        symbol: order.symbol,
    })
}

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
        let order = cancellable(db, user_id, order_id).await?;
        let cancelled = guarded(db, cancel_statement(&order))
            .await
            .map(|rows| rows.into_iter().next());
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

/// [`CANCEL`] of one order found cancellable.
fn cancel_statement(order: &Cancellable) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        CANCEL,
        [
            order.order_id.into(),
            order.created_at.into(),
            crate::orders::store::BOOK_LOCK.into(),
            order.symbol.clone().into(),
        ],
    )
}

/// Runs a cancel's guarded update; in a caller's transaction as a savepoint,
/// so that a failed one (40001) leaves that transaction usable for a retry.
/// The savepoint is kept only when the update cancelled something.
async fn guarded<C: TransactionAware>(
    db: &C,
    statement: Statement,
) -> std::result::Result<Vec<orders::Model>, sea_orm::DbErr> {
    if !db.in_transaction() {
        return orders::Model::find_by_statement(statement).all(db).await;
    }
    let attempt = db.begin().await?;
    let cancelled = orders::Model::find_by_statement(statement)
        .all(&attempt)
        .await;
    match &cancelled {
        Ok(rows) if !rows.is_empty() => attempt.commit().await?,
        _ => attempt.rollback().await?,
    }
    cancelled
}

/// Cancels orders, each as [`cancel`] would, in list order: `requests` are
/// `(user_id, order_id)` pairs, and each gets its own result. The orders of
/// one symbol are cancelled by one statement under its book lock, so the
/// schema's statement triggers run once for them (and, outside a caller's
/// transaction, they commit together). An order that statement did not
/// cancel (filled or triggered meanwhile, or named twice) and every order of
/// a statement the database failed is cancelled again alone with [`cancel`],
/// so each gets exactly the answer it would get alone.
pub async fn cancel_many<C: TransactionAware>(
    db: &C,
    requests: &[(Uuid, Uuid)],
) -> Vec<Result<orders::Model>> {
    let mut results: Vec<Option<Result<orders::Model>>> = Vec::with_capacity(requests.len());
    let mut per_symbol: BTreeMap<String, Vec<(usize, Cancellable)>> = BTreeMap::new();
    for (index, &(user_id, order_id)) in requests.iter().enumerate() {
        match cancellable(db, user_id, order_id).await {
            Ok(order) => {
                results.push(None);
                per_symbol
                    .entry(order.symbol.clone())
                    .or_default()
                    .push((index, order));
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }
    for (symbol, group) in per_symbol {
        let (indexes, orders): (Vec<usize>, Vec<Cancellable>) = group.into_iter().unzip();
        let cancelled = cancel_found(db, &symbol, &orders).await;
        for (index, result) in indexes.into_iter().zip(cancelled) {
            results[index] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(ServiceError::Database(sea_orm::DbErr::Custom(
                    "a cancel of the batch got no answer".into(),
                )))
            })
        })
        .collect()
}

/// Cancels `orders`, all found cancellable on `symbol`, with one statement
/// under the symbol's book lock; what it does not cancel is cancelled alone.
/// Each gets its own result, in order.
pub(crate) async fn cancel_found<C: TransactionAware>(
    db: &C,
    symbol: &str,
    orders: &[Cancellable],
) -> Vec<Result<orders::Model>> {
    let statement = match orders {
        // A batch of one is a cancel alone: its statement is the cheaper.
        [order] => cancel_statement(order),
        _ => {
            let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
            let created: Vec<DateTime<FixedOffset>> = orders.iter().map(|o| o.created_at).collect();
            Statement::from_sql_and_values(
                DbBackend::Postgres,
                CANCEL_MANY,
                [
                    ids.into(),
                    created.into(),
                    crate::orders::store::BOOK_LOCK.into(),
                    symbol.into(),
                ],
            )
        }
    };
    let mut cancelled: HashMap<Uuid, orders::Model> = match guarded(db, statement).await {
        Ok(rows) => rows.into_iter().map(|row| (row.order_id, row)).collect(),
        Err(err) => match ServiceError::from(err) {
            // No connection: cancelling one by one would wait for one again
            // per order; each gets the batch's answer instead.
            ServiceError::Unavailable(err) => {
                return orders
                    .iter()
                    .map(|_| {
                        Err(ServiceError::Unavailable(sea_orm::DbErr::Custom(
                            err.to_string(),
                        )))
                    })
                    .collect();
            }
            other => {
                tracing::debug!(error = %other, orders = orders.len(), "batch of cancels failed; cancelling one by one");
                HashMap::new()
            }
        },
    };
    let mut results = Vec::with_capacity(orders.len());
    for order in orders {
        // The first request of an order named twice takes its row; the
        // second finds it cancelled, as it would one after the other.
        match cancelled.remove(&order.order_id) {
            Some(row) => {
                tracing::debug!(order_id = %order.order_id, "order cancelled");
                results.push(Ok(row));
            }
            None => results.push(cancel(db, order.user_id, order.order_id).await),
        }
    }
    results
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
