//! The log state of a store: per collection, the open log file, the
//! growing memtable(s) and group commit (appends are made durable by one
//! fsync shared by the writers waiting on it). It never names `Store`:
//! the store's logged write path and flush drive it.

use crate::error::{Error, Result};
use crate::storage::config::DEFAULT_SEGMENT_MAX_ROWS;
use crate::storage::wal::growing::{MemStats, MemView, Memtable};
use crate::storage::wal::key_check::KeyChecker;
use crate::storage::wal::log::{self as wal, Record, WalWriter};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    pub(crate) _lock: File,
    pub(crate) colls: Mutex<HashMap<String, Arc<CollWal>>>,
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

    pub(crate) fn get(&self, name: &str) -> Option<Arc<CollWal>> {
        self.colls.lock().get(name).cloned()
    }

    pub(crate) fn all(&self) -> Vec<(String, Arc<CollWal>)> {
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
    pub(crate) dir: PathBuf,
    /// One flush at a time, in order (the watermark only rises).
    pub(crate) flush_lock: tokio::sync::Mutex<()>,
    /// Upsert checks and appends, in `_ts` order.
    pub(crate) writer: tokio::sync::Mutex<Writer>,
    /// The group-commit leader.
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    pub(crate) sync: Mutex<SyncState>,
    pub(crate) mems: RwLock<Mems>,
    /// Records appended and `fsync` calls made (group commit makes the
    /// second smaller than the first under concurrent writers).
    pub(crate) appends: AtomicU64,
    pub(crate) syncs: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) file: Option<WalWriter>,
    /// Sequence number of the next file to start.
    pub(crate) next_seq: u64,
    /// Key ranges and filters of the sealed segments, per manifest version.
    pub(crate) checker: Option<(u64, KeyChecker)>,
}

impl Writer {
    /// Closes the current file; returns the number of the next one (no
    /// record written so far is in it or later files).
    pub(crate) fn rotate(&mut self) -> u64 {
        if let Some(f) = self.file.take() {
            self.next_seq = f.seq() + 1;
        }
        self.next_seq
    }
}

#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// Records appended (log sequence number of the last one).
    pub(crate) written: u64,
    /// Records known durable and published.
    pub(crate) synced: u64,
    pub(crate) file: Option<Arc<File>>,
    /// Appended, not yet durable: published to the growing segment once
    /// synced, in order.
    pub(crate) pending: VecDeque<(u64, Record)>,
    /// A failed write or sync: the log's state on disk is unknown, so no
    /// further write is accepted until a restart replays it.
    pub(crate) failed: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Mems {
    pub(crate) growing: Arc<Memtable>,
    pub(crate) flushing: Vec<Arc<Memtable>>,
}

impl CollWal {
    pub(crate) fn new(dir: PathBuf, next_seq: u64) -> Self {
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

    pub(crate) fn growing(&self) -> Arc<Memtable> {
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

    pub(crate) fn check_failed(&self) -> Result<()> {
        Self::check_failed_locked(&self.sync.lock())
    }

    /// Appends a record (not yet durable) and returns its sequence number.
    pub(crate) fn append(&self, w: &mut Writer, record: Record) -> Result<u64> {
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
    pub(crate) async fn wait_durable(&self, lsn: u64) -> Result<()> {
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

    pub(crate) fn check_failed_locked(s: &SyncState) -> Result<()> {
        match &s.failed {
            Some(reason) => Err(Error::Wal(format!(
                "the write-ahead log of this collection failed earlier ({reason}); \
                 writes are refused until the server restarts and replays it"
            ))),
            None => Ok(()),
        }
    }

    /// Waits until everything appended so far is durable and visible.
    pub(crate) async fn sync_all(&self) -> Result<()> {
        let written = self.sync.lock().written;
        self.wait_durable(written).await
    }

    /// Forgets the growing segment and the log (after the collection was
    /// replaced or dropped, which supersedes them). The caller holds the
    /// flush and writer locks.
    pub(crate) async fn reset(&self, w: &mut Writer) -> Result<()> {
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
    pub(crate) cw: Arc<CollWal>,
    pub(crate) _flush: tokio::sync::MutexGuard<'a, ()>,
    pub(crate) writer: tokio::sync::MutexGuard<'a, Writer>,
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
