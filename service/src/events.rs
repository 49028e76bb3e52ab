//! The event outbox: what the schema's triggers write in every changing
//! transaction (`event_outbox`, migration 13), read in order by one relay at a
//! time, marked published once delivered, and pruned after a while; and the
//! book snapshot a stream of book events starts from.
//!
//! Event kinds and payloads (decimals as text, times as ISO 8601):
//!
//! - `order`: an order inserted or updated: every column of its row (it
//!   reads as an `entity::orders::Model`);
//! - `trade`: a trade inserted: every column of its row, both sides' users,
//!   orders and fees included (an `entity::trades::Model`; the relay decides
//!   what each audience sees);
//! - `book`: one statement's change of a symbol's resting levels, `bids` and
//!   `asks` as `[price, new total quantity]` pairs (`"0"`: the level is gone),
//!   with the symbol's next `sequence` (1, 2, 3, … without gaps).

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, FromQueryResult};

use crate::error::Result;
use crate::market::ensure_symbol;

/// The advisory lock (`pg_try_advisory_xact_lock(bigint)`) that makes one
/// relay at a time read and publish the outbox, across processes.
pub const RELAY_LOCK_KEY: i64 = 0x7472_6164_6572_6c79; // "traderly"

/// One event of the outbox.
#[derive(Clone, Debug, FromQueryResult)]
pub struct OutboxEvent {
    pub event_id: i64,
    /// `order`, `trade` or `book`.
    pub kind: String,
    pub symbol: String,
    /// Book events: the symbol's book sequence.
    pub sequence: Option<i64>,
    /// The payload as JSON text.
    pub payload: String,
    /// When the event was written (inside the changing transaction).
    pub created_at: DateTime<FixedOffset>,
}

/// What a [`claim`] took.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The unpublished events, oldest first.
    pub events: Vec<OutboxEvent>,
    /// The newest committed event of the outbox as the claim saw it,
    /// published or not (`None`: the outbox is empty).
    pub newest: Option<i64>,
}

/// Up to `limit` unpublished events with an id above `after` (0: all),
/// oldest first, leaving out `in_flight` (sent, not yet marked), if this
/// transaction holds or could take the relay lock (`None`: another relay
/// holds it); one statement. Call it inside a transaction: the lock is held
/// until that transaction ends, so mark what was delivered
/// ([`mark_published`]) in the same one.
///
/// The partial index of unpublished events keeps an entry for every event
/// published since the table was last vacuumed, which a claim from the
/// start reads through (a millisecond per hundred thousand or so): a relay
/// that knows where it is claims from a little before that (`after`), and
/// from the start now and then for the rare write that committed long after
/// it was made.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    limit: u32,
    in_flight: &[i64],
    after: i64,
) -> Result<Option<Claim>> {
    #[derive(FromQueryResult)]
    struct Claimed {
        locked: bool,
        newest: Option<i64>,
        event_id: Option<i64>,
        kind: Option<String>,
        symbol: Option<String>,
        sequence: Option<i64>,
        payload: Option<String>,
        created_at: Option<DateTime<FixedOffset>>,
    }
    let rows = Claimed::find_by_statement(crate::market::statement(
        "WITH relay AS (SELECT pg_try_advisory_xact_lock($1) AS locked) \
         SELECT r.locked, (SELECT max(n.event_id) FROM event_outbox n) AS newest, \
                e.event_id, e.kind, e.symbol, e.sequence, e.payload, e.created_at \
         FROM relay r LEFT JOIN LATERAL ( \
             SELECT o.event_id, o.kind, o.symbol, o.sequence, o.payload::text AS payload, \
                    o.created_at \
             FROM event_outbox o \
             WHERE r.locked AND o.published_at IS NULL AND o.event_id > $4 \
               AND o.event_id <> ALL ($3) \
             ORDER BY o.event_id LIMIT $2) e ON true",
        [
            RELAY_LOCK_KEY.into(),
            i64::from(limit).into(),
            in_flight.to_vec().into(),
            after.into(),
        ],
    ))
    .all(db)
    .await?;
    let Some(first) = rows.first().filter(|r| r.locked) else {
        return Ok(None);
    };
    let newest = first.newest;
    let events = rows
        .into_iter()
        .filter_map(|r| {
            Some(OutboxEvent {
                event_id: r.event_id?,
                kind: r.kind?,
                symbol: r.symbol?,
                sequence: r.sequence,
                payload: r.payload?,
                created_at: r.created_at?,
            })
        })
        .collect();
    Ok(Some(Claim { events, newest }))
}

