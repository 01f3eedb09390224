//! The sealed write path: a write becomes segment files (Parquet column
//! groups, written in parallel) and one manifest commit; files of a write
//! that does not commit are removed.

use crate::error::{Error, Result};
use crate::storage::format::keys::{key_at, KeyBloom};
use crate::storage::format::manifest::DeleteLog;
use crate::storage::format::manifest::{Change, OnExists, SegmentMeta};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::format::segment::{write_delete_log, write_segment};
use crate::storage::store::write::IngestMode;
use crate::storage::store::Store;
use crate::storage::wal::growing::Memtable;
use crate::storage::wal::key_check::{keep_last_per_key, sorted_contains, sorted_keys, KeyChecker};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt};
use object_store::ObjectStoreExt;
use std::collections::HashSet;
use std::sync::Arc;

/// What a write produced before its commit.
#[derive(Default)]
pub(crate) struct Written {
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) deletes: Vec<DeleteLog>,
    /// Every key written (for the rebase check; none for generated keys).
    pub(crate) keys: Vec<ArrayRef>,
    /// Rows stored: of rows repeating a key within the write, the last.
    pub(crate) rows: u64,
}

impl Store {
    /// [`Store::ingest`] by sealing the rows into segments and committing
    /// them before returning.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn ingest_sealed<S>(
        &self,
        name: &str,
        input_schema: SchemaRef,
        batches: S,
        mode: IngestMode,
        primary_key: Option<&str>,
        cw: Option<&Arc<crate::storage::wal::state::CollWal>>,
        keys_given: bool,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        // An append must see the growing segments' keys and keep logged
        // writes out meanwhile; a create or replace supersedes them.
        let replacing = mode.on_exists != OnExists::Append || self.snapshot(name).is_none();
        let mut exclusive = None;
        let mut writer = None;
        match cw {
            Some(c) if replacing => exclusive = Some(c.exclusive().await),
            Some(c) => writer = Some(c.writer().await),
            None => {}
        }
        let mems: Vec<Arc<Memtable>> = match (cw, replacing) {
            (Some(c), false) => c.memtables(),
            _ => vec![],
        };
        let _guard = self.write_lock.lock().await;
        let existing = self.snapshot(name);
        let (schema, creating) = match (&existing, mode.on_exists) {
            (Some(m), OnExists::Append) => (
                m.schema.clone().expect("live collection has a schema"),
                false,
            ),
            (Some(_), OnExists::Fail) => return Err(Error::CollectionExists(name.to_string())),
            (None, _) if !mode.create => return Err(Error::CollectionNotFound(name.to_string())),
            _ => (
                CollectionSchema::infer_with(
                    name,
                    &input_schema,
                    primary_key,
                    self.config.max_dimension,
                )?,
                true,
            ),
        };
        // Rows of an appended-to collection may replace existing keys.
        let base_segments: Vec<SegmentMeta> = match (&existing, creating) {
            (Some(m), false) => m.segments.clone(),
            _ => vec![],
        };
        let written = self
            .write_segments(name, &schema, batches, &base_segments, mems, keys_given)
            .await?;
        let rows = written.rows;
        let known: HashSet<u64> = base_segments
            .iter()
            .chain(&written.segments)
            .map(|s| s.id)
            .collect();
        let change = if creating {
            Change::Create {
                schema,
                segments: written.segments,
                deletes: written.deletes,
                on_exists: mode.on_exists,
            }
        } else {
            Change::Append {
                schema,
                segments: written.segments,
                deletes: written.deletes,
                flushed_ts: 0,
            }
        };
        self.commit(name, &change, Some((&known, &written.keys)))
            .await?;
        if let Some(x) = &mut exclusive {
            x.reset().await?;
        }
        drop(writer);
        Ok(rows)
    }

    /// Conforms and seals batches into segments of the configured size,
    /// each with its own commit timestamp, and finds the keys they replace
    /// (in `base` or in earlier segments of the same write). Rows of a
    /// collection with a generated key are numbered instead (unless
    /// `keys_given`) and replace nothing. Nothing is visible until the
    /// caller commits; on error the files already written are removed
    /// again.
    pub(crate) async fn write_segments<S>(
        &self,
        name: &str,
        schema: &CollectionSchema,
        batches: S,
        base: &[SegmentMeta],
        mems: Vec<Arc<Memtable>>,
        keys_given: bool,
    ) -> Result<Written>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let mut out = Written::default();
        let pk_idx = schema
            .fields()
            .iter()
            .position(|f| f.name() == schema.primary_key())
            .ok_or_else(|| Error::internal("primary key column missing"))?;
        let numbered = schema.auto_id() && !keys_given;
        let result = async {
            let mut checker = if numbered {
                KeyChecker::empty(schema)
            } else {
                self.key_checker(name, schema, base).await?
            };
            checker.mems = mems;
            // The keys of the segments this write sealed so far, sorted,
            // to tell a key repeated across them from one stored before.
            let mut sealed_keys: Vec<ArrayRef> = Vec::new();
            let mut delete_keys: Vec<ArrayRef> = Vec::new();
            let mut delete_ts: Vec<u64> = Vec::new();
            let mut batches = std::pin::pin!(batches);
            let mut pending: Vec<RecordBatch> = Vec::new();
            let (mut rows, mut bytes) = (0usize, 0usize);
            loop {
                let next = batches.next().await;
                let done = next.is_none();
                if let Some(batch) = next {
                    let batch = schema.conform_keyed(name, &batch?, keys_given)?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    rows += batch.num_rows();
                    bytes += batch.get_array_memory_size();
                    pending.push(batch);
                    if rows < self.config.segment_max_rows && bytes < self.config.segment_max_bytes
                    {
                        continue;
                    }
                } else if pending.is_empty() {
                    break;
                }
                let seal = if numbered {
                    let first = self.clock.reserve(rows as u64);
                    schema.number_rows(std::mem::take(&mut pending), first)?
                } else {
                    keep_last_per_key(std::mem::take(&mut pending), pk_idx)?
                };
                (rows, bytes) = (0, 0);
                let ts = self.clock.now();
                let keys: Vec<ArrayRef> = seal.iter().map(|b| b.column(pk_idx).clone()).collect();
                let seal_rows: usize = seal.iter().map(|b| b.num_rows()).sum();
                out.rows += seal_rows as u64;
                if !numbered {
                    for k in &keys {
                        // Rows written back (an UPDATE's) replace rows that exist.
                        let replaced = BooleanArray::from_iter((0..k.len()).map(|i| {
                            Some(keys_given || checker.may_contain(key_at(k.as_ref(), i)))
                        }));
                        if replaced.true_count() > 0 {
                            let hit = arrow::compute::filter(k, &replaced)?;
                            // A key this write stored already is not a row more.
                            out.rows -= (0..hit.len())
                                .filter(|&i| sorted_contains(&sealed_keys, key_at(hit.as_ref(), i)))
                                .count() as u64;
                            delete_ts.extend(std::iter::repeat_n(ts, hit.len()));
                            delete_keys.push(hit);
                        }
                    }
                }
                let seg =
                    write_segment(&self.object_store, &self.config, name, schema, seal, ts).await?;
                if !numbered {
                    checker.add(&seg, Arc::new(KeyBloom::build(&keys)));
                    if !done {
                        for k in &keys {
                            sealed_keys.push(sorted_keys(k)?);
                        }
                    }
                    out.keys.extend(keys);
                }
                out.segments.push(seg);
                if done {
                    break;
                }
            }
            if !delete_keys.is_empty() {
                let refs: Vec<&dyn Array> = delete_keys.iter().map(|a| a.as_ref()).collect();
                let all = arrow::compute::concat(&refs)?;
                out.deletes.push(
                    write_delete_log(&self.object_store, &self.config, name, all, delete_ts)
                        .await?,
                );
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            self.remove_written(name, &out.segments, &out.deletes).await;
            return Err(e);
        }
        Ok(out)
    }

    pub(crate) async fn remove_written(
        &self,
        name: &str,
        segments: &[SegmentMeta],
        deletes: &[DeleteLog],
    ) {
        let mut paths: Vec<String> = Vec::new();
        for s in segments {
            paths.extend(s.files.iter().map(|f| f.path.clone()));
            paths.extend(s.pk_bloom.iter().map(|b| b.path.clone()));
        }
        paths.extend(deletes.iter().map(|d| d.path.clone()));
        for p in paths {
            if let Err(e) = self.object_store.delete(&Self::file_path(name, &p)).await {
                tracing::warn!(collection = name, file = %p, error = %e, "could not remove uncommitted file");
            }
        }
    }
}
