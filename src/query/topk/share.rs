//! One worker's share of a fused top-k: scan units taken from the shared
//! queue, filters applied, rows scored (yielding every millisecond when
//! scoring from memory), and rows that cannot beat the current k-th
//! skipped.

use crate::query::collection::{true_positions, MaterializeExec, ScanUnit};
use crate::query::functions::distance::{DistanceUdf, Metric};
use crate::query::topk::best::Best;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, Scalar, UInt32Array};
use arrow::compute::kernels::boolean::and;
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::compute::{is_null, or_kleene, SortOptions};
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr, ScalarFunctionExpr};
use datafusion::physical_plan::metrics::Count;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// How long a worker's share of a resident scan runs before it lets other
/// tasks have the worker (between two units).
pub(crate) const SHARE_SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// Worker `w`'s share of a resident scan: every `workers`-th unit from
/// the `w`-th, filtered, scored and kept in a [`Best`] of its own.
pub(crate) async fn scan_share(
    input: Arc<dyn ExecutionPlan>,
    units: Arc<Vec<ScanUnit>>,
    shared: Arc<Shared>,
    w: usize,
    workers: usize,
) -> Result<Best> {
    let started = std::time::Instant::now();
    let scan = input
        .downcast_ref::<MaterializeExec>()
        .expect("checked in try_new");
    let mut best = Best::default();
    let (mut n_units, mut rows) = (0usize, 0usize);
    // Sparse selections of cached vectors are scored where they lie when
    // the scorer reads only the selected rows: no filter reads a vector.
    let in_place = shared.scorer.is_some() && shared.post_filters.is_empty();
    let prefilter = |b: &RecordBatch| all_true(&shared.pre_filters, b, None);
    let mut slice = std::time::Instant::now();
    for unit in units.iter().skip(w).step_by(workers) {
        for (batch, live) in scan.load_unit(*unit, &prefilter, in_place).await? {
            rows += batch.num_rows();
            best.consider(&shared, &shared.post_filters, batch, live)?;
        }
        n_units += 1;
        // Units come from memory, so nothing above waits: a long share
        // gives its worker up now and then, letting the other queries'
        // tasks run between its units rather than after all of them.
        if slice.elapsed() >= SHARE_SLICE {
            tokio::task::yield_now().await;
            slice = std::time::Instant::now();
        }
    }
    best.flush(&shared)?;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        units = n_units,
        rows,
        "scan finished"
    );
    Ok(best)
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

pub(crate) type Filters = Vec<Arc<dyn PhysicalExpr>>;

/// Splits `filters` (over the scan's keyed schema) into those that read
/// only `scalar` columns, rewritten over a batch of just those columns,
/// and the others.
pub(crate) fn split_filters(
    filters: &[Arc<dyn PhysicalExpr>],
    scalar: &[usize],
) -> Result<(Filters, Filters)> {
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    for f in filters {
        let mut only_scalar = true;
        f.apply(|e| {
            if let Some(c) = e.downcast_ref::<Column>() {
                only_scalar &= scalar.contains(&c.index());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if !only_scalar {
            post.push(f.clone());
            continue;
        }
        let remapped = f
            .clone()
            .transform(|e| {
                if let Some(c) = e.downcast_ref::<Column>() {
                    let at = scalar
                        .iter()
                        .position(|&i| i == c.index())
                        .expect("checked");
                    return Ok(Transformed::yes(
                        Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>
                    ));
                }
                Ok(Transformed::no(e))
            })?
            .data;
        pre.push(remapped);
    }
    Ok((pre, post))
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
