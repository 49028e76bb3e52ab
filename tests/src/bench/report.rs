//! Latency samples to percentiles, and the report: a table on stdout and a
//! JSON array in `target/bench/report.json`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub operation: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub ops_per_s: f64,
    /// Service p50 over raw-SQL p50, for the latency pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_raw: Option<f64>,
    /// Throughput over the single-row insert floor at the same concurrency,
    /// for the placement throughput lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_of_floor: Option<f64>,
    /// Mean size of the sequencer's batches, on the sequencer and HTTP lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_mean: Option<f64>,
    /// 99th percentile of the batch sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_p99: Option<usize>,
    /// p50 over the p50 of the same line with the feature off, on the lines
    /// with it on (the event outbox: migration 13 over migration 12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_off: Option<f64>,
    /// How many samples the percentiles are of, on the event lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

/// Latencies of one operation.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    micros: Vec<f64>,
    busy: Duration,
    wall: Option<Duration>,
}

impl Samples {
    pub fn record(&mut self, took: Duration) {
        self.micros.push(took.as_secs_f64() * 1e6);
        self.busy += took;
    }

    /// Adds another client's samples.
    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.busy += other.busy;
    }

    /// The wall time concurrent clients ran for.
    pub fn set_wall(&mut self, wall: Duration) {
        self.wall = Some(wall);
    }

    /// Operations per second of all clients together (per wall time), or of
    /// one client back to back when no wall time was set.
    pub fn wall_ops_per_s(&self) -> f64 {
        match self.wall {
            Some(wall) => self.micros.len() as f64 / wall.as_secs_f64().max(1e-9),
            None => self.ops_per_s(),
        }
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `q` quantile (nearest rank), in microseconds.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// Operations per second of one client running back to back.
    pub fn ops_per_s(&self) -> f64 {
        self.micros.len() as f64 / self.busy.as_secs_f64().max(1e-9)
    }

    pub fn measurement(&self, operation: impl Into<String>) -> Measurement {
        Measurement {
            operation: operation.into(),
            p50_us: round1(self.quantile(0.50)),
            p99_us: round1(self.quantile(0.99)),
            ops_per_s: round1(self.ops_per_s()),
            ratio_vs_raw: None,
            share_of_floor: None,
            batch_mean: None,
            batch_p99: None,
            ratio_vs_off: None,
            samples: None,
        }
    }
}

pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The table, as printed.
pub fn table(measurements: &[Measurement]) -> String {
    let mut out = format!(
        "{:<44} {:>10} {:>10} {:>10} {:>9} {:>8} {:>13} {:>7}\n",
        "operation", "p50 µs", "p99 µs", "ops/s", "svc/raw", "vs floor", "batch mean/p99", "on/off"
    );
    for m in measurements {
        let ratio = m.ratio_vs_raw.map_or(String::new(), |r| format!("{r:.2}"));
        let share = m
            .share_of_floor
            .map_or(String::new(), |s| format!("{:.0}%", s * 100.0));
        let batches = match (m.batch_mean, m.batch_p99) {
            (Some(mean), Some(p99)) => format!("{mean:.1}/{p99}"),
            _ => String::new(),
        };
        let on_off = m.ratio_vs_off.map_or(String::new(), |r| format!("{r:.2}"));
        out.push_str(&format!(
            "{:<44} {:>10.1} {:>10.1} {:>10.1} {:>9} {:>8} {:>13} {:>7}\n",
            m.operation, m.p50_us, m.p99_us, m.ops_per_s, ratio, share, batches, on_off
        ));
    }
    out
}

/// Writes `measurements` as a JSON array to `path`, creating its folder.
pub fn write_json(path: &Path, measurements: &[Measurement]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(measurements)?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}
