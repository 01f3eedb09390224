//! SQL functions: vector distances on simsimd kernels, bit-vector
//! distances, vector helpers (norms, subvectors, quantization), hex, and
//! the allocation caps wrapped around DataFusion's own functions.

pub(crate) mod bits;
pub(crate) mod distance;
pub(crate) mod hex;
pub(crate) mod limits;
pub(crate) mod vector;
