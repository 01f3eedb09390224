//! `Store`: one object-store prefix holding quiver collections, with the
//! hybrid clock and the write operations (create, ingest, drop).

pub(crate) mod flush;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use parking_lot::RwLock;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
// ParquetObjectReader is deprecated in parquet 59 in favour of a hand-written
// AsyncFileReader; it is still the maintained object_store adapter.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use url::Url;

use crate::storage::config::StoreConfig;
use crate::error::{Error, Result};
use crate::storage::wal::growing::{MemView, Memtable};
use crate::storage::format::keys::{key_at, DeleteMap, Key, KeyBloom, KeyRef};
use crate::storage::format::manifest::DeleteLog;
use crate::storage::format::manifest::{self, Change, Manifest, OnExists, SegmentMeta};
use crate::storage::format::schema::CollectionSchema;
use crate::storage::format::segment::{write_delete_log, write_segment};

/// Bits of the hybrid timestamp that hold the logical counter.
const LOGICAL_BITS: u32 = 18;

/// Monotonic hybrid clock: `physical_ms << 18 | logical`. Never goes
/// backwards, also across restarts (it starts above every committed `_ts`).
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::SeqCst);
    }

    /// Takes `n` consecutive values of the clock, never handed out again,
    /// and returns the first: the generated keys of a write's rows. The
    /// write's timestamp, taken after, is above all of them, so a restart
    /// (whose clock starts above every committed or logged `_ts`) never
    /// numbers a row the same again.
    pub fn reserve(&self, n: u64) -> u64 {
        let physical = manifest::now_ms() << LOGICAL_BITS;
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let first = physical.max(prev + 1);
            let last = first + n.max(1) - 1;
            match self
                .last
                .compare_exchange(prev, last, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return first,
                Err(p) => prev = p,
            }
        }
    }

    pub fn now(&self) -> u64 {
        let physical = manifest::now_ms() << LOGICAL_BITS;
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let next = physical.max(prev + 1);
            match self
                .last
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

/// How an ingest treats an existing or missing collection (Flight SQL
/// `TableDefinitionOptions`, ADBC's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestMode {
    /// Create the collection if it does not exist (else: error).
    pub create: bool,
    /// What to do if it exists.
    pub on_exists: OnExists,
}

impl IngestMode {
    pub const CREATE: Self = Self {
        create: true,
        on_exists: OnExists::Fail,
    };
    pub const APPEND: Self = Self {
        create: false,
        on_exists: OnExists::Append,
    };
    pub const REPLACE: Self = Self {
        create: true,
        on_exists: OnExists::Replace,
    };
    pub const CREATE_APPEND: Self = Self {
        create: true,
        on_exists: OnExists::Append,
    };
}

