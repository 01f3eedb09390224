//! How vector columns are laid out in Parquet.
//!
//! A `FLOAT[d]` column is stored as `FixedSizeBinary(4 * d)`: each value is
//! the vector's `d` little-endian float32s, plain-encoded and uncompressed.
//! arrow-rs decodes such a column about an order of magnitude faster than a
//! `FixedSizeList<Float32>` column (a list needs repetition and definition
//! levels per element; fixed-size binary is one memcpy per page), and random
//! float vectors hardly compress anyway. The field carries the metadata
//! `quiver.vector = "float32[d]"`; readers turn the column back into
//! `FixedSizeList<Float32, d>` without copying. Float16 and int8 vectors are
//! stored the same way (`FixedSizeBinary(2 * d)`, `"float16[d]"`;
//! `FixedSizeBinary(d)`, `"int8[d]"`). Other engines read it as
//! binary: e.g. `numpy.frombuffer(b"".join(col.to_pylist()), "<f4").reshape(-1, d)`
//! in Python, or by reinterpreting the buffer of `pyarrow` 's
//! `FixedSizeBinaryArray`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    make_array, Array, ArrayData, ArrayRef, FixedSizeBinaryArray, FixedSizeListArray,
};
use arrow::buffer::{Buffer, MutableBuffer};
use arrow::datatypes::{DataType, Field, FieldRef};

use crate::error::{Error, Result};
use crate::storage::format::schema::{is_vector_element, vector_item_field_of};

/// Field metadata key marking a stored vector column.
pub const VECTOR_TAG: &str = "quiver.vector";

/// The name of a vector element type in the [`VECTOR_TAG`] value.
fn element_name(t: &DataType) -> Option<&'static str> {
    match t {
        DataType::Float32 => Some("float32"),
        DataType::Float16 => Some("float16"),
        DataType::Int8 => Some("int8"),
        _ => None,
    }
}

/// The element type a stored field's [`VECTOR_TAG`] names (float32 when the
/// tag is absent: files written before the tag carried other types).
pub fn stored_element(f: &Field) -> Result<DataType> {
    let Some(tag) = f.metadata().get(VECTOR_TAG) else {
        return Ok(DataType::Float32);
    };
    let name = tag.split('[').next().unwrap_or_default();
    [DataType::Float32, DataType::Float16, DataType::Int8]
        .into_iter()
        .find(|t| element_name(t) == Some(name))
        .ok_or_else(|| Error::Corrupt {
            path: f.name().clone(),
            reason: format!("unknown vector type '{tag}' in the field metadata"),
        })
}

/// The list's element type and its width in bytes.
fn element_of(f: &Field) -> Result<(DataType, i32, i32)> {
    let DataType::FixedSizeList(item, d) = f.data_type() else {
        return Err(Error::internal(format!(
            "'{}' is not a vector column",
            f.name()
        )));
    };
    let t = item.data_type().clone();
    let width = match (&t, t.primitive_width()) {
        (t, Some(w)) if is_vector_element(t) => w as i32,
        _ => {
            return Err(Error::internal(format!(
                "'{}' has vector elements of type {t}",
                f.name()
            )))
        }
    };
    Ok((t, width, *d))
}

/// The stored field of vector column `f` (`FixedSizeList<T, d>`).
pub fn stored_field(f: &Field) -> Result<FieldRef> {
    let (t, width, d) = element_of(f)?;
    let name = element_name(&t).expect("a vector element type");
    let meta = HashMap::from([(VECTOR_TAG.to_string(), format!("{name}[{d}]"))]);
    Ok(Arc::new(
        Field::new(
            f.name(),
            DataType::FixedSizeBinary(width * d),
            f.is_nullable(),
        )
        .with_metadata(meta),
    ))
}

