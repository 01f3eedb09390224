//! The units of a resident scan ([`MaterializeExec::units`]): row groups
//! (or parts of them) of the scanned segments and the growing rows, loaded
//! from the decoded-column cache with deletes and a filter applied
//! ([`MaterializeExec::load_unit`]); the masks of units without their
//! vectors, and rows taken by position (the vector-index path).

use crate::query::collection::exec::MaterializeExec;
use crate::query::collection::materialize::{slice_bytes, true_positions, ColumnSource};
use crate::storage::format::keys::key_at;
use crate::storage::index::{IndexDef, IndexFile};
use crate::storage::Store;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use datafusion::common::DataFusionError;
use std::sync::Arc;
type DFResult<T> = datafusion::common::Result<T>;

/// A unit of work of a resident scan (see [`MaterializeExec::units`]).
#[derive(Debug, Clone, Copy)]
pub enum ScanUnit {
    /// Row group `rg` of the `segment`-th scanned segment, whose first row
    /// is row `start` of the segment; of it, the rows `part` (from, to)
    /// if given, else all.
    RowGroup {
        segment: usize,
        rg: usize,
        start: u64,
        part: Option<(usize, usize)>,
    },
    /// The rows of the growing segments.
    Growing,
}

/// The scalar side of one row-group unit ([`MaterializeExec::unit_scalars`]).
pub(crate) struct UnitScalars {
    pub(crate) seg_id: u64,
    /// First row (in the segment) and rows of the whole row group.
    pub(crate) group_start: u64,
    pub(crate) group_rows: usize,
    /// The unit's rows: `rows` rows from `from` in the row group, which is
    /// row `start` of the segment.
    pub(crate) from: usize,
    pub(crate) rows: usize,
    pub(crate) start: u64,
    pub(crate) columns: Vec<Option<ArrayRef>>,
    pub(crate) mask: Option<BooleanArray>,
}

/// Fewest rows of a part of a row group a resident scan deals out
/// ([`MaterializeExec::units`]).
pub const MIN_PART_ROWS: usize = 4096;

impl MaterializeExec {
    /// The units of a resident scan: every row group of every scanned
    /// segment, and the growing rows. With fewer row groups than
    /// `workers`, each is cut into parts of at least [`MIN_PART_ROWS`]
    /// rows, so a small collection (one row group) is still scored on
    /// every core.
    pub async fn units(&self, workers: usize) -> DFResult<Vec<ScanUnit>> {
        let mut groups = Vec::new();
        for (i, (_, f)) in self.work.group0.iter().enumerate() {
            let path = Store::file_path(&self.work.collection, &f.path);
            let meta = self.work.store.reader_metadata(&path, f.size).await?;
            let mut start = 0u64;
            for (rg, g) in meta.metadata().row_groups().iter().enumerate() {
                groups.push((i, rg, start, g.num_rows() as usize));
                start += g.num_rows() as u64;
            }
        }
        let per_group = if groups.is_empty() {
            1
        } else {
            workers.div_ceil(groups.len())
        };
        let mut units = Vec::new();
        for (segment, rg, start, rows) in groups {
            let parts = per_group.min(rows / MIN_PART_ROWS).max(1);
            for p in 0..parts {
                units.push(ScanUnit::RowGroup {
                    segment,
                    rg,
                    start,
                    part: (parts > 1).then(|| (rows * p / parts, rows * (p + 1) / parts)),
                });
            }
        }
        if !self.growing.is_empty() {
            units.push(ScanUnit::Growing);
        }
        Ok(units)
    }

    /// Indices (in the keyed schema) of the columns that are not vectors,
    /// the key last: the schema of the batches `load_unit`'s `prefilter`
    /// sees.
    pub fn scalar_columns(&self) -> Vec<usize> {
        let mut cols: Vec<usize> = (0..self.work.sources.len())
            .filter(|&i| !self.is_vector_column(i))
            .collect();
        cols.push(self.work.sources.len());
        cols
    }

