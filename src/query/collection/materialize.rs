//! Materialization: the rows that survive deletes and filters fetch their
//! vector columns (from the decoded cache, or by row selection from the
//! column group's file), coalesced into batches; the scan counters and
//! the scan log.

use crate::error::Error;
use crate::storage::format::keys::{key_at, DeleteSet};
use crate::storage::format::manifest::DataFile;
use crate::storage::Store;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::concat;
use arrow::datatypes::{SchemaRef, UInt32Type, UInt64Type};
use datafusion::common::DataFusionError;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
type DFResult<T> = datafusion::common::Result<T>;

/// Where an output column of [`MaterializeExec`] comes from.
#[derive(Debug, Clone)]
pub(crate) enum ColumnSource {
    /// A column of the input (group-0 scan) at this index.
    Input(usize),
    /// A vector column fetched from its column-group file.
    Vector(String),
}

/// Drops rows hidden by a delete with a larger `_ts` (MVCC).
#[derive(Debug)]
pub(crate) struct DeleteFilter {
    pub(crate) map: DeleteSet,
    pub(crate) pk_idx: usize,
    pub(crate) ts_idx: usize,
}

/// What [`MaterializeExec`] does to each batch of the group-0 scan.
#[derive(Debug)]
pub(crate) struct Materialize {
    pub(crate) store: Arc<Store>,
    pub(crate) collection: String,
    /// Output schema.
    pub(crate) schema: SchemaRef,
    /// The output schema with the primary key appended as [`KEY_COLUMN`].
    pub(crate) keyed_schema: SchemaRef,
    /// Input index of the primary key, and its name.
    pub(crate) key_idx: usize,
    pub(crate) key_name: String,
    /// Names of the input (group-0 scan) columns.
    pub(crate) input_names: Vec<String>,
    /// The group-0 file of each scanned segment.
    pub(crate) group0: Vec<(u64, DataFile)>,
    pub(crate) sources: Vec<ColumnSource>,
    /// Input indices of `_seg` and `_row`, when vectors are fetched.
    pub(crate) address: Option<(usize, usize)>,
    pub(crate) deletes: Option<DeleteFilter>,
    /// segment id -> vector column -> file.
    pub(crate) files: HashMap<u64, HashMap<String, DataFile>>,
    /// Sealed segments of the version, and those skipped by their
    /// min/max statistics (EXPLAIN ANALYZE: `segments_total`, `segments_pruned`).
    pub(crate) segments_total: usize,
    pub(crate) segments_pruned: usize,
    /// Vector indexes of the pinned version, and the index files of the
    /// scanned segments (by segment id).
    pub(crate) indexes: Vec<crate::storage::index::IndexDef>,
    pub(crate) index_files: HashMap<u64, Vec<crate::storage::index::IndexFile>>,
}

