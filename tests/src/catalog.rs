//! Snapshots of a database schema, to compare two databases object by object.
//!
//! [`snapshot`] reads the catalog of the current schema (`current_schema()`)
//! into sections of one-line descriptions built only from names and
//! definitions, never OIDs, so two databases built the same way have equal
//! snapshots however they got there, and [`Catalog::diff`] shows what differs.
//!
//! ```no_run
//! use tests::{catalog, db::TestDb};
//!
//! # async fn example() {
//! let (left, right) = (TestDb::migrated().await, TestDb::migrated().await);
//! let (left, right) = (catalog::snapshot(left.conn()).await, catalog::snapshot(right.conn()).await);
//! assert!(left == right, "schemas differ:\n{}", left.diff(&right));
//! # }
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// The sections every snapshot has, with the query listing each one's lines.
/// Each query returns one text column, one row per object.
const SECTIONS: [(&str, &str); 10] = [
    ("types", include_str!("catalog/types.sql")),
    ("relations", include_str!("catalog/relations.sql")),
    ("columns", include_str!("catalog/columns.sql")),
    ("constraints", include_str!("catalog/constraints.sql")),
    ("indexes", include_str!("catalog/indexes.sql")),
    ("functions", include_str!("catalog/functions.sql")),
    ("triggers", include_str!("catalog/triggers.sql")),
    ("views", include_str!("catalog/views.sql")),
    ("sequences", include_str!("catalog/sequences.sql")),
    ("extensions", include_str!("catalog/extensions.sql")),
];

/// The section with one line per table: its row count and a hash of its rows.
const ROWS: &str = "rows";

const ROW_SOURCES: &str = include_str!("catalog/row_sources.sql");

/// The state of one schema: named sections (`types`, `relations`, `columns`,
/// `constraints`, `indexes`, `functions`, `triggers`, `views`, `sequences`,
/// `rows`, `extensions`), each a sorted list of one-line descriptions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    sections: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// A catalog of the given sections; each section's lines are sorted.
    pub fn from_sections<N, L>(sections: impl IntoIterator<Item = (N, L)>) -> Catalog
    where
        N: Into<String>,
        L: IntoIterator,
        L::Item: Into<String>,
    {
        let sections = sections
            .into_iter()
            .map(|(name, lines)| {
                let mut lines: Vec<String> = lines.into_iter().map(Into::into).collect();
                lines.sort();
                (name.into(), lines)
            })
            .collect();
        Catalog { sections }
    }

    /// The lines of section `name`, sorted; empty when there is no such section.
    pub fn section(&self, name: &str) -> &[String] {
        self.sections.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every section by name.
    pub fn sections(&self) -> &BTreeMap<String, Vec<String>> {
        &self.sections
    }

    /// This catalog without section `name`, for comparisons that expect it to
    /// differ (say, `rows` after a test wrote some).
    pub fn without(mut self, name: &str) -> Catalog {
        self.sections.remove(name);
        self
    }

    /// What differs, section by section: a `[section]` header, then the lines
    /// only in `self` as `- line` and those only in `other` as `+ line`, in
    /// sorted order. Empty when the catalogs are equal.
    pub fn diff(&self, other: &Catalog) -> String {
        let mut out = String::new();
        let mut names: Vec<&String> = self.sections.keys().chain(other.sections.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let changes = diff_lines(self.section(name), other.section(name));
            if changes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "[{name}]");
            for (sign, line) in changes {
                let _ = writeln!(out, "{sign} {line}");
            }
        }
        out
    }
}

/// Lines only on the left (`-`) or only on the right (`+`) of two sorted
/// lists, counting repeats, in sorted order.
fn diff_lines<'a>(left: &'a [String], right: &'a [String]) -> Vec<(char, &'a str)> {
    let (mut l, mut r) = (0, 0);
    let mut changes = Vec::new();
    while l < left.len() || r < right.len() {
        let order = match (left.get(l), right.get(r)) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Equal => {
                l += 1;
                r += 1;
            }
            Ordering::Less => {
                changes.push(('-', left[l].as_str()));
                l += 1;
            }
            Ordering::Greater => {
                changes.push(('+', right[r].as_str()));
                r += 1;
            }
        }
    }
    changes
}

/// Captures the current schema of `db`: one query per section, plus one per
/// table for the `rows` section.
///
/// Panics, naming the section, when a query fails: this is test support, and
/// a snapshot that silently lacked a section would compare equal wrongly.
pub async fn snapshot(db: &impl ConnectionTrait) -> Catalog {
    let mut sections = BTreeMap::new();
    for (name, sql) in SECTIONS {
        let mut lines = query_lines(db, name, sql).await;
        lines.sort();
        sections.insert(name.to_owned(), lines);
    }
    sections.insert(ROWS.to_owned(), row_digests(db).await);
    Catalog { sections }
}

