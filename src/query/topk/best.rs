//! `Best`: one worker's k best rows, kept in a bounded heap of
//! candidates (distance classes encoded so integer order is the sort's
//! order, ties broken by primary key) over a few retained batches.

use crate::query::collection::true_positions;
use crate::query::functions::distance::score_rows;
use crate::query::functions::distance::{DistanceUdf, Metric};
use crate::storage::format::keys::{key_at, Key};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, Scalar, UInt32Array};
use arrow::compute::kernels::boolean::and;
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::compute::{
    concat, concat_batches, interleave_record_batch, lexsort_to_indices, sort_to_indices, take,
    take_record_batch, SortColumn, SortOptions,
};
use arrow::compute::{is_null, or_kleene};
use arrow::datatypes::DataType;
use datafusion::common::DataFusionError;
use datafusion::common::Result;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::{PhysicalSortExpr, ScalarFunctionExpr};
use datafusion::physical_plan::metrics::Count;
use std::sync::Arc;

/// A row among a worker's k best in the lean path ([`Best::heap`]): its
/// place in the order (null class, then the distance encoded so that
/// integer order is the sort's order, then the primary key) and where it
/// is (a batch of `Best::kept`, a row of it).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Candidate {
    pub(crate) class: u8,
    pub(crate) rank: u64,
    pub(crate) key: Key,
    pub(crate) batch: u32,
    pub(crate) row: u32,
}

/// Where a distance goes in the order `opts`: a class (nulls before or
/// after the values) and a rank whose integer order is the total order of
/// `f64` (as Arrow sorts floats), reversed when descending.
pub(crate) fn place(value: Option<f64>, opts: SortOptions) -> (u8, u64) {
    match value {
        None => (if opts.nulls_first { 0 } else { 2 }, 0),
        Some(v) => {
            let bits = v.to_bits();
            let rank = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            (1, if opts.descending { !rank } else { rank })
        }
    }
}

/// The distance [`place`] put where it is.
pub(crate) fn unplace(class: u8, rank: u64, opts: SortOptions) -> Option<f64> {
    if class != 1 {
        return None;
    }
    let rank = if opts.descending { !rank } else { rank };
    let bits = if rank >> 63 == 1 {
        rank & !(1 << 63)
    } else {
        !rank
    };
    Some(f64::from_bits(bits))
}

/// Batches a lean heap may point into before its rows are copied out
/// into one ([`Best::compact`]).
pub(crate) const MAX_KEPT_BATCHES: usize = 64;

/// The k best rows seen so far, in order, with their sort-key values.
#[derive(Default)]
pub(crate) struct Best {
    /// The lean path, when the only sort key is a distance the operator
    /// computes itself ([`Shared::lean`]): the k best rows as a heap of
    /// [`Candidate`]s (worst on top) pointing into `kept`, so a scanned
    /// batch costs one comparison per scored row and nothing is copied
    /// until the end.
    pub(crate) heap: std::collections::BinaryHeap<Candidate>,
    pub(crate) kept: Vec<RecordBatch>,
    pub(crate) best: Option<(RecordBatch, Vec<ArrayRef>)>,
    /// The k-th best value of the first sort key, once there are k rows.
    pub(crate) threshold: Option<Scalar<ArrayRef>>,
    /// Rows that beat the threshold, with their first sort key, not yet
    /// merged into `best` ([`Best::flush`]): a selective scan finds a few
    /// such rows per row group, and merging (concatenating and sorting)
    /// once per k of them costs far less than once per row group.
    pub(crate) pending: Vec<(RecordBatch, ArrayRef)>,
    pub(crate) pending_rows: usize,
}

