//! `v_user_order_summary`: per user and symbol, counts over all orders and the
//! volume (quantity × price) of the filled ones.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "v_user_order_summary")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    /// OPEN or PARTIALLY_FILLED orders.
    pub open_orders: i64,
    pub filled_orders: i64,
    pub cancelled_orders: i64,
    pub total_volume: Decimal,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("v_user_order_summary");
