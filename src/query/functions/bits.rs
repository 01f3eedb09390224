//! Binary-vector distances for SQL, as in pgvector's `bit` type and Milvus's
//! BINARY_VECTOR: `hamming_distance(a, b)` counts the differing bits,
//! `jaccard_distance(a, b)` is `1 - |a AND b| / |a OR b|` over the set bits.
//! Arguments are binary values (`BYTEA` / `VARBINARY` columns, `X'0F'`
//! literals, binary parameters) of equal length; kernels are simsimd's.
//! A null argument gives null. The Jaccard distance of two all-zero
//! vectors (two empty sets) is 1, as in pgvector.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Float64Builder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use simsimd::BinarySimilarity;

/// Which bit distance a function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BitMetric {
    Hamming,
    Jaccard,
}

impl BitMetric {
    pub const ALL: [BitMetric; 2] = [BitMetric::Hamming, BitMetric::Jaccard];

    pub fn name(&self) -> &'static str {
        match self {
            BitMetric::Hamming => "hamming_distance",
            BitMetric::Jaccard => "jaccard_distance",
        }
    }

    /// The distance of two equal-length bit vectors.
    pub fn eval(&self, a: &[u8], b: &[u8]) -> f64 {
        match self {
            BitMetric::Hamming => u8::hamming(a, b).unwrap_or(f64::NAN),
            BitMetric::Jaccard => {
                if a.iter().chain(b).all(|&x| x == 0) {
                    // pgvector's answer for two empty sets.
                    1.0
                } else {
                    u8::jaccard(a, b).unwrap_or(f64::NAN)
                }
            }
        }
    }
}

/// A bit distance as a DataFusion scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BitDistanceUdf {
    metric: BitMetric,
    signature: Signature,
}

impl BitDistanceUdf {
    pub fn new(metric: BitMetric) -> Self {
        Self {
            metric,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Registers `hamming_distance` and `jaccard_distance` with `ctx`.
pub fn register_bit_functions(ctx: &SessionContext) {
    for m in BitMetric::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(BitDistanceUdf::new(m)));
    }
}

impl ScalarUDFImpl for BitDistanceUdf {
    fn name(&self) -> &str {
        self.metric.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        if arg_types.len() != 2 {
            return plan_err!(
                "{name} takes two binary vectors, got {} arguments",
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .map(|t| match t {
                DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
                | DataType::Null => Ok(DataType::Binary),
                other => plan_err!(
                    "{name} expects binary vectors (BYTEA columns, X'..' literals or binary parameters), got {other}"
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
        let (a, a_bcast) = binary(a)?;
        let (b, b_bcast) = binary(b)?;
        let n = if all_scalar { 1 } else { rows };
        let mut out = Float64Builder::with_capacity(n);
        for i in 0..n {
            let (ia, ib) = (if a_bcast { 0 } else { i }, if b_bcast { 0 } else { i });
            if a.is_null(ia) || b.is_null(ib) {
                out.append_null();
                continue;
            }
            let (x, y) = (a.value(ia), b.value(ib));
            if x.len() != y.len() {
                return exec_err!(
                    "{}: the binary vectors have different lengths ({} and {} bytes)",
                    self.name(),
                    x.len(),
                    y.len()
                );
            }
            out.append_value(self.metric.eval(x, y));
        }
        crate::query::functions::distance::columnar(Arc::new(out.finish()), all_scalar)
    }
}

/// An argument as a `BinaryArray`, and whether it is one value for all rows.
fn binary(v: &ColumnarValue) -> Result<(BinaryArray, bool)> {
    let (array, broadcast) = match v {
        ColumnarValue::Array(a) => (a.clone(), false),
        ColumnarValue::Scalar(s) => (s.to_array()?, true),
    };
    let array = match array.data_type() {
        DataType::Binary => array,
        _ => cast(&array, &DataType::Binary)?,
    };
    Ok((array.as_binary::<i32>().clone(), broadcast))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn reference(m: BitMetric, a: &[u8], b: &[u8]) -> f64 {
        let and: u32 = a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum();
        let or: u32 = a.iter().zip(b).map(|(x, y)| (x | y).count_ones()).sum();
        let xor: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
        match m {
            BitMetric::Hamming => xor as f64,
            BitMetric::Jaccard if or == 0 => 1.0,
            BitMetric::Jaccard => 1.0 - and as f64 / or as f64,
        }
    }

    #[test]
    fn kernels_match_a_popcount_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for len in 1..300usize {
            let a: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let b: Vec<u8> = (0..len)
                .map(|_| rng.random::<u8>() & rng.random::<u8>())
                .collect();
            for m in BitMetric::ALL {
                let (got, want) = (m.eval(&a, &b), reference(m, &a, &b));
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{m:?} len {len}: {got} vs {want}"
                );
            }
        }
        assert_eq!(BitMetric::Jaccard.eval(&[0, 0], &[0, 0]), 1.0);
        assert_eq!(BitMetric::Hamming.eval(&[0x0f], &[0xff]), 4.0);
        assert_eq!(BitMetric::Jaccard.eval(&[0x0f], &[0xff]), 0.5);
    }
}
