//! The growing segment: rows and deletes that are in the write-ahead log but
//! not yet sealed into Parquet segments. It is append-only; a query takes a
//! [`MemView`] of what has been published (made durable) so far.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::storage::format::keys::{key_at, DeleteMap, Key, KeyRef};
use crate::storage::format::schema::TS_COLUMN;
use crate::storage::wal::log::Record;

/// One growing (or, once frozen, flushing) segment of a collection.
#[derive(Debug, Default)]
pub struct Memtable {
    inner: RwLock<Inner>,
    /// Keys of every row written here, including writes not yet published
    /// (the writer checks upserts against them).
    keys: Mutex<HashSet<Key>>,
    /// For a frozen memtable: the first WAL file that holds none of its
    /// records (files before it can go once it is committed).
    sealed_before: Mutex<Option<u64>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Rows in collection column order, followed by `_ts`.
    batches: Vec<RecordBatch>,
    /// `(keys, _ts)` of deletes, including the keys upserts replaced.
    deletes: Vec<(ArrayRef, u64)>,
    rows: usize,
    delete_rows: usize,
    bytes: usize,
    max_ts: u64,
    first_write: Option<Instant>,
    /// Delete map over the first `n` delete entries, built on demand.
    map: Option<(usize, Arc<DeleteMap>)>,
}

/// What a query sees of a memtable: published rows and deletes.
#[derive(Debug, Clone)]
pub struct MemView {
    /// Rows in collection column order, followed by `_ts`.
    pub batches: Vec<RecordBatch>,
    pub deletes: Arc<DeleteMap>,
    /// The raw deletes, for flushing.
    pub delete_entries: Vec<(ArrayRef, u64)>,
}

/// Sizes of a memtable, for flush decisions and `inspect`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemStats {
    pub rows: usize,
    pub deletes: usize,
    pub bytes: usize,
    pub max_ts: u64,
    pub first_write: Option<Instant>,
}

impl Memtable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Remembers the keys of rows about to be written.
    pub fn note_keys(&self, keys: &dyn Array) {
        let mut set = self.keys.lock();
        set.reserve(keys.len());
        for i in 0..keys.len() {
            set.insert(key_at(keys, i).into());
        }
    }

    /// Whether a row with key `k` was written here.
    pub fn has_key(&self, k: KeyRef<'_>) -> bool {
        let set = self.keys.lock();
        match k {
            KeyRef::Int(i) => set.contains(&Key::Int(i)),
            KeyRef::Str(s) => set.contains(&Key::Str(s.to_string())),
        }
    }

    /// Makes a durable record visible to queries.
    pub fn publish(&self, record: &Record) -> Result<()> {
        let mut inner = self.inner.write();
        inner.first_write.get_or_insert_with(Instant::now);
        inner.max_ts = inner.max_ts.max(record.ts());
        match record {
            Record::Insert { ts, rows, replaced } => {
                if let Some(k) = replaced {
                    inner.delete_rows += k.len();
                    inner.bytes += k.get_array_memory_size();
                    inner.deletes.push((k.clone(), *ts));
                }
                let mut fields: Vec<Arc<Field>> = rows.schema().fields().to_vec();
                fields.push(Arc::new(Field::new(TS_COLUMN, DataType::UInt64, false)));
                let mut cols = rows.columns().to_vec();
                cols.push(Arc::new(UInt64Array::from(vec![*ts; rows.num_rows()])));
                let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
                inner.rows += batch.num_rows();
                inner.bytes += batch.get_array_memory_size();
                inner.batches.push(batch);
            }
            Record::Delete { ts, keys } => {
                inner.delete_rows += keys.len();
                inner.bytes += keys.get_array_memory_size();
                inner.deletes.push((keys.clone(), *ts));
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> MemStats {
        let inner = self.inner.read();
        MemStats {
            rows: inner.rows,
            deletes: inner.delete_rows,
            bytes: inner.bytes,
            max_ts: inner.max_ts,
            first_write: inner.first_write,
        }
    }

    pub fn is_empty(&self) -> bool {
        let inner = self.inner.read();
        inner.batches.is_empty() && inner.deletes.is_empty()
    }

    /// The published rows and deletes.
    pub fn view(&self) -> MemView {
        {
            let inner = self.inner.read();
            if let Some((n, map)) = &inner.map {
                if *n == inner.deletes.len() {
                    return MemView {
                        batches: inner.batches.clone(),
                        deletes: map.clone(),
                        delete_entries: inner.deletes.clone(),
                    };
                }
            }
        }
        let mut inner = self.inner.write();
        let mut map = DeleteMap::default();
        for (keys, ts) in &inner.deletes {
            map.add(keys.as_ref(), &UInt64Array::from(vec![*ts; keys.len()]));
        }
        let map = Arc::new(map);
        inner.map = Some((inner.deletes.len(), map.clone()));
        MemView {
            batches: inner.batches.clone(),
            deletes: map,
            delete_entries: inner.deletes.clone(),
        }
    }

    pub fn set_sealed_before(&self, seq: u64) {
        *self.sealed_before.lock() = Some(seq);
    }

    pub fn sealed_before(&self) -> Option<u64> {
        *self.sealed_before.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::UInt64Type;

    #[test]
    fn published_records_are_visible_with_their_ts() {
        let m = Memtable::new();
        let rows = RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        m.note_keys(rows.column(0).as_ref());
        assert!(m.has_key(KeyRef::Int(2)));
        assert!(m.view().batches.is_empty(), "not published yet");
        m.publish(&Record::Insert {
            ts: 7,
            rows,
            replaced: None,
        })
        .unwrap();
        m.publish(&Record::Delete {
            ts: 9,
            keys: Arc::new(Int64Array::from(vec![1])),
        })
        .unwrap();
        let v = m.view();
        assert_eq!(v.batches.len(), 1);
        let ts = v.batches[0].column(1).as_primitive::<UInt64Type>();
        assert_eq!(ts.values().to_vec(), vec![7, 7]);
        assert!(v.deletes.hides(KeyRef::Int(1), 7));
        assert!(!v.deletes.hides(KeyRef::Int(2), 7));
        assert_eq!(m.stats().rows, 2);
        assert_eq!(m.stats().deletes, 1);
    }
}