impl Best {
    /// Filters and scores the rows of `batch` (where `live` is true) and
    /// keeps those that belong among the best. Only the distances of the
    /// surviving rows are computed, and only rows that can beat the current
    /// k-th best are copied.
    pub(crate) fn consider(
        &mut self,
        shared: &Shared,
        filters: &[Arc<dyn PhysicalExpr>],
        batch: RecordBatch,
        live: Option<BooleanArray>,
    ) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 || shared.fetch == 0 {
            return Ok(());
        }
        let mask = all_true(filters, &batch, live)?;
        // Rows that pass every filter (a null is not a pass).
        let selected: Option<UInt32Array> = match &mask {
            Some(m) if m.true_count() < rows => Some(true_positions(m)),
            _ => None,
        };
        let n = selected.as_ref().map_or(rows, |s| s.len());
        if n == 0 {
            return Ok(());
        }
        shared.scored.add(n);
        // The first sort key of the selected rows.
        let first: ArrayRef = match (&shared.scorer, &selected) {
            (Some(sc), sel) => {
                let vectors = batch.column(sc.column).as_fixed_size_list();
                match sel {
                    // Few rows: score just those.
                    Some(s) if n * 10 < rows * 3 => Arc::new(score_rows(
                        sc.metric,
                        vectors,
                        &sc.query,
                        sc.query_first,
                        s.values(),
                    )?),
                    // Many: one sequential pass over every vector is
                    // faster than skipping about.
                    _ => {
                        let all: Vec<u32> = (0..rows as u32).collect();
                        let scores: ArrayRef = Arc::new(score_rows(
                            sc.metric,
                            vectors,
                            &sc.query,
                            sc.query_first,
                            &all,
                        )?);
                        match sel {
                            Some(s) => take(scores.as_ref(), s, None)?,
                            None => scores,
                        }
                    }
                }
            }
            (None, Some(s)) => {
                let sub = take_record_batch(&batch, s)?;
                shared.sort[0].expr.evaluate(&sub)?.into_array(n)?
            }
            (None, None) => shared.sort[0].expr.evaluate(&batch)?.into_array(rows)?,
        };
        if shared.lean {
            return self.consider_lean(shared, batch, &first, selected.as_ref());
        }
        // Keep only rows not behind the current k-th best, nor behind the
        // k-th best of this batch (ties stay: the later keys decide them),
        // so that only about k rows are copied.
        let opts = shared.sort[0].options;
        let mut first = first;
        let mut positions: Option<UInt32Array> = None; // into `first` as computed
        if let Some(t) = &self.threshold {
            if let Some(p) = not_behind(&first, t, opts)? {
                shared.skipped.add(n - p.len());
                if p.is_empty() {
                    return Ok(());
                }
                first = take(first.as_ref(), &p, None)?;
                positions = Some(p);
            }
        }
        if first.len() > shared.fetch {
            let idx = sort_to_indices(&first, Some(opts), Some(shared.fetch))?;
            let kth = idx.value(shared.fetch - 1) as usize;
            if first.is_valid(kth) {
                let t = Scalar::new(first.slice(kth, 1));
                if let Some(p) = not_behind(&first, &t, opts)? {
                    first = take(first.as_ref(), &p, None)?;
                    positions = Some(match positions {
                        Some(prev) => take(&prev, &p, None)?
                            .as_primitive::<arrow::datatypes::UInt32Type>()
                            .clone(),
                        None => p,
                    });
                }
            }
        }
        let rows_idx = match (positions, &selected) {
            (None, None) => None,
            (None, Some(s)) => Some(s.clone()),
            (Some(p), None) => Some(p),
            (Some(p), Some(s)) => Some(
                take(s, &p, None)?
                    .as_primitive::<arrow::datatypes::UInt32Type>()
                    .clone(),
            ),
        };
        let batch = match rows_idx {
            Some(idx) => take_record_batch(&batch, &idx)?,
            None => batch,
        };
        self.pending_rows += batch.num_rows();
        self.pending.push((batch, first));
        // Until there is a threshold every row is a candidate: merge at
        // once to get one.
        if self.threshold.is_none() || self.pending_rows >= shared.fetch {
            self.flush(shared)?;
        }
        Ok(())
    }

    /// The lean path of [`Best::consider`]: `first` holds the distances
    /// of the rows `selected` (all rows if `None`) of `batch`.
    pub(crate) fn consider_lean(
        &mut self,
        shared: &Shared,
        batch: RecordBatch,
        first: &ArrayRef,
        selected: Option<&UInt32Array>,
    ) -> Result<()> {
        let scores = first.as_primitive::<arrow::datatypes::Float64Type>();
        let keys = batch.column(shared.key_idx);
        let opts = shared.sort[0].options;
        let at = self.kept.len() as u32;
        let (mut used, mut skipped) = (false, 0);
        for i in 0..scores.len() {
            let value = scores.is_valid(i).then(|| scores.value(i));
            let (class, rank) = place(value, opts);
            let row = selected.map_or(i, |s| s.value(i) as usize);
            if self.heap.len() == shared.fetch {
                let worst = self.heap.peek().expect("k rows");
                match (class, rank).cmp(&(worst.class, worst.rank)) {
                    std::cmp::Ordering::Greater => {
                        skipped += 1;
                        continue;
                    }
                    // A tie on the distance: the primary key decides.
                    std::cmp::Ordering::Equal
                        if Key::from(key_at(keys.as_ref(), row)) >= worst.key =>
                    {
                        skipped += 1;
                        continue;
                    }
                    _ => {}
                }
                self.heap.pop();
            }
            self.heap.push(Candidate {
                class,
                rank,
                key: key_at(keys.as_ref(), row).into(),
                batch: at,
                row: row as u32,
            });
            used = true;
        }
        shared.skipped.add(skipped);
        if used {
            self.kept.push(match &shared.carry {
                Some(columns) => batch.project(columns)?,
                None => batch,
            });
            if self.kept.len() >= MAX_KEPT_BATCHES {
                self.compact(shared)?;
            }
        }
        Ok(())
    }

    /// Copies the rows of the lean heap out of the batches they are in
    /// into one batch, in order, and points the heap at it; returns that
    /// batch with its distances.
    pub(crate) fn compact(&mut self, shared: &Shared) -> Result<Option<(RecordBatch, ArrayRef)>> {
        if self.heap.is_empty() {
            self.kept.clear();
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.heap).into_sorted_vec();
        let at: Vec<(usize, usize)> = rows
            .iter()
            .map(|c| (c.batch as usize, c.row as usize))
            .collect();
        let kept: Vec<&RecordBatch> = self.kept.iter().collect();
        let batch = interleave_record_batch(&kept, &at)?;
        let opts = shared.sort[0].options;
        let first: ArrayRef = Arc::new(arrow::array::Float64Array::from_iter(
            rows.iter().map(|c| unplace(c.class, c.rank, opts)),
        ));
        self.heap = rows
            .into_iter()
            .enumerate()
            .map(|(i, c)| Candidate {
                batch: 0,
                row: i as u32,
                ..c
            })
            .collect();
        self.kept = vec![batch.clone()];
        Ok(Some((batch, first)))
    }

    /// Merges the pending rows into the best rows.
    pub(crate) fn flush(&mut self, shared: &Shared) -> Result<()> {
        if shared.lean {
            if let Some((batch, first)) = self.compact(shared)? {
                self.offer(shared, batch, first)?;
            }
            return Ok(());
        }
        let (batches, firsts): (Vec<RecordBatch>, Vec<ArrayRef>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        self.pending_rows = 0;
        let (batch, first) = match batches.len() {
            0 => return Ok(()),
            1 => (batches[0].clone(), firsts[0].clone()),
            _ => {
                let firsts: Vec<&dyn Array> = firsts.iter().map(|a| a.as_ref()).collect();
                (
                    concat_batches(&batches[0].schema(), &batches)?,
                    concat(&firsts)?,
                )
            }
        };
        self.offer(shared, batch, first)
    }

    /// Merges `batch` (whose first sort key is `first`) into the best rows.
    pub(crate) fn offer(
        &mut self,
        shared: &Shared,
        batch: RecordBatch,
        first: ArrayRef,
    ) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(shared.sort.len() + 1);
        keys.push(first);
        for s in &shared.sort[1..] {
            keys.push(s.expr.evaluate(&batch)?.into_array(rows)?);
        }
        keys.push(batch.column(shared.best_key_idx).clone());
        let (batch, keys) = match self.best.take() {
            None => (batch, keys),
            Some((b, k)) => {
                let merged = concat_batches(&b.schema(), [&b, &batch])?;
                let keys = k
                    .iter()
                    .zip(&keys)
                    .map(|(a, b)| concat(&[a.as_ref(), b.as_ref()]))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                (merged, keys)
            }
        };
        let mut options: Vec<SortOptions> = shared.sort.iter().map(|s| s.options).collect();
        // The tie-break: the primary key, ascending.
        options.push(SortOptions::new(false, false));
        let columns: Vec<SortColumn> = keys
            .iter()
            .zip(options)
            .map(|(values, o)| SortColumn {
                values: values.clone(),
                options: Some(o),
            })
            .collect();
        let idx = lexsort_to_indices(&columns, Some(shared.fetch))?;
        let top = take_record_batch(&batch, &idx)?;
        let keys = keys
            .iter()
            .map(|k| take(k.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.threshold = (top.num_rows() >= shared.fetch && keys[0].is_valid(shared.fetch - 1))
            .then(|| Scalar::new(keys[0].slice(shared.fetch - 1, 1)));
        self.best = Some((top, keys));
        Ok(())
    }
}

/// Scores rows with a distance kernel directly: the first sort key is a
/// quiver distance of a `FLOAT[d]` column and a constant vector.
#[derive(Debug, Clone)]
pub(crate) struct Scorer {
    pub(crate) metric: Metric,
    pub(crate) column: usize,
    pub(crate) query: Arc<[f32]>,
    pub(crate) query_first: bool,
}

impl Scorer {
    pub(crate) fn new(
        expr: &Arc<dyn PhysicalExpr>,
        schema: &arrow::datatypes::Schema,
    ) -> Option<Self> {
        let f = expr.downcast_ref::<ScalarFunctionExpr>()?;
        let metric = f.fun().inner().downcast_ref::<DistanceUdf>()?.metric();
        let [a, b] = f.args() else {
            return None;
        };
        let (col, lit, query_first) =
            match (a.downcast_ref::<Column>(), b.downcast_ref::<Literal>()) {
                (Some(c), Some(l)) => (c, l, false),
                _ => (
                    b.downcast_ref::<Column>()?,
                    a.downcast_ref::<Literal>()?,
                    true,
                ),
            };
        match schema.field(col.index()).data_type() {
            DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => {}
            _ => return None,
        }
        Some(Self {
            metric,
            column: col.index(),
            query: crate::query::functions::distance::query_vector(lit.value())?.into(),
            query_first,
        })
    }
}

/// What every worker of one execution shares.
pub(crate) struct Shared {
    pub(crate) filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The filters that read no vector column, over the scan's scalar
    /// columns ([`MaterializeExec::scalar_columns`]), and the rest.
    pub(crate) pre_filters: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) post_filters: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) sort: Arc<[PhysicalSortExpr]>,
    pub(crate) scorer: Option<Scorer>,
    pub(crate) key_idx: usize,
    pub(crate) fetch: usize,
    /// Whether workers keep their best rows the lean way ([`Best::heap`]):
    /// the only sort key is a distance the scorer computes, and the primary
    /// key is an integer or a string.
    pub(crate) lean: bool,
    /// The lean path's columns of the keyed schema that the best rows carry
    /// on: those the output reads, and the key. A vector the distance was
    /// computed from is left behind unless it is selected, so the winners'
    /// vectors are not copied as they are merged.
    pub(crate) carry: Option<Vec<usize>>,
    /// The key's column in the best rows ([`Best::best`]): `key_idx`, or
    /// its place among the carried columns.
    pub(crate) best_key_idx: usize,
    pub(crate) scored: Count,
    pub(crate) skipped: Count,
}

