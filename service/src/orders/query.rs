//! A user's orders: one by id, or a newest-first page.

use entity::orders;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Statement,
};
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

/// The statement [`list`] sends for this page (the benchmark's raw-SQL floor
/// sends the same text). Errors: [`crate::ServiceError::InvalidArgument`]
/// (`limit`).
pub fn list_statement(user_id: Uuid, filter: &OrderFilter, page: Page) -> Result<Statement> {
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
    Ok(query.build(DbBackend::Postgres))
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
    let rows = db
        .query_all_raw(list_statement(user_id, filter, page)?)
        .await?;
    let items = rows
        .iter()
        .map(order_from_row)
        .collect::<std::result::Result<Vec<_>, DbErr>>()?;
    Ok(Paged::new(items, limit, |order| Cursor {
        at: order.created_at,
        id: order.order_id,
    }))
}

/// An `orders` row of [`list_statement`] as SeaORM's derived mapping reads it
/// (`orders::Model::from_query_result`, which other backends still use),
/// decoded straight from PostgreSQL's row: the derived mapping formats an
/// error message for every NULL column it meets (about eight an order), which
/// was most of what a page of 50 orders cost beyond the statement.
/// `order_rows_decode_as_seaorm_maps_them` (tests) holds the two equal.
pub fn order_from_row(row: &QueryResult) -> std::result::Result<orders::Model, DbErr> {
    use sea_orm::sqlx::{Decode, Postgres, Row, Type};
    let Some(pg) = row.try_as_pg_row() else {
        return orders::Model::from_query_result(row, "");
    };
    fn get<'r, T: Decode<'r, Postgres> + Type<Postgres>>(
        pg: &'r sea_orm::sqlx::postgres::PgRow,
        column: &str,
    ) -> std::result::Result<T, DbErr> {
        pg.try_get(column)
            .map_err(|err| DbErr::Type(format!("orders.{column}: {err}")))
    }
    // As SeaORM reads an enum column (cast to text by the statement).
    fn label<E: ActiveEnum<Value = sea_orm::sea_query::Enum>>(
        pg: &sea_orm::sqlx::postgres::PgRow,
        column: &str,
    ) -> std::result::Result<E, DbErr> {
        E::try_from_value(&sea_orm::sea_query::Enum {
            type_name: "".into(),
            value: get::<String>(pg, column)?.into(),
        })
    }
    Ok(orders::Model {
        order_id: get(pg, "order_id")?,
        user_id: get(pg, "user_id")?,
        institution_id: get(pg, "institution_id")?,
        symbol: get(pg, "symbol")?,
        side: label(pg, "side")?,
        order_type: label(pg, "order_type")?,
        status: label(pg, "status")?,
        quantity: get(pg, "quantity")?,
        filled_quantity: get(pg, "filled_quantity")?,
        price: get(pg, "price")?,
        average_price: get(pg, "average_price")?,
        stop_price: get(pg, "stop_price")?,
        time_in_force: label(pg, "time_in_force")?,
        client_order_id: get(pg, "client_order_id")?,
        order_source: get(pg, "order_source")?,
        fee_profile_id: get(pg, "fee_profile_id")?,
        created_at: get(pg, "created_at")?,
        updated_at: get(pg, "updated_at")?,
        filled_at: get(pg, "filled_at")?,
        cancelled_at: get(pg, "cancelled_at")?,
        expires_at: get(pg, "expires_at")?,
    })
}
