//! The logged write path: small writes are appended to the write-ahead
//! log and the growing segment, acknowledged once the log is fsynced; a
//! store opened with a log replays it first.

use crate::error::{Error, Result};
use crate::storage::config::StoreConfig;
use crate::storage::format::keys::key_at;
use crate::storage::format::schema::CollectionSchema;
use crate::storage::store::flush::pk_index;
use crate::storage::store::Store;
use crate::storage::wal::log::{self as wal, Record};
use crate::storage::wal::state::{CollWal, WalOptions, WalState};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

impl Store {
    /// Opens the store with a write-ahead log in `opts.dir`: writes that fit
    /// in the growing segment are logged and acknowledged once synced, and
    /// flushed into segments later. Replays the log first. The directory is
    /// locked for the life of the store.
    pub async fn open_with_wal(
        url: &str,
        config: StoreConfig,
        opts: WalOptions,
    ) -> Result<Arc<Self>> {
        // A bad store URL is reported before anything is created locally.
        let object_store = crate::storage::io::open::open_object_store(url)?;
        let lock = wal::lock(&opts.dir)?;
        let state = WalState {
            opts,
            _lock: lock,
            colls: Mutex::new(HashMap::new()),
        };
        let store = Store::build(object_store, url.to_string(), config, Some(state)).await?;
        store.replay().await?;
        Ok(Arc::new(store))
    }

    pub(crate) fn wal_state(&self) -> Result<&WalState> {
        self.wal
            .as_ref()
            .ok_or_else(|| Error::internal("this store has no write-ahead log"))
    }

    /// Replays every collection's log into its growing segment, skipping
    /// records the manifest's watermark covers.
    pub(crate) async fn replay(&self) -> Result<()> {
        let w = self.wal_state()?;
        for name in wal::list_collections(&w.opts.dir)? {
            let dir = wal::collection_dir(&w.opts.dir, &name);
            let log = wal::read(&dir, true)?;
            for (_, r) in &log.records {
                self.clock().observe(r.ts());
            }
            if self.unreadable(&name).is_some() {
                // Its manifest is damaged: keep its log untouched for later.
                tracing::error!(collection = %name, "not replaying the log of an unreadable collection");
                continue;
            }
            let Some(m) = self.snapshot(&name) else {
                // Dropped (or never created): its log is superseded.
                std::fs::remove_dir_all(&dir).map_err(|e| wal::io_error(&dir, e))?;
                continue;
            };
            let schema = m.schema.clone().expect("live collection has a schema");
            let pk_idx = pk_index(&schema)?;
            let cw = Arc::new(CollWal::new(dir.clone(), log.last_seq + 1));
            let growing = cw.growing();
            let mut replayed = 0usize;
            let mut rows = 0usize;
            for (_, record) in log.records {
                if record.ts() <= m.wal_ts {
                    continue;
                }
                if let Record::Insert { rows: batch, .. } = &record {
                    // Numbered rows are never upserted: no key set to keep.
                    if !schema.auto_id() {
                        growing.note_keys(batch.column(pk_idx).as_ref());
                    }
                    rows += batch.num_rows();
                }
                growing.publish(&record)?;
                replayed += 1;
            }
            if replayed == 0 {
                wal::trim_before(&dir, log.last_seq + 1)?;
            } else {
                tracing::info!(
                    collection = %name,
                    records = replayed,
                    rows,
                    "replayed the write-ahead log"
                );
            }
            w.colls.lock().insert(name, cw);
        }
        Ok(())
    }

    /// The log state of a collection, if this store logs writes.
    pub(crate) fn coll_wal(&self, name: &str) -> Option<Arc<CollWal>> {
        self.wal.as_ref().map(|w| w.collection(name))
    }

    /// Largest write (in bytes of Arrow data) that goes through the log.
    pub(crate) fn wal_write_limit(&self) -> Option<usize> {
        self.wal.as_ref().map(|w| w.opts.flush_bytes)
    }

    /// Logs `batches` (conformed to `schema`) as one insert at one `_ts`,
    /// replacing existing rows with the same keys, or, for a collection
    /// with a generated key (unless `keys_given`), numbering its rows.
    /// Returns the rows stored, once the record is durable and visible.
    pub(crate) async fn wal_insert(
        &self,
        name: &str,
        schema: &CollectionSchema,
        cw: &CollWal,
        batches: Vec<RecordBatch>,
        keys_given: bool,
    ) -> Result<u64> {
        let input_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if input_rows == 0 {
            return Ok(0);
        }
        let pk_idx = pk_index(schema)?;
        let numbered = schema.auto_id() && !keys_given;
        let batches = if numbered {
            batches
        } else {
            crate::storage::wal::key_check::keep_last_per_key(batches, pk_idx)?
        };
        let rows = arrow::compute::concat_batches(&schema.arrow_schema(), &batches)?;
        let stored = rows.num_rows() as u64;
        let lsn = {
            let mut w = cw.writer().await;
            let m = self.require(name)?;
            if m.schema.as_ref() != Some(schema) {
                return Err(Error::CommitConflict {
                    collection: name.to_string(),
                    reason: "the collection was replaced with another schema meanwhile".into(),
                });
            }
            let (rows, replaced) = if numbered {
                let first = self.clock().reserve(stored);
                let rows = schema
                    .number_rows(vec![rows], first)?
                    .pop()
                    .expect("one batch in, one out");
                (rows, None)
            } else {
                if w.checker.as_ref().is_none_or(|(v, _)| *v != m.version) {
                    let checker = self.key_checker(name, schema, &m.segments).await?;
                    w.checker = Some((m.version, checker));
                }
                let checker = &w.checker.as_ref().expect("loaded above").1;
                let mems = cw.memtables();
                let keys = rows.column(pk_idx);
                // Rows written back (an UPDATE's) replace rows that exist;
                // numbered rows are not in the growing segments' key sets.
                let replaced = BooleanArray::from_iter((0..keys.len()).map(|i| {
                    let k = key_at(keys.as_ref(), i);
                    Some(keys_given || mems.iter().any(|m| m.has_key(k)) || checker.may_contain(k))
                }));
                let replaced = (replaced.true_count() > 0)
                    .then(|| arrow::compute::filter(keys, &replaced))
                    .transpose()?;
                (rows, replaced)
            };
            let ts = self.clock().now();
            let growing = cw.growing();
            if !numbered {
                growing.note_keys(rows.column(pk_idx).as_ref());
            }
            let record = Record::Insert { ts, rows, replaced };
            cw.append(&mut w, record)?
        };
        cw.wait_durable(lsn).await?;
        Ok(stored)
    }

    /// Logs a delete of `keys`; returns once it is durable and visible.
    pub(crate) async fn wal_delete(&self, name: &str, cw: &CollWal, keys: ArrayRef) -> Result<u64> {
        let n = keys.len() as u64;
        let lsn = {
            let mut w = cw.writer().await;
            self.require(name)?;
            let ts = self.clock().now();
            cw.append(&mut w, Record::Delete { ts, keys })?
        };
        cw.wait_durable(lsn).await?;
        Ok(n)
    }
}
