//! What clients see: DataFusion's view types (Utf8View, BinaryView) cast to
//! the plain types Flight SQL clients read, in schemas and in streams.

use crate::error::Result;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use std::sync::Arc;

/// The type a client receives for a column: view types become their plain
/// counterparts, which every Flight SQL client understands.
pub(crate) fn client_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(client_field(f)),
        DataType::LargeList(f) => DataType::LargeList(client_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(client_field(f), *n),
        other => other.clone(),
    }
}

pub(crate) fn client_field(f: &FieldRef) -> FieldRef {
    Arc::new(
        f.as_ref()
            .clone()
            .with_data_type(client_type(f.data_type())),
    )
}

/// Schema as sent to clients.
pub fn client_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema.fields().iter().map(client_field).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Converts a stream to the client schema, casting view-typed columns.
pub fn to_client_stream(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = client_schema(&stream.schema());
    if schema == stream.schema() {
        return stream;
    }
    let out = schema.clone();
    let mapped = stream.map(move |batch| {
        let batch = batch?;
        let cols: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(out.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast(c, f.data_type())
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(RecordBatch::try_new(out.clone(), cols)?)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, mapped))
}
