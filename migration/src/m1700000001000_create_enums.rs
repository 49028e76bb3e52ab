//! Migration 1 (`CreateEnums1700000001000`): the five PostgreSQL enum types.

use sea_orm_migration::prelude::extension::postgres::Type;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum OrderSide {
    #[sea_orm(iden = "order_side_enum")]
    Enum,
    #[sea_orm(iden = "BUY")]
    Buy,
    #[sea_orm(iden = "SELL")]
    Sell,
}

#[derive(DeriveIden)]
pub(crate) enum OrderType {
    #[sea_orm(iden = "order_type_enum")]
    Enum,
    #[sea_orm(iden = "MARKET")]
    Market,
    #[sea_orm(iden = "LIMIT")]
    Limit,
    #[sea_orm(iden = "STOP")]
    Stop,
    #[sea_orm(iden = "STOP_LIMIT")]
    StopLimit,
    #[sea_orm(iden = "TRAILING_STOP")]
    TrailingStop,
}

#[derive(DeriveIden)]
pub(crate) enum OrderStatus {
    #[sea_orm(iden = "order_status_enum")]
    Enum,
    #[sea_orm(iden = "PENDING")]
    Pending,
    #[sea_orm(iden = "OPEN")]
    Open,
    #[sea_orm(iden = "PARTIALLY_FILLED")]
    PartiallyFilled,
    #[sea_orm(iden = "FILLED")]
    Filled,
    #[sea_orm(iden = "CANCELLED")]
    Cancelled,
    #[sea_orm(iden = "REJECTED")]
    Rejected,
    #[sea_orm(iden = "EXPIRED")]
    Expired,
}

#[derive(DeriveIden)]
pub(crate) enum TimeInForce {
    #[sea_orm(iden = "time_in_force_enum")]
    Enum,
    #[sea_orm(iden = "GTC")]
    Gtc,
    #[sea_orm(iden = "IOC")]
    Ioc,
    #[sea_orm(iden = "FOK")]
    Fok,
    #[sea_orm(iden = "DAY")]
    Day,
}

#[derive(DeriveIden)]
pub(crate) enum SymbolStatus {
    #[sea_orm(iden = "symbol_status_enum")]
    Enum,
    #[sea_orm(iden = "ACTIVE")]
    Active,
    #[sea_orm(iden = "HALTED")]
    Halted,
    #[sea_orm(iden = "MAINTENANCE")]
    Maintenance,
    #[sea_orm(iden = "DELISTED")]
    Delisted,
}

const COMMENTS: &str = r#"
COMMENT ON TYPE order_side_enum IS 'Order side: BUY or SELL';
COMMENT ON TYPE order_type_enum IS 'Type of order: MARKET, LIMIT, STOP, etc.';
COMMENT ON TYPE order_status_enum IS 'Current status of an order';
COMMENT ON TYPE time_in_force_enum IS 'Time in force instruction for order: GTC (Good Till Cancelled), IOC (Immediate or Cancel), FOK (Fill or Kill), DAY (Day order)';
COMMENT ON TYPE symbol_status_enum IS 'Trading status of a symbol';
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use OrderSide as S;
        use OrderStatus as St;
        use OrderType as T;
        use SymbolStatus as Sy;
        use TimeInForce as Tif;
        let types = [
            Type::create()
                .as_enum(S::Enum)
                .values([S::Buy, S::Sell])
                .to_owned(),
            Type::create()
                .as_enum(T::Enum)
                .values([T::Market, T::Limit, T::Stop, T::StopLimit, T::TrailingStop])
                .to_owned(),
            Type::create()
                .as_enum(St::Enum)
                .values([
                    St::Pending,
                    St::Open,
                    St::PartiallyFilled,
                    St::Filled,
                    St::Cancelled,
                    St::Rejected,
                    St::Expired,
                ])
                .to_owned(),
            Type::create()
                .as_enum(Tif::Enum)
                .values([Tif::Gtc, Tif::Ioc, Tif::Fok, Tif::Day])
                .to_owned(),
            Type::create()
                .as_enum(Sy::Enum)
                .values([Sy::Active, Sy::Halted, Sy::Maintenance, Sy::Delisted])
                .to_owned(),
        ];
        for create in types {
            manager.create_type(create).await?;
        }
        manager
            .get_connection()
            .execute_unprepared(COMMENTS)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_type(
                Type::drop()
                    .names([
                        SymbolStatus::Enum.into_iden(),
                        TimeInForce::Enum.into_iden(),
                        OrderStatus::Enum.into_iden(),
                        OrderType::Enum.into_iden(),
                        OrderSide::Enum.into_iden(),
                    ])
                    .to_owned(),
            )
            .await
    }
}
