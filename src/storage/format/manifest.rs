//! `Manifest`: the immutable, numbered description of one committed version
//! of a collection, and the commit protocol that writes it.
//!
//! # Commit protocol
//!
//! ```text
//!   writer                                   object store
//!   ------                                   ------------
//!   write segment files (unique names)  ---> insert_log/<seg>/<group>/<uuid>.parquet
//!   base = latest manifest (version n)
//!   next = apply(base, change)
//!   put _manifest/<n+1>.json, PutMode::Create
//!        ok ----------------------------> version n+1 is committed
//!        AlreadyExists (another writer won n+1):
//!            wait a random, growing time (jitter)
//!            base = reload latest; retry apply (bounded)
//!            change cannot be rebased -> CommitConflict (retryable by the caller)
//! ```
//!
//! A manifest file is written exactly once and never changed; the highest
//! version is the current one. Readers pin one version for a whole query, so
//! they see a consistent snapshot while writers commit new versions.

use std::collections::BTreeMap;

use bytes::Bytes;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::index::{IndexDef, IndexFile};

/// Version of the manifest JSON layout written by this build (2: with a
/// checksum and a commit id).
pub const FORMAT_VERSION: u32 = 2;

/// A manifest file starts with its checksum as the first JSON member:
/// `{"crc32c": "<8 hex digits>",` followed by the rest of the pretty-printed
/// manifest. The crc32c covers the manifest without that member (`{` and
/// what follows the comma), so the file stays plain JSON for `jq` and
/// friends, and any changed byte is detected before the JSON is trusted.
const CHECKSUM_PREFIX: &[u8] = b"{\"crc32c\": \"";

/// How many times a commit is rebased onto a newer version before giving up.
pub const MAX_COMMIT_ATTEMPTS: usize = 32;

/// One committed version of a collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub version: u64,
    pub collection: String,
    /// A dropped collection keeps its version history; a later create goes on
    /// from the next version.
    pub dropped: bool,
    pub schema: Option<CollectionSchema>,
    pub segments: Vec<SegmentMeta>,
    /// Delete logs: `(primary key, _ts)` pairs. A row is invisible once a
    /// delete for its key has a larger `_ts` than the row.
    #[serde(default)]
    pub delete_logs: Vec<DeleteLog>,
    /// Highest commit timestamp handed out for this collection (the clock's
    /// high-water mark, so the clock never goes backwards across restarts).
    pub max_ts: u64,
    /// Write-ahead log watermark: records with `_ts` at or below it are in
    /// this version (flushed) or were superseded (the collection was
    /// created, replaced or dropped after them), so replay skips them.
    #[serde(default)]
    pub wal_ts: u64,
    /// Wall-clock time of the commit, milliseconds since the Unix epoch.
    pub committed_at_ms: u64,
    /// Unique per commit attempt: a writer whose create-only put succeeded
    /// but whose answer was lost finds its own commit by this id.
    #[serde(default)]
    pub commit_id: String,
    /// Vector indexes declared on the collection (`CREATE INDEX`); each
    /// segment lists the files built for them so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
}

/// A sealed segment: column-group files that zip by row position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    pub id: u64,
    pub rows: u64,
    pub min_ts: u64,
    pub max_ts: u64,
    pub files: Vec<DataFile>,
    /// Per-column min / max / null count of the scalar and key columns,
    /// values rendered as text in the column's type (used for pruning).
    pub stats: BTreeMap<String, ColumnStats>,
    /// Bloom filter of the segment's primary keys (Milvus "stats log"), so
    /// an insert can tell which keys may already exist without reading data.
    #[serde(default)]
    pub pk_bloom: Option<StatsFile>,
    /// For a segment written by compaction: the segments it replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<u64>,
    /// Index files built for this segment (one per index at most).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_files: Vec<IndexFile>,
}

/// A small side file of a segment (the key Bloom filter).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatsFile {
    /// Path relative to the collection's root.
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
}

/// A Parquet file of `(primary key, _ts)` deletes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeleteLog {
    /// Path relative to the collection's root.
    pub path: String,
    pub rows: u64,
    pub min_ts: u64,
    pub max_ts: u64,
    pub size: u64,
    pub crc32c: u32,
}

/// One Parquet file of a segment holding one column group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataFile {
    /// 0 is the key + scalar + system column group; vector columns get their
    /// own groups.
    pub group: u32,
    pub columns: Vec<String>,
    /// Path relative to the collection's root.
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
    pub row_groups: u32,
    /// Size of the checksummed blocks (0: none recorded).
    #[serde(default)]
    pub block_bytes: u64,
    /// crc32c of every block, 8 hex digits each, concatenated.
    #[serde(default)]
    pub block_crc32c: String,
}

