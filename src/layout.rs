//! How vector columns are laid out in Parquet.
//!
//! A `FLOAT[d]` column is stored as `FixedSizeBinary(4 * d)`: each value is
//! the vector's `d` little-endian float32s, plain-encoded and uncompressed.
//! arrow-rs decodes such a column about an order of magnitude faster than a
//! `FixedSizeList<Float32>` column (a list needs repetition and definition
//! levels per element; fixed-size binary is one memcpy per page), and random
//! float vectors hardly compress anyway. The field carries the metadata
//! `quiver.vector = "float32[d]"`; readers turn the column back into
//! `FixedSizeList<Float32, d>` without copying. Other engines read it as
//! binary: e.g. `numpy.frombuffer(b"".join(col.to_pylist()), "<f4").reshape(-1, d)`
//! in Python, or by reinterpreting the buffer of `pyarrow` 's
//! `FixedSizeBinaryArray`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeListArray, Float32Array,
};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, FieldRef};

use crate::error::{Error, Result};
use crate::schema::vector_item_field;

/// Field metadata key marking a stored vector column.
pub const VECTOR_TAG: &str = "quiver.vector";

/// The stored field of vector column `f` (`FixedSizeList<Float32, d>`).
pub fn stored_field(f: &Field) -> Result<FieldRef> {
    let DataType::FixedSizeList(_, d) = f.data_type() else {
        return Err(Error::internal(format!(
            "'{}' is not a vector column",
            f.name()
        )));
    };
    let meta = HashMap::from([(VECTOR_TAG.to_string(), format!("float32[{d}]"))]);
    Ok(Arc::new(
        Field::new(f.name(), DataType::FixedSizeBinary(4 * d), f.is_nullable()).with_metadata(meta),
    ))
}

/// A vector array as stored: the float buffer reinterpreted as fixed-size
/// binary values (no copy).
pub fn to_stored(a: &ArrayRef) -> Result<ArrayRef> {
    let list = a
        .as_fixed_size_list_opt()
        .ok_or_else(|| Error::internal("vector column is not a FixedSizeList"))?;
    let d = list.value_length();
    let values = list
        .values()
        .as_primitive_opt::<arrow::datatypes::Float32Type>()
        .ok_or_else(|| Error::internal("vector elements are not Float32"))?;
    // The list may be a slice of a larger child array.
    let start = list.offset() * d as usize;
    let floats = values.values().slice(start, list.len() * d as usize);
    let bytes = floats.into_inner();
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        4 * d,
        bytes,
        list.nulls().cloned(),
    )?))
}

/// A stored vector array back as `FixedSizeList<Float32, d>`; zero-copy
/// when the buffer is aligned for f32 (it is, for arrays arrow allocated).
/// A `FixedSizeList` (files written before this layout) passes through.
pub fn from_stored(a: &ArrayRef) -> Result<ArrayRef> {
    let Some(bin) = a.as_fixed_size_binary_opt() else {
        return Ok(a.clone());
    };
    let width = bin.value_length();
    if width % 4 != 0 {
        return Err(Error::internal(format!(
            "stored vector width {width} is not a multiple of 4 bytes"
        )));
    }
    let d = width / 4;
    let n = bin.len();
    // `values()` is already this array's window of the data.
    let buffer = bin.values().slice_with_length(0, n * width as usize);
    let floats: ScalarBuffer<f32> =
        if buffer.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0 {
            ScalarBuffer::new(buffer, 0, n * d as usize)
        } else {
            buffer
                .as_slice()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
    let values = Float32Array::new(floats, None);
    Ok(Arc::new(FixedSizeListArray::try_new(
        vector_item_field(),
        d,
        Arc::new(values),
        bin.nulls().cloned(),
    )?))
}

/// Rows `indices` of a `FixedSizeList<Float32>` array, copying each row's
/// floats as one slice (arrow's `take` expands every row into `d` child
/// indices, several times slower for wide vectors). Arrays with nulls or
/// another element type go through `take`.
pub fn gather(a: &ArrayRef, indices: &[u32]) -> Result<ArrayRef> {
    let fast = a.as_fixed_size_list_opt().and_then(|l| {
        let values = l
            .values()
            .as_primitive_opt::<arrow::datatypes::Float32Type>()?;
        (l.null_count() == 0 && values.null_count() == 0).then_some((l, values))
    });
    let Some((list, values)) = fast else {
        let idx = arrow::array::UInt32Array::from(indices.to_vec());
        return Ok(arrow::compute::take(a.as_ref(), &idx, None)?);
    };
    let d = list.value_length() as usize;
    let base = list.offset() * d;
    let src = &values.values()[base..];
    let mut out: Vec<f32> = Vec::with_capacity(indices.len() * d);
    for &i in indices {
        let start = i as usize * d;
        let row = src.get(start..start + d).ok_or_else(|| {
            Error::internal(format!("row {i} out of bounds of {} vectors", list.len()))
        })?;
        out.extend_from_slice(row);
    }
    Ok(Arc::new(FixedSizeListArray::try_new(
        vector_item_field(),
        d as i32,
        Arc::new(Float32Array::from(out)),
        None,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_matches_take() {
        let values = Float32Array::from_iter_values((0..60).map(|i| i as f32));
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(
            vector_item_field(),
            3,
            Arc::new(values),
            None,
        ));
        for a in [list.clone(), list.slice(4, 12)] {
            let idx = [0u32, 2, 3, 7, 11, 11];
            let want = arrow::compute::take(
                a.as_ref(),
                &arrow::array::UInt32Array::from(idx.to_vec()),
                None,
            )
            .unwrap();
            assert_eq!(gather(&a, &idx).unwrap().as_ref(), want.as_ref());
        }
        assert!(gather(&list, &[20]).is_err());
    }

    #[test]
    fn round_trips_without_copying_including_slices_and_nulls() {
        let values = Float32Array::from_iter_values((0..40).map(|i| i as f32 * 0.5));
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(
            vector_item_field(),
            4,
            Arc::new(values),
            Some(vec![true, false, true, true, true, true, true, true, true, true].into()),
        ));
        for a in [list.clone(), list.slice(3, 5)] {
            let stored = to_stored(&a).unwrap();
            assert_eq!(stored.data_type(), &DataType::FixedSizeBinary(16));
            let back = from_stored(&stored).unwrap();
            assert_eq!(back.as_ref(), a.as_ref());
        }
        let stored = to_stored(&list).unwrap();
        let back = from_stored(&stored).unwrap();
        let src = list
            .as_fixed_size_list()
            .values()
            .as_primitive::<arrow::datatypes::Float32Type>();
        let dst = back
            .as_fixed_size_list()
            .values()
            .as_primitive::<arrow::datatypes::Float32Type>();
        assert_eq!(src.values().as_ptr(), dst.values().as_ptr(), "no copy");
    }
}
