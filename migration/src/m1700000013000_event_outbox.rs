//! Migration 13 (`m1700000013000_event_outbox`, no TypeORM original): the
//! events of every committed change, written in the change's own transaction
//! (a transactional outbox), for a relay to publish after commit.
//!
//! - `event_outbox`: one row per event, `event_id` ascending in the order the
//!   events were written. `kind` is `order` (an order inserted or updated:
//!   placed, filled, cancelled, expired, triggered), `trade` (a trade
//!   inserted) or `book` (a statement's change of a symbol's resting levels:
//!   each changed level's new total, `0` when it is gone). `payload` holds
//!   the row's columns, decimals as text so no digit is lost. `published_at`
//!   is set by the relay once the broker confirmed the event; published
//!   events are deleted after a retention period (the relay's job).
//! - `event_sequences`: per symbol, the sequence of its latest book event.
//!   Book events count 1, 2, 3, … per symbol with no gap: the counter row is
//!   updated in the writing transaction (a rolled-back change takes its
//!   number back with it), and writers of one symbol's book wait for each
//!   other on it (they already do on the symbol's levels and sides).
//!
//! The events are written by the market-state triggers of migration 12, which
//! already see every change of the resting book and of the trades: the three
//! level triggers on `orders` add the order and book events to their one
//! statement, and the trades insert trigger the trade events. No trigger is
//! added; each statement writes its events in one multi-row insert.
//!
//! Not covered: `rebuild_market_state` rewrites the levels without book events
//! (clients of the book stream take a new snapshot after it), and operators'
//! updates and deletes of trades write no event.
//!
//! `down` puts migration 12's trigger functions back and drops both tables.
//! Events not yet published are data: rolling back refuses while there are
//! any, unless data loss is allowed.

use sea_orm_migration::prelude::*;

use crate::data_loss::{GuardedTable, refuse_if_holding_rows};
use crate::m1700000012000_market_triggers::{level_trigger_functions, market_trades_on_insert};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What rolling back would lose: the events not yet published.
pub(crate) const GUARDED: &[GuardedTable] = &[GuardedTable::Unpublished("event_outbox")];

/// An order row `$row` as an event payload: its columns, decimals as text
/// (a JSON number would reach most readers as a binary float).
macro_rules! order_payload {
    ($row:literal) => {
        concat!(
            "to_jsonb(",
            $row,
            ") || jsonb_build_object(
                'quantity', ",
            $row,
            ".quantity::text, 'filled_quantity', ",
            $row,
            ".filled_quantity::text,
                'price', ",
            $row,
            ".price::text, 'stop_price', ",
            $row,
            ".stop_price::text,
                'average_price', ",
            $row,
            ".average_price::text)"
        )
    };
}
pub(crate) use order_payload;

/// The order events of a statement's new rows: a CTE after `sides`.
macro_rules! order_events {
    () => {
        concat!(
            r#",
        order_events AS (
            INSERT INTO event_outbox (kind, symbol, payload)
            SELECT 'order', n.symbol, "#,
            $crate::m1700000013000_event_outbox::order_payload!("n"),
            r#"
            FROM new_rows n
        )"#
        )
    };
}
pub(crate) use order_events;

/// The `book_sequences` CTE after `sides`: the next sequence of each symbol
/// whose levels the statement changed.
macro_rules! book_sequences {
    () => {
        r#",
        book_sequences AS (
            INSERT INTO event_sequences AS q (symbol, book_sequence)
            SELECT DISTINCT l.symbol, 1 FROM levels l
            ORDER BY 1
            ON CONFLICT (symbol) DO UPDATE SET book_sequence = q.book_sequence + 1
            RETURNING q.symbol, q.book_sequence
        )"#
    };
}
pub(crate) use book_sequences;