    /// The keyed batches of one unit, each with the mask of its rows that
    /// no delete hides and `prefilter` (run on the [`Self::scalar_columns`]
    /// first) accepts; `None` when that is every row. Columns come from
    /// the decoded-column cache without copying; vectors are read only for
    /// the rows that pass when few do and the row group's vectors are not
    /// cached (a sparse read), so a selective filter decodes few vectors.
    /// When few pass and the vectors are cached, `in_place` (for a caller
    /// that reads only the masked rows' vectors) leaves them where they lie:
    /// the batch holds the whole row group and the mask, nothing is copied.
    pub async fn load_unit(
        &self,
        unit: ScanUnit,
        prefilter: &(dyn Fn(&RecordBatch) -> DFResult<Option<BooleanArray>> + Send + Sync),
        in_place: bool,
    ) -> DFResult<Vec<(RecordBatch, Option<BooleanArray>)>> {
        let scalar_cols = self.scalar_columns();
        let (segment, rg, group_start, part) = match unit {
            ScanUnit::Growing => {
                let mut out = Vec::with_capacity(self.growing.len());
                for b in self.growing.iter() {
                    self.resident_counters.scanned(b.num_rows(), b.columns());
                    let mask = prefilter(&b.project(&scalar_cols)?)?;
                    out.push((b.clone(), mask.filter(|m| m.true_count() < b.num_rows())));
                }
                return Ok(out);
            }
            ScanUnit::RowGroup {
                segment,
                rg,
                start,
                part,
            } => (segment, rg, start, part),
        };
        let UnitScalars {
            seg_id,
            group_start,
            group_rows,
            from,
            rows,
            start,
            mut columns,
            mask,
        } = self
            .unit_scalars(segment, rg, group_start, part, prefilter)
            .await?;
        let seg_id = &seg_id;
        let work = &self.work;
        let selected = mask.as_ref().map_or(rows, |m| m.true_count());
        if selected == 0 {
            return Ok(Vec::new());
        }
        // Few rows pass: keep just those, and read just their vectors.
        let sparse = selected * 8 < rows;
        let counters = &self.resident_counters;
        if sparse && in_place {
            if let Some(chunks) = self
                .cached_vectors(*seg_id, group_start, group_rows)
                .await?
            {
                let chunks: Vec<(usize, ArrayRef)> = chunks
                    .into_iter()
                    .map(|(i, c)| (i, c.slice(from, rows)))
                    .collect();
                let row_bytes: usize = chunks
                    .iter()
                    .map(|(_, c)| slice_bytes(c.as_ref()) / rows)
                    .sum();
                counters.fetches.add(chunks.len());
                counters.chunk_hits.add(chunks.len());
                counters.rows.add(selected * chunks.len());
                counters.rows_in_place.add(selected);
                counters.bytes_scanned.add(selected * row_bytes);
                for (out_idx, chunk) in chunks {
                    columns[out_idx] = Some(chunk);
                }
                return Ok(vec![(self.keyed_batch(columns, rows)?, mask)]);
            }
        }
        let (positions, n) = match (&mask, sparse) {
            (Some(m), true) => {
                let idx = true_positions(m);
                for c in columns.iter_mut().flatten() {
                    *c = arrow::compute::take(c.as_ref(), &idx, None)?;
                }
                let positions: Vec<u32> = idx.values().iter().map(|&i| start as u32 + i).collect();
                (positions, idx.len())
            }
            _ => (
                (start as u32..(start as usize + rows) as u32).collect(),
                rows,
            ),
        };
        for (out_idx, src) in work.sources.iter().enumerate() {
            if let ColumnSource::Vector(name) = src {
                let file = work.vector_file(*seg_id, name)?;
                counters.fetches.add(1);
                counters.rows.add(positions.len());
                let vectors = work.read_rows(file, out_idx, &positions, counters).await?;
                counters.scanned(0, [&vectors]);
                columns[out_idx] = Some(vectors);
            }
        }
        let batch = self.keyed_batch(columns, n)?;
        Ok(vec![(batch, if sparse { None } else { mask })])
    }

