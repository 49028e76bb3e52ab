//! `v_symbol_stats_24h`: per symbol, the trades of the last 24 hours.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "v_symbol_stats_24h")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    pub trade_count: i64,
    /// Sum of quantities (base asset).
    pub volume: Decimal,
    /// Sum of quantity × price (quote asset).
    pub quote_volume: Decimal,
    pub low_price: Decimal,
    pub high_price: Decimal,
    /// Price of the symbol's newest trade.
    pub last_price: Decimal,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

super::read_only_behavior!("v_symbol_stats_24h");
