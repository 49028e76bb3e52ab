//! The statistics windows: 1h, 4h, 24h, 7d, 30d.

use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use serde::Serialize;

use crate::error::ServiceError;

/// A trailing window ending now, as `get_trading_volume` accepts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Period {
    #[serde(rename = "1h")]
    OneHour,
    #[serde(rename = "4h")]
    FourHours,
    #[default]
    #[serde(rename = "24h")]
    OneDay,
    #[serde(rename = "7d")]
    SevenDays,
    #[serde(rename = "30d")]
    ThirtyDays,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 5] = [
        Period::OneHour,
        Period::FourHours,
        Period::OneDay,
        Period::SevenDays,
        Period::ThirtyDays,
    ];

    /// The text form: `1h`, `4h`, `24h`, `7d`, `30d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::OneHour => "1h",
            Period::FourHours => "4h",
            Period::OneDay => "24h",
            Period::SevenDays => "7d",
            Period::ThirtyDays => "30d",
        }
    }

    /// The window's length in hours (30d is 720 hours).
    pub fn hours(self) -> i32 {
        match self {
            Period::OneHour => 1,
            Period::FourHours => 4,
            Period::OneDay => 24,
            Period::SevenDays => 7 * 24,
            Period::ThirtyDays => 30 * 24,
        }
    }

    /// The window's length.
    pub fn duration(self) -> Duration {
        Duration::hours(i64::from(self.hours()))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = ServiceError;

    /// Parses `1h`, `4h`, `24h`, `7d` or `30d`; anything else is
    /// [`ServiceError::InvalidArgument`] naming the accepted values (D12).
    ///
    /// ```
    /// use service::market::Period;
    /// assert_eq!("7d".parse::<Period>().unwrap(), Period::SevenDays);
    /// assert!("2d".parse::<Period>().unwrap_err().to_string().contains("1h, 4h, 24h, 7d, 30d"));
    /// ```
    fn from_str(text: &str) -> Result<Period, ServiceError> {
        Period::ALL
            .into_iter()
            .find(|period| period.as_str() == text)
            .ok_or_else(|| {
                ServiceError::argument(
                    "period",
                    format!("{text:?} is not a period; accepted periods are 1h, 4h, 24h, 7d, 30d"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_round_trip_through_their_text() {
        for period in Period::ALL {
            assert_eq!(period.as_str().parse::<Period>().ok(), Some(period));
            assert_eq!(period.to_string(), period.as_str());
        }
        assert_eq!(Period::ThirtyDays.duration(), Duration::days(30));
    }
}
