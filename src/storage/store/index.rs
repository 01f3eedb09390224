//! Index files through the store: building one segment's index and
//! committing it (a manifest change of its own, so a build that races a
//! compaction or a `DROP INDEX` loses cleanly and leaves nothing
//! referenced), the backlog of segments still to index, the background
//! builder, and loading index files (checksummed, cached whole).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use object_store::ObjectStoreExt;

use crate::error::{Error, Result};
use crate::storage::format::manifest::{Change, Manifest, SegmentMeta};
use crate::storage::index::{IndexDef, IndexFile, SegmentIndex};
use crate::storage::store::Store;

/// How often the background builder looks for work when no commit woke it.
pub const BUILDER_POLL: Duration = Duration::from_secs(30);

/// One index's state in one manifest version.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStatus {
    pub def: IndexDef,
    /// Segments with a file for this index, and segments that should have
    /// one (at least `index_min_rows` rows).
    pub segments_indexed: usize,
    pub segments_total: usize,
    /// Bytes of its files.
    pub bytes: u64,
}

impl IndexStatus {
    /// `ready` once every segment that should have a file has one.
    pub fn state(&self) -> &'static str {
        if self.segments_indexed >= self.segments_total {
            "ready"
        } else {
            "building"
        }
    }
}

/// What a build run did.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub built: usize,
    /// Segments compacted away (or the index dropped) while being built.
    pub lost: usize,
    pub bytes: u64,
}

impl Store {
    /// Every index of `m` with how far it is built.
    pub fn index_status(&self, m: &Manifest) -> Vec<IndexStatus> {
        m.indexes
            .iter()
            .map(|def| {
                let mut status = IndexStatus {
                    def: def.clone(),
                    segments_indexed: 0,
                    segments_total: 0,
                    bytes: 0,
                };
                for s in &m.segments {
                    let file = s
                        .index_files
                        .iter()
                        .find(|f| f.index == def.name && f.index_id == def.id);
                    if let Some(f) = file {
                        status.segments_indexed += 1;
                        status.bytes += f.size;
                    }
                    if file.is_some() || s.rows >= self.config.index_min_rows {
                        status.segments_total += 1;
                    }
                }
                status
            })
            .collect()
    }

    /// Segments of `m` that should have a file for `def` and have none.
    pub fn index_backlog(&self, m: &Manifest, def: &IndexDef) -> Vec<SegmentMeta> {
        m.segments
            .iter()
            .filter(|s| s.rows >= self.config.index_min_rows)
            .filter(|s| {
                !s.index_files
                    .iter()
                    .any(|f| f.index == def.name && f.index_id == def.id)
            })
            .cloned()
            .collect()
    }

