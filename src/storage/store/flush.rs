//! Logged writes: small appends and deletes go to the write-ahead log and
//! the collection's growing segment, and are acknowledged once the log is
//! synced (concurrent writers share one `fsync`: group commit). A flush
//! seals the growing segment into column-group files and a delete log,
//! commits them in one manifest version (raising its WAL watermark), and
//! then trims the log. A restart replays what the watermark does not cover.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::UInt64Type;

use crate::error::{Error, Result};
use crate::storage::format::keys::key_at;
use crate::storage::format::manifest::{Change, DeleteLog, SegmentMeta};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::format::segment::{write_delete_log, write_segment_with_ts};
use crate::storage::store::Store;
use crate::storage::wal::growing::Memtable;
use crate::storage::wal::log::{self as wal};
use crate::storage::wal::state::CollWal;

impl Store {
    /// Seals the growing segment of `name` into segment files and a delete
    /// log, commits them, and trims the log. Returns the rows flushed.
    pub async fn flush(&self, name: &str) -> Result<u64> {
        let Some(cw) = self.wal.as_ref().and_then(|w| w.get(name)) else {
            return Ok(0);
        };
        let _flush = cw.flush_lock.lock().await;
        // Freeze the growing segment, unless an earlier flush failed and
        // left one to finish first.
        if cw.mems.read().flushing.is_empty() {
            let mut w = cw.writer().await;
            cw.sync_all().await?;
            let growing = cw.growing();
            if growing.is_empty() {
                return Ok(0);
            }
            growing.set_sealed_before(w.rotate());
            let mut m = cw.mems.write();
            m.flushing.push(growing);
            m.growing = Memtable::new();
        }
        let frozen = cw.mems.read().flushing.clone();
        let mut rows = 0;
        for f in frozen {
            rows += self.flush_memtable(name, &cw, &f).await?;
            if crate::error::injected("after-commit-before-wal-trim", name) {
                return Err(Error::internal(
                    "injected failure after the flush commit, before the log was trimmed",
                ));
            }
            if let Some(seq) = f.sealed_before() {
                wal::trim_before(&cw.dir, seq)?;
            }
        }
        Ok(rows)
    }

