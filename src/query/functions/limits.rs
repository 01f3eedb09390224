//! Caps on what a few built-in functions may make from small arguments, so
//! that no query can allocate gigabytes outside the memory pool with one
//! call: `repeat`, `lpad` and `rpad` make at most [`MAX_VALUE_BYTES`] per
//! value; `array_repeat`, `array_resize`, `range` and `generate_series`
//! (the functions that return a list) at most [`MAX_LIST_ELEMENTS`]
//! elements per list. A call over the cap fails with an error that names
//! the function, the size it would make and the cap. The table functions
//! `range(..)` and `generate_series(..)` in `FROM` stream their rows in
//! batches and are not capped (the query timeout and cancellation bound
//! them).
//!
//! Each capped function wraps DataFusion's own, which does the work.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// Largest string a capped string function makes (64 MiB).
pub const MAX_VALUE_BYTES: u64 = 64 * 1024 * 1024;

/// Most elements a capped list function makes in one list (10 million).
pub const MAX_LIST_ELEMENTS: u64 = 10_000_000;

/// How a capped function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// `repeat(text, n)`: bytes of text times n.
    Repeat,
    /// `lpad(text, n [, fill])`, `rpad`: n characters (4 bytes at most each).
    Pad,
    /// `array_repeat(element, n)`: n elements (times the element's own
    /// length when it is a list).
    ArrayRepeat,
    /// `array_resize(list, n [, value])`: n elements.
    Resize,
    /// `range(start, stop [, step])`, `generate_series`: the number of steps.
    Series { inclusive: bool },
}

/// A built-in function that refuses arguments that would make an output
/// over its cap, and otherwise runs the built-in.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: ScalarUDF,
    rule: Rule,
}

/// Replaces the built-ins above in `ctx` with their capped versions.
pub fn register_capped_functions(ctx: &SessionContext) {
    let rules = [
        ("repeat", Rule::Repeat),
        ("lpad", Rule::Pad),
        ("rpad", Rule::Pad),
        ("array_repeat", Rule::ArrayRepeat),
        ("array_resize", Rule::Resize),
        ("range", Rule::Series { inclusive: false }),
        ("generate_series", Rule::Series { inclusive: true }),
    ];
    for (name, rule) in rules {
        if let Ok(udf) = ctx.udf(name) {
            let inner = udf.as_ref().clone();
            ctx.register_udf(ScalarUDF::new_from_impl(Capped { inner, rule }));
        }
    }
}

/// One argument's value at a row (a scalar is every row's).
fn value_at(arg: &ColumnarValue, row: usize) -> Result<ScalarValue> {
    match arg {
        ColumnarValue::Scalar(s) => Ok(s.clone()),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row),
    }
}

/// An integer argument at a row (`None`: null or not an integer).
fn int_at(arg: &ColumnarValue, row: usize) -> Result<Option<i64>> {
    if let ColumnarValue::Array(a) = arg {
        if a.data_type() == &DataType::Int64 {
            let a = a.as_primitive::<Int64Type>();
            return Ok(a.is_valid(row).then(|| a.value(row)));
        }
    }
    let v = value_at(arg, row)?;
    Ok(match v.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(i)) => i,
        _ => None,
    })
}

/// The byte length of a string argument at a row.
fn text_len_at(arg: &ColumnarValue, row: usize) -> Result<u64> {
    Ok(match value_at(arg, row)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u64,
        _ => 0,
    })
}

/// The length of a list argument at a row (1 for a non-list).
fn list_len_at(arg: &ColumnarValue, row: usize) -> Result<u64> {
    Ok(match value_at(arg, row)? {
        ScalarValue::List(l) => l.values().len() as u64,
        ScalarValue::LargeList(l) => l.values().len() as u64,
        ScalarValue::FixedSizeList(l) => l.values().len() as u64,
        _ => 1,
    })
}

/// Nanoseconds of a step given as an interval (a month as 30 days), or the
/// step itself for numbers.
fn step_of(v: &ScalarValue) -> Option<f64> {
    Some(match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) => {
            (i.months as f64 * 30.0 + i.days as f64) * 86_400e9 + i.nanoseconds as f64
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            i.days as f64 * 86_400e9 + i.milliseconds as f64 * 1e6
        }
        ScalarValue::IntervalYearMonth(Some(m)) => *m as f64 * 30.0 * 86_400e9,
        other => match other.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(f))) => f,
            _ => return None,
        },
    })
}

/// A start or stop of a series, in the step's unit: numbers as they are,
/// dates and timestamps in nanoseconds.
fn point_of(v: &ScalarValue) -> Option<f64> {
    Some(match v {
        ScalarValue::Date32(Some(d)) => *d as f64 * 86_400e9,
        ScalarValue::Date64(Some(ms)) => *ms as f64 * 1e6,
        ScalarValue::TimestampSecond(Some(s), _) => *s as f64 * 1e9,
        ScalarValue::TimestampMillisecond(Some(s), _) => *s as f64 * 1e6,
        ScalarValue::TimestampMicrosecond(Some(s), _) => *s as f64 * 1e3,
        ScalarValue::TimestampNanosecond(Some(s), _) => *s as f64,
        other => match other.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(f))) => f,
            _ => return None,
        },
    })
}

