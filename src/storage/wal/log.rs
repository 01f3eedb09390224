//! The write-ahead log: writes land here (and in the growing segment) before
//! they are acknowledged, and are replayed after a restart until a flush has
//! sealed them into segments.
//!
//! Layout: one directory per collection under the WAL directory, holding
//! numbered files `<seq:020>.wal`. A file starts with an 8-byte magic; then
//! records, each framed as
//!
//! ```text
//! u32 LE payload length | u32 LE crc32c(payload) | payload
//! ```
//!
//! and a payload is `u8 kind | u64 LE _ts | u64 LE n | n bytes of Arrow IPC
//! stream | Arrow IPC stream`: for an insert, the rows then the keys they
//! replace; for a delete, the keys then nothing.
//!
//! A record that is cut short or fails its checksum at the very end of the
//! newest file is a torn write from a crash: it was never acknowledged, so it
//! is dropped with a warning (and the file cut back). Anywhere else it is
//! corruption, reported with the file and byte offset.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};

/// First bytes of every WAL file (format version 1).
pub const MAGIC: &[u8; 8] = b"QVWAL\x00\x00\x01";

/// Bytes of a record's frame header.
const FRAME_HEADER: usize = 8;

const KIND_INSERT: u8 = 1;
const KIND_DELETE: u8 = 2;

pub use crate::storage::config::WAL_DIR_NAME;

/// Name of the lock file that keeps a second process off a WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// One logged write.
#[derive(Debug, Clone)]
pub enum Record {
    /// Rows (conformed to the collection schema, without `_ts`) written at
    /// `ts`, and the keys they replace (deleted at the same `ts`).
    Insert {
        ts: u64,
        rows: RecordBatch,
        replaced: Option<ArrayRef>,
    },
    /// Keys deleted at `ts`.
    Delete { ts: u64, keys: ArrayRef },
}

impl Record {
    pub fn ts(&self) -> u64 {
        match self {
            Record::Insert { ts, .. } | Record::Delete { ts, .. } => *ts,
        }
    }

    /// The framed bytes of this record.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut payload = Vec::new();
        let (kind, ts, first, second) = match self {
            Record::Insert { ts, rows, replaced } => (
                KIND_INSERT,
                *ts,
                ipc_bytes(rows)?,
                match replaced {
                    Some(k) => ipc_bytes(&keys_batch(k)?)?,
                    None => Vec::new(),
                },
            ),
            Record::Delete { ts, keys } => {
                (KIND_DELETE, *ts, ipc_bytes(&keys_batch(keys)?)?, Vec::new())
            }
        };
        payload.push(kind);
        payload.extend_from_slice(&ts.to_le_bytes());
        payload.extend_from_slice(&(first.len() as u64).to_le_bytes());
        payload.extend_from_slice(&first);
        payload.extend_from_slice(&second);
        let len = u32::try_from(payload.len()).map_err(|_| {
            Error::invalid(format!(
                "a single write of {} bytes is too large for the write-ahead log (at most 4 GiB)",
                payload.len()
            ))
        })?;
        let mut framed = Vec::with_capacity(FRAME_HEADER + payload.len());
        framed.extend_from_slice(&len.to_le_bytes());
        framed.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        framed.extend_from_slice(&payload);
        Ok(framed)
    }

    fn decode(payload: &[u8]) -> std::result::Result<Self, String> {
        if payload.len() < 17 {
            return Err("record too short".into());
        }
        let kind = payload[0];
        let ts = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
        let n = u64::from_le_bytes(payload[9..17].try_into().expect("8 bytes")) as usize;
        let rest = &payload[17..];
        if n > rest.len() {
            return Err("record section runs past its end".into());
        }
        let (first, second) = rest.split_at(n);
        match kind {
            KIND_INSERT => Ok(Record::Insert {
                ts,
                rows: read_ipc(first)?,
                replaced: if second.is_empty() {
                    None
                } else {
                    Some(read_ipc(second)?.column(0).clone())
                },
            }),
            KIND_DELETE => Ok(Record::Delete {
                ts,
                keys: read_ipc(first)?.column(0).clone(),
            }),
            other => Err(format!("unknown record kind {other}")),
        }
    }
}

fn keys_batch(keys: &ArrayRef) -> Result<RecordBatch> {
    let schema = Schema::new(vec![Field::new("key", keys.data_type().clone(), false)]);
    Ok(RecordBatch::try_new(schema.into(), vec![keys.clone()])?)
}

fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut w = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    Ok(w.into_inner()?)
}

fn read_ipc(bytes: &[u8]) -> std::result::Result<RecordBatch, String> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| e.to_string())?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())
}

/// The WAL directory of one collection.
pub fn collection_dir(wal_dir: &Path, collection: &str) -> PathBuf {
    wal_dir.join(collection)
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The WAL files of a collection directory, oldest first.
pub fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error(dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| io_error(dir, e))?;
        let name = e.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, e.path()));
    }
    out.sort();
    Ok(out)
}