/// A vector array as stored: the element buffer reinterpreted as fixed-size
/// binary values (no copy).
pub fn to_stored(a: &ArrayRef) -> Result<ArrayRef> {
    let list = a
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| Error::internal("vector column is not a FixedSizeList"))?;
    let d = list.value_length() as usize;
    let values = list.values();
    let width = values
        .data_type()
        .primitive_width()
        .filter(|_| is_vector_element(values.data_type()))
        .ok_or_else(|| Error::internal("vector elements are not float32, float16 or int8"))?;
    // The list may be a slice of a larger child array, and the child a
    // slice of its buffer.
    let data = values.to_data();
    let start = (data.offset() + list.offset() * d) * width;
    let bytes = data.buffers()[0].slice_with_length(start, list.len() * d * width);
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        (width * d) as i32,
        bytes,
        list.nulls().cloned(),
    )?))
}

/// A stored vector array back as `FixedSizeList<T, d>`, `T` the element type
/// `element`; zero-copy when the buffer is aligned for `T` (it is, for arrays
/// arrow allocated). A `FixedSizeList` (files written before this layout)
/// passes through.
pub fn from_stored(a: &ArrayRef, element: &DataType) -> Result<ArrayRef> {
    let Some(bin) = a.as_any().downcast_ref::<FixedSizeBinaryArray>() else {
        return Ok(a.clone());
    };
    let width = element
        .primitive_width()
        .ok_or_else(|| Error::internal(format!("{element} is not a vector element type")))?;
    let row = bin.value_length() as usize;
    if !row.is_multiple_of(width) {
        return Err(Error::internal(format!(
            "stored vector width {row} is not a multiple of {width} bytes"
        )));
    }
    let d = row / width;
    let n = bin.len();
    // `values()` is already this array's window of the data.
    let mut buffer = bin.values().slice_with_length(0, n * row);
    if buffer.as_ptr().align_offset(width) != 0 {
        let mut copy = MutableBuffer::with_capacity(buffer.len());
        copy.extend_from_slice(buffer.as_slice());
        buffer = copy.into();
    }
    let values = make_array(
        ArrayData::builder(element.clone())
            .len(n * d)
            .add_buffer(buffer)
            .build()?,
    );
    Ok(Arc::new(FixedSizeListArray::try_new(
        vector_item_field_of(element.clone()),
        d as i32,
        values,
        bin.nulls().cloned(),
    )?))
}

/// How many rows ahead [`gather`] (and the scoring of scattered rows) asks
/// the CPU to fetch.
const PREFETCH_ROWS_AHEAD: usize = 4;

/// Rows wider than this are not prefetched by [`gather`]: the hardware
/// streams the lines of a wide row by itself, and the copy of one is
/// bound by bandwidth rather than by the latency of its first line.
const PREFETCH_MAX_ROW_BYTES: usize = 1024;

