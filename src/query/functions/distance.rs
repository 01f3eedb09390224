//! `DistanceUdf`: vector distance functions for SQL (`l2_distance`,
//! `cosine_distance`, ...) over `FixedSizeList<Float32, d>`, computed with
//! simsimd kernels without converting vectors to `List<Float64>`.
//!
//! Semantics follow pgvector / DuckDB: `l2_distance` is the Euclidean
//! distance, `cosine_distance` is `1 - cosine similarity` (and
//! `cosine_similarity` the similarity itself), `inner_product` the dot
//! product, `negative_inner_product` its negation (smaller is closer),
//! `l1_distance` the Manhattan distance. A null vector gives null. A
//! vector with a NaN or an infinite element gives NaN, as does the cosine
//! of a zero vector; NaN sorts after every number (last in an ascending
//! top-k).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float64Builder, GenericListArray, OffsetSizeTrait,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float16Type, Float32Type, Int8Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use half::f16;
use simsimd::SpatialSimilarity;

use crate::storage::format::schema::is_vector_element;

/// The metric a distance function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    L2,
    Cosine,
    InnerProduct,
    NegativeInnerProduct,
    L1,
    /// `1 - Cosine` (DuckDB's `array_cosine_similarity`): larger is closer.
    CosineSimilarity,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::L2,
        Metric::Cosine,
        Metric::InnerProduct,
        Metric::NegativeInnerProduct,
        Metric::L1,
        Metric::CosineSimilarity,
    ];

    /// SQL name of the function.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2_distance",
            Metric::Cosine => "cosine_distance",
            Metric::InnerProduct => "inner_product",
            Metric::NegativeInnerProduct => "negative_inner_product",
            Metric::L1 => "l1_distance",
            Metric::CosineSimilarity => "cosine_similarity",
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
            Metric::CosineSimilarity => &["array_cosine_similarity"],
        }
    }

    /// Distance between two vectors of equal length.
    #[inline]
    pub fn eval(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::L2 => <f32 as SpatialSimilarity>::euclidean(a, b).unwrap_or(f64::NAN),
            // Undefined for a zero vector: NaN, as in pgvector. The check stops
            // at the first non-zero element, so it costs nothing in practice.
            Metric::Cosine => cosine(a, b),
            Metric::CosineSimilarity => 1.0 - cosine(a, b),
            Metric::InnerProduct => <f32 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN),
            Metric::NegativeInnerProduct => {
                -<f32 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN)
            }
            Metric::L1 => l1(a, b),
        }
    }
}

/// One vector of any element type quiver stores.
#[derive(Clone, Copy)]
pub(crate) enum VecRef<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    I8(&'a [i8]),
}

impl VecRef<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            VecRef::F32(v) => v.len(),
            VecRef::F16(v) => v.len(),
            VecRef::I8(v) => v.len(),
        }
    }

    pub(crate) fn to_f32(self) -> Vec<f32> {
        match self {
            VecRef::F32(v) => v.to_vec(),
            VecRef::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            VecRef::I8(v) => v.iter().map(|x| *x as f32).collect(),
        }
    }
}

impl Metric {
    /// Distance between two vectors of equal length and any element type:
    /// simsimd's float16 and int8 kernels when both have that type.
    fn eval_ref(self, a: VecRef, b: VecRef) -> f64 {
        match (a, b) {
            (VecRef::F32(a), VecRef::F32(b)) => self.eval(a, b),
            (VecRef::F16(a), VecRef::F16(b)) => self.eval_f16(a, b),
            (VecRef::I8(a), VecRef::I8(b)) => self.eval_i8(a, b),
            (a, b) => self.eval(&a.to_f32(), &b.to_f32()),
        }
    }

