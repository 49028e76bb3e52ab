//! Migration 2 (`CreateSymbolsTable1700000002000`): trading pairs, their
//! parameters and the ten seed symbols.

use rust_decimal::Decimal;
use sea_orm_migration::prelude::*;

use crate::data_loss::{GuardedTable, refuse_if_holding_rows};
use crate::m1700000001000_create_enums::SymbolStatus;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What `down` would destroy: symbols other than the seed.
pub(crate) const GUARDED: &[GuardedTable] = &[GuardedTable::SymbolsBeyondSeed];

#[derive(DeriveIden)]
pub(crate) enum Symbols {
    Table,
    SymbolId,
    Symbol,
    BaseAsset,
    QuoteAsset,
    Status,
    StatusReason,
    EstimatedResume,
    TickSize,
    MinOrderSize,
    MaxOrderSize,
    MinOrderValue,
    PriceBandPercentage,
    MakerFee,
    TakerFee,
    TradingStart,
    TradingEnd,
    TradingTimezone,
    CreatedAt,
    UpdatedAt,
}

/// A symbol the migration seeds; its other columns take their defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeedSymbol {
    pub symbol: &'static str,
    pub base: &'static str,
    pub quote: &'static str,
    pub tick_size: Decimal,
    pub min_order_size: Decimal,
    pub max_order_size: Decimal,
}

const fn seed(
    symbol: &'static str,
    base: &'static str,
    tick_size: Decimal,
    min_order_size: Decimal,
    max_order_size: Decimal,
) -> SeedSymbol {
    SeedSymbol {
        symbol,
        base,
        quote: "USDT",
        tick_size,
        min_order_size,
        max_order_size,
    }
}

/// `mantissa × 10^-scale`: 0.01 is `dec(1, 2)`, 100 is `dec(100, 0)`.
const fn dec(mantissa: u32, scale: u32) -> Decimal {
    Decimal::from_parts(mantissa, 0, 0, false, scale)
}

pub(crate) const SEED_SYMBOLS: [SeedSymbol; 10] = [
    seed("BTC/USDT", "BTC", dec(1, 2), dec(1, 4), dec(100, 0)),
    seed("ETH/USDT", "ETH", dec(1, 2), dec(1, 3), dec(1_000, 0)),
    seed("BNB/USDT", "BNB", dec(1, 2), dec(1, 2), dec(10_000, 0)),
    seed("SOL/USDT", "SOL", dec(1, 2), dec(1, 1), dec(50_000, 0)),
    seed("XRP/USDT", "XRP", dec(1, 4), dec(1, 0), dec(1_000_000, 0)),
    seed("ADA/USDT", "ADA", dec(1, 4), dec(1, 0), dec(1_000_000, 0)),
    seed(
        "DOGE/USDT",
        "DOGE",
        dec(1, 5),
        dec(1, 0),
        dec(10_000_000, 0),
    ),
    seed("AVAX/USDT", "AVAX", dec(1, 2), dec(1, 1), dec(10_000, 0)),
    seed("DOT/USDT", "DOT", dec(1, 2), dec(1, 1), dec(10_000, 0)),
    seed(
        "MATIC/USDT",
        "MATIC",
        dec(1, 4),
        dec(1, 0),
        dec(1_000_000, 0),
    ),
];

/// Shared by every table with an `updated_at` column (orders use it too).
const UPDATED_AT_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$fn$;

CREATE TRIGGER trg_symbols_updated_at
    BEFORE UPDATE ON symbols
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
"#;

const COMMENTS: &str = r#"
COMMENT ON TABLE symbols IS 'Trading pairs configuration and parameters';
COMMENT ON COLUMN symbols.tick_size IS 'Minimum price increment (e.g., 0.01 for BTC/USDT)';
COMMENT ON COLUMN symbols.price_band_percentage IS 'Max price deviation from last trade (±%)';
COMMENT ON COLUMN symbols.maker_fee IS 'Fee for maker orders (provides liquidity) - decimal format (0.0005 = 0.05%)';
COMMENT ON COLUMN symbols.taker_fee IS 'Fee for taker orders (removes liquidity) - decimal format (0.0010 = 0.10%)';
"#;

fn numeric(column: Symbols, default: &'static str) -> ColumnDef {
    ColumnDef::new(column)
        .decimal_len(20, 8)
        .not_null()
        .default(Expr::cust(default))
        .to_owned()
}

