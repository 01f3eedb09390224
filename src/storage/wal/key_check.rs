//! Which keys a write must treat as upserts: the growing segments' keys
//! (exact) and the stored segments' key ranges and Bloom filters, consulted
//! before an upsert or delete looks at files; and the last-row-wins rule
//! for keys repeated within one write. It lives with the log because the
//! log's writers cache one per manifest version.

use crate::error::Result;
use crate::storage::format::keys::{key_at, Key, KeyBloom, KeyRef};
use crate::storage::format::manifest::SegmentMeta;
use crate::storage::format::schema::CollectionSchema;
use crate::storage::wal::growing::Memtable;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use std::collections::HashSet;
use std::sync::Arc;

/// Answers "may this key already exist?" from segments' key ranges and
/// Bloom filters.
/// A segment's key range and filter, as far as known.
pub(crate) type KeyRange = (Option<Key>, Option<Key>, Option<Arc<KeyBloom>>);

#[derive(Debug)]
pub(crate) struct KeyChecker {
    /// (min, max, filter) per segment; a segment without a filter or range
    /// may hold any key.
    pub(crate) segments: Vec<KeyRange>,
    /// Growing segments (exact key sets).
    pub(crate) mems: Vec<Arc<Memtable>>,
    pub(crate) pk: String,
    pub(crate) int_keys: bool,
}

impl KeyChecker {
    /// A checker that knows of no key (a write of freshly numbered rows).
    pub(crate) fn empty(schema: &CollectionSchema) -> Self {
        Self {
            segments: Vec::new(),
            mems: Vec::new(),
            pk: schema.primary_key().to_string(),
            int_keys: true,
        }
    }

    /// A checker over `segments`, given the Bloom filter of each (or none).
    pub(crate) fn with_segments(
        schema: &CollectionSchema,
        segments: &[SegmentMeta],
        blooms: Vec<Option<Arc<KeyBloom>>>,
    ) -> Self {
        let pk = schema.primary_key().to_string();
        let int_keys = schema
            .fields()
            .iter()
            .any(|f| f.name() == &pk && crate::storage::format::keys::is_int_key(f.data_type()));
        let segments = segments
            .iter()
            .zip(blooms)
            .map(|(s, bloom)| Self::entry(s, &pk, int_keys, bloom))
            .collect();
        Self {
            segments,
            mems: Vec::new(),
            pk,
            int_keys,
        }
    }

    pub(crate) fn entry(
        s: &SegmentMeta,
        pk: &str,
        int_keys: bool,
        bloom: Option<Arc<KeyBloom>>,
    ) -> KeyRange {
        let stats = s.stats.get(pk);
        // A range that cannot be read is no range: the segment may hold any key.
        let parse = |t: &Option<String>| -> Option<Key> {
            let t = t.as_ref()?;
            if int_keys {
                t.parse::<i64>().ok().map(Key::Int)
            } else {
                Some(Key::Str(t.clone()))
            }
        };
        let (min, max) = stats.map_or((None, None), |c| (parse(&c.min), parse(&c.max)));
        (min, max, bloom)
    }

    pub(crate) fn add(&mut self, s: &SegmentMeta, bloom: Arc<KeyBloom>) {
        let entry = Self::entry(s, &self.pk, self.int_keys, Some(bloom));
        self.segments.push(entry);
    }

    pub(crate) fn may_contain(&self, k: KeyRef<'_>) -> bool {
        if self.mems.iter().any(|m| m.has_key(k)) {
            return true;
        }
        let owned: Key = k.into();
        self.segments.iter().any(|(min, max, bloom)| {
            let in_range = min.as_ref().is_none_or(|m| &owned >= m)
                && max.as_ref().is_none_or(|m| &owned <= m);
            in_range && bloom.as_ref().is_none_or(|b| b.may_contain(k))
        })
    }
}

/// `keys` (a key column) sorted, for [`sorted_contains`].
pub(crate) fn sorted_keys(keys: &ArrayRef) -> Result<ArrayRef> {
    let order = arrow::compute::sort_to_indices(keys.as_ref(), None, None)?;
    Ok(arrow::compute::take(keys.as_ref(), &order, None)?)
}

/// Whether `k` is in one of the sorted key arrays (binary search; integer
/// keys compare as `i64`, as Arrow sorts them for keys up to `i64::MAX`).
pub(crate) fn sorted_contains(sorted: &[ArrayRef], k: KeyRef<'_>) -> bool {
    let want: Key = k.into();
    sorted.iter().any(|a| {
        let (mut lo, mut hi) = (0usize, a.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match Key::from(key_at(a.as_ref(), mid)).cmp(&want) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    })
}

/// Keeps only the last row of every primary key (the newest wins within a
/// write, as with separate writes).
pub(crate) fn keep_last_per_key(
    batches: Vec<RecordBatch>,
    pk_idx: usize,
) -> Result<Vec<RecordBatch>> {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut dup = false;
    let mut keeps: Vec<Vec<bool>> = Vec::with_capacity(batches.len());
    for b in batches.iter().rev() {
        let col = b.column(pk_idx);
        let mut keep = vec![true; b.num_rows()];
        for i in (0..b.num_rows()).rev() {
            if !seen.insert(key_at(col.as_ref(), i).into()) {
                keep[i] = false;
                dup = true;
            }
        }
        keeps.push(keep);
    }
    if !dup {
        return Ok(batches);
    }
    keeps.reverse();
    batches
        .into_iter()
        .zip(keeps)
        .map(|(b, keep)| {
            Ok(arrow::compute::filter_record_batch(
                &b,
                &BooleanArray::from(keep),
            )?)
        })
        .collect()
}