    /// The scalar columns and the key of one row-group unit (in the keyed
    /// schema's places; the vector columns unset) and the mask of its rows
    /// that no delete hides and `prefilter` accepts (`None`: all).
    pub(crate) async fn unit_scalars(
        &self,
        segment: usize,
        rg: usize,
        group_start: u64,
        part: Option<(usize, usize)>,
        prefilter: &(dyn Fn(&RecordBatch) -> DFResult<Option<BooleanArray>> + Send + Sync),
    ) -> DFResult<UnitScalars> {
        let scalar_cols = self.scalar_columns();
        let work = &self.work;
        let (seg_id, file) = &work.group0[segment];
        let path = Store::file_path(&work.collection, &file.path);
        let meta = work.store.reader_metadata(&path, file.size).await?;
        let group_rows = meta.metadata().row_group(rg).num_rows() as usize;
        let (from, to) = part.unwrap_or((0, group_rows));
        // The unit's rows: `rows` from row `start` of the segment.
        let (rows, start) = (to - from, group_start + from as u64);
        // Decode the input columns this needs (not the row address: the
        // vectors are read by position here).
        let needed = work.input_columns(true);
        let file_schema = meta.schema().clone();
        let roots: Vec<usize> = needed
            .iter()
            .map(|&i| file_schema.index_of(&work.input_names[i]))
            .collect::<Result<_, _>>()?;
        let mut decoded = work
            .store
            .decoded_columns(&path, file.size, &meta, rg, &roots)
            .await?;
        if rows < group_rows {
            for a in decoded.iter_mut() {
                *a = a.slice(from, rows);
            }
        }
        self.resident_counters.scanned(rows, &decoded);
        let mut decoded_at: Vec<Option<ArrayRef>> = vec![None; work.input_names.len()];
        for (&i, a) in needed.iter().zip(decoded) {
            decoded_at[i] = Some(a);
        }
        let input = |i: usize| decoded_at[i].clone().expect("a decoded input column");
        // The scalar columns and the key, in the keyed schema's order.
        let mut columns: Vec<Option<ArrayRef>> = vec![None; work.sources.len() + 1];
        for (out_idx, src) in work.sources.iter().enumerate() {
            if let ColumnSource::Input(i) = src {
                let want = work.schema.field(out_idx).data_type();
                let col = input(*i);
                columns[out_idx] = Some(if col.data_type() == want {
                    col
                } else {
                    arrow::compute::cast(&col, want)?
                });
            }
        }
        columns[work.sources.len()] = Some(input(work.key_idx));
        let live = match &work.deletes {
            Some(d) => {
                let keys = input(d.pk_idx);
                let ts = input(d.ts_idx);
                let ts = ts.as_primitive::<UInt64Type>();
                let keep = BooleanArray::from_iter(
                    (0..rows).map(|i| Some(!d.map.hides(key_at(keys.as_ref(), i), ts.value(i)))),
                );
                (keep.true_count() < rows).then_some(keep)
            }
            None => None,
        };
        let scalar_schema = Arc::new(work.keyed_schema.project(&scalar_cols)?);
        let scalar = RecordBatch::try_new_with_options(
            scalar_schema,
            scalar_cols
                .iter()
                .map(|&i| columns[i].clone().expect("a scalar column"))
                .collect(),
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let mask = match (live, prefilter(&scalar)?) {
            (None, m) | (m, None) => m,
            (Some(a), Some(b)) => Some(arrow::compute::and(&a, &b)?),
        };
        Ok(UnitScalars {
            seg_id: *seg_id,
            group_start,
            group_rows,
            from,
            rows,
            start,
            columns,
            mask,
        })
    }

    /// The rows of the `segment`-th scanned segment as units, one per row
    /// group, with the segment's rows.
    pub(crate) async fn segment_units(&self, segment: usize) -> DFResult<(Vec<ScanUnit>, u64)> {
        let (_, f) = &self.work.group0[segment];
        let path = Store::file_path(&self.work.collection, &f.path);
        let meta = self.work.store.reader_metadata(&path, f.size).await?;
        let mut start = 0u64;
        let mut units = Vec::new();
        for rg in 0..meta.metadata().num_row_groups() {
            units.push(ScanUnit::RowGroup {
                segment,
                rg,
                start,
                part: None,
            });
            start += meta.metadata().row_group(rg).num_rows() as u64;
        }
        Ok((units, start))
    }

    /// The rows of a row-group unit that no delete hides and `prefilter`
    /// accepts, without reading any vector: (rows, mask; `None`: all).
    pub(crate) async fn unit_mask(
        &self,
        unit: ScanUnit,
        prefilter: &(dyn Fn(&RecordBatch) -> DFResult<Option<BooleanArray>> + Send + Sync),
    ) -> DFResult<(usize, Option<BooleanArray>)> {
        let ScanUnit::RowGroup {
            segment,
            rg,
            start,
            part,
        } = unit
        else {
            return Err(DataFusionError::Internal(
                "unit_mask takes a row group".into(),
            ));
        };
        let u = self
            .unit_scalars(segment, rg, start, part, prefilter)
            .await?;
        Ok((u.rows, u.mask))
    }

    /// The keyed rows at `positions` of a scanned segment ([`Materialize::rows_at`]).
    pub(crate) async fn rows_at(&self, segment: usize, positions: &[u32]) -> DFResult<RecordBatch> {
        (self
            .work
            .rows_at(segment, positions, &self.resident_counters))
        .await
    }

    /// Whether any delete hides rows of the scanned version.
    pub(crate) fn has_deletes(&self) -> bool {
        self.work.deletes.is_some()
    }

    /// The store and collection the scan reads.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.work.store
    }

