//! Logged writes: small appends and deletes go to the write-ahead log and
//! the collection's growing segment, and are acknowledged once the log is
//! synced (concurrent writers share one `fsync`: group commit). A flush
//! seals the growing segment into column-group files and a delete log,
//! commits them in one manifest version (raising its WAL watermark), and
//! then trims the log. A restart replays what the watermark does not cover.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use parking_lot::{Mutex, RwLock};

use crate::storage::config::{StoreConfig, DEFAULT_SEGMENT_MAX_ROWS};
use crate::error::{Error, Result};
use crate::storage::wal::growing::{MemStats, MemView, Memtable};
use crate::storage::format::keys::key_at;
use crate::storage::format::manifest::{Change, DeleteLog, SegmentMeta};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::format::segment::{write_delete_log, write_segment_with_ts};
use crate::storage::store::{KeyChecker, Store};
use crate::storage::wal::log::{self as wal, Record, WalWriter};

/// Flush a growing segment once it holds this many rows.
pub const DEFAULT_FLUSH_ROWS: usize = DEFAULT_SEGMENT_MAX_ROWS;

/// Flush a growing segment once it holds this many bytes of Arrow data
/// (128 MiB). A single write larger than this skips the log and is sealed
/// into segments directly.
pub const DEFAULT_FLUSH_BYTES: usize = 128 * 1024 * 1024;

/// Flush a growing segment this long after its first write.
pub const DEFAULT_FLUSH_AGE: Duration = Duration::from_secs(60);

/// Where the write-ahead log lives and when growing segments are flushed.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub dir: PathBuf,
    pub flush_rows: usize,
    pub flush_bytes: usize,
    pub flush_age: Duration,
}

impl WalOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            flush_rows: DEFAULT_FLUSH_ROWS,
            flush_bytes: DEFAULT_FLUSH_BYTES,
            flush_age: DEFAULT_FLUSH_AGE,
        }
    }
}

/// The write-ahead log of a store, held by one process.
#[derive(Debug)]
pub(crate) struct WalState {
    pub opts: WalOptions,
    /// Holds the directory's lock for the life of the store.
    _lock: File,
    colls: Mutex<HashMap<String, Arc<CollWal>>>,
}

impl WalState {
    /// The log state of a collection, created on first use.
    pub fn collection(&self, name: &str) -> Arc<CollWal> {
        self.colls
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(CollWal::new(wal::collection_dir(&self.opts.dir, name), 1)))
            .clone()
    }

    fn get(&self, name: &str) -> Option<Arc<CollWal>> {
        self.colls.lock().get(name).cloned()
    }

    fn all(&self) -> Vec<(String, Arc<CollWal>)> {
        let mut v: Vec<_> = self
            .colls
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// What queries see of a collection's growing segments.
    pub fn views(&self, name: &str) -> Vec<MemView> {
        self.get(name)
            .map(|c| c.memtables().iter().map(|m| m.view()).collect())
            .unwrap_or_default()
    }
}

