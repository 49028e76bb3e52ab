//! Order and trade ids that say where their row is.
//!
//! `orders` and `trades` are partitioned by `created_at` and `executed_at`, and
//! their keys are `(id, time)`. A lookup by id alone would have to probe (and
//! lock) every partition. New ids are therefore version 7 UUIDs whose
//! timestamp is the row's partition-key time (to the millisecond), and a lookup
//! by id alone turns the id back into time bounds that PostgreSQL prunes on at
//! plan time: one partition instead of all of them.
//!
//! Ids that are not version 7 (rows written before this scheme, imports) are
//! looked up through [`FALLBACK_WINDOWS`]: newest first, each statement bounded
//! to a span of time, so no statement plans or locks every partition.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, TimeZone, Utc};
use uuid::{NoContext, Timestamp, Uuid};

/// A new id for a row whose partition key is `at`: version 7, stamped `at`.
pub fn new_id(at: DateTime<FixedOffset>) -> Uuid {
    match u64::try_from(at.timestamp()) {
        Ok(seconds) => Uuid::new_v7(Timestamp::from_unix(
            NoContext,
            seconds,
            at.timestamp_subsec_nanos(),
        )),
        // Before 1970 a version 7 id cannot say the time; lookups fall back.
        Err(_) => Uuid::new_v4(),
    }
}

/// How far a row's partition key may lie from its id's timestamp: the id keeps
/// milliseconds only, and the margin also absorbs ids minted by another clock.
pub const MARGIN: TimeDelta = TimeDelta::minutes(5);

/// The timestamp of a version 7 id; `None` for any other version.
pub fn time_of(id: Uuid) -> Option<DateTime<Utc>> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (seconds, nanos) = id.get_timestamp()?.to_unix();
    Utc.timestamp_opt(i64::try_from(seconds).ok()?, nanos)
        .single()
}

/// `[from, to)` in which a row with this id was stamped, if the id says so.
pub fn window(id: Uuid) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    time_of(id).map(|at| (at - MARGIN, at + MARGIN))
}

/// The spans a lookup of an id that is not version 7 tries, newest first, as
/// ages before `now`: (younger bound, older bound); `None` is open-ended. The
/// first covers the future partitions (and the default partition), the last
/// everything older. Each span holds a bounded number of partitions at any age.
///
/// The steps follow the bounded layout (D15): at most ~30 daily `trades`
/// partitions per span inside the daily window (90 days by default, up to a
/// month more before a month merges), then spans of monthly `trades` and
/// monthly or yearly `orders` partitions.
pub const FALLBACK_WINDOWS: &[(Option<TimeDelta>, Option<TimeDelta>)] = &[
    (None, Some(TimeDelta::days(2))),
    (Some(TimeDelta::days(2)), Some(TimeDelta::days(31))),
    (Some(TimeDelta::days(31)), Some(TimeDelta::days(61))),
    (Some(TimeDelta::days(61)), Some(TimeDelta::days(91))),
    (Some(TimeDelta::days(91)), Some(TimeDelta::days(122))),
    (Some(TimeDelta::days(122)), Some(TimeDelta::days(400))),
    (Some(TimeDelta::days(400)), Some(TimeDelta::days(800))),
    (Some(TimeDelta::days(800)), None),
];

/// Disjoint `[from, to)` spans of whole UTC days that tile all time before
/// the midnight `below`, newest first; the last one is open below (`None`).
/// The boundaries are the older ends of [`FALLBACK_WINDOWS`] at `now`, so each
/// span holds a bounded number of partitions: a search for the newest rows
/// that walks them in order (and stops when it has enough) never plans or
/// locks the whole table, and finds each row once.
pub fn older_spans(now: DateTime<Utc>, below: NaiveDate) -> Vec<(Option<NaiveDate>, NaiveDate)> {
    let mut bounds: Vec<NaiveDate> = FALLBACK_WINDOWS
        .iter()
        .filter_map(|(_, older)| older.map(|age| (now - age).date_naive()))
        .filter(|day| *day < below)
        .collect();
    bounds.sort_unstable_by(|a, b| b.cmp(a));
    bounds.dedup();
    let mut spans = Vec::with_capacity(bounds.len() + 1);
    let mut to = below;
    for from in bounds {
        spans.push((Some(from), to));
        to = from;
    }
    spans.push((None, to));
    spans
}

/// UTC midnight of `day`.
pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The SQL constant for UTC midnight of `day` (see [`midnight_literal`]).
pub(crate) fn day_text(day: NaiveDate) -> String {
    format!("'{} 00:00:00+00'::timestamptz", day.format("%Y-%m-%d"))
}