impl DataFile {
    /// The block checksums, if recorded and well-formed.
    pub fn block_sums(&self) -> Option<crate::storage::io::cache::BlockSums> {
        if self.block_bytes == 0 || !self.block_crc32c.len().is_multiple_of(8) {
            return None;
        }
        let crcs = (0..self.block_crc32c.len())
            .step_by(8)
            .map(|i| u32::from_str_radix(self.block_crc32c.get(i..i + 8)?, 16).ok())
            .collect::<Option<Vec<u32>>>()?;
        Some(crate::storage::io::cache::BlockSums {
            block: self.block_bytes,
            crcs,
        })
    }

    /// Records `sums` in the manifest's form.
    pub fn set_block_sums(&mut self, sums: &crate::storage::io::cache::BlockSums) {
        use std::fmt::Write;
        self.block_bytes = sums.block;
        self.block_crc32c = sums.crcs.iter().fold(String::new(), |mut s, c| {
            let _ = write!(s, "{c:08x}");
            s
        });
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ColumnStats {
    pub min: Option<String>,
    pub max: Option<String>,
    pub null_count: u64,
}

/// What to do when a create meets an existing collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExists {
    Fail,
    Append,
    Replace,
}

/// A change to commit on top of the latest manifest.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create the collection with `schema` and `segments`.
    Create {
        schema: CollectionSchema,
        segments: Vec<SegmentMeta>,
        /// Deletes among the new segments (a key written twice in one ingest).
        deletes: Vec<DeleteLog>,
        on_exists: OnExists,
    },
    /// Add segments (and the deletes of the keys they replace) written
    /// against `schema` to a live collection.
    Append {
        schema: CollectionSchema,
        segments: Vec<SegmentMeta>,
        deletes: Vec<DeleteLog>,
        /// For a flush of the growing segment: the newest `_ts` it holds
        /// (raises the WAL watermark); 0 otherwise.
        flushed_ts: u64,
    },
    Drop,
    /// Replace segments by their rewritten form (compaction): `removed`
    /// must all still exist; delete logs in `removed_deletes` (paths) are no
    /// longer needed.
    Compact {
        removed: Vec<u64>,
        added: Vec<SegmentMeta>,
        removed_deletes: Vec<String>,
    },
    /// Declare an index (its files are added segment by segment).
    CreateIndex(IndexDef),
    /// Forget an index and every file built for it.
    DropIndex(String),
    /// Record the index file built for one segment: refused (a conflict)
    /// when the segment was compacted away or the index dropped meanwhile,
    /// so a build that races them leaves nothing referenced.
    AddIndexFile {
        segment: u64,
        file: IndexFile,
    },
}

impl Manifest {
    pub fn is_live(&self) -> bool {
        !self.dropped && self.schema.is_some()
    }

