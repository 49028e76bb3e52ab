//! Columns, the canonical text of a row and the row checksum, and the
//! conversions between the database's text, Arrow arrays and Parquet.
//!
//! The row checksum is defined on [`CHECKSUM_ALGORITHM`].

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int16Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use sea_orm::FromQueryResult;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The row checksum, as manifests name it.
///
/// The SHA-256 of every row's canonical line, concatenated, rows in
/// primary-key order (ascending, as PostgreSQL orders the key's columns),
/// written as 64 lowercase hex digits. A row's line is its fields in the
/// manifest's column order, separated by one TAB (0x09) and ended by one LF
/// (0x0A). A NULL field is the two characters `\N`; any other field is its
/// canonical text with `\` written `\\`, TAB `\t`, LF `\n` and CR `\r`:
///
/// | column type | canonical text |
/// |---|---|
/// | `uuid` | lowercase, hyphenated (`0190c7a2-…`) |
/// | `text`, `varchar`, enum | the text, the enum's label |
/// | `numeric(p,s)` | PostgreSQL's output at the column's scale: `-`, the integer digits (at least `0`), and when `s > 0` a `.` and exactly `s` digits (`0.50000000`) |
/// | `timestamptz` | UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fraction digits) |
/// | `timestamp` | `YYYY-MM-DDTHH:MM:SS.ffffff` |
/// | `date` | `YYYY-MM-DD` |
/// | `boolean` | `true` or `false` |
/// | `smallint`, `integer`, `bigint` | decimal digits, `-` when negative |
///
/// Timestamps and dates outside the years 1 to 9999 have no canonical text:
/// a partition holding one is refused (step "encode Parquet") rather than
/// archived ambiguously.
///
/// The database's side of the checksum is rendered by PostgreSQL itself (casts
/// and `to_char`); the file's side by the archive, from the Arrow values read
/// back from Parquet. The two are written independently, so a value that did
/// not survive the trip into the file shows up as a checksum mismatch, never as
/// a silently different archive.
pub const CHECKSUM_ALGORITHM: &str = "sha256-canonical-rows-v1";

/// How a column's values are held in Arrow (and so in Parquet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `uuid`, `text`, `varchar`, enums: UTF-8 text.
    Text,
    /// `numeric(p,s)` with `p` at most 38: 128-bit decimals at scale `s`.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// `timestamptz`: microseconds since the epoch, UTC.
    TimestampTz,
    /// `timestamp`: microseconds since the epoch, no time zone.
    Timestamp,
    Date,
    Bool,
    Int16,
    Int32,
    Int64,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Date => DataType::Date32,
            Kind::Bool => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
        }
    }
}

/// A stable name of an Arrow type, as manifests record it (Arrow's own
/// `Display` of types is not promised to stay the same across versions).
pub(crate) fn type_label(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "utf8".to_owned(),
        DataType::Decimal128(p, s) => format!("decimal128({p},{s})"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            "timestamp_us_utc".to_owned()
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => "timestamp_us".to_owned(),
        DataType::Date32 => "date32".to_owned(),
        DataType::Boolean => "bool".to_owned(),
        DataType::Int16 => "int16".to_owned(),
        DataType::Int32 => "int32".to_owned(),
        DataType::Int64 => "int64".to_owned(),
        _ => return None,
    })
}

/// One column as a manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// PostgreSQL's `format_type` of the column (`numeric(20,8)`,
    /// `timestamp with time zone`, `order_side_enum`).
    pub sql_type: String,
    /// How the file holds it: `utf8`, `decimal128(20,8)`, `timestamp_us_utc`,
    /// `timestamp_us`, `date32`, `bool`, `int16`, `int32`, `int64`.
    pub arrow_type: String,
    pub nullable: bool,
}

/// A column as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub(crate) struct CatalogColumn {
    pub name: String,
    pub sql_type: String,
    pub type_name: String,
    pub is_enum: bool,
    pub not_null: bool,
    pub has_default: bool,
    pub numeric_precision: Option<i32>,
    pub numeric_scale: Option<i32>,
}

