//! `DistanceUdf`: vector distance functions for SQL (`l2_distance`,
//! `cosine_distance`, ...) over `FixedSizeList<Float32, d>`, computed with
//! simsimd kernels without converting vectors to `List<Float64>`.
//!
//! Semantics follow pgvector / DuckDB: `l2_distance` is the Euclidean
//! distance, `cosine_distance` is `1 - cosine similarity`, `inner_product`
//! the dot product, `negative_inner_product` its negation (smaller is
//! closer), `l1_distance` the Manhattan distance. A null vector gives null.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float64Builder, GenericListArray, OffsetSizeTrait,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use simsimd::SpatialSimilarity;

/// The metric a distance function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    L2,
    Cosine,
    InnerProduct,
    NegativeInnerProduct,
    L1,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::L2,
        Metric::Cosine,
        Metric::InnerProduct,
        Metric::NegativeInnerProduct,
        Metric::L1,
    ];

    /// SQL name of the function.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2_distance",
            Metric::Cosine => "cosine_distance",
            Metric::InnerProduct => "inner_product",
            Metric::NegativeInnerProduct => "negative_inner_product",
            Metric::L1 => "l1_distance",
        }
    }

    /// DuckDB-style aliases.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Metric::L2 => &["array_distance"],
            Metric::Cosine => &["array_cosine_distance"],
            Metric::InnerProduct => &["array_inner_product", "dot_product"],
            Metric::NegativeInnerProduct => &["array_negative_inner_product"],
            Metric::L1 => &[],
        }
    }

    /// Distance between two vectors of equal length.
    #[inline]
    pub fn eval(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::L2 => <f32 as SpatialSimilarity>::euclidean(a, b).unwrap_or(f64::NAN),
            // Undefined for a zero vector: NaN, as in pgvector. The check stops
            // at the first non-zero element, so it costs nothing in practice.
            Metric::Cosine if is_zero(a) || is_zero(b) => f64::NAN,
            Metric::Cosine => <f32 as SpatialSimilarity>::cos(a, b).unwrap_or(f64::NAN),
            Metric::InnerProduct => <f32 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN),
            Metric::NegativeInnerProduct => {
                -<f32 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN)
            }
            Metric::L1 => l1(a, b),
        }
    }
}

#[inline]
fn is_zero(v: &[f32]) -> bool {
    v.iter().all(|x| *x == 0.0)
}

/// Manhattan distance. simsimd has no f32 L1 kernel; eight independent
/// lanes let the compiler vectorize the loop, and the lanes are summed in
/// f64.
#[inline]
fn l1(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += (x[i] - y[i]).abs();
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| (x - y).abs() as f64).sum();
    acc.iter().map(|v| *v as f64).sum::<f64>() + tail
}

/// A distance function as a DataFusion scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistanceUdf {
    metric: Metric,
    signature: Signature,
}

impl DistanceUdf {
    pub fn new(metric: Metric) -> Self {
        Self {
            metric,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }
}

/// Registers every distance function (and alias) with `ctx`, replacing
/// DataFusion's built-in functions of the same names.
pub fn register_distance_functions(ctx: &SessionContext) {
    for m in Metric::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(DistanceUdf::new(m)));
    }
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric() || t == &DataType::Null
}

impl ScalarUDFImpl for DistanceUdf {
    fn name(&self) -> &str {
        self.metric.name()
    }

    fn aliases(&self) -> &[String] {
        // Stored once per metric; the trait wants `&[String]`.
        static ALIASES: std::sync::OnceLock<Vec<Vec<String>>> = std::sync::OnceLock::new();
        let all = ALIASES.get_or_init(|| {
            Metric::ALL
                .iter()
                .map(|m| m.aliases().iter().map(|s| s.to_string()).collect())
                .collect()
        });
        let i = Metric::ALL
            .iter()
            .position(|m| *m == self.metric)
            .unwrap_or(0);
        &all[i]
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    /// Vector columns keep their `FixedSizeList` shape (with Float32
    /// elements); list literals and parameters become `List<Float32>`, and
    /// the lengths are checked per row with a clear message.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        if arg_types.len() != 2 {
            return plan_err!(
                "{name} takes two vectors, got {} arguments",
                arg_types.len()
            );
        }
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let fixed_dims: Vec<i32> = arg_types
            .iter()
            .filter_map(|t| match t {
                DataType::FixedSizeList(_, d) => Some(*d),
                _ => None,
            })
            .collect();
        if let [a, b] = fixed_dims[..] {
            if a != b {
                return plan_err!("{name}: the vectors have different dimensions ({a} and {b})");
            }
        }
        arg_types
            .iter()
            .map(|t| match t {
                DataType::FixedSizeList(f, d) if is_number(f.data_type()) => {
                    Ok(DataType::FixedSizeList(item.clone(), *d))
                }
                DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f)
                    if is_number(f.data_type()) =>
                {
                    Ok(DataType::List(item.clone()))
                }
                // An untyped parameter or NULL takes the other argument's shape.
                DataType::Null => Ok(match fixed_dims.first() {
                    Some(d) => DataType::FixedSizeList(item.clone(), *d),
                    None => DataType::List(item.clone()),
                }),
                other => plan_err!(
                    "{name} expects vectors (FLOAT[d] columns, [..] literals or list parameters), got {other}"
                ),
            })
            .collect()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [a, b] = &args.args[..] else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let all_scalar =
            matches!(a, ColumnarValue::Scalar(_)) && matches!(b, ColumnarValue::Scalar(_));
        let a = Vectors::new(a)?;
        let b = Vectors::new(b)?;
        let n = if all_scalar { 1 } else { rows };
        let mut out = Float64Builder::with_capacity(n);
        for i in 0..n {
            match (a.get(i), b.get(i)) {
                (Some(x), Some(y)) => {
                    if x.len() != y.len() {
                        return exec_err!(
                            "{}: the vectors have different dimensions ({} and {})",
                            self.name(),
                            x.len(),
                            y.len()
                        );
                    }
                    out.append_value(self.metric.eval(x, y));
                }
                _ => out.append_null(),
            }
        }
        columnar(Arc::new(out.finish()), all_scalar)
    }
}

