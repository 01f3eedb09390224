//! Primary-key machinery for MVCC: [`KeyBloom`] (which keys a segment may
//! hold) and [`DeleteMap`] (the newest delete timestamp per key).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use fastbloom::BloomFilter;

use crate::error::{Error, Result};

/// False-positive rate of the per-segment key filters. A false positive only
/// costs one superfluous delete entry on upsert.
const BLOOM_FALSE_POSITIVE: f64 = 0.01;

/// Fixed hash seed, so a filter written by one process is read by another.
const BLOOM_SEED: u128 = 0x7175_6976_6572_2d70_6b2d_626c_6f6f_6d21;

/// Format tag at the start of a serialized filter.
const BLOOM_MAGIC: &[u8; 8] = b"QVRBLM01";

/// A primary key value, borrowed from an Arrow array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    Int(i64),
    Str(&'a str),
}

/// Reads the key at `row` of a key column: an integer column of any width
/// (as `i64`; unsigned keys above `i64::MAX` are refused on ingest) or a
/// Utf8 column.
#[inline]
pub fn key_at(keys: &dyn Array, row: usize) -> KeyRef<'_> {
    match keys.data_type() {
        DataType::Int64 => KeyRef::Int(keys.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => KeyRef::Int(keys.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int16 => KeyRef::Int(keys.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int8 => KeyRef::Int(keys.as_primitive::<Int8Type>().value(row) as i64),
        DataType::UInt64 => KeyRef::Int(keys.as_primitive::<UInt64Type>().value(row) as i64),
        DataType::UInt32 => KeyRef::Int(keys.as_primitive::<UInt32Type>().value(row) as i64),
        DataType::UInt16 => KeyRef::Int(keys.as_primitive::<UInt16Type>().value(row) as i64),
        DataType::UInt8 => KeyRef::Int(keys.as_primitive::<UInt8Type>().value(row) as i64),
        _ => KeyRef::Str(keys.as_string::<i32>().value(row)),
    }
}

/// Whether keys of type `t` are integers ([`KeyRef::Int`]).
pub fn is_int_key(t: &DataType) -> bool {
    t.is_integer()
}

/// An owned primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Str(String),
}

impl From<KeyRef<'_>> for Key {
    fn from(k: KeyRef<'_>) -> Self {
        match k {
            KeyRef::Int(i) => Key::Int(i),
            KeyRef::Str(s) => Key::Str(s.to_string()),
        }
    }
}

/// Bloom filter over the primary keys of one segment.
pub struct KeyBloom {
    filter: BloomFilter,
}

impl std::fmt::Debug for KeyBloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBloom")
            .field("bits", &self.filter.num_bits())
            .finish()
    }
}

fn hash_key(filter: &BloomFilter, k: KeyRef<'_>) -> u64 {
    match k {
        KeyRef::Int(i) => filter.source_hash(&i),
        KeyRef::Str(s) => filter.source_hash(s),
    }
}

impl KeyBloom {
    /// A filter holding every key of `columns` (Int64 or Utf8 arrays).
    pub fn build(columns: &[ArrayRef]) -> Self {
        let n: usize = columns.iter().map(|c| c.len()).sum();
        let mut filter = BloomFilter::with_false_pos(BLOOM_FALSE_POSITIVE)
            .seed(&BLOOM_SEED)
            .expected_items(n.max(1));
        for c in columns {
            for i in 0..c.len() {
                let h = hash_key(&filter, key_at(c.as_ref(), i));
                filter.insert_hash(h);
            }
        }
        Self { filter }
    }

    /// Memory held by the filter.
    pub fn size_bytes(&self) -> usize {
        self.filter.as_slice().len() * 8
    }

    pub fn may_contain(&self, k: KeyRef<'_>) -> bool {
        self.filter.contains_hash(hash_key(&self.filter, k))
    }

    pub fn to_bytes(&self) -> Bytes {
        let bits = self.filter.as_slice();
        let mut out = BytesMut::with_capacity(16 + bits.len() * 8);
        out.put_slice(BLOOM_MAGIC);
        out.put_u32_le(self.filter.num_hashes());
        out.put_u32_le(bits.len() as u32);
        for w in bits {
            out.put_u64_le(*w);
        }
        out.freeze()
    }