/// `$1`: a table of the current schema.
pub(crate) const CATALOG_COLUMNS: &str = "SELECT a.attname::text AS name,
        format_type(a.atttypid, a.atttypmod) AS sql_type,
        t.typname::text AS type_name,
        t.typtype = 'e' AS is_enum,
        a.attnotnull AS not_null,
        a.atthasdef AS has_default,
        CASE WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4
             THEN ((a.atttypmod - 4) >> 16) & 65535 END AS numeric_precision,
        CASE WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4
             THEN (a.atttypmod - 4) & 65535 END AS numeric_scale
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = to_regclass(format('%I.%I', current_schema(), $1::text))
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum";

/// A column the archive knows how to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnInfo {
    pub name: String,
    pub sql_type: String,
    pub kind: Kind,
    pub nullable: bool,
}

impl ColumnInfo {
    /// The column's kind, or why the archive cannot hold it.
    pub(crate) fn from_catalog(column: &CatalogColumn) -> Result<ColumnInfo, String> {
        let kind = match column.type_name.as_str() {
            _ if column.is_enum => Kind::Text,
            "uuid" | "text" | "varchar" => Kind::Text,
            "numeric" => match (column.numeric_precision, column.numeric_scale) {
                (Some(p @ 1..=38), Some(s)) if s >= 0 && s <= p => Kind::Decimal {
                    precision: p as u8,
                    scale: s as i8,
                },
                _ => {
                    return Err(format!(
                        "column {} is {}: only numeric(p,s) with p at most 38 can be archived",
                        column.name, column.sql_type
                    ));
                }
            },
            "timestamptz" => Kind::TimestampTz,
            "timestamp" => Kind::Timestamp,
            "date" => Kind::Date,
            "bool" => Kind::Bool,
            "int2" => Kind::Int16,
            "int4" => Kind::Int32,
            "int8" => Kind::Int64,
            _ => {
                return Err(format!(
                    "column {} has type {}, which the archive has no canonical form for",
                    column.name, column.sql_type
                ));
            }
        };
        Ok(ColumnInfo {
            name: column.name.clone(),
            sql_type: column.sql_type.clone(),
            kind,
            nullable: !column.not_null,
        })
    }

    /// The column as a manifest records it.
    pub(crate) fn manifest_column(&self) -> Column {
        Column {
            name: self.name.clone(),
            sql_type: self.sql_type.clone(),
            arrow_type: type_label(&self.kind.data_type()).unwrap_or_default(),
            nullable: self.nullable,
        }
    }

