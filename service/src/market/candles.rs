//! OHLCV candles of a symbol's trades, computed exactly from `trades`.
//!
//! A candle covers one bucket of an [`Interval`], aligned to the UTC epoch
//! (every interval divides a day, so buckets never straddle a UTC midnight):
//! `open` and `close` are the first and last trade's price in the bucket (by
//! execution time, then trade id), `high` and `low` the extremes, `volume` the
//! base quantity, `quote_volume` Σ price × quantity (unrounded), and
//! `trade_count` the trades. Buckets without trades are left out.
//!
//! They are read from `trade_candles` (migration 9), the 1-minute and
//! 1-hour candles the schema's triggers keep for every trade: `1m` reads the
//! minutes, `5m` and `15m` combine them, `1h` reads the hours, `4h` and `1d`
//! combine those. Every bucket of every interval is a whole number of stored
//! candles, so the figures equal a computation over the trades, and a read
//! costs the candles it returns (at most 24 per `1d` bucket), not the trades.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde::Serialize;

use super::{ensure_symbol, statement};
use crate::error::{Result, ServiceError};

/// A candle width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Interval {
    #[serde(rename = "1m")]
    OneMinute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "15m")]
    FifteenMinutes,
    #[serde(rename = "1h")]
    OneHour,
    #[serde(rename = "4h")]
    FourHours,
    #[serde(rename = "1d")]
    OneDay,
}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 6] = [
        Interval::OneMinute,
        Interval::FiveMinutes,
        Interval::FifteenMinutes,
        Interval::OneHour,
        Interval::FourHours,
        Interval::OneDay,
    ];

    /// The text form: `1m`, `5m`, `15m`, `1h`, `4h`, `1d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::OneMinute => "1m",
            Interval::FiveMinutes => "5m",
            Interval::FifteenMinutes => "15m",
            Interval::OneHour => "1h",
            Interval::FourHours => "4h",
            Interval::OneDay => "1d",
        }
    }

    /// The width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Interval::OneMinute => 60,
            Interval::FiveMinutes => 300,
            Interval::FifteenMinutes => 900,
            Interval::OneHour => 3_600,
            Interval::FourHours => 14_400,
            Interval::OneDay => 86_400,
        }
    }

    /// The first bucket boundary at or after `at`.
    pub fn ceil(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let width = self.seconds();
        let seconds = at.timestamp();
        let floor = seconds.div_euclid(width) * width;
        let boundary = if floor == seconds && at.timestamp_subsec_nanos() == 0 {
            floor
        } else {
            floor + width
        };
        DateTime::from_timestamp(boundary, 0).unwrap_or(at)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = ServiceError;

    /// Parses `1m`, `5m`, `15m`, `1h`, `4h` or `1d`; anything else is
    /// [`ServiceError::InvalidArgument`] naming the accepted values.
    ///
    /// ```
    /// use service::market::Interval;
    /// assert_eq!("15m".parse::<Interval>().unwrap(), Interval::FifteenMinutes);
    /// assert!("2m".parse::<Interval>().unwrap_err().to_string().contains("1m, 5m, 15m, 1h, 4h, 1d"));
    /// ```
    fn from_str(text: &str) -> Result<Interval> {
        Interval::ALL
            .into_iter()
            .find(|interval| interval.as_str() == text)
            .ok_or_else(|| {
                ServiceError::argument(
                    "interval",
                    format!("must be one of 1m, 5m, 15m, 1h, 4h, 1d, got {text:?}"),
                )
            })
    }
}

/// One bucket of a symbol's trades.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct Candle {
    /// The bucket's start: a multiple of the interval since the UTC epoch.
    pub open_time: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Σ quantity.
    pub volume: Decimal,
    /// Σ price × quantity, not rounded.
    pub quote_volume: Decimal,
    pub trade_count: i64,
}

/// Which candles to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandleQuery {
    pub interval: Interval,
    /// Buckets whose `open_time` is at or after this; `None`: the `limit`
    /// newest buckets (before `end`).
    pub start: Option<DateTime<Utc>>,
    /// Buckets whose `open_time` is before this; `None`: up to now.
    pub end: Option<DateTime<Utc>>,
    /// How many buckets at most (1..=[`MAX_CANDLES`]).
    pub limit: u64,
}

/// The most buckets one read returns.
pub const MAX_CANDLES: u64 = 1_000;

/// `$1` symbol, `$2` the interval, `$3` how many, `$4` the stored width
/// (60 or 3600 seconds), `$5` how many stored candles the `$3` buckets can
/// hold at most (`$3` × interval / width); `{bounds}` the range of
/// `open_time` as constants, `{order}` ASC or DESC.
///
/// The `$3` buckets nearest the start (or the end) are made of the `$5`
/// stored candles nearest it at most, so the inner query walks the primary
/// key that far and stops, instead of grouping every stored candle of the
/// symbol (43,000 minutes for 30 days) to keep 500; a bucket it reaches only
/// in part is the one after the `$3`th, which the outer `LIMIT` drops.
const BUCKETS: &str = r#"
SELECT date_bin($2::interval, c.open_time, '1970-01-01 00:00:00+00'::timestamptz) AS open_time,
       (array_agg(c.open ORDER BY c.open_time))[1] AS open,
       max(c.high) AS high,
       min(c.low) AS low,
       (array_agg(c.close ORDER BY c.open_time DESC))[1] AS close,
       sum(c.volume) AS volume,
       sum(c.quote_volume) AS quote_volume,
       sum(c.trade_count)::bigint AS trade_count