    pub fn num_rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum()
    }

    pub fn path(collection: &str, version: u64) -> Path {
        Path::from(format!("{collection}/_manifest/{version:020}.json"))
    }

    /// Applies `change` on top of `base` (the latest version, if any).
    pub fn apply(
        collection: &str,
        base: Option<&Manifest>,
        change: &Change,
        ts: u64,
    ) -> Result<Manifest> {
        let live = base.filter(|m| m.is_live());
        let conflict = |reason: &str| Error::CommitConflict {
            collection: collection.to_string(),
            reason: reason.to_string(),
        };
        // A create (or replace) and a drop supersede every earlier WAL
        // record of the collection; a flush raises the watermark.
        let base_wal = live.map_or(0, |m| m.wal_ts);
        let wal_ts = match change {
            Change::Create {
                on_exists: OnExists::Append,
                ..
            } if live.is_some() => base_wal,
            Change::Create { .. } | Change::Drop => ts,
            Change::Append { flushed_ts, .. } => base_wal.max(*flushed_ts),
            Change::Compact { .. }
            | Change::CreateIndex(_)
            | Change::DropIndex(_)
            | Change::AddIndexFile { .. } => base_wal,
        };
        // Indexes stay with the collection unless it is created afresh.
        let mut indexes = live.map(|m| m.indexes.clone()).unwrap_or_default();
        let (schema, segments, delete_logs) = match change {
            Change::Create {
                schema,
                segments,
                deletes,
                on_exists,
            } => match (live, on_exists) {
                (None, _) | (Some(_), OnExists::Replace) => {
                    indexes.clear();
                    (schema.clone(), segments.clone(), deletes.clone())
                }
                (Some(_), OnExists::Fail) => {
                    return Err(Error::CollectionExists(collection.to_string()))
                }
                (Some(m), OnExists::Append) => {
                    if m.schema.as_ref() != Some(schema) {
                        return Err(conflict(
                            "the collection was created with another schema meanwhile",
                        ));
                    }
                    let mut all = m.segments.clone();
                    all.extend(segments.iter().cloned());
                    let mut logs = m.delete_logs.clone();
                    logs.extend(deletes.iter().cloned());
                    (schema.clone(), all, logs)
                }
            },
            Change::Append {
                schema,
                segments,
                deletes,
                ..
            } => {
                let m = live.ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
                if m.schema.as_ref() != Some(schema) {
                    return Err(conflict(
                        "the collection was replaced with another schema meanwhile",
                    ));
                }
                let mut all = m.segments.clone();
                all.extend(segments.iter().cloned());
                let mut logs = m.delete_logs.clone();
                logs.extend(deletes.iter().cloned());
                (schema.clone(), all, logs)
            }
            Change::Compact {
                removed,
                added,
                removed_deletes,
            } => {
                let m = live.ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
                if let Some(gone) = removed
                    .iter()
                    .find(|id| !m.segments.iter().any(|s| s.id == **id))
                {
                    return Err(conflict(&format!(
                        "segment {gone} was compacted or replaced by another writer meanwhile"
                    )));
                }
                let mut segments: Vec<SegmentMeta> = m
                    .segments
                    .iter()
                    .filter(|s| !removed.contains(&s.id))
                    .cloned()
                    .collect();
                segments.extend(added.iter().cloned());
                let logs = m
                    .delete_logs
                    .iter()
                    .filter(|d| !removed_deletes.contains(&d.path))
                    .cloned()
                    .collect();
                (
                    m.schema.clone().expect("live collection has a schema"),
                    segments,
                    logs,
                )
            }
            Change::CreateIndex(def) => {
                let m = live.ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
                if indexes.iter().any(|i| i.name == def.name) {
                    return Err(Error::IndexExists(def.name.clone()));
                }
                indexes.push(def.clone());
                unchanged(m)
            }
            Change::DropIndex(name) => {
                let m = live.ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
                if !indexes.iter().any(|i| &i.name == name) {
                    return Err(Error::IndexNotFound(name.clone()));
                }
                indexes.retain(|i| &i.name != name);
                let (schema, mut segments, logs) = unchanged(m);
                for s in &mut segments {
                    s.index_files.retain(|f| &f.index != name);
                }
                (schema, segments, logs)
            }
            Change::AddIndexFile { segment, file } => {
                let m = live.ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
                if !indexes
                    .iter()
                    .any(|i| i.name == file.index && i.id == file.index_id)
                {
                    return Err(conflict(&format!(
                        "index '{}' was dropped or replaced meanwhile",
                        file.index
                    )));
                }
                let (schema, mut segments, logs) = unchanged(m);
                let Some(s) = segments.iter_mut().find(|s| s.id == *segment) else {
                    return Err(conflict(&format!(
                        "segment {segment} was compacted or replaced meanwhile"
                    )));
                };
                s.index_files.retain(|f| f.index != file.index);
                s.index_files.push(file.clone());
                (schema, segments, logs)
            }
            Change::Drop => {
                live.ok_or_else(|| Error::CollectionNotFound(collection.to_string()))?;
                return Ok(Manifest {
                    format_version: FORMAT_VERSION,
                    version: base.map_or(1, |b| b.version + 1),
                    collection: collection.to_string(),
                    dropped: true,
                    schema: None,
                    segments: vec![],
                    delete_logs: vec![],
                    max_ts: base.map_or(ts, |b| b.max_ts.max(ts)),
                    wal_ts,
                    committed_at_ms: now_ms(),
                    commit_id: new_commit_id(),
                    indexes: vec![],
                });
            }
        };
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            version: base.map_or(1, |b| b.version + 1),
            collection: collection.to_string(),
            dropped: false,
            schema: Some(schema),
            segments,
            delete_logs,
            max_ts: base.map_or(ts, |b| b.max_ts.max(ts)),
            wal_ts,
            committed_at_ms: now_ms(),
            commit_id: new_commit_id(),
            indexes,
        })
    }

    /// The bytes of the manifest file: JSON with its checksum first.
    pub fn encode(&self) -> Result<Bytes> {
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        let crc = crc32c::crc32c(&body);
        let mut out = Vec::with_capacity(body.len() + 24);
        out.extend_from_slice(CHECKSUM_PREFIX);
        out.extend_from_slice(format!("{crc:08x}\",").as_bytes());
        out.extend_from_slice(&body[1..]);
        Ok(Bytes::from(out))
    }

    /// Parses a manifest file read from `path`, checking its checksum.
    /// Manifests of format 1 (written before checksums) have none.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_string(),
            reason,
        };
        let checked = bytes
            .strip_prefix(CHECKSUM_PREFIX)
            .filter(|rest| rest.len() > 10 && &rest[8..10] == b"\",")
            .and_then(|rest| {
                let hex = std::str::from_utf8(&rest[..8]).ok()?;
                Some((u32::from_str_radix(hex, 16).ok()?, &rest[10..]))
            });
        let m: Manifest = match checked {
            Some((want, rest)) => {
                let mut body = Vec::with_capacity(rest.len() + 1);
                body.push(b'{');
                body.extend_from_slice(rest);
                let got = crc32c::crc32c(&body);
                if got != want {
                    return Err(corrupt(format!(
                        "checksum mismatch: crc32c {got:08x} but the file records {want:08x}"
                    )));
                }
                serde_json::from_slice(&body)
                    .map_err(|e| corrupt(format!("manifest is not valid JSON: {e}")))?
            }
            None => {
                let m: Manifest = serde_json::from_slice(bytes)
                    .map_err(|e| corrupt(format!("manifest is not valid JSON: {e}")))?;
                if m.format_version >= 2 {
                    return Err(corrupt(
                        "the manifest's checksum is missing or damaged".into(),
                    ));
                }
                m
            }
        };
        Ok(m)
    }
}

