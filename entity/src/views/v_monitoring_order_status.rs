//! `v_monitoring_order_status`: how the orders created in the last 24 hours are
//! distributed over the statuses.

use crate::sea_orm_active_enums::OrderStatusEnum;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "v_monitoring_order_status")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub status: OrderStatusEnum,
    pub count: i64,
    /// Share of all these orders, in percent, rounded to 2 places.
    pub percentage: Decimal,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("v_monitoring_order_status");
