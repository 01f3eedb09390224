//! One worker's share of a fused top-k: scan units taken from the shared
//! queue, filters applied, rows scored (yielding every millisecond when
//! scoring from memory), and rows that cannot beat the current k-th
//! skipped.

use crate::query::collection::{MaterializeExec, ScanUnit};
use crate::query::topk::best::Best;
use crate::query::topk::best::{all_true, Shared};
use arrow::array::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
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
