//! `v_monitoring_trade_volume_24h`: per symbol, trade count and volumes of the
//! last 24 hours.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "v_monitoring_trade_volume_24h")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    pub trade_count: i64,
    pub volume: Decimal,
    pub quote_volume: Decimal,
    /// The plain average of the trade prices.
    pub avg_price: Decimal,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("v_monitoring_trade_volume_24h");
