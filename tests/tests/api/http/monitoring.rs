//! The monitoring the repository ships (`ops/`): the Prometheus alert rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`),
//! and every metric the alert rules and the Grafana dashboard query is one a
//! live api exports on `/metrics` (with its background jobs on, so the job
//! gauges are there), whose partition gauges say what the database holds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::spawn_app;
use tests::app::AppOptions;
use tests::app::wire::{self, expect_error};
use uuid::Uuid;

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

/// `promtool` with `args` in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "promtool could not run ({err}); it comes with Debian's prometheus package: \
                 `apt-get install -y --no-install-recommends prometheus`, as .ci/run does"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The PromQL expressions of the alert rules file: `expr:` values, inline or
/// as an indented block (`expr: |`).
fn rule_expressions(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" || rest == ">" {
                let indent = line.len() - trimmed.len();
                let mut block = String::new();
                i += 1;
                while i < lines.len() {
                    let next = lines[i];
                    let body = next.trim_start();
                    if !body.is_empty() && next.len() - body.len() <= indent {
                        break;
                    }
                    block.push_str(body);
                    block.push(' ');
                    i += 1;
                }
                exprs.push(block);
                continue;
            }
            exprs.push(rest.to_owned());
        }
        i += 1;
    }
    exprs
}

/// The PromQL expressions of the dashboard: every target's `expr`, and the
/// templating queries.
fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        // Grafana's label_values(<metric>, <label>): the metric is the query.
        if let Some(query) = variable["definition"].as_str() {
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.split(',').next())
                .unwrap_or(query);
            exprs.push(inner.to_owned());
        }
    }
    exprs
}

/// Keywords (the first six take a parenthesized label list), and the
/// aggregation operators (`sum by (x) (…)` puts a modifier between the
/// operator and its parenthesis).
const KEYWORDS: [&str; 26] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "e",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names an expression reads: identifiers that are not functions
/// (followed by `(`), keywords, label names (inside `{…}` or after
/// `by`/`without`/`on`/`ignoring`), strings, durations or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut skip_group) = (0, 0usize, false);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => {
                braces += 1;
                i += 1;
            }
            '}' => {
                braces = braces.saturating_sub(1);
                i += 1;
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let is_function = j < chars.len() && chars[j] == '(';
                if KEYWORDS[..6].contains(&word.as_str()) {
                    // by (…), without (…), on (…), ignoring (…), group_left (…)
                    skip_group = is_function;
                } else if braces == 0
                    && !is_function
                    && !KEYWORDS.contains(&word.to_lowercase().as_str())
                {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() => {
                // A number or a duration (5m, 1h): digits, then letters.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The metric names a Prometheus text exposition holds, with a summary's or
/// histogram's base name for its `_sum`, `_count` and `_bucket` series.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        for suffix in ["_sum", "_count", "_bucket"] {
            if let Some(base) = name.strip_suffix(suffix) {
                names.insert(base.to_owned());
            }
        }
        names.insert(name);
    }
    names
}

/// A sample's value: the first line of `name` carrying every label in `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const JOBS: [&str; 5] = [
    "maintain_partitions",
    "compact_trades",
    "compact_orders",
    "trigger_reached_stops",
    "expire_orders",
];