impl Materialize {
    pub(crate) async fn process(
        &self,
        batch: RecordBatch,
        counters: &FetchCounters,
        keyed: bool,
    ) -> DFResult<RecordBatch> {
        let batch = match &self.deletes {
            Some(d) => {
                let keys = batch.column(d.pk_idx);
                let ts = batch.column(d.ts_idx).as_primitive::<UInt64Type>();
                let keep = BooleanArray::from_iter(
                    (0..batch.num_rows())
                        .map(|i| Some(!d.map.hides(key_at(keys.as_ref(), i), ts.value(i)))),
                );
                if keep.true_count() == batch.num_rows() {
                    batch
                } else {
                    arrow::compute::filter_record_batch(&batch, &keep)?
                }
            }
            None => batch,
        };
        // Rows may come in any order (a sort can run below this operator),
        // so group them by segment, read each segment's rows in file order,
        // and interleave the results back into the batch's order.
        let mut by_segment: Vec<(u64, Vec<(u32, usize)>)> = Vec::new();
        let mut slot: Vec<(usize, usize)> = vec![(0, 0); batch.num_rows()];
        if let Some((seg_idx, row_idx)) = self.address {
            let segs = batch.column(seg_idx).as_primitive::<UInt64Type>();
            let rows = batch.column(row_idx).as_primitive::<UInt32Type>();
            let mut index: HashMap<u64, usize> = HashMap::new();
            for i in 0..batch.num_rows() {
                let g = *index.entry(segs.value(i)).or_insert_with(|| {
                    by_segment.push((segs.value(i), Vec::new()));
                    by_segment.len() - 1
                });
                by_segment[g].1.push((rows.value(i), i));
            }
            for (g, (_, members)) in by_segment.iter_mut().enumerate() {
                members.sort_unstable();
                for (k, &(_, out_row)) in members.iter().enumerate() {
                    slot[out_row] = (g, k);
                }
            }
        }
        let mut columns = Vec::with_capacity(self.sources.len());
        for (out_idx, src) in self.sources.iter().enumerate() {
            let col = match src {
                ColumnSource::Input(i) => batch.column(*i).clone(),
                ColumnSource::Vector(name) => {
                    let mut parts = Vec::with_capacity(by_segment.len());
                    for (seg, members) in &by_segment {
                        let file = self.vector_file(*seg, name)?;
                        let positions: Vec<u32> = members.iter().map(|(p, _)| *p).collect();
                        counters.fetches.add(1);
                        counters.rows.add(positions.len());
                        let part = self.read_rows(file, out_idx, &positions, counters).await?;
                        counters.scanned(0, [&part]);
                        parts.push(part);
                    }
                    match parts.len() {
                        0 => arrow::array::new_empty_array(self.schema.field(out_idx).data_type()),
                        1 if slot.iter().enumerate().all(|(i, s)| s.1 == i) => {
                            parts.pop().expect("one part")
                        }
                        _ => {
                            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                            arrow::compute::interleave(&refs, &slot)?
                        }
                    }
                }
            };
            columns.push(col);
        }
        let schema = if keyed {
            columns.push(batch.column(self.key_idx).clone());
            self.keyed_schema.clone()
        } else {
            self.schema.clone()
        };
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(schema, columns, &opts)?)
    }

    /// The group-0 input columns a unit's rows need (sorted): the scalar
    /// outputs and the key, and with `deletes` the key and `_ts` the delete
    /// filter reads.
    pub(crate) fn input_columns(&self, deletes: bool) -> Vec<usize> {
        let mut needed: Vec<usize> = self
            .sources
            .iter()
            .filter_map(|s| match s {
                ColumnSource::Input(i) => Some(*i),
                ColumnSource::Vector(_) => None,
            })
            .collect();
        needed.push(self.key_idx);
        if let (true, Some(d)) = (deletes, &self.deletes) {
            needed.extend([d.pk_idx, d.ts_idx]);
        }
        needed.sort_unstable();
        needed.dedup();
        needed
    }

    /// The file of vector column `name` of segment `seg_id`.
    pub(crate) fn vector_file(&self, seg_id: u64, name: &str) -> DFResult<&DataFile> {
        self.files
            .get(&seg_id)
            .and_then(|m| m.get(name))
            .ok_or_else(|| {
                DataFusionError::External(Box::new(Error::Corrupt {
                    path: format!("{}/insert_log/{seg_id}", self.collection),
                    reason: format!("segment has no file for vector column '{name}'"),
                }))
            })
    }

    /// The rows at `positions` (ascending, rows of the `segment`-th scanned
    /// segment) as a keyed batch with their vectors: scalar columns taken
    /// from the decoded-column cache, vectors by [`Self::read_rows`]. No
    /// delete is applied (the caller chose rows no delete hides).
    pub(crate) async fn rows_at(
        &self,
        segment: usize,
        positions: &[u32],
        counters: &FetchCounters,
    ) -> DFResult<RecordBatch> {
        use arrow::array::UInt32Array;
        let (seg_id, file) = &self.group0[segment];
        let path = Store::file_path(&self.collection, &file.path);
        let meta = self.store.reader_metadata(&path, file.size).await?;
        let needed = self.input_columns(false);
        let file_schema = meta.schema().clone();
        let roots: Vec<usize> = needed
            .iter()
            .map(|&i| file_schema.index_of(&self.input_names[i]))
            .collect::<Result<_, _>>()?;
        let mut parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); needed.len()];
        let (mut start, mut k) = (0u64, 0usize);
        for (rg, g) in meta.metadata().row_groups().iter().enumerate() {
            let end = start + g.num_rows() as u64;
            let from = k;
            while k < positions.len() && (positions[k] as u64) < end {
                k += 1;
            }
            if k > from {
                let idx = UInt32Array::from_iter_values(
                    positions[from..k]
                        .iter()
                        .map(|&p| (p as u64 - start) as u32),
                );
                let decoded = self
                    .store
                    .decoded_columns(&path, file.size, &meta, rg, &roots)
                    .await?;
                for (part, a) in parts.iter_mut().zip(&decoded) {
                    part.push(arrow::compute::take(a.as_ref(), &idx, None)?);
                }
            }
            start = end;
        }
        let mut at: HashMap<usize, ArrayRef> = HashMap::new();
        for (&i, part) in needed.iter().zip(parts) {
            let refs: Vec<&dyn Array> = part.iter().map(|a| a.as_ref()).collect();
            at.insert(i, concat(&refs)?);
        }
        let mut columns = Vec::with_capacity(self.sources.len() + 1);
        for (out_idx, src) in self.sources.iter().enumerate() {
            columns.push(match src {
                ColumnSource::Input(i) => {
                    let want = self.schema.field(out_idx).data_type();
                    let col = at[i].clone();
                    if col.data_type() == want {
                        col
                    } else {
                        arrow::compute::cast(&col, want)?
                    }
                }
                ColumnSource::Vector(name) => {
                    let f = self.vector_file(*seg_id, name)?;
                    counters.fetches.add(1);
                    counters.rows.add(positions.len());
                    self.read_rows(f, out_idx, positions, counters).await?
                }
            });
        }
        columns.push(at[&self.key_idx].clone());
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(positions.len()));
        Ok(RecordBatch::try_new_with_options(
            self.keyed_schema.clone(),
            columns,
            &opts,
        )?)
    }

    /// Reads the rows at `positions` (ascending) of a one-column file.
    ///
    /// Row groups whose decoded column is cached, or of which the query
    /// wants at least 1/8 of the rows, are taken from the decoded-chunk cache
    /// (decoding the whole row group on a miss); sparser selections decode
    /// only the selected rows.
    pub(crate) async fn read_rows(
        &self,
        file: &DataFile,
        out_idx: usize,
        positions: &[u32],
        counters: &FetchCounters,
    ) -> DFResult<ArrayRef> {
        let want = self.schema.field(out_idx).data_type().clone();
        if positions.is_empty() {
            return Ok(arrow::array::new_empty_array(&want));
        }
        let path = Store::file_path(&self.collection, &file.path);
        let meta = self.store.reader_metadata(&path, file.size).await?;
        // (row group, rows) parts, and the row groups to read row by row.
        let mut parts: Vec<(usize, ArrayRef)> = Vec::new();
        let mut sparse: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut start = 0u64;
        let mut k = 0usize;
        for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
            let n = rg.num_rows() as u64;
            let end = start + n;
            let from = k;
            while k < positions.len() && (positions[k] as u64) < end {
                k += 1;
            }
            if k > from {
                let local: Vec<u32> = positions[from..k]
                    .iter()
                    .map(|&p| (p as u64 - start) as u32)
                    .collect();
                let dense = (local.len() as u64) * 8 >= n;
                match self
                    .store
                    .decoded_chunk(&path, file.size, &meta, i, dense)
                    .await?
                {
                    Some((chunk, hit)) => {
                        if hit {
                            counters.chunk_hits.add(1);
                        } else {
                            counters.chunk_misses.add(1);
                        }
                        let (lo, hi) = (local[0] as usize, local[local.len() - 1] as usize);
                        let part = if hi - lo + 1 == local.len() {
                            // A run of rows (ascending, no gaps): no copy.
                            chunk.slice(lo, local.len())
                        } else {
                            crate::storage::format::layout::gather(&chunk, &local)?
                        };
                        parts.push((i, part));
                    }
                    None => sparse.push((i, local)),
                }
            }
            start = end;
            if k == positions.len() {
                break;
            }
        }
        if !sparse.is_empty() {
            let groups: Vec<(usize, Option<&[u32]>)> = sparse
                .iter()
                .map(|(rg, sel)| (*rg, Some(sel.as_slice())))
                .collect();
            let rows = self
                .store
                .load_rows(&path, file.size, &meta, &groups)
                .await?;
            let mut offset = 0;
            for (rg, sel) in &sparse {
                parts.push((*rg, rows.slice(offset, sel.len())));
                offset += sel.len();
            }
            parts.sort_by_key(|(rg, _)| *rg);
        }
        let out = match parts.len() {
            1 => parts.pop().expect("one part").1,
            _ => {
                let refs: Vec<&dyn Array> = parts.iter().map(|(_, a)| a.as_ref()).collect();
                concat(&refs)?
            }
        };
        if out.len() != positions.len() {
            return Err(DataFusionError::External(Box::new(Error::Corrupt {
                path: file.path.clone(),
                reason: format!("expected {} rows, read {}", positions.len(), out.len()),
            })));
        }
        // Older files may carry a differently named list element field:
        // present the collection's type.
        if &want != out.data_type() {
            return Ok(arrow::compute::cast(&out, &want)?);
        }
        Ok(out)
    }
}

