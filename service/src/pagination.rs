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
}

/// A position in a newest-first listing: the (timestamp, id) of the last row
/// read. Its text form ([`fmt::Display`], [`FromStr`]) is an opaque token for
/// clients (`X-Next-Cursor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<FixedOffset>,
    pub id: Uuid,
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
        Ok(Cursor {
            at: at.fixed_offset(),
            id,
        })
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
        assert!(Page::first(MAX_LIMIT + 1).limit().is_err());
        assert_eq!(Page::first(50).limit().expect("valid"), 50);
    }
}