/// One collection's log, growing segment and the segments being flushed.
#[derive(Debug)]
pub(crate) struct CollWal {
    dir: PathBuf,
    /// One flush at a time, in order (the watermark only rises).
    flush_lock: tokio::sync::Mutex<()>,
    /// Upsert checks and appends, in `_ts` order.
    writer: tokio::sync::Mutex<Writer>,
    /// The group-commit leader.
    sync_lock: tokio::sync::Mutex<()>,
    sync: Mutex<SyncState>,
    mems: RwLock<Mems>,
    /// Records appended and `fsync` calls made (group commit makes the
    /// second smaller than the first under concurrent writers).
    appends: AtomicU64,
    syncs: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Writer {
    file: Option<WalWriter>,
    /// Sequence number of the next file to start.
    next_seq: u64,
    /// Key ranges and filters of the sealed segments, per manifest version.
    checker: Option<(u64, KeyChecker)>,
}

impl Writer {
    /// Closes the current file; returns the number of the next one (no
    /// record written so far is in it or later files).
    fn rotate(&mut self) -> u64 {
        if let Some(f) = self.file.take() {
            self.next_seq = f.seq() + 1;
        }
        self.next_seq
    }
}

#[derive(Debug, Default)]
struct SyncState {
    /// Records appended (log sequence number of the last one).
    written: u64,
    /// Records known durable and published.
    synced: u64,
    file: Option<Arc<File>>,
    /// Appended, not yet durable: published to the growing segment once
    /// synced, in order.
    pending: VecDeque<(u64, Record)>,
    /// A failed write or sync: the log's state on disk is unknown, so no
    /// further write is accepted until a restart replays it.
    failed: Option<String>,
}

#[derive(Debug)]
struct Mems {
    growing: Arc<Memtable>,
    flushing: Vec<Arc<Memtable>>,
}

impl CollWal {
    fn new(dir: PathBuf, next_seq: u64) -> Self {
        Self {
            dir,
            flush_lock: tokio::sync::Mutex::new(()),
            writer: tokio::sync::Mutex::new(Writer {
                file: None,
                next_seq,
                checker: None,
            }),
            sync_lock: tokio::sync::Mutex::new(()),
            sync: Mutex::new(SyncState::default()),
            mems: RwLock::new(Mems {
                growing: Memtable::new(),
                flushing: Vec::new(),
            }),
            appends: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// The memtables a query or an upsert check must consider: those being
    /// flushed, then the growing one.
    pub fn memtables(&self) -> Vec<Arc<Memtable>> {
        let m = self.mems.read();
        let mut v = m.flushing.clone();
        v.push(m.growing.clone());
        v
    }

    fn growing(&self) -> Arc<Memtable> {
        self.mems.read().growing.clone()
    }

    /// Sizes of the growing segment and of those being flushed.
    pub fn stats(&self) -> MemStats {
        let mut total = MemStats::default();
        for m in self.memtables() {
            let s = m.stats();
            total.rows += s.rows;
            total.deletes += s.deletes;
            total.bytes += s.bytes;
            total.max_ts = total.max_ts.max(s.max_ts);
            total.first_write = match (total.first_write, s.first_write) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        total
    }

    /// Bytes of the log files on disk.
    pub fn log_bytes(&self) -> u64 {
        wal::list_files(&self.dir)
            .map(|files| {
                files
                    .iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    fn check_failed(&self) -> Result<()> {
        Self::check_failed_locked(&self.sync.lock())
    }

    /// Appends a record (not yet durable) and returns its sequence number.
    fn append(&self, w: &mut Writer, record: Record) -> Result<u64> {
        self.check_failed()?;
        let framed = record.encode()?;
        if w.file.is_none() {
            let f = WalWriter::create(&self.dir, w.next_seq)?;
            w.next_seq = f.seq() + 1;
            self.sync.lock().file = Some(Arc::new(f.sync_handle()?));
            w.file = Some(f);
        }
        let file = w.file.as_mut().expect("file was just opened");
        if let Err(e) = file.append(&framed) {
            self.sync.lock().failed = Some(e.to_string());
            return Err(e);
        }
        self.appends.fetch_add(1, Ordering::Relaxed);
        let mut s = self.sync.lock();
        s.written += 1;
        let lsn = s.written;
        s.pending.push_back((lsn, record));
        Ok(lsn)
    }

    /// Returns once record `lsn` is durable and visible. The first waiter
    /// syncs everything written so far; those queued behind it find their
    /// records covered (group commit).
    async fn wait_durable(&self, lsn: u64) -> Result<()> {
        let _leader = self.sync_lock.lock().await;
        let (target, file) = {
            let s = self.sync.lock();
            if s.synced >= lsn {
                return Ok(());
            }
            Self::check_failed_locked(&s)?;
            (s.written, s.file.clone())
        };
        let file = file.ok_or_else(|| Error::internal("records written without a log file"))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let synced = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| Error::internal(e.to_string()))
            .and_then(|r| r.map_err(|e| wal::io_error(&self.dir, e)));
        let mut s = self.sync.lock();
        if let Err(e) = synced {
            s.failed = Some(e.to_string());
            return Err(e);
        }
        s.synced = target;
        let growing = self.growing();
        while s.pending.front().is_some_and(|(l, _)| *l <= target) {
            let (_, record) = s.pending.pop_front().expect("checked non-empty");
            growing.publish(&record)?;
        }
        Ok(())
    }

    fn check_failed_locked(s: &SyncState) -> Result<()> {
        match &s.failed {
            Some(reason) => Err(Error::Wal(format!(
                "the write-ahead log of this collection failed earlier ({reason}); \
                 writes are refused until the server restarts and replays it"
            ))),
            None => Ok(()),
        }
    }

    /// Waits until everything appended so far is durable and visible.
    async fn sync_all(&self) -> Result<()> {
        let written = self.sync.lock().written;
        self.wait_durable(written).await
    }

    /// Forgets the growing segment and the log (after the collection was
    /// replaced or dropped, which supersedes them). The caller holds the
    /// flush and writer locks.
    async fn reset(&self, w: &mut Writer) -> Result<()> {
        // Settle what was appended first, so nothing publishes into the new
        // growing segment.
        self.sync_all().await?;
        let next = w.rotate();
        w.checker = None;
        {
            let mut m = self.mems.write();
            m.growing = Memtable::new();
            m.flushing.clear();
        }
        wal::trim_before(&self.dir, next)?;
        Ok(())
    }
}

/// Held by a writer that replaces or drops a collection: no flush and no
/// logged write runs meanwhile.
pub(crate) struct Exclusive<'a> {
    cw: Arc<CollWal>,
    _flush: tokio::sync::MutexGuard<'a, ()>,
    writer: tokio::sync::MutexGuard<'a, Writer>,
}

impl Exclusive<'_> {
    /// Drops the growing segment and the log (the caller committed a change
    /// that supersedes them).
    pub async fn reset(&mut self) -> Result<()> {
        self.cw.reset(&mut self.writer).await
    }
}

impl CollWal {
    pub async fn exclusive(self: &Arc<Self>) -> Exclusive<'_> {
        let flush = self.flush_lock.lock().await;
        let writer = self.writer.lock().await;
        Exclusive {
            cw: self.clone(),
            _flush: flush,
            writer,
        }
    }

    pub async fn writer(&self) -> tokio::sync::MutexGuard<'_, Writer> {
        self.writer.lock().await
    }
}

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
        let object_store = crate::storage::store::open_object_store(url)?;
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

    fn wal_state(&self) -> Result<&WalState> {
        self.wal
            .as_ref()
            .ok_or_else(|| Error::internal("this store has no write-ahead log"))
    }

    /// Replays every collection's log into its growing segment, skipping
    /// records the manifest's watermark covers.
    async fn replay(&self) -> Result<()> {
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
            crate::storage::store::keep_last_per_key(batches, pk_idx)?
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
                    let checker = KeyChecker::load(self, name, schema, &m.segments).await?;
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

    async fn flush_memtable(
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

fn pk_index(schema: &CollectionSchema) -> Result<usize> {
    schema
        .fields()
        .iter()
        .position(|f| f.name() == schema.primary_key())
        .ok_or_else(|| Error::internal("primary key column missing"))
}