/// A function's result: one scalar when every argument was a scalar, else
/// the array.
/// The query vector of a literal argument (a list of numbers), as `f32`.
pub(crate) fn query_vector(v: &datafusion::scalar::ScalarValue) -> Option<Vec<f32>> {
    let vectors = Vectors::new(&ColumnarValue::Scalar(v.clone())).ok()?;
    vectors.get(0).map(|x| x.to_vec())
}

/// `metric` between `query` and the vectors at `rows` of `vectors`, exactly
/// as the SQL function computes it, arguments in the same order
/// (`query_first`); null for a null vector.
pub(crate) fn score_rows(
    metric: Metric,
    vectors: &FixedSizeListArray,
    query: &[f32],
    query_first: bool,
    rows: &[u32],
) -> Result<arrow::array::Float64Array> {
    let d = vectors.value_length() as usize;
    if d != query.len() {
        return exec_err!(
            "{}: the vectors have different dimensions ({d} and {})",
            metric.name(),
            query.len()
        );
    }
    let values = vectors.values().as_primitive::<Float32Type>().values();
    let base = vectors.offset();
    let mut out = Float64Builder::with_capacity(rows.len());
    for &r in rows {
        let r = r as usize;
        if vectors.is_null(r) {
            out.append_null();
        } else {
            let start = (base + r) * d;
            let v = &values[start..start + d];
            out.append_value(if query_first {
                metric.eval(query, v)
            } else {
                metric.eval(v, query)
            });
        }
    }
    Ok(out.finish())
}

pub(crate) fn columnar(arr: ArrayRef, all_scalar: bool) -> Result<ColumnarValue> {
    if all_scalar {
        Ok(ColumnarValue::Scalar(
            datafusion::scalar::ScalarValue::try_from_array(&arr, 0)?,
        ))
    } else {
        Ok(ColumnarValue::Array(arr))
    }
}

/// One argument of a distance function: a column of vectors, or one vector
/// broadcast to every row.
struct Vectors {
    array: ArrayRef,
    broadcast: bool,
}

impl Vectors {
    fn new(v: &ColumnarValue) -> Result<Self> {
        let (array, broadcast) = match v {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
        };
        // Coercion guarantees Float32 elements; cast defensively otherwise.
        let array = match array.data_type() {
            DataType::FixedSizeList(f, d) if f.data_type() != &DataType::Float32 => cast(
                &array,
                &DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), *d),
            )?,
            DataType::List(f) if f.data_type() != &DataType::Float32 => cast(
                &array,
                &DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            )?,
            DataType::Null => arrow::array::new_null_array(
                &DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
                array.len(),
            ),
            _ => array,
        };
        Ok(Self { array, broadcast })
    }

    #[inline]
    fn get(&self, row: usize) -> Option<&[f32]> {
        let i = if self.broadcast { 0 } else { row };
        if self.array.is_null(i) {
            return None;
        }
        match self.array.data_type() {
            DataType::FixedSizeList(_, _) => {
                let l: &FixedSizeListArray = self.array.as_fixed_size_list();
                let d = l.value_length() as usize;
                let values = l.values().as_primitive::<Float32Type>().values();
                let start = (l.offset() + i) * d;
                Some(&values[start..start + d])
            }
            DataType::List(_) => list_slice(self.array.as_list::<i32>(), i),
            DataType::LargeList(_) => list_slice(self.array.as_list::<i64>(), i),
            _ => None,
        }
    }
}

fn list_slice<O: OffsetSizeTrait>(l: &GenericListArray<O>, i: usize) -> Option<&[f32]> {
    let offsets = l.value_offsets();
    let (s, e) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
    let values = l.values().as_primitive::<Float32Type>();
    if values.null_count() > 0 && (s..e).any(|j| values.is_null(j)) {
        return None;
    }
    Some(&values.values()[s..e])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: Metric, a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        match m {
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
            Metric::Cosine => 1.0 - dot / (na * nb),
            Metric::InnerProduct => dot,
            Metric::NegativeInnerProduct => -dot,
            Metric::L1 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum(),
        }
    }

    /// Kernels agree with an f64 reference over many dimensions.
    #[test]
    fn kernels_match_f64_reference() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        for dim in [1usize, 3, 4, 7, 16, 31, 64, 100, 128, 257, 768, 1536, 4048] {
            let a: Vec<f32> = (0..dim).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..dim).map(|_| rnd()).collect();
            for m in Metric::ALL {
                let got = m.eval(&a, &b);
                let want = reference(m, &a, &b);
                let tol = 1e-3 * (1.0 + want.abs());
                assert!((got - want).abs() <= tol, "{m:?} d={dim}: {got} vs {want}");
            }
        }
    }
}
