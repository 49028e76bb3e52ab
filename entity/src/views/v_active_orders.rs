//! `v_active_orders`: resting orders with a price, in price-time priority;
//! untriggered stop orders are left out (D9).

use crate::sea_orm_active_enums::{OrderSideEnum, OrderTypeEnum};
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "v_active_orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub side: OrderSideEnum,
    pub order_type: OrderTypeEnum,
    pub quantity: Decimal,
    pub filled_quantity: Decimal,
    /// `quantity - filled_quantity`.
    pub remaining_quantity: Decimal,
    pub price: Decimal,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("v_active_orders");