    pub(crate) async fn flush_memtable(
        &self,
        name: &str,
        cw: &CollWal,
        frozen: &Arc<Memtable>,
    ) -> Result<u64> {
        let view = frozen.view();
        let stats = frozen.stats();
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        let pk_idx = pk_index(&schema)?;
        let arrow_schema = schema.arrow_schema();
        let n_user = arrow_schema.fields().len();
        // Rows that a later delete in the same growing segment hides are
        // not worth writing.
        let mut chunks: Vec<(Vec<RecordBatch>, Vec<ArrayRef>)> = vec![(vec![], vec![])];
        let mut chunk_rows = 0usize;
        let mut rows = 0u64;
        for b in &view.batches {
            let ts = b.column(n_user).as_primitive::<UInt64Type>();
            let keys = b.column(pk_idx);
            let b = if view.deletes.is_empty() {
                b.clone()
            } else {
                let keep = BooleanArray::from_iter(
                    (0..b.num_rows())
                        .map(|i| Some(!view.deletes.hides(key_at(keys.as_ref(), i), ts.value(i)))),
                );
                arrow::compute::filter_record_batch(b, &keep)?
            };
            if b.num_rows() == 0 {
                continue;
            }
            if chunk_rows >= self.config().segment_max_rows {
                chunks.push((vec![], vec![]));
                chunk_rows = 0;
            }
            chunk_rows += b.num_rows();
            rows += b.num_rows() as u64;
            let last = chunks.last_mut().expect("one chunk at least");
            last.0.push(RecordBatch::try_new(
                arrow_schema.clone(),
                b.columns()[..n_user].to_vec(),
            )?);
            last.1.push(b.column(n_user).clone());
        }
        let mut segments: Vec<SegmentMeta> = Vec::new();
        let mut deletes: Vec<DeleteLog> = Vec::new();
        let written = async {
            for (batches, ts) in chunks {
                if batches.is_empty() {
                    continue;
                }
                segments.push(
                    write_segment_with_ts(
                        self.object_store(),
                        self.config(),
                        name,
                        &schema,
                        batches,
                        ts,
                    )
                    .await?,
                );
            }
            if !view.delete_entries.is_empty() {
                let refs: Vec<&dyn Array> = view
                    .delete_entries
                    .iter()
                    .map(|(k, _)| k.as_ref())
                    .collect();
                let keys = arrow::compute::concat(&refs)?;
                let ts: Vec<u64> = view
                    .delete_entries
                    .iter()
                    .flat_map(|(k, t)| std::iter::repeat_n(*t, k.len()))
                    .collect();
                deletes.push(
                    write_delete_log(self.object_store(), self.config(), name, keys, ts).await?,
                );
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = written {
            self.remove_written(name, &segments, &deletes).await;
            return Err(e);
        }
        let change = Change::Append {
            schema,
            segments,
            deletes,
            flushed_ts: stats.max_ts,
        };
        let _writes = self.lock_writes().await;
        self.commit_and(name, &change, None, || {
            cw.mems.write().flushing.retain(|x| !Arc::ptr_eq(x, frozen));
        })
        .await?;
        tracing::info!(
            collection = name,
            rows,
            deletes = stats.deletes,
            "flushed the growing segment"
        );
        Ok(rows)
    }

    /// Flushes the growing segments that reached the configured rows, bytes
    /// or age (and retries flushes that failed).
    pub async fn flush_due(&self) -> Result<()> {
        let Some(w) = &self.wal else {
            return Ok(());
        };
        let mut first_error = None;
        for (name, cw) in w.all() {
            let s = cw.growing().stats();
            let retry = !cw.mems.read().flushing.is_empty();
            let due = s.rows >= w.opts.flush_rows
                || s.bytes >= w.opts.flush_bytes
                || s.first_write
                    .is_some_and(|t| t.elapsed() >= w.opts.flush_age);
            if due || retry {
                if let Err(e) = self.flush(&name).await {
                    tracing::warn!(collection = %name, error = %e, "flush failed; will retry");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Flushes every growing segment (on shutdown).
    pub async fn flush_all(&self) -> Result<()> {
        let Some(w) = &self.wal else {
            return Ok(());
        };
        for (name, _) in w.all() {
            if self.snapshot(&name).is_some() {
                self.flush(&name).await?;
            }
        }
        Ok(())
    }

    /// Growing rows, growing deletes and log bytes of a collection (zeros
    /// without a log).
    pub fn growing_status(&self, name: &str) -> (u64, u64, u64) {
        match self.wal.as_ref().and_then(|w| w.get(name)) {
            Some(cw) => {
                let s = cw.stats();
                (s.rows as u64, s.deletes as u64, cw.log_bytes())
            }
            None => (0, 0, 0),
        }
    }

    /// Records appended to the log and `fsync`s made, over all collections.
    pub fn wal_counters(&self) -> (u64, u64) {
        let Some(w) = &self.wal else {
            return (0, 0);
        };
        w.all().iter().fold((0, 0), |(a, s), (_, c)| {
            (
                a + c.appends.load(Ordering::Relaxed),
                s + c.syncs.load(Ordering::Relaxed),
            )
        })
    }

    /// The write-ahead log directory, if this store has one.
    pub fn wal_dir(&self) -> Option<&std::path::Path> {
        self.wal.as_ref().map(|w| w.opts.dir.as_path())
    }
}

pub(crate) fn pk_index(schema: &CollectionSchema) -> Result<usize> {
    schema
        .fields()
        .iter()
        .position(|f| f.name() == schema.primary_key())
        .ok_or_else(|| Error::internal("primary key column missing"))
}
