//! Physical templates: an optimized physical plan kept with its scans
//! cut out, so a later run with other vectors or a newer manifest is built
//! by putting fresh scans under it instead of planning again.

use crate::query::plan_cache::bind::is_list;
use crate::query::plan_cache::bind::list_len;
use crate::query::topk::{TopKTemplate, VectorTopKExec};
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use std::collections::HashMap;
use std::sync::Arc;

/// The physical plan of a fused vector top-k over one collection, without
/// its scan and with its query vectors known by name, so the plan for
/// other vectors over the collection's latest version is built without
/// DataFusion's physical planner and optimizer. It holds no collection
/// data: the scan is planned for the run, or taken from the run before
/// over the same version ([`ScanMemo`]).
#[derive(Debug)]
pub struct PhysicalTemplate {
    /// From the top: the operators above the top-k.
    pub(crate) above: Vec<Above>,
    pub(crate) topk: TopKTemplate,
    /// Each vector literal of the plan, and the parameter it is the value
    /// of (cast to the literal's type).
    pub(crate) literals: Vec<(ScalarValue, String)>,
}

/// An operator above the fused top-k.
#[derive(Debug)]
pub(crate) enum Above {
    Projection(Vec<ProjectionExpr>, SchemaRef),
    GlobalLimit(usize, Option<usize>),
    LocalLimit(usize),
    Cooperative,
    CoalescePartitions(Option<usize>),
}

impl PhysicalTemplate {
    /// The template of `plan`, planned with the parameter values
    /// `vectors`: `None` unless it is a fused top-k over a collection scan
    /// under only projections, limits and merges, and each of its vector
    /// literals of at least `min` numbers is the value of exactly one
    /// parameter (a shorter list is part of the query's text, not a
    /// parameter).
    pub fn capture(
        plan: &Arc<dyn ExecutionPlan>,
        vectors: &HashMap<String, ScalarValue>,
        min: usize,
    ) -> Option<Self> {
        let mut above = Vec::new();
        let mut node = plan.clone();
        let topk = loop {
            if let Some(t) = node.downcast_ref::<VectorTopKExec>() {
                break t.template()?;
            }
            let next = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                above.push(Above::Projection(p.expr().to_vec(), p.schema()));
                p.input().clone()
            } else if let Some(l) = node.downcast_ref::<GlobalLimitExec>() {
                above.push(Above::GlobalLimit(l.skip(), l.fetch()));
                l.input().clone()
            } else if let Some(l) = node.downcast_ref::<LocalLimitExec>() {
                above.push(Above::LocalLimit(l.fetch()));
                l.input().clone()
            } else if let Some(c) = node.downcast_ref::<CooperativeExec>() {
                above.push(Above::Cooperative);
                c.input().clone()
            } else if let Some(c) = node.downcast_ref::<CoalescePartitionsExec>() {
                above.push(Above::CoalescePartitions(c.fetch()));
                c.input().clone()
            } else {
                return None;
            };
            node = next;
        };
        let mut found = Vec::new();
        let exprs = above
            .iter()
            .flat_map(|a| match a {
                Above::Projection(p, _) => p.iter().map(|e| &e.expr).collect(),
                _ => Vec::new(),
            })
            .chain(topk.expressions());
        for e in exprs {
            let _ = e.apply(|e| {
                if let Some(l) = e.downcast_ref::<Literal>() {
                    if is_list(l.value()) {
                        found.push(l.value().clone());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        let mut literals: Vec<(ScalarValue, String)> = Vec::new();
        for value in found {
            if literals.iter().any(|(v, _)| *v == value) {
                continue;
            }
            let to = value.data_type();
            let names: Vec<&String> = vectors
                .iter()
                .filter(|(_, v)| v.cast_to(&to).is_ok_and(|c| c == value))
                .map(|(n, _)| n)
                .collect();
            match names[..] {
                [name] => literals.push((value, name.clone())),
                [] if list_len(&value).is_some_and(|n| n < min) => {}
                _ => return None,
            }
        }
        Some(Self {
            above,
            topk,
            literals,
        })
    }

    /// The plan over `scan` (the collection planned afresh) with the
    /// parameter values `vectors`; `None` if `scan` is not a scan the
    /// template can run over (all of the collection pruned, say).
    pub fn build(
        &self,
        scan: Arc<dyn ExecutionPlan>,
        vectors: &HashMap<String, ScalarValue>,
    ) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
        use datafusion::error::DataFusionError;
        let rebind =
            |e: &Arc<dyn PhysicalExpr>| -> datafusion::error::Result<Arc<dyn PhysicalExpr>> {
                e.clone()
                    .transform(|e| {
                        let Some(l) = e.downcast_ref::<Literal>() else {
                            return Ok(Transformed::no(e));
                        };
                        let Some((old, name)) = self.literals.iter().find(|(v, _)| v == l.value())
                        else {
                            return Ok(Transformed::no(e));
                        };
                        let value = vectors.get(name).ok_or_else(|| {
                            DataFusionError::Plan(format!("no value for parameter ${name}"))
                        })?;
                        let value = value.cast_to(&old.data_type())?;
                        Ok(Transformed::yes(
                            Arc::new(Literal::new(value)) as Arc<dyn PhysicalExpr>
                        ))
                    })
                    .map(|t| t.data)
            };
        let Some(mut plan) = self.topk.build(scan, &rebind)? else {
            return Ok(None);
        };
        for a in self.above.iter().rev() {
            plan = match a {
                Above::Projection(exprs, schema) => {
                    let exprs = exprs
                        .iter()
                        .map(|p| {
                            Ok(ProjectionExpr {
                                expr: rebind(&p.expr)?,
                                alias: p.alias.clone(),
                            })
                        })
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    Arc::new(ProjectionExec::try_new_with_schema_metadata(
                        exprs,
                        plan,
                        schema.as_ref(),
                    )?)
                }
                Above::GlobalLimit(skip, fetch) => {
                    Arc::new(GlobalLimitExec::new(plan, *skip, *fetch))
                }
                Above::LocalLimit(fetch) => Arc::new(LocalLimitExec::new(plan, *fetch)),
                Above::Cooperative => Arc::new(CooperativeExec::new(plan)),
                Above::CoalescePartitions(fetch) => {
                    Arc::new(CoalescePartitionsExec::new(plan).with_fetch(*fetch))
                }
            };
        }
        Ok(Some(plan))
    }
}