fn create_symbols() -> TableCreateStatement {
    use Symbols as S;
    Table::create()
        .table(S::Table)
        .col(
            ColumnDef::new(S::SymbolId)
                .custom(Alias::new("serial"))
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(S::Symbol)
                .string_len(20)
                .not_null()
                .unique_key(),
        )
        .col(ColumnDef::new(S::BaseAsset).string_len(10).not_null())
        .col(ColumnDef::new(S::QuoteAsset).string_len(10).not_null())
        .col(
            ColumnDef::new(S::Status)
                .custom(SymbolStatus::Enum)
                .not_null()
                .default(Expr::cust("'ACTIVE'")),
        )
        .col(ColumnDef::new(S::StatusReason).text())
        .col(ColumnDef::new(S::EstimatedResume).timestamp_with_time_zone())
        .col(numeric(S::TickSize, "0.01"))
        .col(numeric(S::MinOrderSize, "0.0001"))
        .col(numeric(S::MaxOrderSize, "100"))
        .col(numeric(S::MinOrderValue, "10"))
        .col(
            ColumnDef::new(S::PriceBandPercentage)
                .decimal_len(5, 2)
                .not_null()
                .default(Expr::cust("10.00")),
        )
        .col(
            ColumnDef::new(S::MakerFee)
                .decimal_len(6, 4)
                .not_null()
                .default(Expr::cust("0.0005")),
        )
        .col(
            ColumnDef::new(S::TakerFee)
                .decimal_len(6, 4)
                .not_null()
                .default(Expr::cust("0.0010")),
        )
        .col(ColumnDef::new(S::TradingStart).time())
        .col(ColumnDef::new(S::TradingEnd).time())
        .col(
            ColumnDef::new(S::TradingTimezone)
                .string_len(50)
                .default(Expr::cust("'UTC'")),
        )
        .col(
            ColumnDef::new(S::CreatedAt)
                .timestamp_with_time_zone()
                .not_null()
                .default(Expr::cust("now()")),
        )
        .col(
            ColumnDef::new(S::UpdatedAt)
                .timestamp_with_time_zone()
                .not_null()
                .default(Expr::cust("now()")),
        )
        .check(Check::named(
            "chk_tick_size_positive",
            Expr::col(S::TickSize).gt(0),
        ))
        .check(Check::named(
            "chk_min_order_positive",
            Expr::col(S::MinOrderSize).gt(0),
        ))
        .check(Check::named(
            "chk_max_gt_min",
            Expr::col(S::MaxOrderSize).gte(Expr::col(S::MinOrderSize)),
        ))
        .check(Check::named(
            "chk_price_band_positive",
            Expr::col(S::PriceBandPercentage).gt(0),
        ))
        .to_owned()
}

/// Inserts the seed rows; a re-run neither duplicates nor fails.
fn insert_seed() -> InsertStatement {
    use Symbols as S;
    let mut insert = Query::insert();
    insert
        .into_table(S::Table)
        .columns([
            S::Symbol,
            S::BaseAsset,
            S::QuoteAsset,
            S::Status,
            S::TickSize,
            S::MinOrderSize,
            S::MaxOrderSize,
        ])
        .on_conflict(OnConflict::column(S::Symbol).do_nothing().to_owned());
    for seed in SEED_SYMBOLS {
        insert.values_panic([
            seed.symbol.into(),
            seed.base.into(),
            seed.quote.into(),
            Expr::cust("'ACTIVE'"),
            seed.tick_size.into(),
            seed.min_order_size.into(),
            seed.max_order_size.into(),
        ]);
    }
    insert
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Symbols as S;
        let db = manager.get_connection();
        manager.create_table(create_symbols()).await?;
        manager
            .create_index(
                Index::create()
                    .name("IDX_symbols_status")
                    .table(S::Table)
                    .col(S::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("IDX_symbols_base_quote")
                    .table(S::Table)
                    .col(S::BaseAsset)
                    .col(S::QuoteAsset)
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(UPDATED_AT_FUNCTION).await?;
        db.execute_unprepared(COMMENTS).await?;
        db.execute(&insert_seed()).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_if_holding_rows(manager.get_connection(), GUARDED).await?;
        manager
            .drop_table(Table::drop().table(Symbols::Table).to_owned())
            .await?;
        // D13: the original left this function behind.
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION update_updated_at_column()")
            .await?;
        Ok(())
    }
}