    /// Distance between two float16 vectors: widened to f32 (exact; half
    /// converts with F16C instructions where the CPU has them), then
    /// simsimd's f32 kernel. simsimd's native float16 kernels on CPUs with
    /// AVX-512 FP16 accumulate in half precision (relative errors of 1e-4
    /// and more), which would break the 1e-5 bound every kernel keeps.
    pub fn eval_f16(self, a: &[f16], b: &[f16]) -> f64 {
        use half::slice::HalfFloatSliceExt;
        thread_local! {
            static WIDE: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        WIDE.with(|w| {
            let (x, y) = &mut *w.borrow_mut();
            x.resize(a.len(), 0.0);
            y.resize(b.len(), 0.0);
            a.convert_to_f32_slice(x);
            b.convert_to_f32_slice(y);
            self.eval(x, y)
        })
    }

    /// Distance between two int8 vectors (simsimd; L1 exact in integers).
    pub fn eval_i8(self, a: &[i8], b: &[i8]) -> f64 {
        let zero = |v: &[i8]| v.iter().all(|e| *e == 0);
        match self {
            Metric::L2 => <i8 as SpatialSimilarity>::euclidean(a, b).unwrap_or(f64::NAN),
            Metric::Cosine | Metric::CosineSimilarity if zero(a) || zero(b) => f64::NAN,
            Metric::Cosine => <i8 as SpatialSimilarity>::cos(a, b).unwrap_or(f64::NAN),
            Metric::CosineSimilarity => {
                1.0 - <i8 as SpatialSimilarity>::cos(a, b).unwrap_or(f64::NAN)
            }
            Metric::InnerProduct => <i8 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN),
            Metric::NegativeInnerProduct => {
                -<i8 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN)
            }
            Metric::L1 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as u64)
                .sum::<u64>() as f64,
        }
    }
}

#[inline]
fn is_zero(v: &[f32]) -> bool {
    v.iter().all(|x| *x == 0.0)
}

