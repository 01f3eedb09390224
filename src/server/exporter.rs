//! Prometheus metrics (`--metrics-listen ADDR`): `/metrics` in the text
//! format, `/health` (the process serves) and `/ready` (the store is open).
//!
//! Events are counted where they happen (`crate::metrics`); state that
//! already has counters of its own (caches, the write-ahead log,
//! collections) is read from the store at each scrape.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics::gauge;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::{Error, Result};
use crate::storage::Store;

/// Query latency histogram buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Installs the process-wide recorder; later events are kept for `/metrics`.
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            LATENCY_BUCKETS,
        )
        .map_err(|e| Error::Config(format!("metrics: {e}")))?
        .install_recorder()
        .map_err(|e| Error::Config(format!("metrics: {e}")))?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "quiver_queries_total",
        "Queries whose results were streamed"
    );
    describe_counter!(
        "quiver_query_errors_total",
        "Statements that failed, by phase"
    );
    describe_histogram!(
        "quiver_query_duration_seconds",
        Unit::Seconds,
        "From execution to the end of the result stream"
    );
    describe_counter!("quiver_query_rows_total", "Rows returned by queries");
    describe_counter!(
        "quiver_scan_rows_total",
        "Rows the queries' scans read, after segment and row-group pruning and before row filters"
    );
    describe_counter!(
        "quiver_scan_bytes_total",
        Unit::Bytes,
        "Bytes of column data the queries' scans read (decoded size for quiver's scans, Parquet bytes for DataFusion's Parquet reader)"
    );
    describe_counter!(
        "quiver_query_bytes_total",
        Unit::Bytes,
        "Bytes of Arrow data returned by queries"
    );
    describe_counter!(
        "quiver_object_store_requests_total",
        "Object-store requests (attempts), by operation"
    );
    describe_counter!(
        "quiver_object_store_bytes_total",
        Unit::Bytes,
        "Bytes read or written, by operation"
    );
    describe_counter!(
        "quiver_object_store_retries_total",
        "Attempts after transient object-store failures"
    );
    describe_counter!(
        "quiver_ingest_rows_total",
        "Rows written by ingests and INSERTs"
    );
    describe_counter!("quiver_compactions_total", "Compactions that committed");
    describe_counter!(
        "quiver_plan_cache_lookups_total",
        "Plan cache lookups of queries, by result (hit: SQL planning and logical optimization skipped)"
    );
    describe_gauge!(
        "quiver_cache_hits",
        "Block cache: blocks served from memory"
    );
    describe_gauge!(
        "quiver_cache_misses",
        "Block cache: blocks fetched from the store"
    );
    describe_gauge!(
        "quiver_cache_fetched_bytes",
        Unit::Bytes,
        "Block cache: bytes fetched"
    );
    describe_gauge!("quiver_cache_evictions", "Block cache: blocks evicted");
    describe_gauge!("quiver_cache_bytes", Unit::Bytes, "Block cache: bytes held");
    describe_gauge!("quiver_decoded_cache_hits", "Decoded-column cache hits");
    describe_gauge!("quiver_decoded_cache_misses", "Decoded-column cache misses");
    describe_gauge!(
        "quiver_decoded_cache_bytes",
        Unit::Bytes,
        "Decoded-column cache: bytes held"
    );
    describe_gauge!(
        "quiver_decoded_cache_huge_page_bytes",
        Unit::Bytes,
        "Decoded-column cache: bytes of vector chunks placed in memory advised for huge pages, in all"
    );
    describe_gauge!(
        "quiver_wal_bytes",
        Unit::Bytes,
        "Write-ahead log bytes on disk"
    );
    describe_gauge!(
        "quiver_growing_rows",
        "Rows in growing (unflushed) segments"
    );
    describe_gauge!(
        "quiver_collection_segments",
        "Sealed segments per collection"
    );
    describe_gauge!(
        "quiver_collection_manifest_version",
        "Current manifest version per collection"
    );
    describe_gauge!(
        "quiver_collection_rows",
        "Stored rows (before deletes) per collection"
    );
}

/// Reads the store's own counters into gauges (at each scrape).
async fn refresh(store: &Store) {
    let c = store.cache_stats();
    gauge!("quiver_cache_hits").set(c.hits as f64);
    gauge!("quiver_cache_misses").set(c.misses as f64);
    gauge!("quiver_cache_fetched_bytes").set(c.fetched_bytes as f64);
    gauge!("quiver_cache_evictions").set(c.evictions as f64);
    gauge!("quiver_cache_bytes").set(c.cached_bytes as f64);
    let (hits, misses, bytes) = store.decoded_cache_stats().await;
    gauge!("quiver_decoded_cache_hits").set(hits as f64);
    gauge!("quiver_decoded_cache_misses").set(misses as f64);
    gauge!("quiver_decoded_cache_bytes").set(bytes as f64);
    gauge!("quiver_decoded_cache_huge_page_bytes").set(store.decoded_huge_page_bytes() as f64);
    let (mut growing, mut wal_bytes) = (0, 0);
    for name in store.collection_names() {
        if let Some(m) = store.snapshot(&name) {
            let label = [("collection", name.clone())];
            gauge!("quiver_collection_segments", &label).set(m.segments.len() as f64);
            gauge!("quiver_collection_manifest_version", &label).set(m.version as f64);
            gauge!("quiver_collection_rows", &label).set(m.num_rows() as f64);
        }
        let (rows, _, bytes) = store.growing_status(&name);
        growing += rows;
        wal_bytes += bytes;
    }
    gauge!("quiver_growing_rows").set(growing as f64);
    gauge!("quiver_wal_bytes").set(wal_bytes as f64);
}

/// Serves `/metrics`, `/health` and `/ready` on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    store: Arc<Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (handle, store) = (handle.clone(), store.clone());
                async move {
                    refresh(&store).await;
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(|| async { "ready\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen for metrics on {addr}: {e}")))
}
