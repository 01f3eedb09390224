//! What may be cached and how a cached plan is reused: cacheability
//! checks, unpinning a plan from its manifest versions, and binding
//! parameter values (cast and folded) into it.

use crate::error::Result;
use crate::query::collection::CollectionTable;
use crate::query::plan_cache::CollectionRef;
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{Cast, Placeholder, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use std::collections::HashMap;
use std::sync::Arc;

/// Whether the (unoptimized) plan of a query may be cached: it reads at
/// least one collection, every scan reads a collection at its latest
/// version, and it calls no function whose result may change between runs.
pub fn cacheable(plan: &LogicalPlan) -> bool {
    if matches!(
        plan,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
    ) {
        return false;
    }
    let mut scans = 0;
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(s) = node {
            let latest = source_as_provider(&s.source).is_ok_and(|p| {
                p.downcast_ref::<CollectionTable>()
                    .is_some_and(|t| t.is_latest())
            });
            if !latest {
                ok = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            scans += 1;
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.signature().volatility != Volatility::Immutable {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok && scans > 0
}

/// Whether every parameter of the optimized plan sits directly in a cast
/// (the type the analyzer gave it), so binding can fold a value.
pub fn parameters_in_casts(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. })
                        if matches!(expr.as_ref(), Expr::Placeholder(_)) =>
                    {
                        return Ok(TreeNodeRecursion::Jump);
                    }
                    Expr::Placeholder(_) => {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    ok
}

/// Whether every parameter of the optimized plan is a query vector that
/// sits directly in a cast to a list type, and the plan holds no list
/// literal of its own: a prepared query whose parameters the client binds
/// can then be cached and run from its physical template, where each list
/// literal is the value of a parameter.
pub fn vector_parameters_only(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let mut parameters = 0;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
                        if matches!(expr.as_ref(), Expr::Placeholder(_)) =>
                    {
                        if !matches!(
                            field.data_type(),
                            DataType::List(_)
                                | DataType::LargeList(_)
                                | DataType::FixedSizeList(..)
                        ) {
                            ok = false;
                            return Ok(TreeNodeRecursion::Stop);
                        }
                        parameters += 1;
                        return Ok(TreeNodeRecursion::Jump);
                    }
                    Expr::Placeholder(_) => {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Expr::Literal(v, _) if is_list(v) => {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    ok && parameters > 0
}

/// The plan with its collections replaced by [`CollectionRef`]s, so the
/// cache holds no collection data.
pub fn unpin(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = plan.transform_up_with_subqueries(|node| {
        Ok(match node {
            LogicalPlan::TableScan(mut s) => {
                let provider = source_as_provider(&s.source)?;
                match provider.downcast_ref::<CollectionTable>() {
                    Some(t) => {
                        s.source = Arc::new(CollectionRef {
                            name: t.manifest().collection.clone(),
                            system_columns: t.has_system_columns(),
                            schema: s.source.schema(),
                        });
                        Transformed::yes(LogicalPlan::TableScan(s))
                    }
                    None => Transformed::no(LogicalPlan::TableScan(s)),
                }
            }
            other => Transformed::no(other),
        })
    })?;
    Ok(plan.data)
}

/// Binds query vectors into an optimized plan: each `CAST($name AS T)` the
/// analyzer made becomes the value cast to `T`, under the name the
/// expression had, so the plan's schemas stay as they are.
pub fn bind(plan: LogicalPlan, values: &HashMap<String, ScalarValue>) -> Result<LogicalPlan> {
    if values.is_empty() {
        return Ok(plan);
    }
    let plan = plan.transform_up_with_subqueries(|node| {
        // Plans whose expressions make their output columns keep the
        // names; the others' expressions name nothing.
        let keep_names = !matches!(
            node,
            LogicalPlan::Filter(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Statement(_)
        );
        node.map_expressions(|e| {
            if !has_placeholder(&e) {
                return Ok(Transformed::no(e));
            }
            let name = match (&e, keep_names) {
                (Expr::Alias(_), _) | (_, false) => None,
                _ => Some(e.qualified_name()),
            };
            let bound = e.transform_down(|e| fold(e, values))?.data;
            Ok(Transformed::yes(match name {
                Some((relation, name)) => bound.alias_qualified(relation, name),
                None => bound,
            }))
        })
    })?;
    Ok(plan.data)
}

pub(crate) fn has_placeholder(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::Placeholder(_))))
        .unwrap_or(false)
}

/// The parameter's value cast to `to`, if `e` is `CAST($name AS to)`.
pub(crate) fn cast_parameter(
    e: &Expr,
    values: &HashMap<String, ScalarValue>,
) -> Option<std::result::Result<(ScalarValue, DataType, String), String>> {
    let (inner, to) = match e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return None,
    };
    let Expr::Placeholder(Placeholder { id, .. }) = inner else {
        return None;
    };
    let Some(value) = values.get(id.trim_start_matches('$')) else {
        return Some(Err(format!("no value for parameter {id}")));
    };
    Some(Ok((value.clone(), to.clone(), id.clone())))
}

pub(crate) fn list_len(v: &ScalarValue) -> Option<usize> {
    match v {
        ScalarValue::List(a) => Some(a.value_length(0) as usize),
        ScalarValue::FixedSizeList(a) => Some(a.value_length() as usize),
        _ => None,
    }
}

pub(crate) fn fold(
    e: Expr,
    values: &HashMap<String, ScalarValue>,
) -> datafusion::error::Result<Transformed<Expr>> {
    use datafusion::error::DataFusionError;
    let cast = |value: ScalarValue, to: &DataType, id: &str| {
        value.cast_to(to).map_err(|err| {
            DataFusionError::Plan(format!("query vector {id}: cannot use it as {to}: {err}"))
        })
    };
    match e {
        // A distance function's vector: its dimension must be the column's.
        Expr::ScalarFunction(mut f) => {
            let mut changed = false;
            for i in 0..f.args.len() {
                let Some(found) = cast_parameter(&f.args[i], values) else {
                    continue;
                };
                let (value, to, id) = found.map_err(DataFusionError::Plan)?;
                // The analyzer gave the parameter the other vector's type.
                if let (DataType::FixedSizeList(_, d), Some(n)) = (&to, list_len(&value)) {
                    if n != *d as usize {
                        let (a, b) = if i == 0 {
                            (n, *d as usize)
                        } else {
                            (*d as usize, n)
                        };
                        return Err(DataFusionError::Plan(format!(
                            "{}: the vectors have different dimensions ({a} and {b})",
                            f.name()
                        )));
                    }
                }
                f.args[i] = Expr::Literal(cast(value, &to, &id)?, None);
                changed = true;
            }
            Ok(if changed {
                Transformed::yes(Expr::ScalarFunction(f))
            } else {
                Transformed::no(Expr::ScalarFunction(f))
            })
        }
        e => match cast_parameter(&e, values) {
            Some(found) => {
                let (value, to, id) = found.map_err(DataFusionError::Plan)?;
                Ok(Transformed::yes(Expr::Literal(
                    cast(value, &to, &id)?,
                    None,
                )))
            }
            None => Ok(Transformed::no(e)),
        },
    }
}

pub fn is_list(v: &ScalarValue) -> bool {
    matches!(
        v,
        ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_)
    )
}
