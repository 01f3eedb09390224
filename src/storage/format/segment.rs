//! `write_segment`: seals Arrow batches into one segment of column-group
//! Parquet files on object storage, returning its manifest entry.
//!
//! Layout (Milvus StorageV2 "packed" files): group 0 holds the primary key,
//! the scalar columns and the system columns `_ts`, `_seg`, `_row`; every
//! vector column has a group of its own. All files of a segment have the same
//! rows and the same row-group boundaries, so they zip by position and a scan
//! reads only the groups it needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::storage::config::StoreConfig;
use crate::storage::format::keys::KeyBloom;
use crate::storage::format::manifest::{ColumnStats, DataFile, DeleteLog, SegmentMeta, StatsFile};
use crate::storage::format::schema::{
    CollectionSchema, ColumnKind, ROW_COLUMN, SEG_COLUMN, TS_COLUMN,
};

/// A fresh segment id: random, so concurrent writers never collide.
pub fn new_segment_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 1
}

/// Writes `batches` (already conformed to `schema`) as one segment with
/// commit timestamp `ts`. Nothing becomes visible until the returned segment
/// is committed in a manifest.
pub async fn write_segment(
    store: &Arc<dyn ObjectStore>,
    cfg: &StoreConfig,
    collection: &str,
    schema: &CollectionSchema,
    batches: Vec<RecordBatch>,
    ts: u64,
) -> Result<SegmentMeta> {
    let ts_columns: Vec<ArrayRef> = batches
        .iter()
        .map(|b| Arc::new(UInt64Array::from(vec![ts; b.num_rows()])) as ArrayRef)
        .collect();
    write_segment_with_ts(store, cfg, collection, schema, batches, ts_columns).await
}

