//! A user's orders: one by id, or a newest-first page.

use entity::orders;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::lifecycle::find_own_order;
use crate::OrderStatus;
use crate::error::Result;
use crate::pagination::{Cursor, Page, Paged};

/// Which of a user's orders to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// The database form, `BTC/USDT`.
    pub symbol: Option<String>,
    pub status: Option<OrderStatus>,
}

/// The user's order. Errors: `NotFound`, `Forbidden` (another user's order).
pub async fn get<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    order_id: Uuid,
) -> Result<orders::Model> {
    find_own_order(db, user_id, order_id).await
}

/// The user's orders, newest first (by `created_at`, then `order_id`).
///
/// Both page kinds walk `IDX_orders_user_created (user_id, created_at DESC)` in
/// each partition and merge the partitions in order; [`Page::After`] starts at
/// the cursor instead of skipping rows, so every page costs the same.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    filter: &OrderFilter,
    page: Page,
) -> Result<Paged<orders::Model>> {
    let limit = page.check()?;
    let mut query = orders::Entity::find()
        .filter(orders::Column::UserId.eq(user_id))
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::OrderId)
        .limit(limit);
    if let Some(symbol) = &filter.symbol {
        query = query.filter(orders::Column::Symbol.eq(symbol.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(orders::Column::Status.eq(status));
    }
    query = match page {
        Page::Offset { offset, .. } => query.offset(offset),
        // The row comparison walks the index from the cursor on; the plain bound
        // on created_at also lets the planner skip the newer partitions.
        Page::After { cursor, .. } => query
            .filter(orders::Column::CreatedAt.lte(cursor.at))
            .filter(Expr::cust_with_values(
                r#"("orders"."created_at", "orders"."order_id") < ($1, $2)"#,
                [
                    sea_orm::Value::from(cursor.at),
                    sea_orm::Value::from(cursor.id),
                ],
            )),
    };
    let items = query.all(db).await?;
    Ok(Paged::new(items, limit, |order| Cursor {
        at: order.created_at,
        id: order.order_id,
    }))
}
