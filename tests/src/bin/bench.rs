//! `cargo run --release -p tests --bin bench -- --scale small|full`: creates
//! `te_bench_<scale>` on the server of `DATABASE_URL` (dropped and created
//! again), loads it, benchmarks the hot operations and the events (the
//! outbox's cost, the publish lag through the broker of `--rabbitmq-url`,
//! WebSocket delivery), prints the table and writes
//! `target/bench/report.json`. With `--years N` it measures the hot
//! statements' planning at 60 days and N years of partitions instead
//! (`target/bench/plans.json`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tests::bench::{self, Scale, events, report};

#[derive(Debug, Parser)]
#[command(about = "Load a trade-engine database at scale and benchmark it against raw SQL")]
struct Args {
    /// small (CI-sized, under two minutes) or full (10 M orders, 10 M trades).
    #[arg(long, default_value = "small")]
    scale: Scale,
    /// The server to create the bench database on (any database of it).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/report.json")]
    report: PathBuf,
    /// Instead of the load benchmark: planning and execution time of the hot
    /// statements at 60 days and at this many years of partitions, back to
    /// back (`te_bench_plans_60d`, `te_bench_plans_<N>y`).
    #[arg(long)]
    years: Option<u32>,
    /// The RabbitMQ broker of the event lines (publish lag, WebSocket delivery
    /// through the broker); when it cannot be reached those lines are left out.
    #[arg(long, env = "RABBITMQ_URL", default_value = events::DEFAULT_RABBITMQ_URL)]
    rabbitmq_url: String,
    /// Also run a consumer of the bench's own on the broker during the
    /// publish-lag line, for an end-to-end line (it doubles the broker's work).
    #[arg(long)]
    audit_consumer: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = dotenvy::dotenv();
    let args = Args::parse();
    if let Some(years) = args.years {
        let measurements = bench::plans::run(&args.database_url, years)
            .await
            .context("the planning benchmark failed")?;
        print!("{}", bench::plans::table(&measurements));
        if let Some(dir) = args.report.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let path = args.report.with_file_name("plans.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&measurements)?)?;
        println!("\nreport: {}", path.display());
        return Ok(());
    }
    let database = format!("te_bench_{}", args.scale.name());
    let mut settings = args.scale.settings();
    if let Some(events) = &mut settings.events {
        events.rabbitmq_url = Some(args.rabbitmq_url.clone());
        events.audit_consumer = args.audit_consumer;
    }
    eprintln!(
        "loading {} orders and {} trades into {database}",
        settings.plan.orders, settings.plan.trades
    );
    let outcome = bench::run(&args.database_url, &database, &settings)
        .await
        .context("the benchmark failed")?;
    println!("{}", outcome.loaded.summary());
    println!("benchmark took {:.1} s\n", outcome.bench_seconds);
    print!("{}", report::table(&outcome.measurements));
    report::write_json(&args.report, &outcome.measurements)?;
    println!("\nreport: {}", args.report.display());
    Ok(())
}
