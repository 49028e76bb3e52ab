//! Paging of the listings: page sizes, offset or cursor pages, and the
//! header that carries the next page's cursor.

use axum::http::{HeaderMap, HeaderValue};
use service::Page;

use crate::error::ApiError;

/// The header that carries the keyset cursor of the next page.
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// A page size within `1..=max`, `default` when absent.
pub fn page_limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::field(
            "limit",
            format!("must be between 1 and {max}, got {n}"),
        )),
    }
}

/// The page of an offset or cursor query.
pub fn page(limit: u64, offset: Option<u64>, cursor: Option<&str>) -> Result<Page, ApiError> {
    match (offset, cursor) {
        (Some(_), Some(_)) => Err(ApiError::field("cursor", "cannot be combined with offset")),
        (_, Some(token)) => Ok(Page::After {
            limit,
            cursor: token.parse().map_err(ApiError::from)?,
        }),
        (offset, None) => Ok(Page::Offset {
            limit,
            offset: offset.unwrap_or(0),
        }),
    }
}

/// `X-Next-Cursor` when a next page may exist.
pub fn next_cursor_header(next: Option<service::Cursor>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(cursor) = next
        && let Ok(value) = HeaderValue::from_str(&cursor.to_string())
    {
        headers.insert(NEXT_CURSOR, value);
    }
    headers
}