    /// The SQL expression that renders the column as its canonical text (see
    /// the module documentation), whatever the session's `TimeZone` and
    /// `DateStyle`. Timestamps and dates outside years 1 to 9999 (BC, five
    /// digits, `infinity`) come out in PostgreSQL's own text, which the
    /// conversion to Arrow refuses: an archive fails rather than holding a
    /// value `to_char` would have rendered ambiguously (or as NULL).
    pub(crate) fn render_sql(&self) -> String {
        let c = quote_ident(&self.name);
        match self.kind {
            Kind::TimestampTz => format!(
                "CASE WHEN {c} >= '0001-01-01 00:00:00+00' AND {c} < '10000-01-01 00:00:00+00' \
                 THEN to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
                 ELSE {c}::text END"
            ),
            Kind::Timestamp => format!(
                "CASE WHEN {c} >= '0001-01-01' AND {c} < '10000-01-01' \
                 THEN to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') ELSE {c}::text END"
            ),
            Kind::Date => format!(
                "CASE WHEN {c} >= '0001-01-01' AND {c} < '10000-01-01' \
                 THEN to_char({c}, 'YYYY-MM-DD') ELSE {c}::text END"
            ),
            _ => format!("{c}::text"),
        }
    }
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The Arrow schema of `columns`, each field carrying its PostgreSQL type as
/// metadata (`pg_type`), so the file describes itself.
pub(crate) fn arrow_schema(columns: &[ColumnInfo]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(&c.name, c.kind.data_type(), c.nullable).with_metadata(
                [("pg_type".to_owned(), c.sql_type.clone())]
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Rows of canonical text (one `Option<String>` per column) as one Arrow
/// batch of `schema`. Refuses a value the column's type cannot hold exactly,
/// naming the column.
pub(crate) fn to_batch(
    columns: &[ColumnInfo],
    schema: &SchemaRef,
    rows: &[Vec<Option<String>>],
) -> Result<RecordBatch, String> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let values = rows.iter().map(|row| row.get(i).and_then(Option::as_deref));
        let parse = |what: &str, text: &str| {
            format!(
                "column {} value {text:?} is not a canonical {what}",
                column.name
            )
        };
        let array: ArrayRef = match column.kind {
            Kind::Text => Arc::new(values.collect::<StringArray>()),
            Kind::Decimal { precision, scale } => {
                let parsed: Result<Vec<Option<i128>>, String> = values
                    .map(|v| {
                        v.map(|text| {
                            parse_decimal(text, precision, scale).ok_or_else(|| {
                                parse(&format!("numeric({precision},{scale})"), text)
                            })
                        })
                        .transpose()
                    })
                    .collect();
                Arc::new(
                    Decimal128Array::from(parsed?)
                        .with_precision_and_scale(precision, scale)
                        .map_err(|e| format!("column {}: {e}", column.name))?,
                )
            }
            Kind::TimestampTz | Kind::Timestamp => {
                let zoned = column.kind == Kind::TimestampTz;
                let parsed: Result<Vec<Option<i64>>, String> = values
                    .map(|v| {
                        v.map(|text| {
                            parse_timestamp(text, zoned).ok_or_else(|| parse("timestamp", text))
                        })
                        .transpose()
                    })
                    .collect();
                let array = TimestampMicrosecondArray::from(parsed?);
                Arc::new(if zoned {
                    array.with_timezone("UTC")
                } else {
                    array
                })
            }
            Kind::Date => {
                let parsed: Result<Vec<Option<i32>>, String> = values
                    .map(|v| {
                        v.map(|text| parse_date(text).ok_or_else(|| parse("date", text)))
                            .transpose()
                    })
                    .collect();
                Arc::new(Date32Array::from(parsed?))
            }
            Kind::Bool => {
                let parsed: Result<Vec<Option<bool>>, String> = values
                    .map(|v| {
                        v.map(|text| match text {
                            "true" => Ok(true),
                            "false" => Ok(false),
                            _ => Err(parse("boolean", text)),
                        })
                        .transpose()
                    })
                    .collect();
                Arc::new(BooleanArray::from(parsed?))
            }
            Kind::Int16 => Arc::new(Int16Array::from(parse_ints(values, &parse)?)),
            Kind::Int32 => Arc::new(Int32Array::from(parse_ints(values, &parse)?)),
            Kind::Int64 => Arc::new(Int64Array::from(parse_ints(values, &parse)?)),
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

fn parse_ints<'a, T: std::str::FromStr>(
    values: impl Iterator<Item = Option<&'a str>>,
    parse: &dyn Fn(&str, &str) -> String,
) -> Result<Vec<Option<T>>, String> {
    values
        .map(|v| {
            v.map(|text| text.parse::<T>().map_err(|_| parse("integer", text)))
                .transpose()
        })
        .collect()
}

/// `-12.34000000` at `scale` 8 as the mantissa `-1234000000`; `None` unless
/// the text has exactly `scale` fraction digits and fits `precision`.
fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (body, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() != scale.max(0) as usize {
        return None;
    }
    if body.contains('.') && scale == 0 {
        return None;
    }
    let magnitude: i128 = format!("{int}{frac}").parse().ok()?;
    if magnitude >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// The canonical text of a mantissa at `scale` (see [`parse_decimal`]).
fn format_decimal(value: i128, scale: i8, out: &mut String) {
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    if value < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() <= scale {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

const DATE: &str = "%Y-%m-%d";
/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01 (Arrow's day 0).
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The canonical timestamp (`YYYY-MM-DDTHH:MM:SS.ffffff`, then `Z` when
/// `zoned`) as microseconds since the epoch; `None` for anything else.
fn parse_timestamp(text: &str, zoned: bool) -> Option<i64> {
    let body = if zoned { text.strip_suffix('Z')? } else { text };
    let b = body.as_bytes();
    let shape = b.len() == 26
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.';
    if !shape {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        let digits = body.get(from..to)?;
        if !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    let at = date.and_hms_micro_opt(
        number(11, 13)?,
        number(14, 16)?,
        number(17, 19)?,
        number(20, 26)?,
    )?;
    Some(at.and_utc().timestamp_micros())
}

/// Writes the canonical text of a timestamp (see [`parse_timestamp`]).
fn format_timestamp(at: NaiveDateTime, zoned: bool, out: &mut String) -> std::fmt::Result {
    use chrono::{Datelike, Timelike};
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 1_000
    )?;
    if zoned {
        out.push('Z');
    }
    Ok(())
}

fn parse_date(text: &str) -> Option<i32> {
    NaiveDate::parse_from_str(text, DATE)
        .ok()
        .map(|d| chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_DAYS_FROM_CE)
}

/// Writes the canonical text of `array[row]` into `out`; false (and nothing
/// written) for NULL. Errors name what the archive cannot render.
pub(crate) fn value_text(array: &dyn Array, row: usize, out: &mut String) -> Result<bool, String> {
    if array.is_null(row) {
        return Ok(false);
    }
    match array.data_type() {
        DataType::Utf8 => out.push_str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(array.as_string_view().value(row)),
        DataType::Decimal128(_, scale) => {
            format_decimal(
                array.as_primitive::<Decimal128Type>().value(row),
                *scale,
                out,
            );
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| format!("timestamp {micros} µs is out of range"))?;
            format_timestamp(at.naive_utc(), tz.is_some(), out).map_err(|e| e.to_string())?;
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date = days
                .checked_add(UNIX_EPOCH_DAYS_FROM_CE)
                .and_then(NaiveDate::from_num_days_from_ce_opt)
                .ok_or_else(|| format!("date {days} days from 1970 is out of range"))?;
            write!(out, "{}", date.format(DATE)).map_err(|e| e.to_string())?;
        }
        DataType::Boolean => out.push_str(if array.as_boolean().value(row) {
            "true"
        } else {
            "false"
        }),
        DataType::Int16 => write!(out, "{}", array.as_primitive::<Int16Type>().value(row))
            .map_err(|e| e.to_string())?,
        DataType::Int32 => write!(out, "{}", array.as_primitive::<Int32Type>().value(row))
            .map_err(|e| e.to_string())?,
        DataType::Int64 => write!(out, "{}", array.as_primitive::<Int64Type>().value(row))
            .map_err(|e| e.to_string())?,
        other => return Err(format!("the archive has no canonical form for {other}")),
    }
    Ok(true)
}

/// The running row checksum and row count (see the module documentation).
pub(crate) struct RowDigest {
    sha: Sha256,
    rows: u64,
    line: Vec<u8>,
    text: String,
}

impl RowDigest {
    pub(crate) fn new() -> RowDigest {
        RowDigest {
            sha: Sha256::new(),
            rows: 0,
            line: Vec::with_capacity(512),
            text: String::with_capacity(64),
        }
    }

    fn field(&mut self, index: usize, value: Option<&str>) {
        if index > 0 {
            self.line.push(b'\t');
        }
        let Some(text) = value else {
            self.line.extend_from_slice(b"\\N");
            return;
        };
        // Runs without a character to escape are copied whole.
        let bytes = text.as_bytes();
        let mut copied = 0;
        for (i, byte) in bytes.iter().enumerate() {
            let escaped: &[u8] = match byte {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                _ => continue,
            };
            self.line.extend_from_slice(&bytes[copied..i]);
            self.line.extend_from_slice(escaped);
            copied = i + 1;
        }
        self.line.extend_from_slice(&bytes[copied..]);
    }

    fn end_row(&mut self) {
        self.line.push(b'\n');
        self.sha.update(&self.line);
        self.line.clear();
        self.rows += 1;
    }

    /// One row of canonical text, as PostgreSQL rendered it.
    pub(crate) fn push_text_row(&mut self, row: &[Option<String>]) {
        for (i, value) in row.iter().enumerate() {
            self.field(i, value.as_deref());
        }
        self.end_row();
    }

    /// Every row of an Arrow batch, rendered from its values.
    pub(crate) fn push_batch(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let columns = batch.columns();
        for row in 0..batch.num_rows() {
            for (i, array) in columns.iter().enumerate() {
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                let present = value_text(array.as_ref(), row, &mut text)?;
                self.field(i, present.then_some(text.as_str()));
                self.text = text;
            }
            self.end_row();
        }
        Ok(())
    }

    /// The row count and the checksum as 64 lowercase hex digits.
    pub(crate) fn finish(self) -> (u64, String) {
        (self.rows, hex(&self.sha.finalize()))
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_at_their_scale_only() {
        for (text, mantissa) in [
            ("0.50000000", 50_000_000),
            ("-1.00000000", -100_000_000),
            ("123456789012.12345678", 12_345_678_901_212_345_678),
            ("0.00000001", 1),
            ("0.00000000", 0),
        ] {
            assert_eq!(parse_decimal(text, 20, 8), Some(mantissa), "{text}");
            let mut out = String::new();
            format_decimal(mantissa, 8, &mut out);
            assert_eq!(out, text);
        }
        for bad in [
            "1.5",
            "1",
            "",
            "-",
            ".5",
            "1.5000000x",
            "1e3",
            "1000000000000.00000000",
        ] {
            assert_eq!(parse_decimal(bad, 20, 8), None, "{bad}");
        }
        assert_eq!(parse_decimal("42", 5, 0), Some(42));
        assert_eq!(parse_decimal("42.", 5, 0), None);
    }

    #[test]
    fn timestamps_and_dates_round_trip_in_the_canonical_form() {
        let micros = parse_timestamp("2021-03-04T05:06:07.000089Z", true).expect("parses");
        let array = TimestampMicrosecondArray::from(vec![Some(micros), None]).with_timezone("UTC");
        let mut out = String::new();
        assert!(value_text(&array, 0, &mut out).expect("renders"));
        assert_eq!(out, "2021-03-04T05:06:07.000089Z");
        assert!(!value_text(&array, 1, &mut String::new()).expect("null"));
        assert_eq!(parse_timestamp("2021-03-04T05:06:07.000089", true), None);
        for bad in [
            "2021-03-04T05:06:07.00089Z",
            "2021-03-04 05:06:07.000089Z",
            "+021-03-04T05:06:07.000089Z",
            "2021-02-30T05:06:07.000089Z",
            "0044-03-15 12:00:00+00 BC",
            "infinity",
        ] {
            assert_eq!(parse_timestamp(bad, true), None, "{bad}");
        }

        let days = parse_date("1970-01-02").expect("parses");
        assert_eq!(days, 1);
        let mut out = String::new();
        value_text(&Date32Array::from(vec![days]), 0, &mut out).expect("renders");
        assert_eq!(out, "1970-01-02");
    }

    #[test]
    fn the_checksum_of_text_rows_equals_that_of_the_same_rows_in_arrow() {
        let columns = vec![
            ColumnInfo {
                name: "t".into(),
                sql_type: "text".into(),
                kind: Kind::Text,
                nullable: true,
            },
            ColumnInfo {
                name: "n".into(),
                sql_type: "numeric(20,8)".into(),
                kind: Kind::Decimal {
                    precision: 20,
                    scale: 8,
                },
                nullable: false,
            },
            ColumnInfo {
                name: "b".into(),
                sql_type: "boolean".into(),
                kind: Kind::Bool,
                nullable: true,
            },
        ];
        let rows = vec![
            vec![
                Some("tab\there\\ and \nnewline".to_owned()),
                Some("1.50000000".to_owned()),
                Some("true".to_owned()),
            ],
            vec![None, Some("-0.00000001".to_owned()), None],
        ];
        let schema = arrow_schema(&columns);
        let batch = to_batch(&columns, &schema, &rows).expect("batch");
        let mut from_text = RowDigest::new();
        for row in &rows {
            from_text.push_text_row(row);
        }
        let mut from_arrow = RowDigest::new();
        from_arrow.push_batch(&batch).expect("renders");
        let (text_rows, text_sum) = from_text.finish();
        let (arrow_rows, arrow_sum) = from_arrow.finish();
        assert_eq!((text_rows, &text_sum), (arrow_rows, &arrow_sum));
        // The definition, spelled out: escaped fields, TAB, `\N`, LF.
        let mut sha = Sha256::new();
        sha.update(b"tab\\there\\\\ and \\nnewline\t1.50000000\ttrue\n\\N\t-0.00000001\t\\N\n");
        assert_eq!(text_sum, hex(&sha.finalize()));
        assert_eq!(text_rows, 2);
    }

    #[test]
    fn values_a_column_cannot_hold_exactly_are_refused_by_name() {
        let columns = vec![ColumnInfo {
            name: "price".into(),
            sql_type: "numeric(20,8)".into(),
            kind: Kind::Decimal {
                precision: 20,
                scale: 8,
            },
            nullable: false,
        }];
        let schema = arrow_schema(&columns);
        let err = to_batch(&columns, &schema, &[vec![Some("1.5".to_owned())]])
            .expect_err("not at the column's scale");
        assert!(err.contains("column price"), "{err}");
    }
}
