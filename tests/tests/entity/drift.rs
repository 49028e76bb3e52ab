//! The committed entities are what `sea-orm-cli generate entity` makes of the
//! migrated schema, file for file, and the README's diagram is its Mermaid one.
//!
//! This runs the generator sea-orm-cli itself uses (`sea-schema` discovery and
//! `sea-orm-codegen`, the same versions, the same options as the command in the
//! README) on a freshly migrated database. When anything differs it fails with a
//! unified diff; with `REGENERATE_ENTITIES=1` it writes the files instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sea_orm_codegen::{
    BannerVersion, BigIntegerType, DateTimeCrate, EntityFormat, EntityTransformer,
    EntityWriterContext, WithPrelude, WithSerde,
};
use sea_schema::postgres::discovery::SchemaDiscovery;
use similar::TextDiff;
use tests::db::TestDb;

/// The tables that have entities: not the partitions, not `seaql_migrations`.
const TABLES: [&str; 10] = [
    "market_last_trade",
    "market_levels",
    "market_sides",
    "order_book_snapshots",
    "orders",
    "partition_retention_config",
    "stop_orders_watchlist",
    "symbols",
    "trade_candles",
    "trades",
];

/// `--enum-extra-attributes`: enums serialize to the database's strings.
const ENUM_ATTRIBUTE: &str = r#"serde(rename_all = "SCREAMING_SNAKE_CASE")"#;

const DIAGRAM_BEGIN: &str =
    "<!-- entities.mermaid: generated, see tests/tests/entity/drift.rs -->\n```mermaid\n";
const DIAGRAM_END: &str = "```\n<!-- end of entities.mermaid -->";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Formats like sea-orm-cli, which runs rustfmt on every file it writes (under
/// the repository's rustfmt.toml: edition 2024).
fn rustfmt(source: &str) -> String {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rustfmt is installed (rustup component add rustfmt)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(source.as_bytes())
        .expect("write to rustfmt");
    let output = child.wait_with_output().expect("rustfmt runs");
    assert!(
        output.status.success(),
        "rustfmt failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("rustfmt writes UTF-8")
}

/// File name → content, as `sea-orm-cli generate entity` would write them, and
/// the Mermaid diagram of `--er-diagram`.
async fn generate(db: &TestDb) -> (BTreeMap<String, String>, String) {
    let pool = db.conn().get_postgres_connection_pool().clone();
    let schema = SchemaDiscovery::new(pool, "public")
        .discover()
        .await
        .expect("schema discovery");
    let tables = schema
        .tables
        .into_iter()
        .filter(|table| TABLES.contains(&table.info.name.as_str()))
        .map(|mut table| {
            // What sea-orm-cli does before writing PostgreSQL tables.
            table.columns.retain(|column| column.generated.is_none());
            table
                .unique_constraints
                .retain(|constraint| !constraint.is_partial);
            table.write()
        })
        .collect();
    let context = EntityWriterContext::new(
        EntityFormat::default(),
        WithPrelude::All,
        WithSerde::Both,
        true, // --with-copy-enums
        DateTimeCrate::Chrono,
        BigIntegerType::I64,
        None,
        false,
        false,
        false,
        Vec::new(),
        Vec::new(),
        Vec::new(),
        vec![ENUM_ATTRIBUTE.to_owned()],
        Vec::new(),
        false,
        true,
        BannerVersion::Minor,
    );
    let writer = EntityTransformer::transform(tables).expect("entities from the schema");
    let diagram = writer.generate_er_diagram();
    let files = writer
        .generate(&context)
        .files
        .into_iter()
        .map(|file| (file.name, rustfmt(&file.content)))
        .collect();
    (files, diagram)
}

fn committed(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("entity/src/entities exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let content = std::fs::read_to_string(&path).expect("readable entity file");
            (name, content)
        })
        .collect()
}

fn readme_diagram(readme: &str) -> Option<(usize, usize)> {
    let start = readme.find(DIAGRAM_BEGIN)? + DIAGRAM_BEGIN.len();
    let end = start + readme[start..].find(DIAGRAM_END)?;
    Some((start, end))
}

fn unified(name: &str, committed: &str, generated: &str) -> String {
    TextDiff::from_lines(committed, generated)
        .unified_diff()
        .context_radius(2)
        .header(&format!("committed/{name}"), &format!("generated/{name}"))
        .to_string()
}

#[tokio::test]
async fn committed_entities_match_the_migrated_schema() {
    let db = TestDb::migrated().await;
    let (generated, diagram) = generate(&db).await;
    let dir = repository().join("entity/src/entities");
    let readme_path = repository().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");

    if std::env::var_os("REGENERATE_ENTITIES").is_some() {
        for stale in committed(&dir)
            .keys()
            .filter(|name| !generated.contains_key(*name))
        {
            std::fs::remove_file(dir.join(stale)).expect("remove a stale entity file");
        }
        for (name, content) in &generated {
            std::fs::write(dir.join(name), content).expect("write an entity file");
        }
        let (start, end) = readme_diagram(&readme).expect("the README has the diagram markers");
        let updated = format!("{}{}{}", &readme[..start], diagram, &readme[end..]);
        std::fs::write(&readme_path, updated).expect("write README.md");
        return;
    }

    let current = committed(&dir);
    let mut drift = String::new();
    for (name, content) in &generated {
        match current.get(name) {
            Some(existing) if existing == content => {}
            Some(existing) => drift.push_str(&unified(name, existing, content)),
            None => drift.push_str(&format!("missing file: entity/src/entities/{name}\n")),
        }
    }
    for name in current.keys().filter(|name| !generated.contains_key(*name)) {
        drift.push_str(&format!(
            "entity/src/entities/{name} has no table any more\n"
        ));
    }
    match readme_diagram(&readme) {
        Some((start, end)) if readme[start..end] == diagram => {}
        Some((start, end)) => {
            drift.push_str(&unified("README.md diagram", &readme[start..end], &diagram))
        }
        None => drift.push_str("README.md lacks the entities.mermaid markers\n"),
    }
    assert!(
        drift.is_empty(),
        "the entities differ from the migrated schema; regenerate them with\n  \
         REGENERATE_ENTITIES=1 cargo test -p tests --test entity drift::\n\n{drift}"
    );
}

#[tokio::test]
async fn a_changed_column_is_drift() {
    // The same generator on a schema with one column changed must not match:
    // proof that the comparison above can fail.
    let db = TestDb::migrated().await;
    tests::sql::exec(
        db.conn(),
        "DROP VIEW v_user_order_summary, v_active_orders;
         DROP MATERIALIZED VIEW mv_order_book_snapshot;
         ALTER TABLE orders ALTER COLUMN order_source TYPE varchar(80);
         ALTER TABLE orders ALTER COLUMN client_order_id SET NOT NULL;",
    )
    .await;
    let (generated, _) = generate(&db).await;
    let current = committed(&repository().join("entity/src/entities"));
    let orders = &generated["orders.rs"];
    assert_ne!(orders, &current["orders.rs"]);
    let diff = unified("orders.rs", &current["orders.rs"], orders);
    assert!(
        diff.contains("-    pub client_order_id: Option<String>,")
            && diff.contains("+    pub client_order_id: String,"),
        "{diff}"
    );
    assert_eq!(generated["symbols.rs"], current["symbols.rs"]);
}
