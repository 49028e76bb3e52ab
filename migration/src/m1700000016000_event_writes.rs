//! Migration 16 (`m1700000016000_event_writes`, no TypeORM original): the
//! triggers write the same events as migration 13's, for less server time.
//!
//! The events are written by the statement triggers of every change of the
//! book, so their cost is paid by every placement, fill and cancel. Most of
//! it is per statement, not per row: each `INSERT` part of a trigger's
//! statement sets up its target table, its indexes and its `CHECK`
//! constraints again (PostgreSQL reads a constraint's stored expression and
//! prepares it at every execution), and a `jsonb` object sorts its keys each
//! time one is built.
//!
//! - The level triggers on `orders` (`market_levels_on_insert` and
//!   `_on_update`) write a statement's book events and its order events with
//!   one insert into `event_outbox` instead of two: the book events first,
//!   then the order events, as before (the same `event_id` order).
//!   `market_levels_on_delete` writes book events only; it is written again
//!   as migration 13 left it.
//! - The order payload (those two functions) and the trade payload
//!   (`market_trades_on_insert`) are one `jsonb_build_object` of the row's
//!   columns, the decimals as text, instead of the row's `to_jsonb` merged
//!   with an object of the decimals as text (two objects built and sorted,
//!   then a third by the merge). The payloads are equal to the old ones, key
//!   for key and value for value; every column of `orders` and `trades` is
//!   named, so a column added to either table later is added here too (a
//!   test compares the payloads with the rows as `to_jsonb` renders them,
//!   every column).
//!
//! Nothing stored changes: the tables, their constraints and the events'
//! contents stay as they are. `down` puts migration 13's functions back.

use sea_orm_migration::prelude::*;

use crate::m1700000012000_market_triggers::{level_trigger_functions, market_trades_on_insert};
use crate::m1700000013000_event_outbox::{
    book_event_rows, book_events, book_sequences, event_writing_functions,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// An order row `n` as an event payload: every column, decimals as text.
macro_rules! order_fields {
    () => {
        "jsonb_build_object(
                'order_id', n.order_id, 'user_id', n.user_id, 'institution_id', n.institution_id,
                'symbol', n.symbol, 'side', n.side, 'order_type', n.order_type, 'status', n.status,
                'quantity', n.quantity::text, 'filled_quantity', n.filled_quantity::text,
                'price', n.price::text, 'average_price', n.average_price::text,
                'stop_price', n.stop_price::text, 'time_in_force', n.time_in_force,
                'client_order_id', n.client_order_id, 'order_source', n.order_source,
                'fee_profile_id', n.fee_profile_id, 'created_at', n.created_at,
                'updated_at', n.updated_at, 'filled_at', n.filled_at,
                'cancelled_at', n.cancelled_at, 'expires_at', n.expires_at)"
    };
}

/// A statement's book events and then its order events, in one insert: two
/// CTEs after `sides`.
macro_rules! level_events {
    () => {
        concat!(
            book_sequences!(),
            r#", events AS (
            INSERT INTO event_outbox (kind, symbol, sequence, payload)
            ("#,
            book_event_rows!(),
            r#")
            UNION ALL
            SELECT 'order', n.symbol, NULL, "#,
            order_fields!(),
            r#"
            FROM new_rows n
        )"#
        )
    };
}

/// The trade events of a statement's new trades, every column, decimals as
/// text: the first CTE of the trades insert trigger.
macro_rules! trade_fields_events {
    () => {
        r#"trade_events AS (
        INSERT INTO event_outbox (kind, symbol, payload)
        SELECT 'trade', n.symbol, jsonb_build_object(
            'trade_id', n.trade_id, 'symbol', n.symbol,
            'buyer_order_id', n.buyer_order_id, 'seller_order_id', n.seller_order_id,
            'buyer_user_id', n.buyer_user_id, 'seller_user_id', n.seller_user_id,
            'buyer_institution_id', n.buyer_institution_id,
            'seller_institution_id', n.seller_institution_id,
            'price', n.price::text, 'quantity', n.quantity::text,
            'buyer_fee', n.buyer_fee::text, 'seller_fee', n.seller_fee::text,
            'buyer_fee_asset', n.buyer_fee_asset, 'seller_fee_asset', n.seller_fee_asset,
            'is_buyer_maker', n.is_buyer_maker, 'trade_source', n.trade_source,
            'execution_venue', n.execution_venue, 'executed_at', n.executed_at,
            'settled_at', n.settled_at)
        FROM new_rows n
    ), "#
    };
}

const UP: &str = concat!(
    level_trigger_functions!(
        ", l.quantity",
        level_events!(),
        level_events!(),
        book_events!()
    ),
    market_trades_on_insert!(trade_fields_events!()),
);

/// Migration 13's functions, as its `up` made them.
const DOWN: &str = event_writing_functions!();

sql_migration!(UP, DOWN);
