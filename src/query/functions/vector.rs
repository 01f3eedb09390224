//! Vector functions beside the distances, as pgvector and DuckDB users know
//! them: `vector_dims(v)` (the dimension), `vector_norm(v)` (alias
//! `l2_norm`: the Euclidean norm), `l2_normalize(v)` (the vector scaled to
//! norm 1; a zero vector stays zero), `subvector(v, start, count)` (pgvector's:
//! `count` elements from the 1-based `start`), `binary_quantize(v)` (one bit
//! per element, set where it is positive, most significant bit first, as a
//! binary value for `hamming_distance` / `jaccard_distance`).
//!
//! Each takes a vector column (`FLOAT[d]`, `FLOAT16[d]`, `TINYINT[d]`), a
//! list literal or a list parameter; a null vector gives null.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, FixedSizeListArray, Float32Array, Float64Builder, Int32Builder,
    ListArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::query::functions::distance::{columnar, Vectors};

/// Which vector function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Dims,
    Norm,
    Normalize,
    Subvector,
    BinaryQuantize,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Dims,
        Kind::Norm,
        Kind::Normalize,
        Kind::Subvector,
        Kind::BinaryQuantize,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Dims => "vector_dims",
            Kind::Norm => "vector_norm",
            Kind::Normalize => "l2_normalize",
            Kind::Subvector => "subvector",
            Kind::BinaryQuantize => "binary_quantize",
        }
    }

    fn arity(self) -> usize {
        match self {
            Kind::Subvector => 3,
            _ => 1,
        }
    }
}

/// A vector function as a DataFusion scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorFn {
    kind: Kind,
    aliases: Vec<String>,
    signature: Signature,
}

/// Registers the vector functions with `ctx`.
pub fn register_vector_functions(ctx: &SessionContext) {
    for kind in Kind::ALL {
        let aliases = match kind {
            Kind::Norm => vec!["l2_norm".to_string()],
            _ => vec![],
        };
        ctx.register_udf(ScalarUDF::new_from_impl(VectorFn {
            kind,
            aliases,
            signature: Signature::user_defined(Volatility::Immutable),
        }));
    }
}

fn f32_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric() || t == &DataType::Null
}