/// The collections that have a WAL directory.
pub fn list_collections(wal_dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(wal_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error(wal_dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| io_error(wal_dir, e))?;
        if e.path().is_dir() {
            if let Some(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Wal(format!("write-ahead log '{}': {e}", path.display()))
}

/// What reading a collection's WAL found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Records in log order, with the sequence number of their file.
    pub records: Vec<(u64, Record)>,
    /// Bytes of the WAL files (after dropping a torn tail).
    pub bytes: u64,
    /// Highest file sequence number present.
    pub last_seq: u64,
    /// A dropped torn tail: file and offset of the partial record.
    pub torn: Option<(PathBuf, u64)>,
}

/// Reads every record of a collection's WAL directory. With `repair`, a torn
/// tail is cut off the newest file; without it (read-only inspection) it is
/// only reported.
pub fn read(dir: &Path, repair: bool) -> Result<Replay> {
    let files = list_files(dir)?;
    let mut out = Replay::default();
    let n_files = files.len();
    for (i, (seq, path)) in files.into_iter().enumerate() {
        out.last_seq = seq;
        let newest = i + 1 == n_files;
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io_error(&path, e))?;
        let corrupt = |offset: u64, reason: &str| Error::Corrupt {
            path: path.display().to_string(),
            reason: format!("write-ahead log record at byte offset {offset}: {reason}"),
        };
        // A torn write at the end of the newest file (its header included).
        let mut torn_at: Option<u64> = None;
        let mut offset = MAGIC.len();
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if newest && MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
                torn_at = Some(0);
            } else {
                return Err(Error::Corrupt {
                    path: path.display().to_string(),
                    reason: "not a quiver write-ahead log file (bad magic)".into(),
                });
            }
        }
        while torn_at.is_none() && offset < bytes.len() {
            let rest = &bytes[offset..];
            if rest.len() < FRAME_HEADER {
                if newest {
                    torn_at = Some(offset as u64);
                    break;
                }
                return Err(corrupt(offset as u64, "cut short"));
            }
            let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            let end = FRAME_HEADER + len;
            if end > rest.len() {
                if newest {
                    torn_at = Some(offset as u64);
                    break;
                }
                return Err(corrupt(offset as u64, "cut short"));
            }
            let payload = &rest[FRAME_HEADER..end];
            if crc32c::crc32c(payload) != crc {
                if newest && end == rest.len() {
                    torn_at = Some(offset as u64);
                    break;
                }
                return Err(corrupt(offset as u64, "checksum mismatch"));
            }
            let record = Record::decode(payload).map_err(|r| corrupt(offset as u64, &r))?;
            out.records.push((seq, record));
            offset += end;
        }
        match torn_at {
            Some(at) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = bytes.len() as u64 - at,
                    "dropping a torn write at the end of the write-ahead log (it was never acknowledged)"
                );
                if repair {
                    let keep = at.max(MAGIC.len() as u64);
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_error(&path, e))?;
                    if at < MAGIC.len() as u64 {
                        f.set_len(0).map_err(|e| io_error(&path, e))?;
                        (&f).write_all(MAGIC).map_err(|e| io_error(&path, e))?;
                    } else {
                        f.set_len(keep).map_err(|e| io_error(&path, e))?;
                    }
                    f.sync_all().map_err(|e| io_error(&path, e))?;
                }
                out.bytes += at.max(MAGIC.len() as u64);
                out.torn = Some((path.clone(), at));
            }
            None => out.bytes += bytes.len() as u64,
        }
    }
    Ok(out)
}

/// Unflushed contents of a collection's log, read without taking it (for
/// `inspect` beside a running server).
#[derive(Debug, Default, Clone, Copy)]
pub struct Backlog {
    pub rows: u64,
    pub deletes: u64,
    pub bytes: u64,
}

/// Rows and deletes in `collection`'s log newer than the watermark `wal_ts`.
pub fn backlog(wal_dir: &Path, collection: &str, wal_ts: u64) -> Result<Backlog> {
    let log = read(&collection_dir(wal_dir, collection), false)?;
    let mut out = Backlog {
        bytes: log.bytes,
        ..Default::default()
    };
    for (_, r) in log.records.iter().filter(|(_, r)| r.ts() > wal_ts) {
        match r {
            Record::Insert { rows, replaced, .. } => {
                out.rows += rows.num_rows() as u64;
                out.deletes += replaced.as_ref().map_or(0, |k| k.len() as u64);
            }
            Record::Delete { keys, .. } => out.deletes += keys.len() as u64,
        }
    }
    Ok(out)
}

/// Appends framed records to the newest file of a collection's WAL.
#[derive(Debug)]
pub struct WalWriter {
    dir: PathBuf,
    seq: u64,
    file: File,
    bytes: u64,
}

