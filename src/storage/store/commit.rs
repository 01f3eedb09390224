//! Committing a change: the next manifest version is written with a
//! conditional put, so a commit is visible to all readers or to none; a
//! writer that loses the race reloads, checks that its change still
//! applies (keys deleted or upserted meanwhile), and tries again.

use crate::error::{Error, Result};
use crate::storage::format::keys::key_at;
use crate::storage::format::manifest::{self, Change, Manifest, SegmentMeta};
use crate::storage::store::Store;
use arrow::array::{Array, ArrayRef};
use object_store::ObjectStoreExt;
use std::collections::HashSet;
use std::sync::Arc;

impl Store {
    /// On a lost commit race: the change can go on top of `newer` unless a
    /// segment committed meanwhile may hold one of the keys just written
    /// (the upsert would then have missed a row to replace).
    pub(crate) async fn check_rebase(
        &self,
        name: &str,
        newer: Manifest,
        known: &HashSet<u64>,
        keys: &[ArrayRef],
    ) -> Result<Manifest> {
        // A compaction's output holds only rows of segments it replaced; if we
        // knew all of those, its rows were checked already.
        let added: Vec<SegmentMeta> = newer
            .segments
            .iter()
            .filter(|s| !known.contains(&s.id))
            .filter(|s| {
                s.compacted_from.is_empty() || !s.compacted_from.iter().all(|id| known.contains(id))
            })
            .cloned()
            .collect();
        if !added.is_empty() && !keys.is_empty() {
            let schema = newer
                .schema
                .clone()
                .ok_or_else(|| Error::CollectionNotFound(name.to_string()))?;
            let checker = self.key_checker(name, &schema, &added).await?;
            for k in keys {
                if (0..k.len()).any(|i| checker.may_contain(key_at(k.as_ref(), i))) {
                    return Err(Error::CommitConflict {
                        collection: name.to_string(),
                        reason: "another writer inserted some of the same primary keys meanwhile"
                            .into(),
                    });
                }
            }
        }
        Ok(newer)
    }

    /// Holds off this process's other writes (compaction and GC run under it).
    pub(crate) async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// Commits a compaction (the caller holds [`Store::lock_writes`]).
    pub(crate) async fn commit_compaction(
        &self,
        name: &str,
        change: &Change,
    ) -> Result<Arc<Manifest>> {
        self.commit(name, change, None).await
    }

    /// Commits `change`, rebasing onto versions other processes committed
    /// meanwhile. With `keys`, a rebase is refused when a segment committed
    /// meanwhile may hold one of those keys (segments in `known` were
    /// already checked).
    pub(crate) async fn commit(
        &self,
        name: &str,
        change: &Change,
        keys: Option<(&HashSet<u64>, &[ArrayRef])>,
    ) -> Result<Arc<Manifest>> {
        self.commit_and(name, change, keys, || {}).await
    }

    /// [`Store::commit`], running `finish` together with publishing the new
    /// version (no query sees one without the other).
    pub(crate) async fn commit_and(
        &self,
        name: &str,
        change: &Change,
        keys: Option<(&HashSet<u64>, &[ArrayRef])>,
        finish: impl FnOnce(),
    ) -> Result<Arc<Manifest>> {
        let result = async {
            // Start from the store's latest version, not our cache: another
            // process may have committed since.
            let mut base = manifest::load_latest(self.object_store.as_ref(), name).await?;
            for attempt in 0..manifest::MAX_COMMIT_ATTEMPTS {
                if crate::error::injected("before-manifest-commit", name) {
                    return Err(Error::internal(
                        "injected failure before the manifest commit",
                    ));
                }
                let ts = self.clock.now();
                if let Some(m) = manifest::try_commit(
                    self.object_store.as_ref(),
                    name,
                    base.as_ref(),
                    change,
                    ts,
                )
                .await?
                {
                    return Ok(m);
                }
                manifest::backoff(attempt).await;
                base = match manifest::load_latest(self.object_store.as_ref(), name).await? {
                    Some(newer) => match keys {
                        Some((known, keys)) => {
                            Some(self.check_rebase(name, newer, known, keys).await?)
                        }
                        None => Some(newer),
                    },
                    None => None,
                };
            }
            Err(manifest::gave_up(name))
        }
        .await;
        let committed = match result {
            Ok(m) => Arc::new(m),
            // The files may be part of a version that landed: keep them (gc
            // removes them if not).
            Err(e @ Error::CommitUnknown { .. }) => return Err(e),
            Err(e) => {
                match change {
                    Change::Create {
                        segments, deletes, ..
                    }
                    | Change::Append {
                        segments, deletes, ..
                    } => self.remove_written(name, segments, deletes).await,
                    Change::Compact { added, .. } => self.remove_written(name, added, &[]).await,
                    Change::AddIndexFile { file, .. } => {
                        let path = Store::file_path(name, &file.path);
                        if let Err(e) = self.object_store.delete(&path).await {
                            tracing::warn!(collection = name, file = %path, error = %e, "could not remove an uncommitted index file");
                        }
                    }
                    Change::Drop | Change::CreateIndex(_) | Change::DropIndex(_) => {}
                }
                return Err(e);
            }
        };
        tracing::info!(
            collection = name,
            version = committed.version,
            segments = committed.segments.len(),
            rows = committed.num_rows(),
            "committed"
        );
        self.learn(&committed);
        let mut map = self.collections.write();
        if committed.is_live() {
            map.insert(name.to_string(), committed.clone());
        } else {
            map.remove(name);
        }
        finish();
        if !committed.indexes.is_empty() {
            // New segments or a new index: the index builder has work.
            self.index_wakeup.notify_one();
        }
        Ok(committed)
    }
}
