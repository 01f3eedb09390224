//! `UnifyTimeUnits`: lets a time-of-day column of any unit be compared with
//! a time of another unit. DataFusion 55 finds no common type for
//! `Time64(µs) >= Time64(ns)`, so `WHERE t >= TIME '12:00:00'` (a
//! nanosecond literal) failed on any column stored in seconds,
//! milliseconds or microseconds. This analyzer rule, run before type
//! coercion, casts the other side of such a comparison to the column's
//! type (two columns, or two non-columns, meet at nanoseconds), so the
//! filter still reaches the Parquet scan and prunes on statistics.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct UnifyTimeUnits;

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Time32(_) | DataType::Time64(_))
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(b) = &e else {
        return Ok(Transformed::no(e));
    };
    use datafusion::logical_expr::Operator::*;
    if !matches!(
        b.op,
        Eq | NotEq | Lt | LtEq | Gt | GtEq | IsDistinctFrom | IsNotDistinctFrom
    ) {
        return Ok(Transformed::no(e));
    }
    let (Ok(lt), Ok(rt)) = (b.left.get_type(schema), b.right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    if !is_time(&lt) || !is_time(&rt) || lt == rt {
        return Ok(Transformed::no(e));
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        unreachable!("matched above")
    };
    let ns = DataType::Time64(TimeUnit::Nanosecond);
    let (left, right) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(_), r) if !matches!(r, Expr::Column(_)) => {
            (*left, right.cast_to(&lt, schema)?)
        }
        (l, Expr::Column(_)) if !matches!(l, Expr::Column(_)) => {
            (left.cast_to(&rt, schema)?, *right)
        }
        _ => (left.cast_to(&ns, schema)?, right.cast_to(&ns, schema)?),
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        Box::new(left),
        op,
        Box::new(right),
    ))))
}

impl AnalyzerRule for UnifyTimeUnits {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // Most plans read no time column: leave them alone at the cost of
        // one look at each node's columns.
        let mut times = false;
        plan.apply_with_subqueries(|node| {
            times |= node
                .schema()
                .fields()
                .iter()
                .any(|f| is_time(f.data_type()));
            Ok(if times {
                datafusion::common::tree_node::TreeNodeRecursion::Stop
            } else {
                datafusion::common::tree_node::TreeNodeRecursion::Continue
            })
        })?;
        if !times {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            // The expressions of a node read its inputs' columns (a table
            // scan's filters read the scan's own).
            let mut schema = DFSchema::empty();
            let inputs = node.inputs();
            if inputs.is_empty() {
                schema.merge(node.schema());
            }
            for input in inputs {
                schema.merge(input.schema());
            }
            // Keep the expressions' names: the nodes above refer to them.
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                Ok(e.transform_up(|e| rewrite(e, &schema))?
                    .update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "unify_time_units"
    }
}