/// Asks the CPU to bring the cache lines of `xs` in (a hint: nothing is
/// read, nothing can fault).
#[inline(always)]
fn prefetch<T>(xs: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = xs.as_ptr() as *const i8;
        for offset in (0..std::mem::size_of_val(xs)).step_by(64) {
            // SAFETY: a prefetch is a hint that never dereferences its
            // address (and this one points into a live slice); SSE is part
            // of the x86_64 baseline.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    start.wrapping_add(offset),
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xs;
}

/// Before the row `rows[j]` is read: prefetches the row
/// [`PREFETCH_ROWS_AHEAD`] places further in `rows`, of `values` seen as
/// rows of `width` elements, if rows are at most [`PREFETCH_MAX_ROW_BYTES`]
/// wide (wider ones the hardware streams by itself).
#[inline(always)]
pub(crate) fn prefetch_ahead<T>(values: &[T], width: usize, rows: &[u32], j: usize) {
    if width * std::mem::size_of::<T>() > PREFETCH_MAX_ROW_BYTES {
        return;
    }
    if let Some(&next) = rows.get(j + PREFETCH_ROWS_AHEAD) {
        let at = next as usize * width;
        if let Some(row) = values.get(at..at + width) {
            prefetch(row);
        }
    }
}

/// Rows `indices` of a `FixedSizeList` vector array, copying each row's
/// elements as one slice (arrow's `take` expands every row into `d` child
/// indices, several times slower for wide vectors), and prefetching the
/// rows a few indices ahead so the copies of scattered rows overlap their
/// memory latency. Arrays with nulls go through `take`.
pub fn gather(a: &ArrayRef, indices: &[u32]) -> Result<ArrayRef> {
    let fast = a
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .and_then(|l| {
            let v = l.values();
            let width = v.data_type().primitive_width()?;
            (l.null_count() == 0 && v.null_count() == 0 && is_vector_element(v.data_type()))
                .then_some((l, width))
        });
    let Some((list, width)) = fast else {
        let idx = arrow::array::UInt32Array::from(indices.to_vec());
        return Ok(arrow::compute::take(a.as_ref(), &idx, None)?);
    };
    let d = list.value_length() as usize;
    let row = d * width;
    let data = list.values().to_data();
    let base = (data.offset() + list.offset() * d) * width;
    let src = &data.buffers()[0].as_slice()[base..];
    let mut out = MutableBuffer::with_capacity(indices.len() * row);
    for (k, &i) in indices.iter().enumerate() {
        prefetch_ahead(src, row, indices, k);
        let start = i as usize * row;
        let bytes = src
            .get(start..start + row)
            .filter(|_| (i as usize) < list.len())
            .ok_or_else(|| {
                Error::internal(format!("row {i} out of bounds of {} vectors", list.len()))
            })?;
        out.extend_from_slice(bytes);
    }
    let element = list.values().data_type().clone();
    let values = make_array(
        ArrayData::builder(element.clone())
            .len(indices.len() * d)
            .add_buffer(Buffer::from(out))
            .build()?,
    );
    Ok(Arc::new(FixedSizeListArray::try_new(
        vector_item_field_of(element),
        d as i32,
        values,
        None,
    )?))
}

/// Decoded vector chunks at least this large are moved to memory advised
/// for huge pages ([`on_huge_pages`]): one 2 MiB page.
pub const HUGE_PAGE_MIN_BYTES: usize = 2 << 20;

/// A vector array (`FixedSizeList` of a vector element type, no null
/// elements) of at least [`HUGE_PAGE_MIN_BYTES`], its elements copied into
/// an anonymous mapping the kernel is advised to back with 2 MiB pages
/// (Linux transparent huge pages, `madvise(MADV_HUGEPAGE)`). A search that
/// reads scattered rows of a large cached chunk then takes a TLB miss per
/// 2 MiB instead of one per row. `None` when `a` is not such an array, is
/// smaller, or the system refuses the mapping or the advice (the caller
/// keeps `a`). Linux only.
pub fn on_huge_pages(a: &ArrayRef) -> Option<ArrayRef> {
    #[cfg(target_os = "linux")]
    {
        let list = a.as_any().downcast_ref::<FixedSizeListArray>()?;
        let v = list.values();
        let width = v.data_type().primitive_width()?;
        if !is_vector_element(v.data_type()) || v.null_count() > 0 {
            return None;
        }
        let d = list.value_length() as usize;
        let len = list.len() * d * width;
        if len < HUGE_PAGE_MIN_BYTES {
            return None;
        }
        let data = v.to_data();
        let base = (data.offset() + list.offset() * d) * width;
        let src = data.buffers().first()?.as_slice().get(base..base + len)?;
        let mut map = memmap2::MmapOptions::new().len(len).map_anon().ok()?;
        map.advise(memmap2::Advice::HugePage).ok()?;
        map.copy_from_slice(src);
        let map = map.make_read_only().ok()?;
        let values = make_array(
            ArrayData::builder(v.data_type().clone())
                .len(list.len() * d)
                .add_buffer(Buffer::from(bytes::Bytes::from_owner(map)))
                .build()
                .ok()?,
        );
        FixedSizeListArray::try_new(
            vector_item_field_of(v.data_type().clone()),
            d as i32,
            values,
            list.nulls().cloned(),
        )
        .ok()
        .map(|l| Arc::new(l) as ArrayRef)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = a;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::schema::vector_item_field;
    use arrow::array::{AsArray, Float32Array};

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
        // Long enough that rows are prefetched ahead, up to the last one.
        let n = 1000u32;
        let values = Float32Array::from_iter_values((0..n * 8).map(|i| i as f32));
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(
            vector_item_field(),
            8,
            Arc::new(values),
            None,
        ));
        let idx: Vec<u32> = (0..700u32).map(|i| (i * 7919) % n).chain([n - 1]).collect();
        let want = arrow::compute::take(
            list.as_ref(),
            &arrow::array::UInt32Array::from(idx.clone()),
            None,
        )
        .unwrap();
        assert_eq!(gather(&list, &idx).unwrap().as_ref(), want.as_ref());
    }

    #[test]
    fn huge_page_copies_are_equal_and_small_arrays_stay() {
        let (rows, d) = (HUGE_PAGE_MIN_BYTES / 4 / 128 + 10, 128usize);
        let values = Float32Array::from_iter_values((0..rows * d).map(|i| i as f32 * 0.5));
        let nulls: Vec<bool> = (0..rows).map(|i| i % 97 != 3).collect();
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(
            vector_item_field(),
            d as i32,
            Arc::new(values),
            Some(nulls.into()),
        ));
        for a in [list.clone(), list.slice(7, rows - 9)] {
            let moved = on_huge_pages(&a);
            if cfg!(target_os = "linux") {
                let moved = moved.expect("a large vector array moves");
                assert_eq!(moved.as_ref(), a.as_ref());
                let ptr = |x: &ArrayRef| {
                    x.as_fixed_size_list()
                        .values()
                        .as_primitive::<arrow::datatypes::Float32Type>()
                        .values()
                        .as_ptr()
                };
                assert_ne!(ptr(&moved), ptr(&a), "a copy");
                assert_eq!(ptr(&moved) as usize % 4096, 0, "page aligned");
            } else {
                assert!(moved.is_none());
            }
        }
        assert!(
            on_huge_pages(&list.slice(0, 100)).is_none(),
            "below the minimum"
        );
        let ints: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1i64; 1 << 20]));
        assert!(on_huge_pages(&ints).is_none(), "not a vector array");
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
            let back = from_stored(&stored, &DataType::Float32).unwrap();
            assert_eq!(back.as_ref(), a.as_ref());
        }
        let stored = to_stored(&list).unwrap();
        let back = from_stored(&stored, &DataType::Float32).unwrap();
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

    #[test]
    fn float16_and_int8_vectors_round_trip_and_gather() {
        let h = arrow::array::Float16Array::from_iter_values(
            (0..24).map(|i| half::f16::from_f32(i as f32 * 0.25)),
        );
        let i = arrow::array::Int8Array::from_iter_values((0..24).map(|i| i as i8 - 12));
        for (values, tag) in [
            (Arc::new(h) as ArrayRef, "float16[4]"),
            (Arc::new(i) as ArrayRef, "int8[4]"),
        ] {
            let element = values.data_type().clone();
            let list: ArrayRef = Arc::new(FixedSizeListArray::new(
                vector_item_field_of(element.clone()),
                4,
                values,
                None,
            ));
            let field = Field::new("v", list.data_type().clone(), true);
            let stored_f = stored_field(&field).unwrap();
            assert_eq!(stored_f.metadata()[VECTOR_TAG], tag);
            assert_eq!(stored_element(&stored_f).unwrap(), element);
            for a in [list.clone(), list.slice(2, 3)] {
                let stored = to_stored(&a).unwrap();
                let back = from_stored(&stored, &element).unwrap();
                assert_eq!(back.as_ref(), a.as_ref());
                let want = arrow::compute::take(
                    a.as_ref(),
                    &arrow::array::UInt32Array::from(vec![2, 0, 0]),
                    None,
                )
                .unwrap();
                assert_eq!(gather(&a, &[2, 0, 0]).unwrap().as_ref(), want.as_ref());
            }
        }
    }
}
