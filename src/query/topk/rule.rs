//! `FuseVectorTopK`, the physical optimizer rule: a `SortExec` with a fetch
//! whose first key is a quiver distance of a column and a constant vector,
//! over projections, filters and repartitions down to a collection scan,
//! becomes one `VectorTopKExec`.

use crate::query::collection::MaterializeExec;
use crate::query::functions::bits::BitDistanceUdf;
use crate::query::functions::distance::DistanceUdf;
use crate::query::topk::exec::VectorTopKExec;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use std::sync::Arc;

/// The physical optimizer rule that plans [`VectorTopKExec`].
#[derive(Debug, Default)]
pub struct FuseVectorTopK {
    /// How the fused operators may search through vector indexes.
    pub settings: crate::query::topk::ann::SearchSettings,
}

impl PhysicalOptimizerRule for FuseVectorTopK {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A session's own settings, else the server's.
        let settings = config
            .extensions
            .get::<crate::query::topk::ann::SearchConfig>()
            .map_or(self.settings, |c| c.settings());
        plan.transform_down(|node| {
            // A merge of per-partition top-k sorts: the fused operator
            // replaces both.
            if let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() {
                if let Some(sort) = merge.input().downcast_ref::<SortExec>() {
                    if merge.fetch().is_some()
                        && merge.fetch() == sort.fetch()
                        && merge.expr() == sort.expr()
                    {
                        if let Some(fused) = fuse(sort, settings)? {
                            return Ok(Transformed::new(fused, true, TreeNodeRecursion::Jump));
                        }
                    }
                }
                return Ok(Transformed::no(node));
            }
            if let Some(sort) = node.downcast_ref::<SortExec>() {
                // A sort that keeps its input's partitions feeds a parent
                // that expects them (other than the merge handled above):
                // leave it, unless there is one partition anyway.
                let partitions = sort.input().output_partitioning().partition_count();
                if sort.preserve_partitioning() && partitions > 1 {
                    return Ok(Transformed::no(node));
                }
                if let Some(fused) = fuse(sort, settings)? {
                    return Ok(Transformed::new(fused, true, TreeNodeRecursion::Jump));
                }
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "fuse_vector_topk"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Rewrites `expr` (over a node's output) to an expression over the node's
/// input, given the expressions that produce each output column.
pub(crate) fn substitute(
    expr: &Arc<dyn PhysicalExpr>,
    outputs: &[Arc<dyn PhysicalExpr>],
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.clone()
        .transform(|e| {
            if let Some(c) = e.downcast_ref::<Column>() {
                let Some(src) = outputs.get(c.index()) else {
                    return Err(DataFusionError::Internal(format!(
                        "column {c} is out of range while fusing a vector top-k"
                    )));
                };
                return Ok(Transformed::yes(src.clone()));
            }
            Ok(Transformed::no(e))
        })
        .map(|t| t.data)
}

/// The expressions the rule carries down the plan, all over the schema of
/// the node it is looking at.
pub(crate) struct Carried {
    pub(crate) sort: Vec<PhysicalSortExpr>,
    pub(crate) outputs: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) filters: Vec<Arc<dyn PhysicalExpr>>,
}

impl Carried {
    pub(crate) fn rewrite(&mut self, through: &[Arc<dyn PhysicalExpr>]) -> Result<()> {
        for s in &mut self.sort {
            s.expr = substitute(&s.expr, through)?;
        }
        for e in self.outputs.iter_mut().chain(self.filters.iter_mut()) {
            *e = substitute(e, through)?;
        }
        Ok(())
    }
}

/// Whether `expr` is a quiver distance of a column and a literal.
pub(crate) fn is_vector_distance(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let Some(f) = expr.downcast_ref::<ScalarFunctionExpr>() else {
        return false;
    };
    let inner = f.fun().inner();
    if inner.downcast_ref::<DistanceUdf>().is_none()
        && inner.downcast_ref::<BitDistanceUdf>().is_none()
    {
        return false;
    }
    let [a, b] = f.args() else {
        return false;
    };
    let is_col = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().is_some();
    let is_lit = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some();
    (is_col(a) && is_lit(b)) || (is_lit(a) && is_col(b))
}

/// The fused operator for `sort`, if its plan has a shape the rule knows.
pub(crate) fn fuse(
    sort: &SortExec,
    settings: crate::query::topk::ann::SearchSettings,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(fetch) = sort.fetch() else {
        return Ok(None);
    };
    let input_schema = sort.input().schema();
    let mut carried = Carried {
        sort: sort.expr().iter().cloned().collect(),
        outputs: input_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect(),
        filters: Vec::new(),
    };
    let mut node = sort.input().clone();
    let leaf = loop {
        if node.downcast_ref::<MaterializeExec>().is_some() {
            break node;
        }
        // A limit inside the chain would have to run before the top-k.
        if node.fetch().is_some() {
            return Ok(None);
        }
        let next = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
            let through: Vec<_> = p.expr().iter().map(|e| e.expr.clone()).collect();
            carried.rewrite(&through)?;
            p.input().clone()
        } else if let Some(f) = node.downcast_ref::<FilterExec>() {
            let in_schema = f.input().schema();
            if let Some(projection) = f.projection() {
                let through: Vec<Arc<dyn PhysicalExpr>> = projection
                    .iter()
                    .map(|&i| {
                        Arc::new(Column::new(in_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                carried.rewrite(&through)?;
            }
            carried.filters.push(f.predicate().clone());
            f.input().clone()
        } else if let Some(r) = node.downcast_ref::<RepartitionExec>() {
            r.input().clone()
        } else if let Some(c) = node.downcast_ref::<CoalescePartitionsExec>() {
            c.input().clone()
        } else if let Some(c) = node.downcast_ref::<CooperativeExec>() {
            c.input().clone()
        } else {
            return Ok(None);
        };
        node = next;
    };
    if !is_vector_distance(&carried.sort[0].expr) {
        return Ok(None);
    }
    Ok(Some(Arc::new(VectorTopKExec::try_new(
        leaf,
        carried.filters,
        carried.sort,
        carried.outputs,
        sort.expr().clone(),
        sort.schema(),
        fetch,
        settings,
    )?)))
}
