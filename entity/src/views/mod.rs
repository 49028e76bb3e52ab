//! Read-only models of the views (`v_*`) and the materialized order book
//! (`mv_order_book_snapshot`), keyed by their natural keys.
//!
//! Query them like any entity (`VActiveOrders::find()`); the views are computed
//! by PostgreSQL, so writing through them is not offered: an `ActiveModel`
//! insert, update, save or delete fails with [`read_only`]'s error before any SQL
//! is sent.
//!
//! ```
//! use entity::views::v_active_orders;
//! use sea_orm::{EntityTrait, QueryFilter, QueryOrder, ColumnTrait};
//!
//! // The book of one symbol in price-time priority, as the view orders it.
//! let _query = v_active_orders::Entity::find()
//!     .filter(v_active_orders::Column::Symbol.eq("BTC/USDT"));
//! ```

pub mod mv_order_book_snapshot;
pub mod v_active_orders;
pub mod v_monitoring_active_orders;
pub mod v_monitoring_order_status;
pub mod v_monitoring_trade_volume_24h;
pub mod v_symbol_stats_24h;
pub mod v_user_order_summary;

pub use mv_order_book_snapshot::Entity as MvOrderBookSnapshot;
pub use v_active_orders::Entity as VActiveOrders;
pub use v_monitoring_active_orders::Entity as VMonitoringActiveOrders;
pub use v_monitoring_order_status::Entity as VMonitoringOrderStatus;
pub use v_monitoring_trade_volume_24h::Entity as VMonitoringTradeVolume24h;
pub use v_symbol_stats_24h::Entity as VSymbolStats24h;
pub use v_user_order_summary::Entity as VUserOrderSummary;

use sea_orm::DbErr;

/// The error every write through a view model ends in.
pub fn read_only(view: &str) -> DbErr {
    DbErr::Custom(format!(
        "{view} is a read-only view: write to the tables it reads instead"
    ))
}

/// Implements `ActiveModelBehavior` so that every write through the view's
/// `ActiveModel` is refused.
macro_rules! read_only_behavior {
    ($view:literal) => {
        #[sea_orm::prelude::async_trait::async_trait]
        impl sea_orm::ActiveModelBehavior for ActiveModel {
            async fn before_save<C>(self, _db: &C, _insert: bool) -> Result<Self, sea_orm::DbErr>
            where
                C: sea_orm::ConnectionTrait,
            {
                Err(super::read_only($view))
            }

            async fn before_delete<C>(self, _db: &C) -> Result<Self, sea_orm::DbErr>
            where
                C: sea_orm::ConnectionTrait,
            {
                Err(super::read_only($view))
            }
        }
    };
}
pub(crate) use read_only_behavior;