impl ScalarUDFImpl for VectorFn {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The vector keeps its shape (a `FixedSizeList` column stays one, so
    /// its kernels' element type is kept); a list of other numbers becomes
    /// a list of float32; the integers of `subvector` become Int64.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        if arg_types.len() != self.kind.arity() {
            return plan_err!(
                "{name} takes {} argument(s), got {}",
                self.kind.arity(),
                arg_types.len()
            );
        }
        let mut out = Vec::with_capacity(arg_types.len());
        out.push(match &arg_types[0] {
            t @ DataType::FixedSizeList(f, _) if is_number(f.data_type()) => t.clone(),
            DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f)
                if is_number(f.data_type()) =>
            {
                DataType::List(f32_item())
            }
            DataType::Null => DataType::List(f32_item()),
            other => {
                return plan_err!(
                    "{name} expects a vector (a FLOAT[d] column, a [..] literal or a list parameter), got {other}"
                )
            }
        });
        for t in &arg_types[1..] {
            if !(t.is_integer() || t == &DataType::Null) {
                return plan_err!("{name}: start and count must be integers, got {t}");
            }
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::Dims => DataType::Int32,
            Kind::Norm => DataType::Float64,
            Kind::Normalize => match &arg_types[0] {
                DataType::FixedSizeList(_, d) => DataType::FixedSizeList(f32_item(), *d),
                _ => DataType::List(f32_item()),
            },
            Kind::Subvector => DataType::List(f32_item()),
            Kind::BinaryQuantize => DataType::Binary,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if all_scalar { 1 } else { args.number_rows };
        let vectors = Vectors::new(&args.args[0])?;
        let out: ArrayRef = match self.kind {
            Kind::Dims => {
                let mut b = Int32Builder::with_capacity(n);
                for i in 0..n {
                    b.append_option(vectors.get(i).map(|v| v.len() as i32));
                }
                Arc::new(b.finish())
            }
            Kind::Norm => {
                let mut b = Float64Builder::with_capacity(n);
                for i in 0..n {
                    b.append_option(vectors.get(i).map(|v| norm(&v.to_f32())));
                }
                Arc::new(b.finish())
            }
            Kind::Normalize => {
                let rows: Vec<Option<Vec<f32>>> = (0..n)
                    .map(|i| {
                        vectors.get(i).map(|v| {
                            let mut x = v.to_f32();
                            let len = norm(&x);
                            if len > 0.0 {
                                x.iter_mut().for_each(|e| *e = (*e as f64 / len) as f32);
                            }
                            x
                        })
                    })
                    .collect();
                match self.return_type(&[args.args[0].data_type()])? {
                    DataType::FixedSizeList(_, d) => fixed_list(rows, d as usize)?,
                    _ => list(rows),
                }
            }
            Kind::Subvector => {
                let start = Integers::new(&args.args[1])?;
                let count = Integers::new(&args.args[2])?;
                let mut rows = Vec::with_capacity(n);
                for i in 0..n {
                    let (Some(v), Some(s), Some(c)) = (vectors.get(i), start.get(i), count.get(i))
                    else {
                        rows.push(None);
                        continue;
                    };
                    // pgvector: elements start .. start + count - 1 (1-based),
                    // cut to the vector; an empty result is an error.
                    let d = v.len() as i64;
                    let first = s.max(1);
                    let last = s.saturating_add(c).saturating_sub(1).min(d);
                    if c < 1 || first > last {
                        return exec_err!(
                            "subvector: elements {s} to {} of a vector of dimension {d} are none \
                             (start is 1-based; count must be at least 1)",
                            s.saturating_add(c).saturating_sub(1)
                        );
                    }
                    rows.push(Some(
                        v.to_f32()[(first - 1) as usize..last as usize].to_vec(),
                    ));
                }
                list(rows)
            }
            Kind::BinaryQuantize => {
                let mut b = BinaryBuilder::with_capacity(n, 0);
                for i in 0..n {
                    match vectors.get(i) {
                        Some(v) => b.append_value(quantize(&v.to_f32())),
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columnar(out, all_scalar)
    }
}

/// The Euclidean norm, in f64 (NaN if an element is).
fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt()
}

/// One bit per element, set where it is positive; the first element is the
/// most significant bit of the first byte (pgvector's `bit` order).
fn quantize(v: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; v.len().div_ceil(8)];
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

fn list(rows: Vec<Option<Vec<f32>>>) -> ArrayRef {
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    let lengths = rows.iter().map(|r| r.as_ref().map_or(0, Vec::len));
    let offsets = OffsetBuffer::from_lengths(lengths);
    let values: Vec<f32> = rows.into_iter().flatten().flatten().collect();
    Arc::new(ListArray::new(
        f32_item(),
        offsets,
        Arc::new(Float32Array::from(values)),
        Some(nulls),
    ))
}

fn fixed_list(rows: Vec<Option<Vec<f32>>>, d: usize) -> Result<ArrayRef> {
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    let mut values = Vec::with_capacity(rows.len() * d);
    for r in &rows {
        match r {
            Some(v) => values.extend_from_slice(v),
            None => values.extend(std::iter::repeat_n(0.0, d)),
        }
    }
    Ok(Arc::new(FixedSizeListArray::try_new(
        f32_item(),
        d as i32,
        Arc::new(Float32Array::from(values)),
        Some(nulls),
    )?))
}

/// An integer argument, a column or one value for every row.
struct Integers {
    array: Option<arrow::array::Int64Array>,
    scalar: Option<i64>,
}

impl Integers {
    fn new(v: &ColumnarValue) -> Result<Self> {
        Ok(match v {
            ColumnarValue::Scalar(s) => Self {
                array: None,
                scalar: match s {
                    ScalarValue::Int64(v) => *v,
                    other if other.is_null() => None,
                    other => match other.cast_to(&DataType::Int64)? {
                        ScalarValue::Int64(v) => v,
                        _ => None,
                    },
                },
            },
            ColumnarValue::Array(a) => {
                let a = arrow::compute::cast(a, &DataType::Int64)?;
                Self {
                    array: Some(
                        a.as_any()
                            .downcast_ref::<arrow::array::Int64Array>()
                            .cloned()
                            .expect("cast to Int64"),
                    ),
                    scalar: None,
                }
            }
        })
    }

    fn get(&self, i: usize) -> Option<i64> {
        use arrow::array::Array;
        match &self.array {
            Some(a) => a.is_valid(i).then(|| a.value(i)),
            None => self.scalar,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_sets_positive_elements_msb_first() {
        assert_eq!(quantize(&[1.0, -1.0, 0.0, 2.0]), vec![0b1001_0000]);
        assert_eq!(quantize(&[0.5; 9]), vec![0xff, 0x80]);
    }

    #[test]
    fn norm_is_euclidean() {
        assert_eq!(norm(&[3.0, 4.0]), 5.0);
        assert!(norm(&[f32::NAN, 1.0]).is_nan());
    }
}
