//! Bounds on a placement: what one user may keep resting, and how much work
//! one placement may do while it holds its symbol's book lock.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::NewOrder;
use crate::error::{Result, ServiceError};
use crate::{OrderType, TimeInForce};

/// Bounds on placements; [`Default`] gives the production values.
///
/// ```
/// use service::orders::PlacementLimits;
///
/// let limits = PlacementLimits { max_fills: 200, ..PlacementLimits::default() };
/// assert_eq!(limits.max_resting_orders_per_user, 1000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementLimits {
    /// Orders a user may have resting or waiting, over all symbols: LIMIT
    /// orders OPEN or PARTIALLY_FILLED, stop orders not yet triggered, and
    /// PENDING orders. An order that could rest (LIMIT GTC or DAY, STOP,
    /// STOP_LIMIT) is refused with
    /// [`ServiceError::TooManyRestingOrders`] when the user has this many.
    /// Default 1000.
    pub max_resting_orders_per_user: u64,
    /// Fills one order's sweep makes at most; the unfilled rest then expires.
    /// Default 1000.
    pub max_fills: usize,
    /// Stop orders one placement triggers at most; the others the price
    /// reached wait PENDING for the next trading placement on the symbol or
    /// [`crate::maintenance::trigger_reached_stops`]. Default 100.
    pub max_triggered_stops: usize,
}

impl Default for PlacementLimits {
    fn default() -> PlacementLimits {
        PlacementLimits {
            max_resting_orders_per_user: 1000,
            max_fills: 1000,
            max_triggered_stops: 100,
        }
    }
}

/// Whether `order` can end up resting (or waiting, for a stop order): MARKET,
/// IOC and FOK orders never do.
pub(crate) fn could_rest(order: &NewOrder) -> bool {
    match order.order_type {
        OrderType::Stop | OrderType::StopLimit => true,
        OrderType::Limit => matches!(order.time_in_force, TimeInForce::Gtc | TimeInForce::Day),
        OrderType::Market | OrderType::TrailingStop => false,
    }
}

/// The user's resting and waiting orders, counted up to `$2`: the first branch
/// reads only `IDX_orders_user_symbol_status` (partial on OPEN and
/// PARTIALLY_FILLED, led by user_id); PENDING orders are rare and outside it.
pub const RESTING_ORDERS: &str = "SELECT count(*) AS resting FROM (
    (SELECT 1 FROM orders WHERE user_id = $1 AND status IN ('OPEN', 'PARTIALLY_FILLED') LIMIT $2)
    UNION ALL
    (SELECT 1 FROM orders WHERE user_id = $1 AND status = 'PENDING' LIMIT $2)
) AS r";

#[derive(FromQueryResult)]
struct Resting {
    resting: i64,
}

/// Refuses `order` when it could rest and its user already has
/// `limits.max_resting_orders_per_user` orders resting or waiting.
///
/// Runs under the symbol's book lock, so it is exact for one symbol. Two
/// placements of one user on different symbols at the same moment each count
/// without the other and can overshoot by one each: a per-user lock would make
/// it exact, but would queue all of a user's placements (a market maker's, on
/// every symbol) behind the slowest book they touch.
pub(crate) async fn check_resting<C: ConnectionTrait>(
    db: &C,
    order: &NewOrder,
    limits: &PlacementLimits,
) -> Result<()> {
    if !could_rest(order) {
        return Ok(());
    }
    if stored_count(db, order.user_id, limits).await? >= cap(limits) {
        return Err(refuse_resting(order.user_id, limits));
    }
    Ok(())
}

/// The user's resting and waiting orders as stored ([`RESTING_ORDERS`]),
/// counted up to the cap of `limits` (a count at the cap means "at least
/// the cap").
pub(crate) async fn stored_count<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    limits: &PlacementLimits,
) -> Result<i64> {
    Ok(Resting::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        RESTING_ORDERS,
        [user_id.into(), cap(limits).into()],
    ))
    .one(db)
    .await?
    .map_or(0, |r| r.resting))
}

/// [`RESTING_ORDERS`] for several users at once (the parameter `$users`,
/// each counted up to `$cap`): rows of `user_id`, `resting`. A batch reads
/// its users' counts with it ([`batch_start`](super::store::batch_start)).
macro_rules! resting_orders_of {
    ($users:literal, $cap:literal) => {
        concat!(
            "SELECT u.user_id, (SELECT count(*) FROM (
    (SELECT 1 FROM orders WHERE user_id = u.user_id
        AND status IN ('OPEN', 'PARTIALLY_FILLED') LIMIT ",
            $cap,
            ")
    UNION ALL
    (SELECT 1 FROM orders WHERE user_id = u.user_id AND status = 'PENDING' LIMIT ",
            $cap,
            ")
) AS r) AS resting
FROM unnest(",
            $users,
            "::uuid[]) AS u(user_id)"
        )
    };
}
pub(crate) use resting_orders_of;

/// The cap [`check_resting`] counts up to.
pub(crate) fn cap(limits: &PlacementLimits) -> i64 {
    i64::try_from(limits.max_resting_orders_per_user).unwrap_or(i64::MAX)
}

/// The refusal of an order whose user has `limits`' most resting orders.
pub(crate) fn refuse_resting(user_id: Uuid, limits: &PlacementLimits) -> ServiceError {
    too_many(user_id, limits.max_resting_orders_per_user)
}

fn too_many(user_id: Uuid, limit: u64) -> ServiceError {
    ServiceError::TooManyRestingOrders { user_id, limit }
}