/// Like [`write_segment`], with each row's `_ts` given (compaction keeps
/// the timestamps of the rows it rewrites).
pub async fn write_segment_with_ts(
    store: &Arc<dyn ObjectStore>,
    cfg: &StoreConfig,
    collection: &str,
    schema: &CollectionSchema,
    batches: Vec<RecordBatch>,
    ts_columns: Vec<ArrayRef>,
) -> Result<SegmentMeta> {
    let id = new_segment_id();
    let (mut min_ts, mut max_ts) = (u64::MAX, 0u64);
    for t in &ts_columns {
        let t = t
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| Error::internal("_ts column is not UInt64"))?;
        if let Some(v) = arrow::compute::min(t) {
            min_ts = min_ts.min(v);
        }
        if let Some(v) = arrow::compute::max(t) {
            max_ts = max_ts.max(v);
        }
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > u32::MAX as usize {
        return Err(Error::internal("segment larger than 2^32 rows"));
    }
    let stats = column_stats(schema, &batches)?;

    // Split into column groups.
    let scalar_schema = schema.scalar_group_schema();
    let mut groups: Vec<(u32, SchemaRef, Vec<RecordBatch>)> = Vec::new();
    let mut scalar_batches = Vec::with_capacity(batches.len());
    let mut offset = 0u32;
    for (b, ts) in batches.iter().zip(&ts_columns) {
        let n = b.num_rows();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if !matches!(schema.kind(f), ColumnKind::Vector { .. }) {
                cols.push(b.column(i).clone());
            }
        }
        cols.push(ts.clone());
        cols.push(Arc::new(UInt64Array::from(vec![id; n])));
        cols.push(Arc::new(UInt32Array::from_iter_values(
            offset..offset + n as u32,
        )));
        offset += n as u32;
        scalar_batches.push(RecordBatch::try_new(scalar_schema.clone(), cols)?);
    }
    groups.push((0, scalar_schema, scalar_batches));
    for (g, (i, f)) in schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(schema.kind(f), ColumnKind::Vector { .. }))
        .enumerate()
    {
        // Vectors are stored as fixed-size binary (see `layout`).
        let gs = Arc::new(Schema::new(vec![
            crate::storage::format::layout::stored_field(f)?,
        ]));
        let gb = batches
            .iter()
            .map(|b| {
                let stored = crate::storage::format::layout::to_stored(b.column(i))?;
                Ok(RecordBatch::try_new(gs.clone(), vec![stored])?)
            })
            .collect::<Result<Vec<_>>>()?;
        groups.push((g as u32 + 1, gs, gb));
    }

    // Encode and upload the groups concurrently.
    let uploads = groups.into_iter().map(|(group, gschema, gbatches)| {
        let store = store.clone();
        let cfg = cfg.clone();
        let rel = format!(
            "insert_log/{id}/{group}/{}.parquet",
            uuid::Uuid::new_v4().simple()
        );
        let full = Path::from(format!("{collection}/{rel}"));
        async move {
            let columns: Vec<String> = gschema.fields().iter().map(|f| f.name().clone()).collect();
            let enc = cfg.clone();
            let (bytes, row_groups) = tokio::task::spawn_blocking(move || {
                encode_parquet(&enc, group, gschema, &gbatches)
            })
            .await
            .map_err(|e| Error::internal(format!("encoder task failed: {e}")))??;
            let size = bytes.len() as u64;
            let crc = crc32c::crc32c(&bytes);
            let sums = crate::storage::io::cache::BlockSums::compute(&bytes, cfg.cache_block_bytes);
            upload(store, &cfg, &full, bytes).await?;
            let mut file = DataFile {
                group,
                columns: columns
                    .into_iter()
                    .filter(|c| !c.starts_with('_'))
                    .collect(),
                path: rel,
                size,
                crc32c: crc,
                row_groups,
                block_bytes: 0,
                block_crc32c: String::new(),
            };
            file.set_block_sums(&sums);
            Ok::<_, Error>(file)
        }
    });
    // Upload every group; if any part of sealing fails, remove what was
    // uploaded so a failed write leaves nothing behind.
    let results = futures::future::join_all(uploads).await;
    let uploaded: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|f| f.path.clone()))
        .chain(std::iter::once(format!("stats_log/{id}/pk_bloom.bin")))
        .collect();
    let sealed = async {
        let files = results.into_iter().collect::<Result<Vec<DataFile>>>()?;
        if crate::error::injected("segment-after-files", collection) {
            return Err(Error::internal("injected failure after segment files"));
        }
        // The key filter, so later inserts can tell which keys may exist here.
        let pk_idx = schema
            .fields()
            .iter()
            .position(|f| f.name() == schema.primary_key())
            .ok_or_else(|| Error::internal("primary key column missing"))?;
        let keys: Vec<ArrayRef> = batches.iter().map(|b| b.column(pk_idx).clone()).collect();
        let bloom = KeyBloom::build(&keys).to_bytes();
        let rel = format!("stats_log/{id}/pk_bloom.bin");
        let stats_file = StatsFile {
            path: rel.clone(),
            size: bloom.len() as u64,
            crc32c: crc32c::crc32c(&bloom),
        };
        upload(
            store.clone(),
            cfg,
            &Path::from(format!("{collection}/{rel}")),
            bloom,
        )
        .await?;
        Ok::<_, Error>((files, stats_file))
    }
    .await;
    let (files, stats_file) = match sealed {
        Ok(v) => v,
        Err(e) => {
            for rel in uploaded {
                let _ = store
                    .delete(&Path::from(format!("{collection}/{rel}")))
                    .await;
            }
            return Err(e);
        }
    };
    Ok(SegmentMeta {
        id,
        rows: rows as u64,
        min_ts,
        max_ts,
        files,
        stats,
        pk_bloom: Some(stats_file),
        compacted_from: vec![],
        index_files: vec![],
    })
}