FROM (
    SELECT * FROM trade_candles c
    WHERE c.symbol = $1 AND c.bucket_seconds = $4{bounds}
    ORDER BY c.open_time {order}
    LIMIT $5
) c
GROUP BY 1
ORDER BY 1 {order}
LIMIT $3"#;

/// [`BUCKETS`] when each bucket is one stored candle (`1m` from the minutes,
/// `1h` from the hours): the stored rows as they are, no grouping. The same
/// parameters; `$2` and `$5` are not needed.
const STORED: &str = r#"
SELECT c.open_time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count
FROM trade_candles c
WHERE c.symbol = $1 AND c.bucket_seconds = $4{bounds}
ORDER BY c.open_time {order}
LIMIT $3"#;

/// The statement of a read: [`STORED`] when the interval is the stored
/// width (`stored`), else [`BUCKETS`]; with its `open_time` bounds
/// (` AND c.open_time …` clauses, or nothing) and its order.
pub fn statement_text(bounds: &str, ascending: bool, stored: bool) -> String {
    if stored { STORED } else { BUCKETS }
        .replace("{bounds}", bounds)
        .replace("{order}", if ascending { "ASC" } else { "DESC" })
}

/// The symbol's candles, oldest first: from `start` on when it is given (the
/// first `limit` buckets), else the `limit` newest buckets before `end` (or
/// now).
///
/// Errors: [`ServiceError::InvalidArgument`] (`limit` outside 1..=1000,
/// `start` not before `end`), [`ServiceError::UnknownSymbol`].
pub async fn candles<C: ConnectionTrait>(
    db: &C,
    symbol: &str,
    query: CandleQuery,
) -> Result<Vec<Candle>> {
    let CandleQuery {
        interval,
        start,
        end,
        limit,
    } = query;
    if !(1..=MAX_CANDLES).contains(&limit) {
        return Err(ServiceError::argument(
            "limit",
            format!("must be between 1 and {MAX_CANDLES}, got {limit}"),
        ));
    }
    if let (Some(start), Some(end)) = (start, end)
        && start >= end
    {
        return Err(ServiceError::argument(
            "start",
            format!("must be before end ({end}), got {start}"),
        ));
    }
    // Bucket b is in range when start <= b < end, that is when
    // ceil(start) <= b < ceil(end): bounds the stored candles share.
    let low = start.map(|at| interval.ceil(at));
    let high = end.map(|at| interval.ceil(at));
    let ascending = low.is_some();
    let stored: i32 = if interval.seconds() % 3_600 == 0 {
        3_600
    } else {
        60
    };
    let mut bounds = String::new();
    if let Some(low) = low {
        bounds.push_str(&format!(" AND c.open_time >= {}", time_text(low)));
    }
    if let Some(high) = high {
        bounds.push_str(&format!(" AND c.open_time < {}", time_text(high)));
    }
    let sql = statement_text(&bounds, ascending, interval.seconds() == i64::from(stored));
    let mut found = Candle::find_by_statement(statement(
        &sql,
        [
            symbol.into(),
            format!("{} seconds", interval.seconds()).into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
            stored.into(),
            i64::try_from(limit)
                .unwrap_or(i64::MAX)
                .saturating_mul(interval.seconds() / i64::from(stored))
                .into(),
        ],
    ))
    .all(db)
    .await?;
    if !ascending {
        found.reverse();
    }
    if found.is_empty() {
        ensure_symbol(db, symbol).await?;
    }
    Ok(found)
}

/// A bucket boundary as an SQL constant (whole seconds, UTC).
fn time_text(at: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", at.format("%Y-%m-%d %H:%M:%S+00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn buckets_are_aligned_to_the_epoch() {
        let t = at("2026-03-04T10:07:30Z");
        assert_eq!(Interval::OneMinute.ceil(t), at("2026-03-04T10:08:00Z"));
        assert_eq!(Interval::FifteenMinutes.ceil(t), at("2026-03-04T10:15:00Z"));
        assert_eq!(Interval::FourHours.ceil(t), at("2026-03-04T12:00:00Z"));
        assert_eq!(Interval::OneDay.ceil(t), at("2026-03-05T00:00:00Z"));
        let boundary = at("2026-03-04T12:00:00Z");
        assert_eq!(Interval::FourHours.ceil(boundary), boundary);
        let just_after = at("2026-03-04T12:00:00.000001Z");
        assert_eq!(
            Interval::OneHour.ceil(just_after),
            at("2026-03-04T13:00:00Z")
        );
        for interval in Interval::ALL {
            assert_eq!(86_400 % interval.seconds(), 0, "{interval} divides a day");
        }
    }
}