    pub(crate) fn collection(&self) -> &str {
        &self.work.collection
    }

    /// The index files of the scanned segments, by position in the scan,
    /// for the index `id`.
    pub(crate) fn index_files(&self, id: &str) -> Vec<(usize, IndexFile)> {
        self.work
            .group0
            .iter()
            .enumerate()
            .filter_map(|(i, (seg, _))| {
                let f = self
                    .work
                    .index_files
                    .get(seg)?
                    .iter()
                    .find(|f| f.index_id == id)?;
                Some((i, f.clone()))
            })
            .collect()
    }

    /// Indexes of the scanned version.
    pub(crate) fn indexes(&self) -> &[IndexDef] {
        &self.work.indexes
    }

    /// Number of sealed segments scanned.
    pub(crate) fn segments_scanned(&self) -> usize {
        self.work.group0.len()
    }

    /// A batch of the keyed schema with `rows` rows from `columns`, every
    /// one of which is set.
    pub(crate) fn keyed_batch(
        &self,
        columns: Vec<Option<ArrayRef>>,
        rows: usize,
    ) -> DFResult<RecordBatch> {
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.work.keyed_schema.clone(),
            columns
                .into_iter()
                .map(|c| c.expect("every column"))
                .collect(),
            &opts,
        )?)
    }

    /// Every vector column of rows `start..start + rows` of segment
    /// `seg_id` (by output index), if each is one whole row group of its
    /// file that the decoded-column cache holds; `None` otherwise.
    pub(crate) async fn cached_vectors(
        &self,
        seg_id: u64,
        start: u64,
        rows: usize,
    ) -> DFResult<Option<Vec<(usize, ArrayRef)>>> {
        let work = &self.work;
        let mut out = Vec::new();
        for (out_idx, src) in work.sources.iter().enumerate() {
            let ColumnSource::Vector(name) = src else {
                continue;
            };
            let Some(file) = work.files.get(&seg_id).and_then(|m| m.get(name)) else {
                return Ok(None);
            };
            let path = Store::file_path(&work.collection, &file.path);
            let meta = work.store.reader_metadata(&path, file.size).await?;
            let mut at = 0u64;
            let mut group = None;
            for (i, g) in meta.metadata().row_groups().iter().enumerate() {
                if at == start {
                    group = (g.num_rows() as usize == rows).then_some(i);
                    break;
                }
                at += g.num_rows() as u64;
                if at > start {
                    break;
                }
            }
            let Some(rg) = group else {
                return Ok(None);
            };
            match work.store.cached_chunk(&path, rg).await {
                Some(chunk) if chunk.len() == rows => out.push((out_idx, chunk)),
                _ => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}