/// Per-partition metrics of [`MaterializeExec`], shown by EXPLAIN ANALYZE:
/// vector file reads and rows, and decoded-chunk cache hits and misses (a
/// miss decodes a whole row group; sparse reads use neither).
#[derive(Debug, Clone)]
pub(crate) struct FetchCounters {
    pub(crate) fetches: Count,
    pub(crate) rows: Count,
    pub(crate) chunk_hits: Count,
    pub(crate) chunk_misses: Count,
    /// Rows this operator read itself (row groups of resident scans, the
    /// growing rows; the Parquet scan below counts its own).
    pub(crate) rows_scanned: Count,
    /// Decoded bytes of the columns this operator read itself.
    pub(crate) bytes_scanned: Count,
    /// Rows of a sparse selection whose vectors were left where they lie
    /// in cached chunks (no copy): the top-k scores them in place.
    pub(crate) rows_in_place: Count,
}

impl FetchCounters {
    pub(crate) fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            fetches: MetricBuilder::new(metrics).counter("vector_fetches", partition),
            rows: MetricBuilder::new(metrics).counter("vector_rows", partition),
            chunk_hits: MetricBuilder::new(metrics).counter("chunk_cache_hits", partition),
            chunk_misses: MetricBuilder::new(metrics).counter("chunk_cache_misses", partition),
            rows_scanned: MetricBuilder::new(metrics).counter("rows_scanned", partition),
            bytes_scanned: MetricBuilder::new(metrics).counter("bytes_scanned", partition),
            rows_in_place: MetricBuilder::new(metrics).counter("vector_rows_in_place", partition),
        }
    }

    /// Counts `rows` rows read, with the columns in `arrays`.
    pub(crate) fn scanned<'a>(&self, rows: usize, arrays: impl IntoIterator<Item = &'a ArrayRef>) {
        self.rows_scanned.add(rows);
        self.bytes_scanned
            .add(arrays.into_iter().map(|a| slice_bytes(a.as_ref())).sum());
    }
}