/// A live manifest's schema, segments and delete logs, as they are.
fn unchanged(m: &Manifest) -> (CollectionSchema, Vec<SegmentMeta>, Vec<DeleteLog>) {
    (
        m.schema.clone().expect("live collection has a schema"),
        m.segments.clone(),
        m.delete_logs.clone(),
    )
}

fn new_commit_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The manifest versions of `collection` present in the store.
pub async fn list_versions(store: &dyn ObjectStore, collection: &str) -> Result<Vec<u64>> {
    let prefix = Path::from(format!("{collection}/_manifest"));
    let listed = store.list_with_delimiter(Some(&prefix)).await?;
    Ok(listed
        .objects
        .iter()
        .filter_map(|o| {
            let name = o.location.filename()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .collect())
}

/// Reads the newest manifest of `collection`, or `None` if it has none.
pub async fn load_latest(store: &dyn ObjectStore, collection: &str) -> Result<Option<Manifest>> {
    let newest = list_versions(store, collection).await?.into_iter().max();
    match newest {
        None => Ok(None),
        Some(v) => load_version(store, collection, v).await.map(Some),
    }
}

/// Reads one manifest version.
pub async fn load_version(
    store: &dyn ObjectStore,
    collection: &str,
    version: u64,
) -> Result<Manifest> {
    let path = Manifest::path(collection, version);
    let bytes = store.get(&path).await?.bytes().await?;
    let m = Manifest::decode(&path, &bytes)?;
    if m.format_version > FORMAT_VERSION {
        return Err(Error::Corrupt {
            path: path.to_string(),
            reason: format!(
                "manifest format {} is newer than this build understands ({FORMAT_VERSION})",
                m.format_version
            ),
        });
    }
    if m.version != version || m.collection != collection {
        return Err(Error::Corrupt {
            path: path.to_string(),
            reason: format!("manifest says version {} of '{}'", m.version, m.collection),
        });
    }
    Ok(m)
}

/// Tries once to commit `change` as the next version after `base`.
/// Returns `None` when another writer committed that version first.
pub async fn try_commit(
    store: &dyn ObjectStore,
    collection: &str,
    base: Option<&Manifest>,
    change: &Change,
    ts: u64,
) -> Result<Option<Manifest>> {
    let next = Manifest::apply(collection, base, change, ts)?;
    let json = next.encode()?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let path = Manifest::path(collection, next.version);
    match store.put_opts(&path, PutPayload::from(json), opts).await {
        Ok(_) => Ok(Some(next)),
        Err(object_store::Error::AlreadyExists { .. })
            if load_version(store, collection, next.version)
                .await
                .is_ok_and(|there| there.commit_id == next.commit_id) =>
        {
            // An earlier attempt of this put succeeded; its answer was lost.
            tracing::debug!(
                collection,
                version = next.version,
                "commit found after a retried put"
            );
            Ok(Some(next))
        }
        Err(object_store::Error::AlreadyExists { .. }) => {
            tracing::debug!(
                collection,
                version = next.version,
                "lost commit race, rebasing"
            );
            Ok(None)
        }
        Err(e) if !crate::storage::io::retry::is_transient(&e) => Err(e.into()),
        // The put may have landed on an attempt whose answer was lost: look.
        Err(e) => match load_version(store, collection, next.version).await {
            Ok(there) if there.commit_id == next.commit_id => Ok(Some(next)),
            // Another writer has this version: ours did not land.
            Ok(_) => Ok(None),
            Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => Err(e.into()),
            Err(look) => Err(Error::CommitUnknown {
                collection: collection.to_string(),
                reason: format!(
                    "writing version {} failed ({e}) and reading it back failed ({look})",
                    next.version
                ),
            }),
        },
    }
}

/// Waits before the next attempt after losing `attempt + 1` commit races:
/// a random time up to 10 ms x 2^attempt (at most 1 s), so writers that
/// collided spread out instead of colliding again.
pub async fn backoff(attempt: usize) {
    use std::hash::{BuildHasher, Hasher};
    let cap_ms = (10u64 << attempt.min(7)).min(1000);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    tokio::time::sleep(std::time::Duration::from_micros(random % (cap_ms * 1000))).await;
}

/// The error after [`MAX_COMMIT_ATTEMPTS`] lost races.
pub fn gave_up(collection: &str) -> Error {
    Error::CommitConflict {
        collection: collection.to_string(),
        reason: format!("gave up after {MAX_COMMIT_ATTEMPTS} attempts against concurrent writers"),
    }
}

/// Commits `change` as the next version after `base`, rebasing onto newer
/// versions written by other writers. Returns the committed manifest.
#[cfg(test)]
pub async fn commit(
    store: &dyn ObjectStore,
    collection: &str,
    mut base: Option<Manifest>,
    change: &Change,
    ts: u64,
) -> Result<Manifest> {
    for attempt in 0..MAX_COMMIT_ATTEMPTS {
        if let Some(m) = try_commit(store, collection, base.as_ref(), change, ts).await? {
            return Ok(m);
        }
        backoff(attempt).await;
        base = load_latest(store, collection).await?;
    }
    Err(gave_up(collection))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::memory::InMemory;

    fn schema() -> CollectionSchema {
        CollectionSchema::infer(
            "c",
            &Schema::new(vec![Field::new("id", DataType::Int64, false)]),
            None,
        )
        .unwrap()
    }

    fn seg(id: u64) -> SegmentMeta {
        SegmentMeta {
            id,
            rows: 1,
            min_ts: 1,
            max_ts: 1,
            files: vec![],
            stats: Default::default(),
            pk_bloom: None,
            compacted_from: vec![],
            index_files: vec![],
        }
    }

    #[tokio::test]
    async fn concurrent_commits_all_land_once() {
        let store = std::sync::Arc::new(InMemory::new());
        let create = Change::Create {
            schema: schema(),
            segments: vec![],
            deletes: vec![],
            on_exists: OnExists::Fail,
        };
        commit(store.as_ref(), "c", None, &create, 1).await.unwrap();
        // Every writer starts from the same stale base and must rebase.
        let base = load_latest(store.as_ref(), "c").await.unwrap();
        let mut tasks = vec![];
        for i in 0..8u64 {
            let (store, base) = (store.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let ch = Change::Append {
                    schema: schema(),
                    segments: vec![seg(i)],
                    deletes: vec![],
                    flushed_ts: 0,
                };
                commit(store.as_ref(), "c", base, &ch, 2).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let m = load_latest(store.as_ref(), "c").await.unwrap().unwrap();
        assert_eq!(m.version, 9);
        let mut ids: Vec<u64> = m.segments.iter().map(|s| s.id).collect();
        ids.sort();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
        // Creating again fails; after a drop it works and versions go on.
        assert!(matches!(
            commit(store.as_ref(), "c", Some(m.clone()), &create, 3).await,
            Err(Error::CollectionExists(_))
        ));
        let d = commit(store.as_ref(), "c", Some(m), &Change::Drop, 3)
            .await
            .unwrap();
        assert!(!d.is_live());
        let c = commit(store.as_ref(), "c", Some(d), &create, 4)
            .await
            .unwrap();
        assert_eq!(c.version, 11);
        assert!(c.segments.is_empty());
    }
}
