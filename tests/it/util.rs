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
