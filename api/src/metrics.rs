//! Request metrics and the one log line per request.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's Prometheus recorder (one per process: the `metrics` macros
/// report to a global recorder).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed; ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The method as a metrics label: the standard methods by name, anything else
/// (`PROBE1`, …) as one `OTHER`, so no client can add series at will.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The partition and book gauges of one scrape (see
/// [`service::maintenance::gauges`]), labelled by table.
pub fn record_gauges(gauges: &service::maintenance::Gauges) {
    let now = chrono::Utc::now();
    for t in &gauges.tables {
        let table = t.table_name.clone();
        metrics::gauge!("trade_engine_partitions", "table" => table.clone())
            .set(t.partitions as f64);
        metrics::gauge!("trade_engine_partitions_ahead", "table" => table.clone())
            .set(t.ahead as f64);
        // Seconds from now to the end of the newest partition: below a day,
        // tomorrow's rows have no partition yet (negative: already today's).
        let covered = t.covered_until.map_or(f64::NEG_INFINITY, |until| {
            (until.to_utc() - now).num_milliseconds() as f64 / 1000.0
        });
        metrics::gauge!("trade_engine_partition_coverage_seconds", "table" => table.clone())
            .set(covered);
        metrics::gauge!("trade_engine_default_partition_rows", "table" => table.clone())
            .set(t.default_rows as f64);
        metrics::gauge!("trade_engine_partitions_due_for_retention", "table" => table.clone())
            .set(t.due_for_retention as f64);
        metrics::gauge!("trade_engine_table_size_bytes", "table" => table.clone())
            .set(t.table_bytes as f64);
        metrics::gauge!("trade_engine_index_size_bytes", "table" => table)
            .set(t.index_bytes as f64);
    }
    let age = gauges.oldest_resting_order.map_or(0.0, |at| {
        ((now - at.to_utc()).num_milliseconds() as f64 / 1000.0).max(0.0)
    });
    metrics::gauge!("trade_engine_oldest_resting_order_age_seconds").set(age);
}

/// `trade_engine_partitions_due_for_archiving{table}`: partitions past
/// retention with no archive in the store yet (without a store: every
/// partition past retention), from [`crate::archiving::Archiving::due_for_archiving`].
pub fn record_due_for_archiving(counts: &std::collections::BTreeMap<String, usize>) {
    for (table, count) in counts {
        metrics::gauge!("trade_engine_partitions_due_for_archiving", "table" => table.clone())
            .set(*count as f64);
    }
}

/// Records a background job's run: when it ended and whether it succeeded.
pub fn record_job(job: &'static str, succeeded: bool) {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    metrics::gauge!("trade_engine_job_last_run_timestamp_seconds", "job" => job).set(now);
    metrics::gauge!("trade_engine_job_last_run_success", "job" => job).set(if succeeded {
        1.0
    } else {
        0.0
    });
}

/// Counts and times every request by method, route and status (the log line
/// is the trace layer's, `routes::request_log`).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let latency = started.elapsed();
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(latency.as_secs_f64());
    response
}
