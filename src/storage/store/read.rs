//! Reading through the store: segment rows, decoded vector chunks (the
//! decoded cache), Parquet metadata (the footer cache), key Bloom filters
//! and delete maps.

use arrow::array::{Array, ArrayRef, RecordBatch};
use futures::TryStreamExt;
use object_store::{path::Path, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;
// ParquetObjectReader is deprecated in parquet 59 in favour of a hand-written
// AsyncFileReader; it is still the maintained object_store adapter.
use crate::error::{Error, Result};
use crate::storage::format::keys::{DeleteMap, KeyBloom};
use crate::storage::format::manifest::{Manifest, SegmentMeta};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::io::open::is_not_found;
use crate::storage::store::unwrap_shared;
use crate::storage::store::Store;
use crate::storage::wal::key_check::KeyChecker;
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;

impl Store {
    /// Rows of several row groups of a one-column vector file, decoded to
    /// `FixedSizeList<Float32>` in one read: for each `(row group,
    /// selection)`, the rows at the ascending positions inside the row group
    /// (all rows if `None`).
    pub(crate) async fn load_rows(
        &self,
        path: &Path,
        size: u64,
        meta: &ArrowReaderMetadata,
        groups: &[(usize, Option<&[u32]>)],
    ) -> Result<ArrayRef> {
        use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
        let mut selectors = Vec::new();
        let mut wanted = 0usize;
        for (rg, sel) in groups {
            let rows = meta.metadata().row_group(*rg).num_rows() as usize;
            let Some(sel) = sel else {
                selectors.push(RowSelector::select(rows));
                wanted += rows;
                continue;
            };
            wanted += sel.len();
            let mut cursor = 0usize;
            let mut k = 0;
            while k < sel.len() {
                let p = sel[k] as usize;
                let mut run = 1;
                while k + run < sel.len() && sel[k + run] as usize == p + run {
                    run += 1;
                }
                if p > cursor {
                    selectors.push(RowSelector::skip(p - cursor));
                }
                selectors.push(RowSelector::select(run));
                cursor = p + run;
                k += run;
            }
            if cursor < rows {
                selectors.push(RowSelector::skip(rows - cursor));
            }
        }
        #[allow(deprecated)]
        let reader =
            ParquetObjectReader::new(self.object_store.clone(), path.clone()).with_file_size(size);
        let batches: Vec<RecordBatch> =
            parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder::new_with_metadata(
                reader,
                meta.clone(),
            )
            .with_row_groups(groups.iter().map(|(rg, _)| *rg).collect())
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(wanted.max(1))
            .build()?
            .try_collect()
            .await?;
        let arrays: Vec<ArrayRef> = batches
            .iter()
            .map(|b| {
                let element = crate::storage::format::layout::stored_element(b.schema().field(0))?;
                crate::storage::format::layout::from_stored(b.column(0), &element)
            })
            .collect::<Result<_>>()?;
        let out = match arrays.len() {
            1 => arrays.into_iter().next().expect("one array"),
            _ => {
                let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                arrow::compute::concat(&refs)?
            }
        };
        if out.len() != wanted {
            return Err(Error::Corrupt {
                path: path.to_string(),
                reason: format!("expected {wanted} vector rows, read {}", out.len()),
            });
        }
        Ok(out)
    }

    /// The decoded vector column of row group `rg` of a file, and whether
    /// the cache had it: from the cache, or (when `load` is set) decoded
    /// whole and cached; `None` if it is not cached and `load` is not set.
    pub(crate) async fn decoded_chunk(
        &self,
        path: &Path,
        size: u64,
        meta: &ArrowReaderMetadata,
        rg: usize,
        load: bool,
    ) -> Result<Option<(ArrayRef, bool)>> {
        let key = (path.clone(), rg, 0);
        if let Some(a) = self.decoded.get(&key).await {
            self.decoded_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some((a, true)));
        }
        self.decoded_misses.fetch_add(1, Ordering::Relaxed);
        if !load || self.config.decoded_cache_bytes == 0 {
            return Ok(None);
        }
        let load = async {
            let a = self.load_rows(path, size, meta, &[(rg, None)]).await?;
            if !self.config.huge_pages {
                return Ok(a);
            }
            Ok(match crate::storage::format::layout::on_huge_pages(&a) {
                Some(moved) => {
                    self.decoded_huge_page_bytes
                        .fetch_add(moved.get_buffer_memory_size() as u64, Ordering::Relaxed);
                    moved
                }
                None => a,
            })
        };
        let a = self
            .decoded
            .try_get_with(key, load)
            .await
            .map_err(unwrap_shared)?;
        Ok(Some((a, false)))
    }

    /// The decoded vector column of row group `rg` of a file if the cache
    /// holds it (a hit is counted; a miss is not, as nothing is loaded).
    pub(crate) async fn cached_chunk(&self, path: &Path, rg: usize) -> Option<ArrayRef> {
        let a = self.decoded.get(&(path.clone(), rg, 0)).await?;
        self.decoded_hits.fetch_add(1, Ordering::Relaxed);
        Some(a)
    }

    /// Bytes of decoded vector chunks moved to memory advised for huge
    /// pages so far ([`StoreConfig::huge_pages`]).
    pub fn decoded_huge_page_bytes(&self) -> u64 {
        self.decoded_huge_page_bytes.load(Ordering::Relaxed)
    }

    /// Root columns `cols` of row group `rg` of a (group-0) file, decoded:
    /// from the decoded-chunk cache, the missing ones read in one request
    /// and cached. The cache must be enabled (`decoded_cache_bytes` > 0).
    pub(crate) async fn decoded_columns(
        &self,
        path: &Path,
        size: u64,
        meta: &ArrowReaderMetadata,
        rg: usize,
        cols: &[usize],
    ) -> Result<Vec<ArrayRef>> {
        let mut out: Vec<Option<ArrayRef>> = Vec::with_capacity(cols.len());
        let mut missing = Vec::new();
        for &c in cols {
            let a = self.decoded.get(&(path.clone(), rg, c)).await;
            if a.is_none() && !missing.contains(&c) {
                missing.push(c);
            }
            out.push(a);
        }
        if !missing.is_empty() {
            self.decoded_misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            missing.sort_unstable();
            let mask = parquet::arrow::ProjectionMask::roots(
                meta.metadata().file_metadata().schema_descr(),
                missing.iter().copied(),
            );
            #[allow(deprecated)]
            let reader = ParquetObjectReader::new(self.object_store.clone(), path.clone())
                .with_file_size(size);
            let rows = meta.metadata().row_group(rg).num_rows() as usize;
            let batches: Vec<RecordBatch> =
                parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder::new_with_metadata(
                    reader,
                    meta.clone(),
                )
                .with_row_groups(vec![rg])
                .with_projection(mask)
                .with_batch_size(rows.max(1))
                .build()?
                .try_collect()
                .await?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => Arc::new(meta.schema().project(&missing)?),
            };
            let batch = arrow::compute::concat_batches(&schema, &batches)?;
            if batch.num_rows() != rows || batch.num_columns() != missing.len() {
                return Err(Error::Corrupt {
                    path: path.to_string(),
                    reason: format!(
                        "row group {rg}: expected {rows} rows of {} columns, read {} of {}",
                        missing.len(),
                        batch.num_rows(),
                        batch.num_columns()
                    ),
                });
            }
            for (i, &c) in missing.iter().enumerate() {
                let a = batch.column(i).clone();
                self.decoded.insert((path.clone(), rg, c), a.clone()).await;
                for (slot, &want) in out.iter_mut().zip(cols) {
                    if want == c && slot.is_none() {
                        *slot = Some(a.clone());
                    }
                }
            }
        }
        let hits = cols.len() - missing.len();
        self.decoded_hits.fetch_add(hits as u64, Ordering::Relaxed);
        Ok(out
            .into_iter()
            .map(|a| a.expect("every column loaded"))
            .collect())
    }

    /// Hits and misses of the decoded-chunk cache, and the bytes it holds.
    pub async fn decoded_cache_stats(&self) -> (u64, u64, u64) {
        self.decoded.run_pending_tasks().await;
        (
            self.decoded_hits.load(Ordering::Relaxed),
            self.decoded_misses.load(Ordering::Relaxed),
            self.decoded.weighted_size(),
        )
    }

    /// Hits, misses, requests and bytes of the chunk cache.
    pub fn cache_stats(&self) -> crate::storage::io::cache::CacheStats {
        self.cache.stats()
    }

    /// The parsed footer of a column-group file; concurrent misses read it once.
    pub async fn reader_metadata(&self, path: &Path, size: u64) -> Result<ArrowReaderMetadata> {
        self.footers
            .try_get_with(path.clone(), async {
                #[allow(deprecated)]
                let mut reader = ParquetObjectReader::new(self.object_store.clone(), path.clone())
                    .with_file_size(size);
                let opts = ArrowReaderOptions::new()
                    .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
                ArrowReaderMetadata::load_async(&mut reader, opts)
                    .await
                    .map_err(|e| Error::Corrupt {
                        path: path.to_string(),
                        reason: if is_not_found(&e) {
                            "the manifest references this file but the store does not have it \
                             (`quiver inspect --verify` lists every such problem)"
                                .to_string()
                        } else {
                            e.to_string()
                        },
                    })
            })
            .await
            .map_err(|e: Arc<Error>| match e.as_ref() {
                Error::Corrupt { path, reason } => Error::Corrupt {
                    path: path.clone(),
                    reason: reason.clone(),
                },
                other => Error::internal(other.to_string()),
            })
    }

    /// A key checker over `segments` of `collection`, with their Bloom
    /// filters (read through the filter cache).
    pub(crate) async fn key_checker(
        &self,
        collection: &str,
        schema: &CollectionSchema,
        segments: &[SegmentMeta],
    ) -> Result<KeyChecker> {
        let mut blooms = Vec::with_capacity(segments.len());
        for s in segments {
            blooms.push(self.key_bloom(collection, s).await?);
        }
        Ok(KeyChecker::with_segments(schema, segments, blooms))
    }

    /// The Bloom filter of a segment's keys, if it has one.
    pub async fn key_bloom(
        &self,
        collection: &str,
        seg: &SegmentMeta,
    ) -> Result<Option<Arc<KeyBloom>>> {
        let Some(file) = &seg.pk_bloom else {
            return Ok(None);
        };
        let path = Self::file_path(collection, &file.path);
        let store = self.object_store.clone();
        let expected = file.crc32c;
        let bloom = self
            .blooms
            .try_get_with(path.clone(), async move {
                let bytes = store.get(&path).await?.bytes().await?;
                if crc32c::crc32c(&bytes) != expected {
                    return Err(Error::Corrupt {
                        path: path.to_string(),
                        reason: "checksum mismatch".into(),
                    });
                }
                Ok(Arc::new(KeyBloom::from_bytes(path.as_ref(), bytes)?))
            })
            .await
            .map_err(unwrap_shared)?;
        Ok(Some(bloom))
    }

    /// Newest delete timestamp per key for a committed version.
    pub async fn delete_map(&self, m: &Manifest) -> Result<Arc<DeleteMap>> {
        if m.delete_logs.is_empty() {
            return Ok(Arc::new(DeleteMap::default()));
        }
        let key = (m.collection.clone(), m.version);
        let store = self.object_store.clone();
        let logs = m.delete_logs.clone();
        let collection = m.collection.clone();
        self.delete_maps
            .try_get_with(key, async move {
                let mut map = DeleteMap::default();
                for log in &logs {
                    let path = Self::file_path(&collection, &log.path);
                    let bytes = store.get(&path).await?.bytes().await?;
                    if crc32c::crc32c(&bytes) != log.crc32c {
                        return Err(Error::Corrupt {
                            path: path.to_string(),
                            reason: "checksum mismatch".into(),
                        });
                    }
                    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
                    for batch in reader {
                        let batch = batch?;
                        map.add(batch.column(0).as_ref(), batch.column(1).as_ref());
                    }
                }
                Ok(Arc::new(map))
            })
            .await
            .map_err(unwrap_shared)
    }
}