/// Writes a delete log: `(primary key, _ts)` rows.
pub async fn write_delete_log(
    store: &Arc<dyn ObjectStore>,
    cfg: &StoreConfig,
    collection: &str,
    keys: ArrayRef,
    ts: Vec<u64>,
) -> Result<DeleteLog> {
    let (min_ts, max_ts) = (
        ts.iter().copied().min().unwrap_or(0),
        ts.iter().copied().max().unwrap_or(0),
    );
    let rows = keys.len() as u64;
    let schema = Arc::new(Schema::new(vec![
        arrow::datatypes::Field::new(DELETE_KEY_COLUMN, keys.data_type().clone(), false),
        arrow::datatypes::Field::new(TS_COLUMN, DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![keys, Arc::new(UInt64Array::from(ts))])?;
    let enc = cfg.clone();
    let (bytes, _) = tokio::task::spawn_blocking(move || encode_parquet(&enc, 0, schema, &[batch]))
        .await
        .map_err(|e| Error::internal(format!("encoder task failed: {e}")))??;
    let rel = format!("delta_log/{}.parquet", uuid::Uuid::new_v4().simple());
    let log = DeleteLog {
        path: rel.clone(),
        rows,
        min_ts,
        max_ts,
        size: bytes.len() as u64,
        crc32c: crc32c::crc32c(&bytes),
    };
    upload(
        store.clone(),
        cfg,
        &Path::from(format!("{collection}/{rel}")),
        bytes,
    )
    .await?;
    Ok(log)
}

/// Column name of the key in a delete log.
pub const DELETE_KEY_COLUMN: &str = "pk";

/// Target size of a data page of a vector column.
const VECTOR_PAGE_BYTES: usize = 64 * 1024;

fn encode_parquet(
    cfg: &StoreConfig,
    group: u32,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<(Bytes, u32)> {
    let mut props = WriterProperties::builder()
        .set_compression(cfg.compression)
        .set_max_row_group_row_count(Some(cfg.row_group_rows))
        .set_max_row_group_bytes(None)
        .set_created_by(format!("quiver {}", env!("CARGO_PKG_VERSION")));
    if group == 0 {
        props = props
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_dictionary_enabled(ColumnPath::from(ROW_COLUMN), false)
            .set_column_encoding(ColumnPath::from(ROW_COLUMN), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(ColumnPath::from(TS_COLUMN), false)
            .set_column_encoding(ColumnPath::from(TS_COLUMN), Encoding::DELTA_BINARY_PACKED);
        // The system columns are read by every query and encode small
        // (delta, run-length dictionary): compressing them again costs
        // more time than it saves bytes.
        for c in [SEG_COLUMN, ROW_COLUMN, TS_COLUMN] {
            props = props.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
        }
    } else {
        // Vectors: plain, uncompressed fixed-size binary decodes at memory
        // speed; random floats gain little from compression, dictionaries
        // or min/max.
        // Small pages (about 64 KiB, located by the offset index) let a
        // selective read fetch and decode only the pages holding its rows.
        let width = schema
            .fields()
            .first()
            .and_then(|f| match f.data_type() {
                DataType::FixedSizeBinary(w) => Some(*w as usize),
                _ => None,
            })
            .unwrap_or(VECTOR_PAGE_BYTES);
        props = props
            .set_compression(Compression::UNCOMPRESSED)
            .set_encoding(Encoding::PLAIN)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_data_page_size_limit(VECTOR_PAGE_BYTES)
            .set_write_batch_size((VECTOR_PAGE_BYTES / width.max(1)).max(1));
    }
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props.build()))?;
    for b in batches {
        writer.write(b)?;
    }
    let meta = writer.close()?;
    Ok((Bytes::from(buf), meta.num_row_groups() as u32))
}

/// Writes a whole file: one put below `cfg.multipart_threshold_bytes`,
/// a multipart upload of `cfg.multipart_part_bytes` parts from it. A
/// multipart upload that fails is aborted (no object appears) and, if the
/// failure was transient, started again within `cfg.retry`.
pub async fn upload(
    store: Arc<dyn ObjectStore>,
    cfg: &StoreConfig,
    path: &Path,
    bytes: Bytes,
) -> Result<()> {
    if (bytes.len() as u64) < cfg.multipart_threshold_bytes.max(1) {
        store.put(path, bytes.into()).await?;
        return Ok(());
    }
    let part = cfg
        .multipart_part_bytes
        .max(crate::storage::config::MIN_MULTIPART_PART_BYTES) as usize;
    let stats = crate::storage::io::retry::RetryStats::default();
    cfg.retry
        .run(
            || format!("multipart upload of {path}"),
            &stats,
            || multipart_once(store.as_ref(), path, &bytes, part),
        )
        .await?;
    Ok(())
}

/// Parts uploaded at once by one multipart upload.
const UPLOAD_CONCURRENCY: usize = 4;

async fn multipart_once(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: &Bytes,
    part: usize,
) -> object_store::Result<()> {
    let mut upload = store.put_multipart(path).await?;
    let parts: Vec<_> = (0..bytes.len())
        .step_by(part)
        .map(|start| {
            let chunk = bytes.slice(start..(start + part).min(bytes.len()));
            upload.put_part(chunk.into())
        })
        .collect();
    let sent = futures::stream::iter(parts)
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await;
    let done = match sent {
        Ok(_) => upload.complete().await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        if let Err(abort) = upload.abort().await {
            tracing::warn!(path = %path, error = %abort, "could not abort a failed multipart upload");
        }
        return Err(e);
    }
    Ok(())
}

/// Min / max / null count per key and scalar column, rendered as text.
fn column_stats(
    schema: &CollectionSchema,
    batches: &[RecordBatch],
) -> Result<BTreeMap<String, ColumnStats>> {
    let mut out = BTreeMap::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if matches!(schema.kind(f), ColumnKind::Vector { .. }) || !has_text_stats(f.data_type()) {
            continue;
        }
        let mut min = MinAccumulator::try_new(f.data_type())?;
        let mut max = MaxAccumulator::try_new(f.data_type())?;
        let mut nulls = 0u64;
        for b in batches {
            let col = b.column(i);
            nulls += col.null_count() as u64;
            min.update_batch(std::slice::from_ref(col))?;
            max.update_batch(std::slice::from_ref(col))?;
        }
        out.insert(
            f.name().clone(),
            ColumnStats {
                min: scalar_to_text(&min.evaluate()?)?,
                max: scalar_to_text(&max.evaluate()?)?,
                null_count: nulls,
            },
        );
    }
    Ok(out)
}

/// Whether a column's min and max are kept (as text, in the manifest):
/// for types that order and read back from text exactly. Others (binary,
/// lists, structs, durations) are never pruned on.
fn has_text_stats(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Decimal128(..)
            | Decimal256(..)
            | Utf8
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(..)
    )
}

fn scalar_to_text(v: &ScalarValue) -> Result<Option<String>> {
    if v.is_null() {
        return Ok(None);
    }
    let arr = cast(&v.to_array()?, &DataType::Utf8)?;
    let s = arr
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| Error::internal("cast to Utf8 did not give a string array"))?;
    Ok((!s.is_null(0)).then(|| s.value(0).to_string()))
}

/// Parses a statistic written by [`column_stats`] back into its type; `None`
/// when it cannot be read (the segment is then never pruned on it).
pub fn text_to_scalar(text: &str, dt: &DataType) -> Option<ScalarValue> {
    ScalarValue::try_from_string(text.to_string(), dt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};

    #[test]
    fn stats_round_trip_through_text() {
        let cases = [
            ScalarValue::Int64(Some(-42)),
            ScalarValue::Float64(Some(0.1 + 0.2)),
            ScalarValue::Float32(Some(1.0e-7)),
            ScalarValue::Utf8(Some("b'x".into())),
            ScalarValue::Boolean(Some(true)),
            ScalarValue::Date32(Some(19000)),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_123_456), None),
        ];
        for v in cases {
            let t = scalar_to_text(&v).unwrap().unwrap();
            assert_eq!(text_to_scalar(&t, &v.data_type()), Some(v.clone()), "{t}");
        }
        let _ = Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true);
    }
}