/// The rows of `batch` where `mask` (if any) and every filter are true;
/// `None` for all rows.
pub(crate) fn all_true(
    filters: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
    mask: Option<BooleanArray>,
) -> Result<Option<BooleanArray>> {
    let mut mask = mask;
    for f in filters {
        let m = f.evaluate(batch)?.into_array(batch.num_rows())?;
        let m = m.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("filter {f} did not give booleans"))
        })?;
        mask = Some(match mask {
            None => m.clone(),
            Some(prev) => and(&prev, m)?,
        });
    }
    Ok(mask)
}

/// Positions of the values of `first` not behind `t` in the order `opts`
/// (equal ones included); `None` if that is all of them.
pub(crate) fn not_behind(
    first: &ArrayRef,
    t: &Scalar<ArrayRef>,
    opts: SortOptions,
) -> Result<Option<UInt32Array>> {
    let mut keep = if opts.descending {
        gt_eq(first, t)?
    } else {
        lt_eq(first, t)?
    };
    if opts.nulls_first && first.null_count() > 0 {
        keep = or_kleene(&keep, &is_null(first)?)?;
    }
    Ok((keep.true_count() < first.len()).then(|| true_positions(&keep)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::functions::distance::Metric;
    use crate::query::topk::best::{Scorer, Shared};
    use arrow::array::{FixedSizeListArray, Float32Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::PhysicalSortExpr;
    use datafusion::physical_plan::metrics::Count;
    use rand::{Rng, SeedableRng};

    /// Runs `batches` (vector column 0, key column 1) through one worker's
    /// `Best` the lean way or the general way; returns the keys and
    /// distances of the k best, in order.
    fn best_of(
        batches: &[RecordBatch],
        selections: &[Option<BooleanArray>],
        fetch: usize,
        options: SortOptions,
        lean: bool,
    ) -> (ArrayRef, ArrayRef) {
        let key = Arc::new(Column::new("id", 1)) as Arc<dyn PhysicalExpr>;
        let shared = Shared {
            filters: Vec::new(),
            pre_filters: Vec::new(),
            post_filters: Vec::new(),
            // The scorer computes the first key; only its order counts.
            sort: vec![PhysicalSortExpr::new(key, options)].into(),
            scorer: Some(Scorer {
                metric: Metric::L2,
                column: 0,
                query: vec![1.0, 0.0, 2.0].into(),
                query_first: false,
            }),
            key_idx: 1,
            fetch,
            lean,
            // The lean path leaves the vectors behind.
            carry: lean.then(|| vec![1]),
            best_key_idx: if lean { 0 } else { 1 },
            scored: Count::new(),
            skipped: Count::new(),
        };
        let mut best = Best::default();
        for (b, live) in batches.iter().zip(selections) {
            best.consider(&shared, &[], b.clone(), live.clone())
                .unwrap();
        }
        best.flush(&shared).unwrap();
        let (batch, keys) = best.best.expect("rows");
        assert_eq!(batch.num_columns(), if lean { 1 } else { 2 });
        (batch.column(shared.best_key_idx).clone(), keys[0].clone())
    }

    /// The lean path (a heap pointing into the scanned batches, compacted
    /// every [`MAX_KEPT_BATCHES`]) keeps exactly the rows the general path
    /// (merging sorted batches) keeps: same keys, same distances, same
    /// order, ties on the distance broken by key, nulls placed as asked.
    #[test]
    fn the_lean_path_keeps_the_same_rows_as_the_general_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1ea7);
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        for case in 0..60 {
            let string_keys = case % 3 == 0;
            let schema = Arc::new(Schema::new(vec![
                Field::new("v", DataType::FixedSizeList(item.clone(), 3), true),
                Field::new(
                    "id",
                    if string_keys {
                        DataType::Utf8
                    } else {
                        DataType::Int64
                    },
                    false,
                ),
            ]));
            let n_batches = rng.random_range(1..200);
            let (mut batches, mut selections) = (Vec::new(), Vec::new());
            let mut next_key = 0i64;
            for _ in 0..n_batches {
                let rows = rng.random_range(1..12);
                // Small integer coordinates: many equal distances.
                let values: Vec<f32> = (0..rows * 3)
                    .map(|_| rng.random_range(-2..3) as f32)
                    .collect();
                let nulls: Vec<bool> = (0..rows).map(|_| !rng.random_bool(0.05)).collect();
                let vectors = FixedSizeListArray::new(
                    item.clone(),
                    3,
                    Arc::new(Float32Array::from(values)),
                    Some(nulls.into()),
                );
                // Keys not in scan order, so the tie-break matters.
                let keys: Vec<i64> = (0..rows)
                    .map(|i| (next_key + i as i64) * 7919 % 100_003)
                    .collect();
                next_key += rows as i64;
                let keys: ArrayRef = if string_keys {
                    Arc::new(StringArray::from_iter_values(
                        keys.iter().map(|k| format!("k{k}")),
                    ))
                } else {
                    Arc::new(Int64Array::from(keys))
                };
                batches.push(
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(vectors), keys]).unwrap(),
                );
                selections.push(rng.random_bool(0.5).then(|| {
                    BooleanArray::from_iter((0..rows).map(|_| Some(rng.random_bool(0.4))))
                }));
            }
            let fetch = [1, 2, 10, 57, 500][rng.random_range(0..5)];
            let options = SortOptions::new(rng.random_bool(0.5), rng.random_bool(0.5));
            let lean = best_of(&batches, &selections, fetch, options, true);
            let general = best_of(&batches, &selections, fetch, options, false);
            assert_eq!(lean.0.as_ref(), general.0.as_ref(), "case {case}: keys");
            assert_eq!(
                lean.1.as_ref(),
                general.1.as_ref(),
                "case {case}: distances"
            );
        }
    }

    #[test]
    fn place_orders_distances_as_arrow_sorts_them() {
        let values = [
            None,
            Some(f64::NEG_INFINITY),
            Some(-1.5),
            Some(-0.0),
            Some(0.0),
            Some(2.0),
            Some(f64::INFINITY),
            Some(f64::NAN),
        ];
        let array: ArrayRef = Arc::new(arrow::array::Float64Array::from(values.to_vec()));
        for (descending, nulls_first) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let opts = SortOptions::new(descending, nulls_first);
            let by_arrow = sort_to_indices(&array, Some(opts), None).unwrap();
            let mut by_place: Vec<u32> = (0..values.len() as u32).collect();
            by_place.sort_by_key(|&i| place(values[i as usize], opts));
            assert_eq!(by_arrow.values().to_vec(), by_place, "{opts:?}");
            for v in values {
                let (class, rank) = place(v, opts);
                let back = unplace(class, rank, opts);
                assert_eq!(back.map(f64::to_bits), v.map(f64::to_bits));
            }
        }
    }
}