/// The cosine distance, NaN when it is undefined: for a zero vector (as
/// pgvector) and for a vector with a NaN or an infinite element (as DuckDB
/// and numpy). simsimd clamps its result at 0, which would turn those into
/// a perfect match, so a result of 0 (or not finite) is checked against
/// the elements; any other result comes from finite vectors (a NaN or an
/// infinity in either makes the kernel's dot product and norm NaN or
/// infinite, and so its result 0), so the common case costs no extra pass.
#[inline]
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    // The zero check stops at the first non-zero element.
    if is_zero(a) || is_zero(b) {
        return f64::NAN;
    }
    let d = <f32 as SpatialSimilarity>::cos(a, b).unwrap_or(f64::NAN);
    if d > 0.0 && d.is_finite() {
        return d;
    }
    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    if finite(a) && finite(b) {
        d
    } else {
        f64::NAN
    }
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

    /// Vector columns keep their `FixedSizeList` shape; both arguments take
    /// one element type (see below); list literals and parameters become
    /// lists of it, and the lengths are checked per row with a clear
    /// message.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        if arg_types.len() != 2 {
            return plan_err!(
                "{name} takes two vectors, got {} arguments",
                arg_types.len()
            );
        }
        // Both vectors take one element type: float16 or int8 when every
        // fixed-size argument (a column) has it, so their simsimd kernels
        // run; else float32. Literals and parameters take the columns' type.
        let fixed_items: Vec<&DataType> = arg_types
            .iter()
            .filter_map(|t| match t {
                DataType::FixedSizeList(f, _) => Some(f.data_type()),
                _ => None,
            })
            .collect();
        let element = match fixed_items.first() {
            Some(t @ (DataType::Float16 | DataType::Int8))
                if fixed_items.iter().all(|x| x == t) =>
            {
                (*t).clone()
            }
            _ => DataType::Float32,
        };
        let item = Arc::new(Field::new("item", element, true));
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
                    out.append_value(self.metric.eval_ref(x, y));
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
    match vectors.get(0)? {
        VecRef::F32(x) => Some(x.to_vec()),
        _ => None,
    }
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
    // Scattered rows (a sparse selection scored where it lies): ask for the
    // rows a few ahead, so their memory latencies overlap.
    let scattered = match (rows.first(), rows.last()) {
        (Some(&a), Some(&b)) => b.abs_diff(a) as usize >= 2 * rows.len(),
        _ => false,
    };
    let window = &values[(base * d).min(values.len())..];
    for (j, &r) in rows.iter().enumerate() {
        if scattered {
            crate::storage::format::layout::prefetch_ahead(window, d, rows, j);
        }
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
pub(crate) struct Vectors {
    array: ArrayRef,
    broadcast: bool,
}

impl Vectors {
    pub(crate) fn new(v: &ColumnarValue) -> Result<Self> {
        let (array, broadcast) = match v {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
        };
        // Coercion gives float32, float16 or int8 elements; other element
        // types (from a caller that skipped coercion) become float32.
        let f32_item = || Arc::new(Field::new("item", DataType::Float32, true));
        let array = match array.data_type() {
            DataType::FixedSizeList(f, d) if !is_vector_element(f.data_type()) => {
                cast(&array, &DataType::FixedSizeList(f32_item(), *d))?
            }
            DataType::List(f) if !is_vector_element(f.data_type()) => {
                cast(&array, &DataType::List(f32_item()))?
            }
            DataType::LargeList(f) if !is_vector_element(f.data_type()) => {
                cast(&array, &DataType::LargeList(f32_item()))?
            }
            DataType::Null => {
                arrow::array::new_null_array(&DataType::List(f32_item()), array.len())
            }
            _ => array,
        };
        Ok(Self { array, broadcast })
    }

    #[inline]
    pub(crate) fn get(&self, row: usize) -> Option<VecRef<'_>> {
        let i = if self.broadcast { 0 } else { row };
        if self.array.is_null(i) {
            return None;
        }
        let (values, start, end) = match self.array.data_type() {
            DataType::FixedSizeList(_, _) => {
                let l: &FixedSizeListArray = self.array.as_fixed_size_list();
                let d = l.value_length() as usize;
                let start = (l.offset() + i) * d;
                (l.values(), start, start + d)
            }
            DataType::List(_) => list_range(self.array.as_list::<i32>(), i),
            DataType::LargeList(_) => list_range(self.array.as_list::<i64>(), i),
            _ => return None,
        };
        if values.null_count() > 0 && (start..end).any(|j| values.is_null(j)) {
            return None;
        }
        match values.data_type() {
            DataType::Float32 => Some(VecRef::F32(
                &values.as_primitive::<Float32Type>().values()[start..end],
            )),
            DataType::Float16 => Some(VecRef::F16(
                &values.as_primitive::<Float16Type>().values()[start..end],
            )),
            DataType::Int8 => Some(VecRef::I8(
                &values.as_primitive::<Int8Type>().values()[start..end],
            )),
            _ => None,
        }
    }
}