/// Marks `ids` published, delivered at `delivered_at` (when the broker
/// confirmed them, not when this statement runs: the column then says how
/// long an event took to reach its consumers, whatever the bookkeeping
/// after that took).
pub async fn mark_published<C: ConnectionTrait>(
    db: &C,
    ids: &[i64],
    delivered_at: DateTime<Utc>,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    db.execute_raw(crate::market::statement(
        "UPDATE event_outbox SET published_at = $2 \
         WHERE event_id = ANY($1) AND published_at IS NULL",
        [ids.to_vec().into(), delivered_at.into()],
    ))
    .await?;
    Ok(())
}

/// Of the `batch` oldest events (by id), deletes those published and
/// written before `before`; returns how many went (`batch`: there may be
/// more). Unpublished events are never deleted.
///
/// It reads those `batch` rows and no more, whatever the outbox holds: ids
/// follow the order events are written in, so the events past retention are
/// the oldest ones, and a statement that looked for them among all events
/// read every event kept within retention (millions at a busy hour) before
/// it found that none was due.
pub async fn prune<C: ConnectionTrait>(db: &C, before: DateTime<Utc>, batch: u32) -> Result<u64> {
    let done = db
        .execute_raw(crate::market::statement(
            "DELETE FROM event_outbox WHERE event_id IN (\
                 SELECT o.event_id FROM (\
                     SELECT event_id, created_at, published_at FROM event_outbox \
                     ORDER BY event_id LIMIT $2) AS o \
                 WHERE o.created_at < $1 AND o.published_at IS NOT NULL)",
            [before.into(), i64::from(batch).into()],
        ))
        .await?;
    Ok(done.rows_affected())
}

/// The number of unpublished events and the age of the oldest, in seconds
/// (0 when there is none).
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<(i64, f64)> {
    #[derive(FromQueryResult)]
    struct Backlog {
        pending: i64,
        oldest: f64,
    }
    let row = Backlog::find_by_statement(crate::market::statement(
        "SELECT count(*) AS pending, \
                coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest \
         FROM event_outbox WHERE published_at IS NULL",
        [],
    ))
    .one(db)
    .await?;
    Ok(row.map_or((0, 0.0), |b| (b.pending, b.oldest)))
}

/// A symbol's whole resting book and the sequence of the last book event it
/// includes: a stream of book events continues it with `sequence + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct BookSnapshot {
    pub symbol: String,
    pub sequence: i64,
    /// `(price, quantity)`, highest price first.
    pub bids: Vec<(Decimal, Decimal)>,
    /// `(price, quantity)`, lowest price first.
    pub asks: Vec<(Decimal, Decimal)>,
}

/// Every level of `symbol` and the sequence they are at, read in one
/// statement (one snapshot of the database). Unknown symbol:
/// [`ServiceError::UnknownSymbol`](crate::ServiceError::UnknownSymbol).
pub async fn book_snapshot<C: ConnectionTrait>(db: &C, symbol: &str) -> Result<BookSnapshot> {
    #[derive(FromQueryResult)]
    struct Row {
        sequence: i64,
        side: Option<String>,
        price: Option<Decimal>,
        quantity: Option<Decimal>,
    }
    let rows = Row::find_by_statement(crate::market::statement(
        "SELECT s.sequence, l.side::text AS side, l.price, l.quantity \
         FROM (SELECT coalesce((SELECT q.book_sequence FROM event_sequences q \
                                WHERE q.symbol = $1), 0) AS sequence) s \
         LEFT JOIN market_levels l ON l.symbol = $1 \
         ORDER BY l.side, CASE WHEN l.side = 'BUY' THEN -l.price ELSE l.price END",
        [symbol.into()],
    ))
    .all(db)
    .await?;
    let mut snapshot = BookSnapshot {
        symbol: symbol.to_owned(),
        sequence: rows.first().map_or(0, |r| r.sequence),
        bids: Vec::new(),
        asks: Vec::new(),
    };
    for row in rows {
        if let (Some(side), Some(price), Some(quantity)) = (row.side, row.price, row.quantity) {
            if side == "BUY" {
                snapshot.bids.push((price, quantity));
            } else {
                snapshot.asks.push((price, quantity));
            }
        }
    }
    if snapshot.sequence == 0 && snapshot.bids.is_empty() && snapshot.asks.is_empty() {
        ensure_symbol(db, symbol).await?;
    }
    Ok(snapshot)
}