    pub fn from_bytes(path: &str, mut b: Bytes) -> Result<Self> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if b.len() < 16 || &b[..8] != BLOOM_MAGIC {
            return Err(corrupt("not a quiver key filter"));
        }
        b.advance(8);
        let hashes = b.get_u32_le();
        let words = b.get_u32_le() as usize;
        if b.len() != words * 8 || words == 0 || hashes == 0 {
            return Err(corrupt("truncated key filter"));
        }
        let bits: Vec<u64> = (0..words).map(|_| b.get_u64_le()).collect();
        let filter = BloomFilter::from_vec(bits).seed(&BLOOM_SEED).hashes(hashes);
        Ok(Self { filter })
    }
}

/// The newest delete timestamp of every deleted key of a snapshot.
#[derive(Debug, Default)]
pub struct DeleteMap {
    ints: HashMap<i64, u64>,
    strs: HashMap<String, u64>,
    /// Largest delete timestamp (rows at or above it are never hidden).
    pub max_ts: u64,
}

impl DeleteMap {
    pub fn is_empty(&self) -> bool {
        self.ints.is_empty() && self.strs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ints.len() + self.strs.len()
    }

    /// Records deletes from a `(key, _ts)` batch.
    pub fn add(&mut self, keys: &dyn Array, ts: &dyn Array) {
        let ts = ts.as_primitive::<UInt64Type>();
        for i in 0..keys.len() {
            let t = ts.value(i);
            self.max_ts = self.max_ts.max(t);
            match key_at(keys, i) {
                KeyRef::Int(k) => {
                    let e = self.ints.entry(k).or_insert(0);
                    *e = (*e).max(t);
                }
                KeyRef::Str(k) => match self.strs.get_mut(k) {
                    Some(e) => *e = (*e).max(t),
                    None => {
                        self.strs.insert(k.to_string(), t);
                    }
                },
            }
        }
    }

    /// Whether the row with key `k` written at `row_ts` is deleted.
    #[inline]
    pub fn hides(&self, k: KeyRef<'_>, row_ts: u64) -> bool {
        if row_ts >= self.max_ts {
            return false;
        }
        let del = match k {
            KeyRef::Int(i) => self.ints.get(&i),
            KeyRef::Str(s) => self.strs.get(s),
        };
        del.is_some_and(|d| *d > row_ts)
    }
}

/// The deletes a query applies: the committed delete logs of its version
/// and those of the growing segments.
#[derive(Debug, Clone, Default)]
pub struct DeleteSet {
    maps: Vec<Arc<DeleteMap>>,
}

impl DeleteSet {
    pub fn new(maps: impl IntoIterator<Item = Arc<DeleteMap>>) -> Self {
        Self {
            maps: maps.into_iter().filter(|m| !m.is_empty()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    pub fn maps(&self) -> &[Arc<DeleteMap>] {
        &self.maps
    }

    /// Deleted keys (a key deleted in two places counts twice).
    pub fn len(&self) -> usize {
        self.maps.iter().map(|m| m.len()).sum()
    }

    #[inline]
    pub fn hides(&self, k: KeyRef<'_>, row_ts: u64) -> bool {
        self.maps.iter().any(|m| m.hides(k, row_ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, UInt64Array};

    #[test]
    fn bloom_round_trips_and_has_no_false_negatives() {
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let b = KeyBloom::build(&[keys]);
        let b = KeyBloom::from_bytes("x", b.to_bytes()).unwrap();
        assert!((0..10_000).all(|i| b.may_contain(KeyRef::Int(i))));
        let fp = (10_000..20_000)
            .filter(|i| b.may_contain(KeyRef::Int(*i)))
            .count();
        assert!(fp < 300, "false positives: {fp}");
        assert!(KeyBloom::from_bytes("x", Bytes::from_static(b"junk")).is_err());
    }

    #[test]
    fn delete_map_hides_only_older_rows() {
        let mut m = DeleteMap::default();
        m.add(
            &StringArray::from(vec!["a", "a"]),
            &UInt64Array::from(vec![5, 9]),
        );
        assert!(m.hides(KeyRef::Str("a"), 8));
        assert!(
            !m.hides(KeyRef::Str("a"), 9),
            "an upsert's new row has the delete's ts"
        );
        assert!(!m.hides(KeyRef::Str("b"), 1));
    }
}