/// A store of collections under one object-store prefix.
#[derive(Debug)]
pub struct Store {
    object_store: Arc<dyn ObjectStore>,
    url: String,
    /// Unique `quiver://<id>` under which DataFusion finds this store.
    store_url: Url,
    config: StoreConfig,
    clock: Clock,
    /// Latest committed manifest of every live collection.
    collections: RwLock<BTreeMap<String, Arc<Manifest>>>,
    /// Collections whose newest manifest could not be read, with why: they
    /// answer every query with that error, the others keep working.
    unreadable: RwLock<BTreeMap<String, (String, String)>>,
    /// Serializes this process's commits per store (other processes are
    /// handled by the conditional put).
    write_lock: tokio::sync::Mutex<()>,
    /// Parsed Parquet footers (with page indexes) of column-group files,
    /// weighed by their in-memory size.
    footers: moka::future::Cache<Path, ArrowReaderMetadata>,
    /// Key filters of segments, by path.
    blooms: moka::future::Cache<Path, Arc<KeyBloom>>,
    /// Merged delete logs per (collection, version).
    delete_maps: moka::future::Cache<(String, u64), Arc<DeleteMap>>,
    /// Decoded vector columns per (file, row group), as `FixedSizeList`
    /// arrays, weighed by their memory (Milvus's ChunkCache).
    /// Decoded columns by (file, row group, root column).
    decoded: moka::future::Cache<(Path, usize, usize), ArrayRef>,
    decoded_hits: AtomicU64,
    decoded_misses: AtomicU64,
    /// Bytes of decoded vector chunks moved to huge-page memory, in all.
    decoded_huge_page_bytes: AtomicU64,
    /// Older versions pinned for time-travel queries.
    pinned: moka::sync::Cache<(String, u64), (Arc<Manifest>, Arc<DeleteMap>)>,
    /// The write-ahead log and growing segments (`None`: every write is
    /// sealed and committed before it is acknowledged).
    pub(crate) wal: Option<crate::storage::store::flush::WalState>,
    /// Blocks of segment files in memory; `object_store` reads through it.
    cache: Arc<crate::storage::io::cache::ChunkCache>,
    /// Per collection: held by an UPDATE or a DELETE from reading the rows
    /// it changes until its write is acknowledged ([`Store::dml_lock`]).
    dml_locks: parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Bytes of segment key filters kept in memory (256 MiB).
pub const BLOOM_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Merged delete maps kept (one per collection version in use).
pub const DELETE_MAP_CACHE_ENTRIES: u64 = 64;

/// Bytes of parsed Parquet footers kept in memory (64 MiB).
pub const FOOTER_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl Store {
    /// Opens the store at `url`: a local directory path, `file:///...`,
    /// `s3://bucket/prefix`, `gs://...`, `az://...` or `memory://`.
    pub async fn open(url: &str, config: StoreConfig) -> Result<Arc<Self>> {
        let object_store = open_object_store(url)?;
        Self::open_with(object_store, url.to_string(), config).await
    }

    /// Opens a store over an existing `ObjectStore` rooted at the store.
    pub async fn open_with(
        object_store: Arc<dyn ObjectStore>,
        url: String,
        config: StoreConfig,
    ) -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self::build(object_store, url, config, None).await?,
        ))
    }

    pub(crate) async fn build(
        object_store: Arc<dyn ObjectStore>,
        url: String,
        config: StoreConfig,
        wal: Option<crate::storage::store::flush::WalState>,
    ) -> Result<Self> {
        let store_url = Url::parse(&format!("quiver://{}", uuid::Uuid::new_v4().simple()))
            .map_err(|e| Error::internal(e.to_string()))?;
        let retrying: Arc<dyn ObjectStore> =
            Arc::new(crate::storage::io::retry::RetryStore::new(object_store, config.retry));
        let cache = Arc::new(crate::storage::io::cache::ChunkCache::new(
            retrying,
            config.cache_bytes,
            config.cache_block_bytes,
        ));
        let object_store: Arc<dyn ObjectStore> = cache.clone();
        let decoded_capacity = config.decoded_cache_bytes;
        let store = Store {
            object_store,
            url,
            store_url,
            config,
            clock: Clock::default(),
            collections: RwLock::new(BTreeMap::new()),
            unreadable: RwLock::new(BTreeMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            footers: moka::future::Cache::builder()
                .max_capacity(FOOTER_CACHE_BYTES)
                .weigher(|_k: &Path, v: &ArrowReaderMetadata| {
                    v.metadata().memory_size().try_into().unwrap_or(u32::MAX)
                })
                .build(),
            blooms: moka::future::Cache::builder()
                .max_capacity(BLOOM_CACHE_BYTES)
                .weigher(|_k: &Path, v: &Arc<KeyBloom>| {
                    v.size_bytes().try_into().unwrap_or(u32::MAX)
                })
                .build(),
            delete_maps: moka::future::Cache::builder()
                .max_capacity(DELETE_MAP_CACHE_ENTRIES)
                .build(),
            decoded: moka::future::Cache::builder()
                .max_capacity(decoded_capacity)
                .weigher(|_k: &(Path, usize, usize), v: &ArrayRef| {
                    v.get_array_memory_size().try_into().unwrap_or(u32::MAX)
                })
                .build(),
            decoded_hits: AtomicU64::new(0),
            decoded_misses: AtomicU64::new(0),
            decoded_huge_page_bytes: AtomicU64::new(0),
            pinned: moka::sync::Cache::builder()
                .max_capacity(DELETE_MAP_CACHE_ENTRIES)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            wal,
            cache,
            dml_locks: Default::default(),
        };
        store.reload().await?;
        Ok(store)
    }

    /// Re-reads every collection's latest manifest.
    pub async fn reload(&self) -> Result<()> {
        let listed = self.object_store.list_with_delimiter(None).await?;
        let mut found = BTreeMap::new();
        let mut unreadable = BTreeMap::new();
        for prefix in listed.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            match manifest::load_latest(self.object_store.as_ref(), name).await {
                Ok(Some(m)) => {
                    self.clock.observe(m.max_ts);
                    self.learn(&m);
                    if m.is_live() {
                        found.insert(name.to_string(), Arc::new(m));
                    }
                }
                Ok(None) => {}
                // One damaged collection must not take the others down.
                Err(Error::Corrupt { path, reason }) => {
                    tracing::error!(collection = name, file = %path, reason = %reason, "collection unreadable");
                    unreadable.insert(name.to_string(), (path, reason));
                }
                Err(e) => return Err(e),
            }
        }
        *self.collections.write() = found;
        *self.unreadable.write() = unreadable;
        Ok(())
    }

    /// Registers the block checksums of `m`'s data files with the chunk
    /// cache, so reads of them are verified.
    pub(crate) fn learn(&self, m: &Manifest) {
        for f in m.segments.iter().flat_map(|s| &s.files) {
            if let Some(sums) = f.block_sums() {
                self.cache
                    .register(Self::file_path(&m.collection, &f.path), Arc::new(sums));
            }
        }
    }

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

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.object_store
    }

    /// The URL this store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `quiver://<id>` URL registered with DataFusion's runtime.
    pub fn store_url(&self) -> &Url {
        &self.store_url
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
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

    /// Names of the live collections, sorted.
    pub fn collection_names(&self) -> Vec<String> {
        self.collections.read().keys().cloned().collect()
    }

    /// The latest committed version of a collection (a pinned snapshot).
    pub fn snapshot(&self, name: &str) -> Option<Arc<Manifest>> {
        self.collections.read().get(name).cloned()
    }

    /// What a query sees: the latest committed version and the published
    /// rows and deletes of the growing segments, taken together (a flush
    /// commit moves rows from one to the other atomically).
    pub fn snapshot_with_mem(&self, name: &str) -> Option<(Arc<Manifest>, Vec<MemView>)> {
        let map = self.collections.read();
        let m = map.get(name)?.clone();
        let mems = self.wal.as_ref().map(|w| w.views(name)).unwrap_or_default();
        drop(map);
        Some((m, mems))
    }

    pub fn require(&self, name: &str) -> Result<Arc<Manifest>> {
        if let Some(e) = self.unreadable(name) {
            return Err(e);
        }
        self.snapshot(name)
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))
    }

    /// Why collection `name` cannot be read, if its newest manifest is
    /// damaged.
    pub fn unreadable(&self, name: &str) -> Option<Error> {
        self.unreadable
            .read()
            .get(name)
            .map(|(path, why)| Error::Corrupt {
                path: path.clone(),
                reason: format!("collection '{name}' is unreadable: {why}"),
            })
    }

    /// Collections whose newest manifest is damaged: (collection, manifest
    /// file, why).
    pub fn unreadable_collections(&self) -> Vec<(String, String, String)> {
        self.unreadable
            .read()
            .iter()
            .map(|(k, (path, why))| (k.clone(), path.clone(), why.clone()))
            .collect()
    }

    /// Serializes the statements that read rows and write them back (UPDATE,
    /// DELETE, TRUNCATE) on one collection in this process, so none works
    /// from rows another is changing: two `UPDATE t SET n = n + 1` add 2,
    /// and a row a DELETE removed is not written back by an UPDATE that
    /// read it before. Inserts do not wait for it (an insert that upserts
    /// a row an UPDATE is rewriting at that moment is overwritten by
    /// whichever is acknowledged last).
    pub(crate) async fn dml_lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .dml_locks
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Full object path of a file listed in a manifest.
    pub fn file_path(collection: &str, rel: &str) -> Path {
        Path::from(format!("{collection}/{rel}"))
    }

    /// Creates an empty collection.
    pub async fn create_collection(
        &self,
        name: &str,
        schema: CollectionSchema,
        if_not_exists: bool,
    ) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        if self.snapshot(name).is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::CollectionExists(name.to_string()))
            };
        }
        let change = Change::Create {
            schema,
            segments: vec![],
            deletes: vec![],
            on_exists: OnExists::Fail,
        };
        self.commit(name, &change, None).await?;
        Ok(true)
    }

    /// Drops a collection. Its files stay until garbage collection.
    pub async fn drop_collection(&self, name: &str, if_exists: bool) -> Result<bool> {
        let cw = self.coll_wal(name);
        let mut exclusive = match &cw {
            Some(c) => Some(c.exclusive().await),
            None => None,
        };
        let _guard = self.write_lock.lock().await;
        if self.snapshot(name).is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::CollectionNotFound(name.to_string()))
            };
        }
        self.commit(name, &Change::Drop, None).await?;
        if let Some(x) = &mut exclusive {
            x.reset().await?;
        }
        Ok(true)
    }

    /// Writes a stream of batches into a collection as one atomic commit:
    /// either every row becomes visible or none does. Returns the number of
    /// rows stored.
    ///
    /// A collection with a declared primary key upserts by it: a row whose
    /// key exists replaces the old row (a delete of the key and the insert
    /// share one `_ts`), and of rows repeating a key within one write the
    /// last one is stored (as Milvus's upsert), so the count returned is
    /// the number of distinct keys written. Keys that may exist are found
    /// by the segments' key ranges and Bloom filters, so a pure append
    /// reads no old data. A collection without a declared key numbers its
    /// rows itself ([`crate::storage::format::schema::ID_COLUMN`]) and every write appends.
    ///
    /// `input_schema` is the stream's schema (used to create the collection);
    /// `primary_key` names the key on create (else the column `id`, else a
    /// generated key).
    pub async fn ingest<S>(
        &self,
        name: &str,
        input_schema: SchemaRef,
        batches: S,
        mode: IngestMode,
        primary_key: Option<&str>,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let existed = self.snapshot(name).is_some();
        let rows = self
            .ingest_unmetered(name, input_schema, batches, mode, primary_key, false)
            .await
            .map_err(|e| match e {
                // Asked to create it if missing, it was there, and the
                // input names a column it lacks: the table exists (as ADBC
                // expects of create_append), just not as the input has it.
                Error::InvalidInput(reason)
                    if existed && mode.create && reason.starts_with("unknown column") =>
                {
                    Error::ExistsWithOtherColumns {
                        collection: name.to_string(),
                        reason,
                    }
                }
                e => e,
            })?;
        crate::metrics::ingested(rows);
        Ok(rows)
    }

    /// Writes rows back under the keys they carry, generated keys included
    /// (an UPDATE): an upsert into an existing collection. The batches hold
    /// the collection's stored columns ([`CollectionSchema::arrow_schema`]).
    pub(crate) async fn write_back<S>(&self, name: &str, batches: S) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        self.ingest_unmetered(
            name,
            schema.arrow_schema(),
            batches,
            IngestMode::APPEND,
            None,
            true,
        )
        .await
    }

    async fn ingest_unmetered<S>(
        &self,
        name: &str,
        input_schema: SchemaRef,
        batches: S,
        mode: IngestMode,
        primary_key: Option<&str>,
        keys_given: bool,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let cw = self.coll_wal(name);
        let existing = self.snapshot(name);
        let appending = existing.is_some() && mode.on_exists == OnExists::Append;
        // A small append goes through the log; a create, a replace and a
        // write too large for the growing segment are sealed directly.
        if let (Some(cw), Some(limit), Some(m), true) =
            (&cw, self.wal_write_limit(), &existing, appending)
        {
            let schema = m.schema.clone().expect("live collection has a schema");
            let mut batches = Box::pin(batches);
            let mut buffered: Vec<RecordBatch> = Vec::new();
            let mut bytes = 0usize;
            let mut overflow = false;
            while let Some(b) = batches.next().await {
                let b = schema.conform_keyed(name, &b?, keys_given)?;
                if b.num_rows() == 0 {
                    continue;
                }
                bytes += b.get_array_memory_size();
                buffered.push(b);
                if bytes > limit {
                    overflow = true;
                    break;
                }
            }
            if !overflow {
                return self
                    .wal_insert(name, &schema, cw, buffered, keys_given)
                    .await;
            }
            let rest = futures::stream::iter(buffered.into_iter().map(Ok)).chain(batches);
            return self
                .ingest_sealed(
                    name,
                    input_schema,
                    rest,
                    mode,
                    primary_key,
                    Some(cw),
                    keys_given,
                )
                .await;
        }
        self.ingest_sealed(
            name,
            input_schema,
            batches,
            mode,
            primary_key,
            cw.as_ref(),
            keys_given,
        )
        .await
    }

    /// [`Store::ingest`] by sealing the rows into segments and committing
    /// them before returning.
    #[allow(clippy::too_many_arguments)]
    async fn ingest_sealed<S>(
        &self,
        name: &str,
        input_schema: SchemaRef,
        batches: S,
        mode: IngestMode,
        primary_key: Option<&str>,
        cw: Option<&Arc<crate::storage::store::flush::CollWal>>,
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

    /// Empties a collection in one manifest-only commit: its schema stays,
    /// its segments and delete logs leave the newest version (older
    /// versions keep them for time travel until garbage collection), and
    /// its growing segment and log are dropped.
    pub async fn truncate(&self, name: &str) -> Result<()> {
        let cw = self.coll_wal(name);
        let mut exclusive = match &cw {
            Some(c) => Some(c.exclusive().await),
            None => None,
        };
        let _guard = self.write_lock.lock().await;
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        let change = Change::Create {
            schema,
            segments: vec![],
            deletes: vec![],
            on_exists: OnExists::Replace,
        };
        self.commit(name, &change, None).await?;
        if let Some(x) = &mut exclusive {
            x.reset().await?;
        }
        Ok(())
    }

    /// Deletes the rows with the given primary keys (an array of the key
    /// column's type). Returns the number of keys.
    pub async fn delete_keys(&self, name: &str, keys: ArrayRef) -> Result<u64> {
        if let Some(cw) = self.coll_wal(name) {
            if keys.is_empty() {
                self.require(name)?;
                return Ok(0);
            }
            return self.wal_delete(name, &cw, keys).await;
        }
        let _guard = self.write_lock.lock().await;
        let m = self.require(name)?;
        let schema = m.schema.clone().expect("live collection has a schema");
        if keys.is_empty() {
            return Ok(0);
        }
        let ts = self.clock.now();
        let n = keys.len();
        let log =
            write_delete_log(&self.object_store, &self.config, name, keys, vec![ts; n]).await?;
        let change = Change::Append {
            schema,
            segments: vec![],
            deletes: vec![log],
            flushed_ts: 0,
        };
        self.commit(name, &change, None).await?;
        Ok(n as u64)
    }

    /// On a lost commit race: the change can go on top of `newer` unless a
    /// segment committed meanwhile may hold one of the keys just written
    /// (the upsert would then have missed a row to replace).
    async fn check_rebase(
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
            let checker = KeyChecker::load(self, name, &schema, &added).await?;
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

    /// Conforms and seals batches into segments of the configured size,
    /// each with its own commit timestamp, and finds the keys they replace
    /// (in `base` or in earlier segments of the same write). Rows of a
    /// collection with a generated key are numbered instead (unless
    /// `keys_given`) and replace nothing. Nothing is visible until the
    /// caller commits; on error the files already written are removed
    /// again.
    async fn write_segments<S>(
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
                KeyChecker::load(self, name, schema, base).await?
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

    /// Keeps an older version (with its deletes) at hand for time travel.
    pub async fn pin(&self, m: Arc<Manifest>) -> Result<()> {
        self.learn(&m);
        let deletes = self.delete_map(&m).await?;
        self.pinned
            .insert((m.collection.clone(), m.version), (m, deletes));
        Ok(())
    }

    /// A version pinned by [`Store::pin`].
    pub fn pinned(
        &self,
        collection: &str,
        version: u64,
    ) -> Option<(Arc<Manifest>, Arc<DeleteMap>)> {
        self.pinned.get(&(collection.to_string(), version))
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
    async fn commit(
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
                    Change::Drop => {}
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
        Ok(committed)
    }
}

/// What a write produced before its commit.
#[derive(Default)]
struct Written {
    segments: Vec<SegmentMeta>,
    deletes: Vec<DeleteLog>,
    /// Every key written (for the rebase check; none for generated keys).
    keys: Vec<ArrayRef>,
    /// Rows stored: of rows repeating a key within the write, the last.
    rows: u64,
}

/// Answers "may this key already exist?" from segments' key ranges and
/// Bloom filters.
/// A segment's key range and filter, as far as known.
type KeyRange = (Option<Key>, Option<Key>, Option<Arc<KeyBloom>>);

#[derive(Debug)]
pub(crate) struct KeyChecker {
    /// (min, max, filter) per segment; a segment without a filter or range
    /// may hold any key.
    segments: Vec<KeyRange>,
    /// Growing segments (exact key sets).
    mems: Vec<Arc<Memtable>>,
    pk: String,
    int_keys: bool,
}

impl KeyChecker {
    /// A checker that knows of no key (a write of freshly numbered rows).
    pub(crate) fn empty(schema: &CollectionSchema) -> Self {
        Self {
            segments: Vec::new(),
            mems: Vec::new(),
            pk: schema.primary_key().to_string(),
            int_keys: true,
        }
    }

    pub(crate) async fn load(
        store: &Store,
        collection: &str,
        schema: &CollectionSchema,
        segments: &[SegmentMeta],
    ) -> Result<Self> {
        let pk = schema.primary_key().to_string();
        let int_keys = schema
            .fields()
            .iter()
            .any(|f| f.name() == &pk && crate::storage::format::keys::is_int_key(f.data_type()));
        let mut out = Vec::with_capacity(segments.len());
        for s in segments {
            let bloom = store.key_bloom(collection, s).await?;
            out.push(Self::entry(s, &pk, int_keys, bloom));
        }
        Ok(Self {
            segments: out,
            mems: Vec::new(),
            pk,
            int_keys,
        })
    }

    fn entry(s: &SegmentMeta, pk: &str, int_keys: bool, bloom: Option<Arc<KeyBloom>>) -> KeyRange {
        let stats = s.stats.get(pk);
        // A range that cannot be read is no range: the segment may hold any key.
        let parse = |t: &Option<String>| -> Option<Key> {
            let t = t.as_ref()?;
            if int_keys {
                t.parse::<i64>().ok().map(Key::Int)
            } else {
                Some(Key::Str(t.clone()))
            }
        };
        let (min, max) = stats.map_or((None, None), |c| (parse(&c.min), parse(&c.max)));
        (min, max, bloom)
    }

    fn add(&mut self, s: &SegmentMeta, bloom: Arc<KeyBloom>) {
        let entry = Self::entry(s, &self.pk, self.int_keys, Some(bloom));
        self.segments.push(entry);
    }

    pub(crate) fn may_contain(&self, k: KeyRef<'_>) -> bool {
        if self.mems.iter().any(|m| m.has_key(k)) {
            return true;
        }
        let owned: Key = k.into();
        self.segments.iter().any(|(min, max, bloom)| {
            let in_range = min.as_ref().is_none_or(|m| &owned >= m)
                && max.as_ref().is_none_or(|m| &owned <= m);
            in_range && bloom.as_ref().is_none_or(|b| b.may_contain(k))
        })
    }
}

/// `keys` (a key column) sorted, for [`sorted_contains`].
fn sorted_keys(keys: &ArrayRef) -> Result<ArrayRef> {
    let order = arrow::compute::sort_to_indices(keys.as_ref(), None, None)?;
    Ok(arrow::compute::take(keys.as_ref(), &order, None)?)
}

/// Whether `k` is in one of the sorted key arrays (binary search; integer
/// keys compare as `i64`, as Arrow sorts them for keys up to `i64::MAX`).
fn sorted_contains(sorted: &[ArrayRef], k: KeyRef<'_>) -> bool {
    let want: Key = k.into();
    sorted.iter().any(|a| {
        let (mut lo, mut hi) = (0usize, a.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match Key::from(key_at(a.as_ref(), mid)).cmp(&want) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    })
}

/// Keeps only the last row of every primary key (the newest wins within a
/// write, as with separate writes).
pub(crate) fn keep_last_per_key(
    batches: Vec<RecordBatch>,
    pk_idx: usize,
) -> Result<Vec<RecordBatch>> {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut dup = false;
    let mut keeps: Vec<Vec<bool>> = Vec::with_capacity(batches.len());
    for b in batches.iter().rev() {
        let col = b.column(pk_idx);
        let mut keep = vec![true; b.num_rows()];
        for i in (0..b.num_rows()).rev() {
            if !seen.insert(key_at(col.as_ref(), i).into()) {
                keep[i] = false;
                dup = true;
            }
        }
        keeps.push(keep);
    }
    if !dup {
        return Ok(batches);
    }
    keeps.reverse();
    batches
        .into_iter()
        .zip(keeps)
        .map(|(b, keep)| {
            Ok(arrow::compute::filter_record_batch(
                &b,
                &BooleanArray::from(keep),
            )?)
        })
        .collect()
}

fn unwrap_shared(e: Arc<Error>) -> Error {
    match e.as_ref() {
        Error::Corrupt { path, reason } => Error::Corrupt {
            path: path.clone(),
            reason: reason.clone(),
        },
        Error::CommitConflict { collection, reason } => Error::CommitConflict {
            collection: collection.clone(),
            reason: reason.clone(),
        },
        other => Error::internal(other.to_string()),
    }
}

/// Builds the object store for a store URL, rooted at the URL's prefix.
pub fn open_object_store(url: &str) -> Result<Arc<dyn ObjectStore>> {
    use object_store::prefix::PrefixStore;
    let parsed = match Url::parse(url) {
        Ok(u) if u.scheme().len() > 1 => u,
        // A plain path (or a Windows drive letter) is a local directory.
        _ => return open_local(std::path::Path::new(url)),
    };
    let prefix = parsed.path().trim_matches('/').to_string();
    let with_prefix = |s: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
        if prefix.is_empty() {
            s
        } else {
            Arc::new(PrefixStore::new(s, prefix.as_str()))
        }
    };
    let cfg = |e: object_store::Error| Error::Config(format!("store '{url}': {e}"));
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| Error::Config(format!("store '{url}': not a local file path")))?;
            open_local(&path)
        }
        "memory" => Ok(Arc::new(object_store::memory::InMemory::new())),
        "s3" | "s3a" => {
            let s = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(no_client_retries())
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        "gs" => {
            let s = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(no_client_retries())
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let s = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(no_client_retries())
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        other => Err(Error::Config(format!(
            "store '{url}': unsupported scheme '{other}' (use a path, file://, s3://, gs://, az:// or memory://)"
        ))),
    }
}

/// quiver's [`crate::storage::io::retry::RetryStore`] owns retries; the cloud clients'
/// own would multiply its attempts.
fn no_client_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    }
}

fn open_local(path: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(path).map_err(|e| {
        Error::Config(format!(
            "cannot create data directory '{}': {e}",
            path.display()
        ))
    })?;
    let s = object_store::local::LocalFileSystem::new_with_prefix(path)
        .map_err(|e| Error::Config(format!("data directory '{}': {e}", path.display())))?;
    Ok(Arc::new(s))
}

/// Whether an error was caused by an object the store does not have.
fn is_not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(object_store::Error::NotFound { .. }) =
            err.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_respects_observed() {
        let c = Clock::default();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        c.observe(u64::MAX / 2);
        assert!(c.now() > u64::MAX / 2);
    }

    #[test]
    fn reserved_keys_are_below_every_later_timestamp_and_never_reused() {
        let c = Clock::default();
        let first = c.reserve(1000);
        let ts = c.now();
        assert!(ts >= first + 1000, "the write's ts is above its keys");
        let again = c.reserve(5);
        assert!(again > ts);
        // A restarted clock observes the committed ts and numbers above it.
        let restarted = Clock::default();
        restarted.observe(ts);
        assert!(restarted.reserve(1) > first + 999);
    }
}
