//! Helpers shared by the integration test modules.

use arrow::array::RecordBatch;
use quiver::{IngestMode, Store};

/// Ingests one batch into collection `name` as one write.
pub async fn ingest(
    store: &Store,
    name: &str,
    b: RecordBatch,
    mode: IngestMode,
) -> quiver::Result<u64> {
    let schema = b.schema();
    store
        .ingest(name, schema, futures::stream::iter(vec![Ok(b)]), mode, None)
        .await
}

/// The value of metric `name` in EXPLAIN ANALYZE text (the first one).
pub fn metric(text: &str, name: &str) -> usize {
    text.split(&format!("{name}="))
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} metric in:\n{text}"))
}
