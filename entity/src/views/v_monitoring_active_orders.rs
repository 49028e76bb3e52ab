//! `v_monitoring_active_orders`: per symbol, the counts and remaining quantity of
//! the OPEN and PARTIALLY_FILLED orders.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "v_monitoring_active_orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    pub buy_orders: i64,
    pub sell_orders: i64,
    pub total_orders: i64,
    /// Sum of the remaining quantities.
    pub total_quantity: Decimal,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("v_monitoring_active_orders");
