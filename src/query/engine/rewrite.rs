//! Rewrites of a parsed statement before planning: positional
//! placeholders numbered, long fractional literals widened to nanoseconds,
//! large vector literals hoisted out (so the plan cache sees one text), and
//! checks of what a statement names.

use crate::error::Result;
use crate::query::plan_cache;
use crate::storage::format::schema::{ID_COLUMN, ROW_COLUMN, SEG_COLUMN, TS_COLUMN};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use std::collections::HashMap;

/// Whether the statement is a DELETE or an UPDATE.
pub(crate) fn is_delete_or_update(stmt: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as S;
    match stmt {
        DFStatement::Statement(s) => matches!(s.as_ref(), S::Delete(_) | S::Update(_)),
        DFStatement::Explain(e) => is_delete_or_update(&e.statement),
        _ => false,
    }
}

/// Whether the statement names `_ts`, `_seg`, `_row` or `_id`.
pub(crate) fn names_system_column(stmt: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
    use std::ops::ControlFlow;
    let inner = match stmt {
        DFStatement::Statement(s) => s.as_ref(),
        DFStatement::Explain(e) => return names_system_column(&e.statement),
        _ => return false,
    };
    let system = |name: &str| [TS_COLUMN, SEG_COLUMN, ROW_COLUMN, ID_COLUMN].contains(&name);
    visit_expressions(inner, |e: &Expr| {
        let hit = match e {
            Expr::Identifier(i) => system(&i.value),
            Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|i| system(&i.value)),
            _ => false,
        };
        if hit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Rewrites positional `?` placeholders (JDBC / ODBC style) to `$1`, `$2`,
/// ... in the order they appear in the text, which DataFusion binds.
pub(crate) fn number_positional_placeholders(stmt: &mut DFStatement) {
    use datafusion::sql::sqlparser::ast::{visit_expressions, visit_expressions_mut, Expr, Value};
    use std::ops::ControlFlow;
    let DFStatement::Statement(inner) = stmt else {
        return;
    };
    let is_positional = |e: &Expr| matches!(e, Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if p == "?"));
    let mut positions = Vec::new();
    let _ = visit_expressions(inner.as_ref(), |e: &Expr| {
        if let (true, Expr::Value(v)) = (is_positional(e), e) {
            positions.push((v.span.start.line, v.span.start.column));
        }
        ControlFlow::<()>::Continue(())
    });
    if positions.is_empty() {
        return;
    }
    positions.sort();
    let _ = visit_expressions_mut(inner.as_mut(), |e: &mut Expr| {
        if is_positional(e) {
            if let Expr::Value(v) = e {
                let at = (v.span.start.line, v.span.start.column);
                let n = positions.iter().position(|p| *p == at).map_or(0, |i| i + 1);
                v.value = Value::Placeholder(format!("${n}"));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Gives a `TIME '..'` or `TIMESTAMP '..'` literal with more than six
/// fractional digits nanoseconds (`TIME(9)`, `TIMESTAMP(9)`): without a
/// precision such literals are microseconds (see `VectorTypePlanner`), so
/// `TIMESTAMP '2023-05-15 13:45:30.123456789'` would lose its last digits.
pub(crate) fn widen_fractional_literals(stmt: &mut DFStatement) {
    use datafusion::sql::sqlparser::ast::{visit_expressions_mut, DataType as Sql, Expr, Value};
    use std::ops::ControlFlow;
    let DFStatement::Statement(inner) = stmt else {
        return;
    };
    let _ = visit_expressions_mut(inner.as_mut(), |e: &mut Expr| {
        if let Expr::TypedString(ts) = e {
            let text = match &ts.value.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.as_str()),
                _ => None,
            };
            let fraction = text
                .and_then(|s| s.split_once('.'))
                .map(|(_, f)| f.chars().take_while(|c| c.is_ascii_digit()).count())
                .unwrap_or(0);
            if fraction > 6 {
                match &mut ts.data_type {
                    Sql::Timestamp(p @ None, _) | Sql::Time(p @ None, _) => *p = Some(9),
                    _ => {}
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Array literals of at least this many numbers are query vectors.
pub(crate) const VECTOR_LITERAL_MIN: usize = 16;

/// Replaces the long numeric array literals (query vectors) of a query with
/// named parameters, returning their values to bind after planning.
/// DataFusion would otherwise coerce, fold and format every element of a
/// `make_array(...)` in each optimizer pass: ~5 ms for a 768-number vector.
/// Only for queries without parameters of their own (a statement binds
/// either positional or named values): `None` for other statements.
pub(crate) fn hoist_vector_literals(stmt: &mut DFStatement) -> Option<Vec<(String, ScalarValue)>> {
    use datafusion::sql::sqlparser::ast::{
        visit_expressions, visit_expressions_mut, Expr, Statement as Sql, UnaryOperator, Value,
    };
    use std::ops::ControlFlow;
    let DFStatement::Statement(inner) = stmt else {
        return None;
    };
    if !matches!(inner.as_ref(), Sql::Query(_)) {
        return None;
    }
    let has_placeholders = visit_expressions(inner.as_ref(), |e: &Expr| match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    if has_placeholders {
        return None;
    }
    // The number a literal element spells, and whether it is an integer.
    pub(crate) fn number(e: &Expr) -> Option<(f64, bool)> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => {
                    let int = !n.contains(['.', 'e', 'E']);
                    n.parse::<f64>().ok().map(|x| (x, int))
                }
                _ => None,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => number(expr).map(|(x, int)| (-x, int)),
            Expr::Nested(e) => number(e),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let _ = visit_expressions_mut(inner.as_mut(), |e: &mut Expr| {
        if let Expr::Array(a) = e {
            if a.elem.len() >= VECTOR_LITERAL_MIN {
                let xs: Option<Vec<(f64, bool)>> = a.elem.iter().map(number).collect();
                if let Some(xs) = xs {
                    // Integers stay integers (as DataFusion would type
                    // them) when every element is one and fits.
                    let list = plan_cache::vector_value(&xs);
                    let name = format!("quiver_vector_{}", out.len() + 1);
                    *e = Expr::value(Value::Placeholder(format!("${name}")));
                    out.push((name, list));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Some(out)
}

/// Whether `stmt` is a plain query (`SELECT`, `WITH`, `VALUES`, ...).
pub(crate) fn is_sql_query(stmt: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    matches!(stmt, DFStatement::Statement(s) if matches!(s.as_ref(), Sql::Query(_)))
}

/// Binds hoisted query vectors into an unoptimized plan, each converted
/// to the type DataFusion inferred for its parameter, if any.
pub(crate) fn bind_vectors(
    plan: LogicalPlan,
    vectors: HashMap<String, ScalarValue>,
) -> Result<LogicalPlan> {
    if vectors.is_empty() {
        return Ok(plan);
    }
    let types = plan.get_parameter_types()?;
    let mut values = HashMap::new();
    for (name, v) in vectors {
        let v = match types.get(&format!("${name}")).cloned().flatten() {
            Some(dt) if dt != v.data_type() => v.cast_to(&dt)?,
            _ => v,
        };
        values.insert(name, v);
    }
    Ok(plan.with_param_values(ParamValues::from(values))?)
}
