//! Relations the foreign keys do not declare, written by hand so the generated
//! files stay untouched.
//!
//! - A trade's two orders: [`TradeBuyerOrder`] and [`TradeSellerOrder`]
//!   (`trade.find_linked(TradeBuyerOrder)`, `Trades::find().find_also_linked(…)`),
//!   or [`trades::Model::find_buyer_order`] and [`trades::Model::find_seller_order`].
//! - An order's trades: [`OrderBuyTrades`] and [`OrderSellTrades`] for one side,
//!   [`orders::Model::find_trades`] for both.
//! - A watchlist entry's order and back: `Related`, so `find_related` and
//!   `find_also_related` work both ways.
//!
//! Orders are keyed by `(order_id, created_at)` because the table is partitioned;
//! `order_id` alone is unique (a UUID) and is the leading column of that key, so
//! these joins use the primary-key index of every partition.

use sea_orm::entity::prelude::*;
use sea_orm::{Condition, LinkDef, Linked, QueryOrder};

use crate::{orders, stop_orders_watchlist, trades};

fn trade_to_order(column: trades::Column) -> RelationDef {
    trades::Entity::belongs_to(orders::Entity)
        .from(column)
        .to(orders::Column::OrderId)
        .into()
}

/// From a trade to the order on its buying side.
#[derive(Clone, Copy, Debug)]
pub struct TradeBuyerOrder;

impl Linked for TradeBuyerOrder {
    type FromEntity = trades::Entity;
    type ToEntity = orders::Entity;

    fn link(&self) -> Vec<LinkDef> {
        vec![trade_to_order(trades::Column::BuyerOrderId)]
    }
}

/// From a trade to the order on its selling side.
#[derive(Clone, Copy, Debug)]
pub struct TradeSellerOrder;

impl Linked for TradeSellerOrder {
    type FromEntity = trades::Entity;
    type ToEntity = orders::Entity;

    fn link(&self) -> Vec<LinkDef> {
        vec![trade_to_order(trades::Column::SellerOrderId)]
    }
}

/// From an order to the trades it bought in.
#[derive(Clone, Copy, Debug)]
pub struct OrderBuyTrades;

impl Linked for OrderBuyTrades {
    type FromEntity = orders::Entity;
    type ToEntity = trades::Entity;

    fn link(&self) -> Vec<LinkDef> {
        vec![trade_to_order(trades::Column::BuyerOrderId).rev()]
    }
}

/// From an order to the trades it sold in.
#[derive(Clone, Copy, Debug)]
pub struct OrderSellTrades;

impl Linked for OrderSellTrades {
    type FromEntity = orders::Entity;
    type ToEntity = trades::Entity;

    fn link(&self) -> Vec<LinkDef> {
        vec![trade_to_order(trades::Column::SellerOrderId).rev()]
    }
}

impl Related<orders::Entity> for stop_orders_watchlist::Entity {
    fn to() -> RelationDef {
        stop_orders_watchlist::Entity::belongs_to(orders::Entity)
            .from(stop_orders_watchlist::Column::OrderId)
            .to(orders::Column::OrderId)
            .into()
    }
}

impl Related<stop_orders_watchlist::Entity> for orders::Entity {
    fn to() -> RelationDef {
        <stop_orders_watchlist::Entity as Related<orders::Entity>>::to().rev()
    }
}

impl orders::Model {
    /// This order's trades, on whichever side it traded, in execution order.
    pub fn find_trades(&self) -> Select<trades::Entity> {
        trades::Entity::find()
            .filter(
                Condition::any()
                    .add(trades::Column::BuyerOrderId.eq(self.order_id))
                    .add(trades::Column::SellerOrderId.eq(self.order_id)),
            )
            .order_by_asc(trades::Column::ExecutedAt)
            .order_by_asc(trades::Column::TradeId)
    }
}

impl trades::Model {
    /// The order on this trade's buying side.
    pub fn find_buyer_order(&self) -> Select<orders::Entity> {
        orders::Entity::find().filter(orders::Column::OrderId.eq(self.buyer_order_id))
    }

    /// The order on this trade's selling side.
    pub fn find_seller_order(&self) -> Select<orders::Entity> {
        orders::Entity::find().filter(orders::Column::OrderId.eq(self.seller_order_id))
    }
}
