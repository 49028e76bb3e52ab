//! `mv_order_book_snapshot`: the materialized order book, one row per symbol,
//! side and price level, as of its last refresh (`refresh_order_book_snapshot()`).

use crate::sea_orm_active_enums::OrderSideEnum;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "mv_order_book_snapshot")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub side: OrderSideEnum,
    #[sea_orm(primary_key, auto_increment = false)]
    pub price: Decimal,
    /// Remaining quantity at this level.
    pub total_quantity: Decimal,
    pub order_count: i64,
    pub last_refresh: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("mv_order_book_snapshot");