/// The memory a (possibly sliced) array's values take.
pub(crate) fn slice_bytes(a: &dyn Array) -> usize {
    a.to_data().get_slice_memory_size().unwrap_or(0)
}

/// Logs a scan's totals when it ends or is dropped, at debug level in its
/// `scan` span.
pub(crate) struct ScanLog {
    pub(crate) span: tracing::Span,
    pub(crate) start: std::time::Instant,
    pub(crate) rows: usize,
    pub(crate) batches: usize,
}

impl ScanLog {
    pub(crate) fn new(span: tracing::Span) -> Self {
        Self {
            span,
            start: std::time::Instant::now(),
            rows: 0,
            batches: 0,
        }
    }
}

impl Drop for ScanLog {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        tracing::debug!(
            ms = self.start.elapsed().as_secs_f64() * 1e3,
            rows = self.rows,
            batches = self.batches,
            "scan finished"
        );
    }
}

/// Joins the small batches a selective scan yields (one per row group or
/// page) into batches of about `target` rows, in order, so vectors are
/// fetched once per batch rather than once per sliver.
pub(crate) fn coalesce(
    input: SendableRecordBatchStream,
    target: usize,
) -> futures::stream::BoxStream<'static, DFResult<RecordBatch>> {
    let schema = input.schema();
    futures::stream::unfold((input, false), move |(mut input, done)| {
        let schema = schema.clone();
        async move {
            if done {
                return None;
            }
            let mut pending: Vec<RecordBatch> = Vec::new();
            let mut rows = 0usize;
            let mut finished = false;
            while rows < target {
                match input.next().await {
                    Some(Ok(b)) => {
                        if b.num_rows() > 0 {
                            rows += b.num_rows();
                            pending.push(b);
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (input, true))),
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            let out = match pending.len() {
                0 => return None,
                1 => Ok(pending.pop().expect("one batch")),
                _ => arrow::compute::concat_batches(&schema, &pending).map_err(Into::into),
            };
            Some((out, (input, finished)))
        }
    })
    .boxed()
}

/// Positions of the true values of `mask` (a null is not true).
pub(crate) fn true_positions(mask: &arrow::array::BooleanArray) -> arrow::array::UInt32Array {
    let values = match mask.nulls() {
        Some(nulls) => mask.values() & nulls.inner(),
        None => mask.values().clone(),
    };
    arrow::array::UInt32Array::from_iter_values(values.set_indices().map(|i| i as u32))
}