async fn query_lines(db: &impl ConnectionTrait, section: &str, sql: &str) -> Vec<String> {
    let rows = match db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
    {
        Ok(rows) => rows,
        Err(err) => panic!("catalog snapshot: listing `{section}` failed: {err}"),
    };
    rows.iter()
        .map(|row| match row.try_get_by_index::<Option<String>>(0) {
            Ok(Some(line)) => line,
            // A NULL would mean the section's query missed a coalesce; keep it visible.
            Ok(None) => format!("<NULL line in {section}>"),
            Err(err) => panic!("catalog snapshot: reading a `{section}` line failed: {err}"),
        })
        .collect()
}

/// `table: <n> rows, md5 <hash>` for every top-level table, the hash taken
/// over the rows' text sorted bytewise (collation-independent), without
/// date and timestamp columns.
async fn row_digests(db: &impl ConnectionTrait) -> Vec<String> {
    let sources = match db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, ROW_SOURCES))
        .await
    {
        Ok(sources) => sources,
        Err(err) => panic!("catalog snapshot: listing tables for `{ROWS}` failed: {err}"),
    };
    let mut lines = Vec::with_capacity(sources.len());
    for source in sources {
        let read = |column: &str| match source.try_get::<String>("", column) {
            Ok(value) => value,
            Err(err) => panic!("catalog snapshot: reading `{column}` of a table failed: {err}"),
        };
        let (table, qualified, columns) = (
            read("table_name"),
            read("qualified_name"),
            read("hashed_columns"),
        );
        // The identifiers come quoted by PostgreSQL itself (quote_ident, %I).
        let sql = format!(
            "SELECT count(*) AS row_count, \
             md5(coalesce(string_agg(row_text, E'\\n' ORDER BY row_text COLLATE \"C\"), '')) AS digest \
             FROM (SELECT ROW({columns})::text AS row_text FROM {qualified}) AS table_rows"
        );
        let digest = match db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
        {
            Ok(Some(row)) => row
                .try_get::<i64>("", "row_count")
                .and_then(|count| Ok((count, row.try_get::<String>("", "digest")?))),
            Ok(None) => panic!("catalog snapshot: hashing the rows of {table} returned nothing"),
            Err(err) => Err(err),
        };
        match digest {
            Ok((count, hash)) => lines.push(format!("{table}: {count} rows, md5 {hash}")),
            Err(err) => panic!("catalog snapshot: hashing the rows of {table} failed: {err}"),
        }
    }
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(sections: &[(&str, &[&str])]) -> Catalog {
        Catalog::from_sections(
            sections
                .iter()
                .map(|(name, lines)| (*name, lines.iter().copied())),
        )
    }

    #[test]
    fn equal_catalogs_have_an_empty_diff() {
        let one = catalog(&[("columns", &["t.a #1: integer"]), ("rows", &["t: 0 rows"])]);
        assert_eq!(one.diff(&one.clone()), "");
    }

    #[test]
    fn diff_lists_lines_only_in_self_as_minus_and_only_in_other_as_plus() {
        let old = catalog(&[("columns", &["t.a #1: integer", "t.b #2: text"])]);
        let new = catalog(&[("columns", &["t.a #1: bigint", "t.b #2: text"])]);
        assert_eq!(
            old.diff(&new),
            "[columns]\n+ t.a #1: bigint\n- t.a #1: integer\n"
        );
        assert_eq!(
            new.diff(&old),
            "[columns]\n- t.a #1: bigint\n+ t.a #1: integer\n"
        );
    }

    #[test]
    fn diff_names_only_the_sections_that_differ_in_order() {
        let left = catalog(&[
            ("views", &["v: SELECT 1"]),
            ("types", &["e: enum ('a')"]),
            ("rows", &["t: 1 rows"]),
        ]);
        let right = catalog(&[("types", &["e: enum ('a', 'b')"]), ("rows", &["t: 1 rows"])]);
        assert_eq!(
            left.diff(&right),
            "[types]\n- e: enum ('a')\n+ e: enum ('a', 'b')\n[views]\n- v: SELECT 1\n"
        );
    }

    #[test]
    fn diff_counts_repeated_lines() {
        let twice = catalog(&[("rows", &["x", "x"])]);
        let once = catalog(&[("rows", &["x"])]);
        assert_eq!(twice.diff(&once), "[rows]\n- x\n");
    }

    #[test]
    fn from_sections_sorts_so_order_of_discovery_does_not_matter() {
        let one = catalog(&[("indexes", &["b", "a"])]);
        let other = catalog(&[("indexes", &["a", "b"])]);
        assert_eq!(one, other);
        assert_eq!(one.section("indexes"), ["a", "b"]);
    }

    #[test]
    fn a_missing_section_reads_as_empty() {
        let empty = Catalog::default();
        assert!(empty.section("rows").is_empty());
        let with_rows = catalog(&[("rows", &["t: 1 rows"])]);
        assert_eq!(empty.diff(&with_rows), "[rows]\n+ t: 1 rows\n");
        assert_eq!(with_rows.clone().without("rows").diff(&empty), "");
    }
}