/// The earliest and latest instants PostgreSQL's `timestamptz` and chrono share,
/// standing in for open ends of a span.
fn far_past() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(0, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn far_future() -> DateTime<Utc> {
    // 9999-12-31: within timestamptz's range.
    DateTime::<Utc>::from_timestamp(253_402_214_400, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The `[from, to)` bounds of [`FALLBACK_WINDOWS`] at `now`.
pub fn fallback_windows(now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    FALLBACK_WINDOWS
        .iter()
        .map(|(younger, older)| {
            let to = younger.map_or_else(far_future, |age| now - age);
            let from = older.map_or_else(far_past, |age| now - age);
            (from, to)
        })
        .collect()
}

/// `at` rounded to a UTC midnight (down, or up when `up`), written into the
/// statement as a constant rather than bound as a parameter.
///
/// Why a constant: after five executions of a prepared statement PostgreSQL
/// may switch to a generic plan, which cannot prune on parameters at plan time
/// and, on PostgreSQL 15, locks every partition (with its indexes) when it
/// runs, whatever it prunes then (measured: 78 orders and 207 trades partitions
/// for a lookup by id). A constant bound prunes at plan time in a generic plan
/// too. Rounding to midnights keeps the number of distinct statement texts
/// (each one a prepared statement in the driver's cache) at one per day. The
/// text is formatted from a `DateTime`, never from input.
pub(crate) fn midnight_literal(at: DateTime<Utc>, up: bool) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust(midnight_text(at, up))
}

/// The SQL text of [`midnight_literal`].
pub(crate) fn midnight_text(at: DateTime<Utc>, up: bool) -> String {
    let day = at.date_naive();
    let day = if up && at.time() != chrono::NaiveTime::MIN {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    day_text(day)
}

/// The row of `E` whose `id_column` is `id`, searched through time bounds on
/// `time_column` (its partition key), so each statement prunes at plan time:
/// for a version 7 id, the id's [`window`], then (when `moves_later`: an order
/// whose `created_at` a stop trigger moved) from the window up to now; then,
/// and for any other id, the [`fallback_windows`], newest first.
pub(crate) async fn find_by_id<E, C>(
    db: &C,
    id_column: E::Column,
    time_column: E::Column,
    id: Uuid,
    moves_later: bool,
) -> Result<Option<E::Model>, sea_orm::DbErr>
where
    E: sea_orm::EntityTrait,
    C: sea_orm::ConnectionTrait,
{
    use sea_orm::sea_query::{Expr, ExprTrait};
    use sea_orm::{ColumnTrait, QueryFilter};
    // The database's clock may run ahead of this process's a little.
    let now = Utc::now() + TimeDelta::days(1);
    let mut spans = match window(id) {
        Some((from, to)) if moves_later => vec![(from, to), (to, std::cmp::Ord::max(now, to))],
        Some(span) => vec![span],
        None => Vec::new(),
    };
    // Ids that are not version 7, and rows whose time was rewritten since
    // (an unknown id pays this too: a few bounded statements).
    spans.extend(fallback_windows(now));
    for (from, to) in spans {
        let found = E::find()
            .filter(id_column.eq(id))
            .filter(Expr::col(time_column).gte(midnight_literal(from, false)))
            .filter(Expr::col(time_column).lt(midnight_literal(to, true)))
            .one(db)
            .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_carries_its_rows_time_to_the_millisecond() {
        let at =
            DateTime::parse_from_rfc3339("2024-02-29T23:59:59.123456+00:00").expect("a valid time");
        let id = new_id(at);
        assert_eq!(id.get_version_num(), 7);
        let stamped = time_of(id).expect("a version 7 id");
        assert_eq!(stamped.timestamp_millis(), at.timestamp_millis());
        let (from, to) = window(id).expect("a window");
        assert!(from <= at && at < to);
        assert_ne!(new_id(at), id, "two ids of one instant differ");
    }

    #[test]
    fn other_versions_have_no_time() {
        assert_eq!(time_of(Uuid::new_v4()), None);
        assert_eq!(window(Uuid::nil()), None);
    }

    #[test]
    fn the_fallback_windows_tile_all_time_newest_first() {
        let now = Utc::now();
        let windows = fallback_windows(now);
        assert_eq!(windows[0].1, far_future());
        assert_eq!(windows.last().map(|w| w.0), Some(far_past()));
        for pair in windows.windows(2) {
            assert_eq!(pair[0].0, pair[1].1, "adjacent windows meet");
        }
    }

    #[test]
    fn the_older_spans_tile_the_time_below_without_overlap() {
        let now = Utc::now();
        for below_age in [0, 1, 7, 45, 130, 1000] {
            let below = (now - TimeDelta::days(below_age)).date_naive();
            let spans = older_spans(now, below);
            assert_eq!(spans[0].1, below);
            assert_eq!(spans.last().map(|s| s.0), Some(None));
            for span in &spans {
                assert!(span.0.is_none_or(|from| from < span.1), "{span:?}");
            }
            for pair in spans.windows(2) {
                assert_eq!(pair[0].0, Some(pair[1].1), "adjacent spans meet");
            }
        }
    }
}
