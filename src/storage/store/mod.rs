//! `Store`: one object-store prefix holding quiver collections: opening it,
//! the hybrid clock, the published manifests (snapshots) and the caches.
//! Its operations live beside it, one concern a file: `read.rs`, the write
//! path (`write.rs` dispatches to `logged.rs` or `seal.rs`), `flush.rs`
//! (growing segment to files) and `commit.rs` (the manifest protocol).

mod clock;
mod commit;
mod flush;
pub(crate) mod index;
mod logged;
mod read;
mod seal;
pub(crate) mod write;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use object_store::{path::Path, ObjectStore};
use parking_lot::RwLock;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use url::Url;

use crate::error::{Error, Result};
use crate::storage::config::StoreConfig;
use crate::storage::format::keys::{DeleteMap, KeyBloom};
use crate::storage::format::manifest::{self, Manifest};
use crate::storage::io::open::open_object_store;
use crate::storage::store::clock::Clock;
use crate::storage::wal::growing::MemView;
use crate::storage::wal::state::WalState;

/// A store of collections under one object-store prefix.
#[derive(Debug)]
pub struct Store {
    pub(crate) object_store: Arc<dyn ObjectStore>,
    pub(crate) url: String,
    /// Unique `quiver://<id>` under which DataFusion finds this store.
    pub(crate) store_url: Url,
    pub(crate) config: StoreConfig,
    pub(crate) clock: Clock,
    /// Latest committed manifest of every live collection.
    pub(crate) collections: RwLock<BTreeMap<String, Arc<Manifest>>>,
    /// Collections whose newest manifest could not be read, with why: they
    /// answer every query with that error, the others keep working.
    pub(crate) unreadable: RwLock<BTreeMap<String, (String, String)>>,
    /// Serializes this process's commits per store (other processes are
    /// handled by the conditional put).
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// Parsed Parquet footers (with page indexes) of column-group files,
    /// weighed by their in-memory size.
    pub(crate) footers: moka::future::Cache<Path, ArrowReaderMetadata>,
    /// Key filters of segments, by path.
    pub(crate) blooms: moka::future::Cache<Path, Arc<KeyBloom>>,
    /// Merged delete logs per (collection, version).
    pub(crate) delete_maps: moka::future::Cache<(String, u64), Arc<DeleteMap>>,
    /// Decoded vector columns per (file, row group), as `FixedSizeList`
    /// arrays, weighed by their memory (Milvus's ChunkCache).
    /// Decoded columns by (file, row group, root column).
    pub(crate) decoded: moka::future::Cache<(Path, usize, usize), ArrayRef>,
    pub(crate) decoded_hits: AtomicU64,
    pub(crate) decoded_misses: AtomicU64,
    /// Bytes of decoded vector chunks moved to huge-page memory, in all.
    pub(crate) decoded_huge_page_bytes: AtomicU64,
    /// Older versions pinned for time-travel queries.
    pub(crate) pinned: moka::sync::Cache<(String, u64), (Arc<Manifest>, Arc<DeleteMap>)>,
    /// The write-ahead log and growing segments (`None`: every write is
    /// sealed and committed before it is acknowledged).
    pub(crate) wal: Option<WalState>,
    /// Blocks of segment files in memory; `object_store` reads through it.
    pub(crate) cache: Arc<crate::storage::io::cache::ChunkCache>,
    /// Per collection: held by an UPDATE or a DELETE from reading the rows
    /// it changes until its write is acknowledged ([`Store::dml_lock`]).
    pub(crate) dml_locks:
        parking_lot::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Loaded index files (IVF, HNSW) by path, weighed by their memory,
    /// evicted whole.
    pub(crate) index_cache: moka::future::Cache<Path, Arc<crate::storage::index::SegmentIndex>>,
    /// Woken by a commit to a collection with indexes (the index builder
    /// may have work: [`Store::run_index_builder`]).
    pub(crate) index_wakeup: tokio::sync::Notify,
    /// One index build at a time per process.
    pub(crate) index_build_lock: tokio::sync::Mutex<()>,
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
        wal: Option<WalState>,
    ) -> Result<Self> {
        let store_url = Url::parse(&format!("quiver://{}", uuid::Uuid::new_v4().simple()))
            .map_err(|e| Error::internal(e.to_string()))?;
        let retrying: Arc<dyn ObjectStore> = Arc::new(crate::storage::io::retry::RetryStore::new(
            object_store,
            config.retry,
        ));
        let cache = Arc::new(crate::storage::io::cache::ChunkCache::new(
            retrying,
            config.cache_bytes,
            config.cache_block_bytes,
        ));
        let object_store: Arc<dyn ObjectStore> = cache.clone();
        let decoded_capacity = config.decoded_cache_bytes;
        let index_cache_bytes = config.index_cache_bytes;
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
            index_cache: moka::future::Cache::builder()
                .max_capacity(index_cache_bytes)
                .weigher(|_k: &Path, v: &Arc<crate::storage::index::SegmentIndex>| {
                    v.memory_size().try_into().unwrap_or(u32::MAX)
                })
                .build(),
            index_wakeup: tokio::sync::Notify::new(),
            index_build_lock: tokio::sync::Mutex::new(()),
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
}

pub(crate) fn unwrap_shared(e: Arc<Error>) -> Error {
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
