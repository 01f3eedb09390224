//! Metric names and counters, recorded where events happen with the
//! `metrics` facade (queries, errors, object-store requests and bytes,
//! retries, ingested rows, compactions, plan-cache lookups). A leaf: it
//! imports nothing of quiver's. `server::exporter` serves them, with the
//! store's own counters, as Prometheus text.

use metrics::counter;

/// A statement that failed before its result streamed.
pub fn statement_failed(phase: &'static str) {
    counter!("quiver_query_errors_total", "phase" => phase).increment(1);
}

/// One object-store request (attempt) of `operation`.
pub fn object_store_request(operation: &'static str) {
    counter!("quiver_object_store_requests_total", "operation" => operation).increment(1);
}

/// Bytes moved by `operation`.
pub fn object_store_bytes(operation: &'static str, bytes: u64) {
    counter!("quiver_object_store_bytes_total", "operation" => operation).increment(bytes);
}

/// A retry after a transient failure.
pub fn object_store_retry() {
    counter!("quiver_object_store_retries_total").increment(1);
}

pub fn ingested(rows: u64) {
    counter!("quiver_ingest_rows_total").increment(rows);
}

/// A lookup in the plan cache.
pub fn plan_cache(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    counter!("quiver_plan_cache_lookups_total", "result" => result).increment(1);
}

pub fn compacted() {
    counter!("quiver_compactions_total").increment(1);
}

/// One segment's index file built (`result` = "ok", "error" or "lost": the
/// segment was compacted or the index dropped meanwhile).
pub fn index_segment_built(result: &'static str, seconds: f64) {
    counter!("quiver_index_segments_built_total", "result" => result).increment(1);
    counter!("quiver_index_build_milliseconds_total").increment((seconds * 1e3) as u64);
}