/// The element array of a list and the range of row `i` in it.
fn list_range<O: OffsetSizeTrait>(l: &GenericListArray<O>, i: usize) -> (&ArrayRef, usize, usize) {
    let offsets = l.value_offsets();
    (l.values(), offsets[i].as_usize(), offsets[i + 1].as_usize())
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
            Metric::CosineSimilarity => dot / (na * nb),
            Metric::InnerProduct => dot,
            Metric::NegativeInnerProduct => -dot,
            Metric::L1 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum(),
        }
    }

    /// Deterministic uniform values in [-1, 1) (a linear congruential
    /// generator: no dependency, same numbers on every machine).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut seed = seed;
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        }
    }

    /// Float16 and int8 kernels (simsimd) against the f64 reference over
    /// the same (exactly representable) values, d in 1..4096. Reports the
    /// worst relative error per metric and type.
    #[test]
    fn float16_and_int8_kernels_match_f64_reference() {
        let mut rnd = uniform(11);
        let mut worst = [[0f64; 6]; 2];
        for dim in [
            1usize, 2, 3, 7, 8, 15, 16, 31, 64, 100, 128, 257, 768, 1536, 4095,
        ] {
            let a16: Vec<f16> = (0..dim).map(|_| f16::from_f32(rnd())).collect();
            let b16: Vec<f16> = (0..dim).map(|_| f16::from_f32(rnd())).collect();
            let a8: Vec<i8> = (0..dim).map(|_| (rnd() * 127.0) as i8).collect();
            let b8: Vec<i8> = (0..dim).map(|_| (rnd() * 127.0) as i8).collect();
            let (fa16, fb16) = (VecRef::F16(&a16).to_f32(), VecRef::F16(&b16).to_f32());
            let (fa8, fb8) = (VecRef::I8(&a8).to_f32(), VecRef::I8(&b8).to_f32());
            for (k, m) in Metric::ALL.into_iter().enumerate() {
                for (t, got, want) in [
                    (0, m.eval_f16(&a16, &b16), reference(m, &fa16, &fb16)),
                    (1, m.eval_i8(&a8, &b8), reference(m, &fa8, &fb8)),
                ] {
                    let err = (got - want).abs() / want.abs().max(1.0);
                    worst[t][k] = worst[t][k].max(err);
                    assert!(
                        err <= TOLERANCE,
                        "{m:?} {t} d={dim}: {got} vs {want} ({err:e})"
                    );
                }
            }
        }
        println!("worst relative errors (float16, int8) by metric: {worst:?}");
    }

    /// Bound of the relative error (against max(1, |reference|)).
    const TOLERANCE: f64 = 1e-5;

    /// A NaN or an infinite element makes every metric NaN, the cosine
    /// ones too (simsimd alone gives 0 there: a perfect match), at every
    /// length (the kernels' vector bodies and tails) and either side.
    #[test]
    fn non_finite_elements_give_nan() {
        for dim in [1usize, 3, 8, 16, 17, 64, 100, 128] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, dim / 2, dim - 1] {
                    let good: Vec<f32> = (0..dim).map(|i| 0.5 + i as f32).collect();
                    let mut odd = good.clone();
                    odd[at] = bad;
                    for m in Metric::ALL {
                        for (a, b) in [(&odd, &good), (&good, &odd)] {
                            let d = m.eval(a, b);
                            let infinite_ok = bad.is_infinite()
                                && matches!(
                                    m,
                                    Metric::L2
                                        | Metric::L1
                                        | Metric::InnerProduct
                                        | Metric::NegativeInnerProduct
                                );
                            // An infinite element makes L2 / L1 / dot
                            // infinite (or NaN), never a finite number.
                            assert!(
                                d.is_nan() || (infinite_ok && d.is_infinite()),
                                "{m:?} d={dim} {bad} at {at}: {d}"
                            );
                        }
                    }
                }
            }
        }
        // Equal finite vectors are still a perfect match.
        let v: Vec<f32> = (0..128).map(|i| i as f32 - 60.5).collect();
        assert!(Metric::Cosine.eval(&v, &v).abs() < 1e-6);
        assert!((Metric::CosineSimilarity.eval(&v, &v) - 1.0).abs() < 1e-6);
    }

    /// Kernels agree with an f64 reference over many dimensions.
    #[test]
    fn kernels_match_f64_reference() {
        let mut rnd = uniform(7);
        for dim in [
            1usize, 3, 4, 7, 16, 31, 64, 100, 128, 257, 768, 1536, 4048, 4096,
        ] {
            let a: Vec<f32> = (0..dim).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..dim).map(|_| rnd()).collect();
            for m in Metric::ALL {
                let got = m.eval(&a, &b);
                let want = reference(m, &a, &b);
                let err = (got - want).abs() / want.abs().max(1.0);
                assert!(err <= TOLERANCE, "{m:?} d={dim}: {got} vs {want} ({err:e})");
            }
        }
    }
}
