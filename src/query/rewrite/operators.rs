//! pgvector's distance operators in SQL: `a <-> b` is `l2_distance(a, b)`,
//! `a <=> b` is `cosine_distance(a, b)` (when both sides are vectors; on
//! other values it keeps its meaning, IS NOT DISTINCT FROM), `a <#> b` is
//! `negative_inner_product(a, b)` and `a <+> b` is `l1_distance(a, b)`.
//!
//! DataFusion's default (generic) SQL dialect reads `<->`, `<#>` and `<+>`
//! as two or three operators, so [`parse`] joins those tokens into one
//! operator before parsing, and [`VectorOperators`] plans each as its
//! function. Joined operators bind more loosely than comparisons: write
//! `(v <-> q) < 0.5` in a WHERE clause (`ORDER BY v <-> q` needs nothing).

use std::sync::Arc;

use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, ScalarUDF};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::query::functions::distance::{DistanceUdf, Metric};

/// Plans the pgvector operators as quiver's distance functions.
#[derive(Debug)]
pub struct VectorOperators;

fn is_vector(e: &Expr, schema: &DFSchema) -> bool {
    use arrow::datatypes::DataType;
    matches!(
        e.get_type(schema),
        Ok(DataType::FixedSizeList(..) | DataType::List(_) | DataType::LargeList(_))
    )
}

impl ExprPlanner for VectorOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let metric = match &expr.op {
            BinaryOperator::Custom(op) if op == "<->" => Metric::L2,
            BinaryOperator::Custom(op) if op == "<#>" => Metric::NegativeInnerProduct,
            BinaryOperator::Custom(op) if op == "<+>" => Metric::L1,
            BinaryOperator::Spaceship
                if is_vector(&expr.left, schema) && is_vector(&expr.right, schema) =>
            {
                Metric::Cosine
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let udf = Arc::new(ScalarUDF::new_from_impl(DistanceUdf::new(metric)));
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(udf, vec![expr.left, expr.right]),
        )))
    }
}

/// Whether `sql` may hold an operator [`parse`] has to join.
pub fn has_joined_operators(sql: &str) -> bool {
    sql.contains("<-") || sql.contains("<#") || sql.contains("<+")
}

/// Parses one statement, with `<->`, `<#>` and `<+>` read as one operator
/// each: the tokens that make them (`<` `->`, `<` `#>`, `<` `+` `>`) are
/// joined when nothing stands between them, which no other SQL writes.
pub fn parse(sql: &str, dialect: &dyn Dialect, recursion_limit: usize) -> Result<Statement> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(|e| datafusion::error::DataFusionError::SQL(Box::new(e.into()), None))?;
    let tokens = join_operators(tokens);
    let mut statements = DFParserBuilder::new(tokens)
        .with_dialect(dialect)
        .with_recursion_limit(recursion_limit)
        .build()?
        .parse_statements()?;
    if statements.len() > 1 {
        return datafusion::common::not_impl_err!(
            "The context currently only supports a single SQL statement"
        );
    }
    statements.pop_front().ok_or_else(|| {
        datafusion::common::plan_datafusion_err!(
            "No SQL statements were provided in the query string"
        )
    })
}

fn join_operators(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let adjacent = |a: &TokenWithSpan, b: &TokenWithSpan| a.span.end == b.span.start;
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.token == Token::Lt {
            let next = tokens.get(i + 1);
            let after = tokens.get(i + 2);
            let joined = match (next, after) {
                (Some(n), _) if n.token == Token::Arrow && adjacent(t, n) => {
                    Some(("<->", n.span.end, 2))
                }
                (Some(n), _) if n.token == Token::HashArrow && adjacent(t, n) => {
                    Some(("<#>", n.span.end, 2))
                }
                (Some(n), Some(a))
                    if n.token == Token::Plus
                        && a.token == Token::Gt
                        && adjacent(t, n)
                        && adjacent(n, a) =>
                {
                    Some(("<+>", a.span.end, 3))
                }
                _ => None,
            };
            if let Some((op, end, used)) = joined {
                let mut span = t.span;
                span.end = end;
                out.push(TokenWithSpan::new(
                    Token::CustomBinaryOperator(op.to_string()),
                    span,
                ));
                i += used;
                continue;
            }
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    #[test]
    fn joins_only_adjacent_operator_tokens() {
        let d = GenericDialect {};
        let s = parse("SELECT a <-> b, a <#> b, a <+> b FROM t", &d, 50).unwrap();
        let text = s.to_string();
        assert!(
            text.contains("a <-> b") && text.contains("a <#> b") && text.contains("a <+> b"),
            "{text}"
        );
        // `a < -b` and `a < +b` are comparisons, not operators.
        let s = parse("SELECT a < -b, a < +b FROM t", &d, 50).unwrap();
        assert!(!s.to_string().contains("<->"), "{s}");
    }
}