/// The statement's book event rows (kind, symbol, sequence, payload), one
/// per symbol of `book_sequences`: each changed level's total after the
/// change, `"0"` when it is gone.
macro_rules! book_event_rows {
    () => {
        r#"SELECT 'book', q.symbol, q.book_sequence, jsonb_build_object(
                'bids', coalesce(jsonb_agg(jsonb_build_array(l.price::text,
                            CASE WHEN l.order_count = 0 THEN '0' ELSE l.quantity::text END)
                        ORDER BY l.price DESC) FILTER (WHERE l.side = 'BUY'), '[]'::jsonb),
                'asks', coalesce(jsonb_agg(jsonb_build_array(l.price::text,
                            CASE WHEN l.order_count = 0 THEN '0' ELSE l.quantity::text END)
                        ORDER BY l.price) FILTER (WHERE l.side = 'SELL'), '[]'::jsonb))
            FROM book_sequences q JOIN levels l ON l.symbol = q.symbol
            GROUP BY q.symbol, q.book_sequence
            ORDER BY q.symbol"#
    };
}
pub(crate) use book_event_rows;

/// The statement's book events, one per symbol whose levels changed, each
/// with the symbol's next sequence: two CTEs after `sides`.
macro_rules! book_events {
    () => {
        concat!(
            $crate::m1700000013000_event_outbox::book_sequences!(),
            r#", book_events AS (
            INSERT INTO event_outbox (kind, symbol, sequence, payload)
            "#,
            $crate::m1700000013000_event_outbox::book_event_rows!(),
            r#"
        )"#
        )
    };
}
pub(crate) use book_events;

/// The trade events of a statement's new trades: the first CTE of the trades
/// insert trigger.
macro_rules! trade_events {
    () => {
        r#"trade_events AS (
        INSERT INTO event_outbox (kind, symbol, payload)
        SELECT 'trade', n.symbol, to_jsonb(n) || jsonb_build_object(
            'price', n.price::text, 'quantity', n.quantity::text,
            'buyer_fee', n.buyer_fee::text, 'seller_fee', n.seller_fee::text)
        FROM new_rows n
    ), "#
    };
}
pub(crate) use trade_events;

/// The trigger functions as this migration makes them: migration 12's, with
/// the statements' events.
macro_rules! event_writing_functions {
    () => {
        concat!(
            $crate::m1700000012000_market_triggers::level_trigger_functions!(
                ", l.quantity",
                concat!(
                    $crate::m1700000013000_event_outbox::order_events!(),
                    $crate::m1700000013000_event_outbox::book_events!()
                ),
                concat!(
                    $crate::m1700000013000_event_outbox::order_events!(),
                    $crate::m1700000013000_event_outbox::book_events!()
                ),
                $crate::m1700000013000_event_outbox::book_events!()
            ),
            $crate::m1700000012000_market_triggers::market_trades_on_insert!(
                $crate::m1700000013000_event_outbox::trade_events!()
            ),
        )
    };
}
pub(crate) use event_writing_functions;

const UP: &str = concat!(
    r#"
CREATE TABLE event_outbox (
    event_id bigint GENERATED ALWAYS AS IDENTITY,
    kind varchar(8) NOT NULL,
    symbol varchar(20) NOT NULL,
    sequence bigint,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz,
    CONSTRAINT event_outbox_pkey PRIMARY KEY (event_id),
    CONSTRAINT chk_event_outbox_kind CHECK (kind IN ('order', 'trade', 'book')),
    CONSTRAINT chk_event_outbox_sequence CHECK ((kind = 'book') = (sequence IS NOT NULL))
);
COMMENT ON TABLE event_outbox IS 'Events of committed changes (orders, trades, book levels), written by the market-state triggers in the changing transaction; published by the relay';
-- The relay's queue: what is not published yet, oldest first.
CREATE INDEX idx_event_outbox_unpublished ON event_outbox (event_id) WHERE published_at IS NULL;
-- Pruning by age: rows arrive in time order, a block range index stays tiny.
CREATE INDEX idx_event_outbox_created_at ON event_outbox USING brin (created_at);

CREATE TABLE event_sequences (
    symbol varchar(20) NOT NULL,
    book_sequence bigint NOT NULL,
    CONSTRAINT event_sequences_pkey PRIMARY KEY (symbol)
);
COMMENT ON TABLE event_sequences IS 'Per symbol, the sequence of its latest book event (1, 2, 3, ... without gaps)';

"#,
    event_writing_functions!(),
);

const DOWN: &str = concat!(
    level_trigger_functions!("", "", "", ""),
    market_trades_on_insert!(""),
    r#"DROP TABLE event_sequences;
DROP TABLE event_outbox;
"#
);

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        refuse_if_holding_rows(manager.get_connection(), GUARDED).await?;
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