#[tokio::test]
async fn the_alert_rules_and_the_dashboard_query_only_metrics_the_api_exports() {
    let dir = ops_dir().join("prometheus");
    let checked = promtool(&dir, &["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let app = spawn_app(AppOptions::jwt().setting("BACKGROUND_JOBS", "true")).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    app.limit(alice, "SELL", "1", "50000").await;
    app.limit(alice, "SELL", "1", "50100").await;
    app.market(bob, "BUY", "1").await;
    expect_error(app.get_public("/api/v1/orderbook/FOO-BAR").await, 404).await;
    // The jobs run once at start: wait until each has reported.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let reply = wire::read(app.get_public("/metrics").await).await;
        assert_eq!(reply.status, 200);
        let reported = JOBS.iter().all(|job| {
            value(
                &reply.text,
                "trade_engine_job_last_run_success",
                &[&format!("job=\"{job}\"")],
            )
            .is_some()
        });
        // So does the event relay's backlog.
        let measured = value(
            &reply.text,
            "trade_engine_events_oldest_pending_seconds",
            &[],
        )
        .is_some();
        if reported && measured {
            break reply.text;
        }
        assert!(
            Instant::now() < deadline,
            "the jobs did not report within a minute:\n{}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exported = exported_names(&text);

    let rules = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts.yml");
    let rule_exprs = rule_expressions(&rules);
    assert_eq!(rule_exprs.len(), 8, "{rule_exprs:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ops_dir().join("grafana/trade-engine.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let dashboard_exprs = dashboard_expressions(&dashboard);
    assert!(dashboard_exprs.len() >= 14, "{dashboard_exprs:?}");
    let mut queried = BTreeSet::new();
    for expr in rule_exprs.iter().chain(&dashboard_exprs) {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        queried.extend(names);
    }
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n/metrics:\n{text}"
    );
    // The partition gauges every rule and panel depends on are there, for
    // both tables, and say what the database holds.
    for table in ["orders", "trades"] {
        let label = format!("table=\"{table}\"");
        for name in [
            "trade_engine_partitions",
            "trade_engine_partitions_ahead",
            "trade_engine_partition_coverage_seconds",
            "trade_engine_default_partition_rows",
            "trade_engine_partitions_due_for_retention",
            "trade_engine_table_size_bytes",
            "trade_engine_index_size_bytes",
        ] {
            assert!(
                value(&text, name, &[&label]).is_some(),
                "{name} {table}:\n{text}"
            );
        }
        // Migrated today, with maintenance run: weeks of partitions ahead,
        // nothing in the default partition.
        let coverage = value(&text, "trade_engine_partition_coverage_seconds", &[&label]);
        assert!(
            coverage.is_some_and(|s| s > 7.0 * 86_400.0),
            "{table}: {coverage:?}"
        );
        assert_eq!(
            value(&text, "trade_engine_default_partition_rows", &[&label]),
            Some(0.0)
        );
    }
    for job in JOBS {
        let ok = value(
            &text,
            "trade_engine_job_last_run_success",
            &[&format!("job=\"{job}\"")],
        );
        assert_eq!(ok, Some(1.0), "{job}");
    }
    assert_eq!(value(&text, "trade_engine_gauges_up", &[]), Some(1.0));
    // One resting sell is left (50100), placed moments ago.
    let age = value(&text, "trade_engine_oldest_resting_order_age_seconds", &[]);
    assert!(age.is_some_and(|s| (0.0..600.0).contains(&s)), "{age:?}");
    // Rows in a default partition show up on the next scrape.
    tests::sql::exec(
        app.db().conn(),
        "INSERT INTO trades_default (symbol, buyer_order_id, seller_order_id, buyer_user_id,
            seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset,
            seller_fee_asset, is_buyer_maker, executed_at)
         VALUES ('BTC/USDT', gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
            gen_random_uuid(), 1, 1, 0, 0, 'USDT', 'USDT', true, '2001-01-01 00:00:00+00')",
    )
    .await;
    let text = wire::read(app.get_public("/metrics").await).await.text;
    assert_eq!(
        value(
            &text,
            "trade_engine_default_partition_rows",
            &["table=\"trades\""]
        ),
        Some(1.0)
    );
    app.shutdown().await;
}

#[test]
fn metric_names_skip_functions_labels_keywords_and_durations() {
    let names = metric_names(
        r#"sum without (method, route) (rate(http_requests_total{status=~"5.."}[5m])) / on (instance) group_left db_pool_max_connections > 0.05"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "db_pool_max_connections".to_owned(),
            "http_requests_total".to_owned()
        ])
    );
    assert_eq!(
        rule_expressions(
            "  - alert: A\n    expr: |\n      up\n        == 0\n    for: 5m\n  - alert: B\n    expr: x > 1\n"
        ),
        vec!["up == 0 ".to_owned(), "x > 1".to_owned()]
    );
}
