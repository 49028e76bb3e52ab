//! Offset and keyset pagination for the newest-first listings.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};
use uuid::Uuid;

use crate::error::ServiceError;

/// The largest page any listing returns.
pub const MAX_LIMIT: u64 = 1000;

/// Which page of a newest-first listing to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `limit` rows after skipping `offset` rows. Simple, but the database still
    /// walks the skipped rows.
    Offset { limit: u64, offset: u64 },
    /// `limit` rows older than `cursor` (keyset pagination): as fast on the
    /// hundredth page as on the first.
    After { limit: u64, cursor: Cursor },
}

impl Page {
    /// The first `limit` rows.
    pub fn first(limit: u64) -> Page {
        Page::Offset { limit, offset: 0 }
    }

    /// The page size, checked to be within 1..=[`MAX_LIMIT`].
    pub fn limit(&self) -> Result<u64, ServiceError> {
        let limit = match *self {
            Page::Offset { limit, .. } | Page::After { limit, .. } => limit,
        };
        if (1..=MAX_LIMIT).contains(&limit) {
            Ok(limit)
        } else {
            Err(ServiceError::argument(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
            ))
        }
    }

    /// The page size, after checking every part of the page against what the
    /// driver and PostgreSQL accept: the limit (as [`Page::limit`]), an offset
    /// of at most `i64::MAX` (a `bigint`; sqlx cannot bind more), a cursor
    /// within PostgreSQL's `timestamptz` range. Every listing calls this first.
    pub fn check(&self) -> Result<u64, ServiceError> {
        let limit = self.limit()?;
        match *self {
            Page::Offset { offset, .. } if i64::try_from(offset).is_err() => {
                Err(ServiceError::argument(
                    "offset",
                    format!("must be at most {}, got {offset}", i64::MAX),
                ))
            }
            Page::After { cursor, .. } => cursor.check().map(|()| limit),
            Page::Offset { .. } => Ok(limit),
        }
    }
}

/// The earliest instant PostgreSQL's `timestamptz` holds, in microseconds
/// since the Unix epoch: 4714-11-24 00:00:00 UTC (4713 BC, Julian day 0).
/// Its latest (294276 AD) is past anything `chrono` represents.
pub const MIN_TIMESTAMP_MICROS: i64 = -210_866_803_200_000_000;

/// A position in a newest-first listing: the (timestamp, id) of the last row
/// read. Its text form ([`fmt::Display`], [`FromStr`]) is an opaque token for
/// clients (`X-Next-Cursor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<FixedOffset>,
    pub id: Uuid,
}

impl Cursor {
    /// Refuses a cursor PostgreSQL could not compare with (`timestamp out of
    /// range`): its time must lie within `timestamptz`'s range.
    pub fn check(&self) -> Result<(), ServiceError> {
        let micros = self.at.with_timezone(&Utc).timestamp_micros();
        if micros < MIN_TIMESTAMP_MICROS {
            return Err(ServiceError::argument(
                "cursor",
                format!("its time {} is before 4713 BC", self.at),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.at.with_timezone(&Utc).timestamp_micros();
        write!(f, "{micros}.{}", self.id.simple())
    }
}

impl FromStr for Cursor {
    type Err = ServiceError;

    fn from_str(token: &str) -> Result<Cursor, ServiceError> {
        let malformed = || ServiceError::argument("cursor", format!("malformed cursor {token:?}"));
        let (micros, id) = token.split_once('.').ok_or_else(malformed)?;
        let micros: i64 = micros.parse().map_err(|_| malformed())?;
        let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(malformed)?;
        let id = Uuid::try_parse(id).map_err(|_| malformed())?;
        let cursor = Cursor {
            at: at.fixed_offset(),
            id,
        };
        cursor.check()?;
        Ok(cursor)
    }
}

/// One page of a listing, and the cursor of the next page when there may be one.
#[derive(Clone, Debug, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Paged<T> {
    /// `items` of a page of `limit` rows; a full page may have a next one.
    pub fn new(items: Vec<T>, limit: u64, cursor_of: impl Fn(&T) -> Cursor) -> Paged<T> {
        let next = (items.len() as u64 == limit)
            .then(|| items.last().map(&cursor_of))
            .flatten();
        Paged { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_its_token() {
        let cursor = Cursor {
            at: DateTime::parse_from_rfc3339("2026-11-25T10:30:45.123456+02:00").expect("time"),
            id: Uuid::from_u128(0x1234),
        };
        let token = cursor.to_string();
        assert_eq!(token.parse::<Cursor>().expect("parses"), cursor);
    }

    #[test]
    fn malformed_cursors_and_limits_are_named() {
        for token in [
            "",
            "abc",
            "12.not-a-uuid",
            "x.00000000000000000000000000001234",
        ] {
            let err = token.parse::<Cursor>().expect_err(token);
            assert!(
                matches!(
                    err,
                    ServiceError::InvalidArgument {
                        field: "cursor",
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert!(Page::first(0).limit().is_err());
        assert!(Page::first(0).check().is_err());
        assert!(Page::first(MAX_LIMIT + 1).limit().is_err());
        assert_eq!(Page::first(50).limit().expect("valid"), 50);
    }

    fn field(err: ServiceError) -> &'static str {
        match err {
            ServiceError::InvalidArgument { field, .. } => field,
            other => panic!("not an invalid argument: {other}"),
        }
    }

    #[test]
    fn offsets_past_a_bigint_are_refused_before_binding() {
        let page = |offset| Page::Offset { limit: 10, offset };
        assert_eq!(page(i64::MAX as u64).check().expect("a bigint"), 10);
        let err = page(i64::MAX as u64 + 1).check().expect_err("too large");
        assert_eq!(field(err), "offset");
        assert_eq!(
            field(page(u64::MAX).check().expect_err("too large")),
            "offset"
        );
        // The limit is checked first, as before.
        let err = Page::Offset {
            limit: 0,
            offset: u64::MAX,
        }
        .check()
        .expect_err("limit");
        assert_eq!(field(err), "limit");
    }

    #[test]
    fn cursors_outside_postgres_timestamps_are_refused_when_parsed() {
        let id = "0000000000000000000000000000abcd";
        let earliest = format!("{MIN_TIMESTAMP_MICROS}.{id}");
        let cursor: Cursor = earliest.parse().expect("4713 BC is in range");
        assert_eq!(cursor.to_string(), earliest);
        for micros in [
            MIN_TIMESTAMP_MICROS - 1,
            -1_000_000_000_000_000_000,
            i64::MIN,
            i64::MAX,
        ] {
            let token = format!("{micros}.{id}");
            let err = token.parse::<Cursor>().expect_err(&token);
            assert_eq!(field(err), "cursor", "{token}");
        }
        // A cursor built by hand is checked by the page that carries it.
        let early = Cursor {
            at: DateTime::<Utc>::from_timestamp_micros(MIN_TIMESTAMP_MICROS - 1)
                .expect("chrono reaches further back")
                .fixed_offset(),
            id: Uuid::nil(),
        };
        let err = Page::After {
            limit: 10,
            cursor: early,
        }
        .check()
        .expect_err("early");
        assert_eq!(field(err), "cursor");
    }
}
