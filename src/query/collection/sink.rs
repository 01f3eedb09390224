//! `CollectionSink`: `INSERT INTO` a collection, as a DataFusion data sink
//! that ingests through the store.

use crate::error::Error;
use crate::storage::{IngestMode, Store};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, SendableRecordBatchStream};
use futures::TryStreamExt;
use std::fmt;
use std::sync::Arc;
type DFResult<T> = datafusion::common::Result<T>;

/// Sink for `INSERT INTO`: ingests the stream as one atomic commit.
#[derive(Debug)]
pub(crate) struct CollectionSink {
    pub(crate) store: Arc<Store>,
    pub(crate) collection: String,
    pub(crate) schema: SchemaRef,
    pub(crate) mode: IngestMode,
}

impl DisplayAs for CollectionSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CollectionSink: collection={}", self.collection)
    }
}

#[async_trait]
impl DataSink for CollectionSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let stream = data.map_err(Error::from);
        let rows = self
            .store
            .ingest(
                &self.collection,
                self.schema.clone(),
                stream,
                self.mode,
                None,
            )
            .await?;
        Ok(rows)
    }
}