    /// Builds every missing index file of collection `name` (of index
    /// `only`, if given), one segment at a time, each committed as it
    /// completes; `progress(done, total)` after each.
    pub async fn build_indexes(
        &self,
        name: &str,
        only: Option<&str>,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<BuildReport> {
        let _one_at_a_time = self.index_build_lock.lock().await;
        let mut report = BuildReport::default();
        let m = self.require(name)?;
        if let Some(only) = only {
            if !m.indexes.iter().any(|i| i.name == only) {
                return Err(Error::IndexNotFound(only.to_string()));
            }
        }
        let work: Vec<(IndexDef, SegmentMeta)> = m
            .indexes
            .iter()
            .filter(|d| only.is_none_or(|o| d.name == o))
            .flat_map(|d| {
                self.index_backlog(&m, d)
                    .into_iter()
                    .map(move |s| (d.clone(), s))
            })
            .collect();
        let total = work.len();
        progress(0, total);
        for (done, (def, seg)) in work.into_iter().enumerate() {
            // Skip what is gone or was built meanwhile (by another process).
            let latest = self.require(name)?;
            let still = latest.indexes.iter().any(|i| i.id == def.id)
                && latest
                    .segments
                    .iter()
                    .any(|s| s.id == seg.id && !s.index_files.iter().any(|f| f.index_id == def.id));
            if still {
                match self.build_segment_index(name, &def, &seg).await? {
                    Some(f) => {
                        report.built += 1;
                        report.bytes += f.size;
                    }
                    None => report.lost += 1,
                }
            }
            progress(done + 1, total);
        }
        Ok(report)
    }

    /// Builds, writes and commits the index file of one segment. `None`
    /// when the segment was compacted away or the index dropped before the
    /// commit (the file is removed again).
    pub async fn build_segment_index(
        &self,
        name: &str,
        def: &IndexDef,
        seg: &SegmentMeta,
    ) -> Result<Option<IndexFile>> {
        let started = Instant::now();
        tracing::debug!(collection = name, index = %def.name, segment = seg.id, "building an index file");
        let file = seg
            .files
            .iter()
            .find(|f| f.group != 0 && f.columns.iter().any(|c| c == &def.column))
            .ok_or_else(|| Error::Corrupt {
                path: format!("{name}/insert_log/{}", seg.id),
                reason: format!("segment has no file for vector column '{}'", def.column),
            })?;
        let path = Store::file_path(name, &file.path);
        let meta = self.reader_metadata(&path, file.size).await?;
        let groups: Vec<(usize, Option<&[u32]>)> = (0..meta.metadata().num_row_groups())
            .map(|rg| (rg, None))
            .collect();
        let vectors = self.load_rows(&path, file.size, &meta, &groups).await?;
        let threads = self.config.index_build_threads.max(1);
        let (build_def, rows) = (def.clone(), seg.rows);
        let built = tokio::task::spawn_blocking(move || {
            let vectors = vectors.as_fixed_size_list_opt().ok_or_else(|| {
                Error::invalid(format!(
                    "an index needs FLOAT[d] vectors, not {}",
                    vectors.data_type()
                ))
            })?;
            SegmentIndex::build(&build_def, vectors, rows, threads)
        })
        .await
        .map_err(|e| Error::internal(format!("index build task failed: {e}")))??;
        let bytes = built.encode()?;
        let rel = format!(
            "index_files/{}/{}/{}.{}",
            seg.id,
            def.name,
            uuid::Uuid::new_v4().simple(),
            SegmentIndex::extension(def.kind)
        );
        let index_file = IndexFile {
            index: def.name.clone(),
            index_id: def.id.clone(),
            path: rel.clone(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
            lists: built.lists() as u32,
            rows: built.rows(),
        };
        let at = Store::file_path(name, &rel);
        crate::storage::format::segment::upload(
            self.object_store.clone(),
            &self.config,
            &at,
            bytes,
        )
        .await?;
        if crate::error::injected("before-index-commit", name) {
            return Err(Error::internal(
                "injected failure between the index file and its commit",
            ));
        }
        let change = Change::AddIndexFile {
            segment: seg.id,
            file: index_file.clone(),
        };
        let seconds = started.elapsed().as_secs_f64();
        match self.commit(name, &change, None).await {
            Ok(_) => {
                crate::metrics::index_segment_built("ok", seconds);
                tracing::info!(
                    collection = name,
                    index = %def.name,
                    segment = seg.id,
                    rows = seg.rows,
                    kind = def.kind.name(),
                    lists = index_file.lists,
                    bytes = index_file.size,
                    seconds,
                    "index file built"
                );
                // Loaded already: the first query need not read it back.
                self.index_cache.insert(at, Arc::new(built)).await;
                Ok(Some(index_file))
            }
            Err(Error::CommitConflict { reason, .. }) => {
                crate::metrics::index_segment_built("lost", seconds);
                tracing::info!(collection = name, index = %def.name, segment = seg.id, %reason, "index build dropped");
                Ok(None)
            }
            Err(e) => {
                crate::metrics::index_segment_built("error", seconds);
                Err(e)
            }
        }
    }

    /// `def`'s index in `file` of collection `name`: from the cache, or
    /// read whole, checked against its recorded size and crc32c, decoded
    /// and cached.
    pub async fn segment_index(
        &self,
        name: &str,
        def: &IndexDef,
        file: &IndexFile,
    ) -> Result<Arc<SegmentIndex>> {
        let path = Store::file_path(name, &file.path);
        let load = async {
            let bytes = self.object_store.get(&path).await?.bytes().await?;
            let corrupt = |reason: String| Error::Corrupt {
                path: path.to_string(),
                reason,
            };
            if bytes.len() as u64 != file.size {
                return Err(corrupt(format!(
                    "index file is {} bytes, the manifest records {}",
                    bytes.len(),
                    file.size
                )));
            }
            let crc = crc32c::crc32c(&bytes);
            if crc != file.crc32c {
                return Err(corrupt(format!(
                    "checksum mismatch: crc32c {crc:08x} but the manifest records {:08x}",
                    file.crc32c
                )));
            }
            Ok(Arc::new(SegmentIndex::decode(def, path.as_ref(), bytes)?))
        };
        self.index_cache
            .try_get_with(path.clone(), load)
            .await
            .map_err(crate::storage::store::unwrap_shared)
    }

    /// Builds missing index files of every collection, then waits for a
    /// commit to a collection with indexes (or [`BUILDER_POLL`]); forever.
    /// A failed build is logged and tried again on the next round.
    pub async fn run_index_builder(self: Arc<Self>) {
        loop {
            tracing::debug!("index builder looking for work");
            for name in self.collection_names() {
                let Some(m) = self.snapshot(&name) else {
                    continue;
                };
                if m.indexes.is_empty() {
                    continue;
                }
                if let Err(e) = self.build_indexes(&name, None, &|_, _| {}).await {
                    tracing::warn!(collection = %name, error = %e, "index build failed; will retry");
                }
            }
            let _ = tokio::time::timeout(BUILDER_POLL, self.index_wakeup.notified()).await;
        }
    }

    /// Wakes the background index builder.
    pub fn wake_index_builder(&self) {
        self.index_wakeup.notify_one();
    }
}
