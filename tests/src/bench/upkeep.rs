//! What keeping the market state costs a placement, measured back to back:
//! blocks of resting and crossing placements (one client, through the
//! service) with the market-state triggers switched off and on in turn, so
//! both see the same book, cache and background load. The state is rebuilt
//! for the symbol afterwards (the blocks with the triggers off left it
//! behind).

use std::time::Instant;

use anyhow::{Context, Result};
use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::sqlx::{self, PgPool};
use sea_orm::{ConnectionTrait, DatabaseConnection, SqlxPostgresConnector};
use service::Side;
use service::orders::{self, NewOrder};
use uuid::Uuid;

use super::latency::{Fixture, quantity};
use super::report::{Measurement, Samples};

/// The triggers that keep the market state, per table.
const TRIGGERS: [(&str, &str); 4] = [
    ("orders", "trg_market_levels_insert"),
    ("orders", "trg_market_levels_update"),
    ("orders", "trg_market_levels_delete"),
    ("trades", "trg_market_trades_insert"),
];

/// Placements of each kind per block; the first [`WARM`] of a block (the
/// first after the switch replans every statement) are not recorded. The
/// blocks run on a connection of their own ([`one_connection`]).
const BLOCK: usize = 24;
const WARM: usize = 4;

/// A pool of one connection to `db`'s database, for blocks that switch
/// settings between them. A switch makes every connection plan its
/// statements again at their next use (and compile the trigger functions
/// again, when they were replaced); the shared pool hands out its idle
/// connections in turn, so there most placements of a block would pay for
/// that once more, not only the first few ([`WARM`]).
pub(super) async fn one_connection(db: &DatabaseConnection) -> Result<DatabaseConnection> {
    let options = db.get_postgres_connection_pool().connect_options();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*options).clone())
        .await
        .context("a connection of its own for the blocks")?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

async fn switch(pool: &PgPool, on: bool) -> Result<()> {
    let verb = if on { "ENABLE" } else { "DISABLE" };
    for (table, trigger) in TRIGGERS {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} {verb} TRIGGER {trigger}"
        )))
        .execute(pool)
        .await
        .with_context(|| format!("{verb} TRIGGER {trigger}"))?;
    }
    Ok(())
}

/// One block under setting `on`: [`BLOCK`] resting placements (each
/// cancelled right after) and as many crossing market orders, alternating
/// sides, through the service; all but the first [`WARM`] of each kind are
/// recorded in `samples`, laid out [resting off, resting on, crossing off,
/// crossing on]. The outbox's comparison (`events`) places the same blocks.
pub(super) async fn place_block(
    db: &DatabaseConnection,
    fixture: &Fixture,
    on: bool,
    samples: &mut [Samples],
) -> Result<()> {
    for i in 0..BLOCK {
        let user = Uuid::new_v4();
        let resting = NewOrder::limit(
            user,
            fixture.symbol,
            Side::Buy,
            quantity(),
            fixture.resting_price(),
        );
        let started = Instant::now();
        let placed = orders::place(db, resting).await?;
        if i >= WARM {
            samples[usize::from(on)].record(started.elapsed());
        }
        orders::cancel(db, user, placed.order.order_id).await?;
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let crossing = NewOrder::market(Uuid::new_v4(), fixture.symbol, side, quantity());
        let started = Instant::now();
        orders::place(db, crossing).await?;
        if i >= WARM {
            samples[2 + usize::from(on)].record(started.elapsed());
        }
    }
    Ok(())
}

/// `blocks` blocks per setting, alternating which setting goes first; lines
/// for the resting and the crossing placement with the state off and on.
pub async fn run(
    db: &DatabaseConnection,
    fixture: &Fixture,
    blocks: usize,
) -> Result<Vec<Measurement>> {
    let db = &one_connection(db).await?;
    let pool = db.get_postgres_connection_pool().clone();
    // [resting off, resting on, crossing off, crossing on]
    let mut samples = vec![Samples::default(); 4];
    let outcome = async {
        for block in 0..blocks {
            for on in [block % 2 == 1, block % 2 == 0] {
                switch(&pool, on).await?;
                place_block(db, fixture, on, &mut samples).await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Whatever happened, the triggers go back on and the state is rebuilt.
    switch(&pool, true).await?;
    db.execute_unprepared(&format!(
        "SELECT rebuild_market_state('{}')",
        fixture.symbol
    ))
    .await
    .context("rebuilding the market state after the blocks with the triggers off")?;
    outcome?;
    let names = [
        "place resting limit, market state off",
        "place resting limit, market state on",
        "place crossing (market), market state off",
        "place crossing (market), market state on",
    ];
    Ok(names
        .iter()
        .zip(&samples)
        .map(|(name, samples)| samples.measurement(*name))
        .collect())
}