impl WalWriter {
    /// Starts file `seq` in `dir` (created if missing); the file and the
    /// directory entry are synced before it is used.
    pub fn create(dir: &Path, seq: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(file_name(seq));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        file.write_all(MAGIC).map_err(|e| io_error(&path, e))?;
        file.sync_all().map_err(|e| io_error(&path, e))?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            seq,
            file,
            bytes: MAGIC.len() as u64,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Writes one framed record (not yet synced).
    pub fn append(&mut self, framed: &[u8]) -> Result<()> {
        self.file
            .write_all(framed)
            .map_err(|e| io_error(&self.dir.join(file_name(self.seq)), e))?;
        self.bytes += framed.len() as u64;
        Ok(())
    }

    /// A handle to sync the current file from another thread.
    pub fn sync_handle(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| io_error(&self.dir.join(file_name(self.seq)), e))
    }
}

/// Removes the WAL files of `dir` older than `seq` (their records are in
/// committed segments).
pub fn trim_before(dir: &Path, seq: u64) -> Result<usize> {
    let mut removed = 0;
    for (s, path) in list_files(dir)? {
        if s < seq {
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Makes a directory's entries (created or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Takes the WAL directory for this process: a second server (or `quiver
/// sql`) on the same directory would interleave its log with ours.
pub fn lock(wal_dir: &Path) -> Result<File> {
    std::fs::create_dir_all(wal_dir).map_err(|e| io_error(wal_dir, e))?;
    let path = wal_dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "the write-ahead log '{}' is in use by another quiver process (a running server?); \
             stop it, or send the statement to it over Flight SQL",
            wal_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn rows(ids: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![(
            "id",
            Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
        )])
        .unwrap()
    }

    fn write_records(dir: &Path, seq: u64, n: i64) -> WalWriter {
        let mut w = WalWriter::create(dir, seq).unwrap();
        for i in 0..n {
            let r = Record::Insert {
                ts: 10 + i as u64,
                rows: rows(&[i, i + 100]),
                replaced: (i % 2 == 1).then(|| Arc::new(Int64Array::from(vec![i])) as ArrayRef),
            };
            w.append(&r.encode().unwrap()).unwrap();
        }
        let d = Record::Delete {
            ts: 99,
            keys: Arc::new(StringArray::from(vec!["a", "b"])),
        };
        w.append(&d.encode().unwrap()).unwrap();
        w
    }

    #[test]
    fn records_round_trip_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1, 3);
        write_records(tmp.path(), 2, 2);
        let r = read(tmp.path(), false).unwrap();
        assert_eq!(r.records.len(), 7);
        assert_eq!(r.last_seq, 2);
        assert!(r.torn.is_none());
        let ts: Vec<u64> = r.records.iter().map(|(_, r)| r.ts()).collect();
        assert_eq!(ts, vec![10, 11, 12, 99, 10, 11, 99]);
        match &r.records[1].1 {
            Record::Insert { rows, replaced, .. } => {
                assert_eq!(rows.num_rows(), 2);
                assert_eq!(replaced.as_ref().unwrap().len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn torn_tail_is_dropped_and_cut_off() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1, 3);
        let path = tmp.path().join(file_name(1));
        let full = std::fs::metadata(&path).unwrap().len();
        // Every cut inside the last record is a torn tail.
        for cut in [full - 1, full - 7, full - 20] {
            let bytes = std::fs::read(&path).unwrap();
            let t2 = tempfile::tempdir().unwrap();
            let p2 = t2.path().join(file_name(1));
            std::fs::write(&p2, &bytes[..cut as usize]).unwrap();
            let r = read(t2.path(), true).unwrap();
            assert_eq!(r.records.len(), 3, "cut at {cut}");
            assert!(r.torn.is_some());
            // Repaired: a second read is clean.
            let again = read(t2.path(), false).unwrap();
            assert_eq!(again.records.len(), 3);
            assert!(again.torn.is_none());
        }
    }

    #[test]
    fn corruption_in_the_middle_names_file_and_offset() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1, 3);
        let path = tmp.path().join(file_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a byte inside the first record's payload.
        bytes[MAGIC.len() + FRAME_HEADER + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = read(tmp.path(), true).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("byte offset 8"), "{err}");
        assert!(err.contains("checksum mismatch"), "{err}");
        // Nothing was cut.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_bad_older_file_is_corruption_not_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        write_records(tmp.path(), 1, 3);
        write_records(tmp.path(), 2, 1);
        let path = tmp.path().join(file_name(1));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = read(tmp.path(), true).unwrap_err().to_string();
        assert!(err.contains("cut short"), "{err}");
    }

    #[test]
    fn second_lock_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = lock(tmp.path()).unwrap();
        let err = lock(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another quiver process"), "{err}");
    }
}