impl Capped {
    /// The size one row's arguments would make, and the cap it is held to:
    /// (size, cap, unit).
    fn size_at(
        &self,
        args: &[ColumnarValue],
        row: usize,
    ) -> Result<Option<(f64, u64, &'static str)>> {
        let arg = |i: usize| args.get(i);
        Ok(match self.rule {
            Rule::Repeat => {
                let (Some(text), Some(n)) = (arg(0), arg(1)) else {
                    return Ok(None);
                };
                let n = int_at(n, row)?.unwrap_or(0).max(0) as f64;
                Some((text_len_at(text, row)? as f64 * n, MAX_VALUE_BYTES, "bytes"))
            }
            Rule::Pad => {
                let Some(n) = arg(1) else { return Ok(None) };
                // Up to four bytes per character.
                let n = int_at(n, row)?.unwrap_or(0).max(0) as f64;
                Some((n * 4.0, MAX_VALUE_BYTES, "bytes"))
            }
            Rule::ArrayRepeat => {
                let (Some(element), Some(n)) = (arg(0), arg(1)) else {
                    return Ok(None);
                };
                let n = int_at(n, row)?.unwrap_or(0).max(0) as f64;
                Some((
                    n * list_len_at(element, row)? as f64,
                    MAX_LIST_ELEMENTS,
                    "elements",
                ))
            }
            Rule::Resize => {
                let Some(n) = arg(1) else { return Ok(None) };
                let n = int_at(n, row)?.unwrap_or(0).max(0) as f64;
                Some((n, MAX_LIST_ELEMENTS, "elements"))
            }
            Rule::Series { inclusive } => {
                let (start, stop, step) = match args.len() {
                    1 => (Some(0.0), point_of(&value_at(&args[0], row)?), Some(1.0)),
                    2 => (
                        point_of(&value_at(&args[0], row)?),
                        point_of(&value_at(&args[1], row)?),
                        Some(1.0),
                    ),
                    3 => (
                        point_of(&value_at(&args[0], row)?),
                        point_of(&value_at(&args[1], row)?),
                        step_of(&value_at(&args[2], row)?),
                    ),
                    _ => return Ok(None),
                };
                let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
                    return Ok(None);
                };
                if step == 0.0 {
                    return Ok(None);
                }
                let steps = ((stop - start) / step).floor().max(-1.0);
                let n = if inclusive { steps + 1.0 } else { steps.ceil() };
                Some((n.max(0.0), MAX_LIST_ELEMENTS, "elements"))
            }
        })
    }

    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let rows = if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            1
        } else {
            args.number_rows
        };
        for row in 0..rows {
            if let Some((size, cap, unit)) = self.size_at(&args.args, row)? {
                if size > cap as f64 {
                    return exec_err!(
                        "{}: the result would hold {size:.0} {unit}, over the limit of {cap} {unit} \
                         per value (quiver caps what one function call may allocate)",
                        self.inner.name()
                    );
                }
            }
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn with_updated_config(&self, config: &datafusion::config::ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Capped {
            inner,
            rule: self.rule,
        }))
    }

    /// The built-in's own rewrites would call it without the cap; folding
    /// constants calls this function, which checks.
    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Original(args))
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capped_functions_refuse_huge_results_and_run_small_ones() {
        let ctx = SessionContext::new();
        register_capped_functions(&ctx);
        for sql in [
            "SELECT repeat('a', 2000000000)",
            "SELECT lpad('a', 2000000000, 'b')",
            "SELECT rpad('a', 2000000000)",
            "SELECT array_repeat(1, 100000000)",
            "SELECT array_repeat([1, 2, 3], 5000000)",
            "SELECT array_resize([1], 100000000)",
            "SELECT range(1, 300000000)",
            "SELECT generate_series(1, 300000000)",
            "SELECT count(*) FROM (SELECT unnest(range(1, 300000000)))",
        ] {
            let e = match ctx.sql(sql).await {
                Ok(df) => df.collect().await.unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains("over the limit"), "{sql}: {e}");
        }
        for (sql, want) in [
            ("SELECT length(repeat('ab', 3))", "6"),
            ("SELECT lpad('x', 3, '-')", "--x"),
            ("SELECT cardinality(array_repeat(7, 4))", "4"),
            ("SELECT cardinality(range(1, 11))", "10"),
            ("SELECT cardinality(generate_series(1, 10))", "10"),
            ("SELECT cardinality(range(1, 10, 3))", "3"),
        ] {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            let text =
                arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
            assert_eq!(text, want, "{sql}");
        }
    }
}
