//! Embedding quiver in your own DataFusion `SessionContext`.
//!
//! Opens (or creates) a store in a temporary directory, ingests a few
//! vectors, registers the store with a plain `SessionContext`, and runs a
//! filtered top-k query with `l2_distance`.
//!
//! Run: `cargo run --example embed`

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::prelude::SessionContext;
use quiver::storage::vector_item_field;
use quiver::{IngestMode, Store, StoreConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default()).await?;

    // Four 3-d vectors with a category each.
    let vectors = Float32Array::from(vec![
        1.0, 0.0, 0.0, //
        0.0, 1.0, 0.0, //
        0.0, 0.0, 1.0, //
        0.9, 0.1, 0.0,
    ]);
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
        ),
        (
            "category",
            Arc::new(StringArray::from(vec!["a", "b", "a", "a"])) as ArrayRef,
        ),
        (
            "embedding",
            Arc::new(FixedSizeListArray::new(
                vector_item_field(),
                3,
                Arc::new(vectors),
                None,
            )) as ArrayRef,
        ),
    ])?;
    let schema = batch.schema();
    store
        .ingest(
            "docs",
            schema,
            futures::stream::iter(vec![Ok(batch)]),
            IngestMode::CREATE,
            None,
        )
        .await?;

    // Your own context: quiver adds its catalog, object store and functions.
    let ctx = SessionContext::new();
    quiver::register(&ctx, store);
    let df = ctx
        .sql(
            "SELECT id, l2_distance(embedding, [1.0, 0.0, 0.0]) AS d \
             FROM quiver.public.docs WHERE category = 'a' ORDER BY d LIMIT 2",
        )
        .await?;
    df.show().await?;
    Ok(())
}
