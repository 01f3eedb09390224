//! `Store`: one object-store prefix holding quiver collections, with the
//! hybrid clock and the write operations (create, ingest, drop).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt};
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use parking_lot::RwLock;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
// ParquetObjectReader is deprecated in parquet 59 in favour of a hand-written
// AsyncFileReader; it is still the maintained object_store adapter.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use url::Url;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::manifest::{self, Change, Manifest, OnExists, SegmentMeta};
use crate::schema::CollectionSchema;
use crate::segment::write_segment;

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
    /// Serializes this process's commits per store (other processes are
    /// handled by the conditional put).
    write_lock: tokio::sync::Mutex<()>,
    /// Parsed Parquet footers (with page indexes) of column-group files,
    /// weighed by their in-memory size.
    footers: moka::future::Cache<Path, ArrowReaderMetadata>,
}

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
        let store_url = Url::parse(&format!("quiver://{}", uuid::Uuid::new_v4().simple()))
            .map_err(|e| Error::internal(e.to_string()))?;
        let store = Store {
            object_store,
            url,
            store_url,
            config,
            clock: Clock::default(),
            collections: RwLock::new(BTreeMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            footers: moka::future::Cache::builder()
                .max_capacity(FOOTER_CACHE_BYTES)
                .weigher(|_k: &Path, v: &ArrowReaderMetadata| {
                    v.metadata().memory_size().try_into().unwrap_or(u32::MAX)
                })
                .build(),
        };
        store.reload().await?;
        Ok(Arc::new(store))
    }

    /// Re-reads every collection's latest manifest.
    pub async fn reload(&self) -> Result<()> {
        let listed = self.object_store.list_with_delimiter(None).await?;
        let mut found = BTreeMap::new();
        for prefix in listed.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            if let Some(m) = manifest::load_latest(self.object_store.as_ref(), name).await? {
                self.clock.observe(m.max_ts);
                if m.is_live() {
                    found.insert(name.to_string(), Arc::new(m));
                }
            }
        }
        *self.collections.write() = found;
        Ok(())
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
                        reason: e.to_string(),
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

    pub fn require(&self, name: &str) -> Result<Arc<Manifest>> {
        self.snapshot(name)
            .ok_or_else(|| Error::CollectionNotFound(name.to_string()))
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
            on_exists: OnExists::Fail,
        };
        self.commit(name, &change).await?;
        Ok(true)
    }

    /// Drops a collection. Its files stay until garbage collection.
    pub async fn drop_collection(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        if self.snapshot(name).is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::CollectionNotFound(name.to_string()))
            };
        }
        self.commit(name, &Change::Drop).await?;
        Ok(true)
    }

    /// Writes a stream of batches into a collection as one atomic commit:
    /// either every row becomes visible or none does. Returns the row count.
    ///
    /// `input_schema` is the stream's schema (used to create the collection);
    /// `primary_key` overrides the default key choice on create.
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
                CollectionSchema::infer(name, &input_schema, primary_key)?,
                true,
            ),
        };
        let ts = self.clock.now();
        let segments = self.write_segments(name, &schema, batches, ts).await?;
        let rows = segments.iter().map(|s| s.rows).sum();
        let change = if creating {
            Change::Create {
                schema,
                segments,
                on_exists: mode.on_exists,
            }
        } else {
            Change::Append { schema, segments }
        };
        self.commit(name, &change).await?;
        Ok(rows)
    }

    /// Conforms and seals batches into segments of the configured size.
    /// Nothing is visible until the caller commits the returned segments;
    /// on error the files already written are removed again.
    async fn write_segments<S>(
        &self,
        name: &str,
        schema: &CollectionSchema,
        batches: S,
        ts: u64,
    ) -> Result<Vec<SegmentMeta>>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let mut segments: Vec<SegmentMeta> = Vec::new();
        let result = async {
            let mut batches = std::pin::pin!(batches);
            let mut pending: Vec<RecordBatch> = Vec::new();
            let (mut rows, mut bytes) = (0usize, 0usize);
            while let Some(batch) = batches.next().await {
                let batch = schema.conform(name, &batch?)?;
                if batch.num_rows() == 0 {
                    continue;
                }
                rows += batch.num_rows();
                bytes += batch.get_array_memory_size();
                pending.push(batch);
                if rows >= self.config.segment_max_rows || bytes >= self.config.segment_max_bytes {
                    let seal = std::mem::take(&mut pending);
                    segments.push(
                        write_segment(&self.object_store, &self.config, name, schema, seal, ts)
                            .await?,
                    );
                    (rows, bytes) = (0, 0);
                }
            }
            if !pending.is_empty() {
                segments.push(
                    write_segment(&self.object_store, &self.config, name, schema, pending, ts)
                        .await?,
                );
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            self.remove_files(name, &segments).await;
            return Err(e);
        }
        Ok(segments)
    }

    async fn remove_files(&self, name: &str, segments: &[SegmentMeta]) {
        for f in segments.iter().flat_map(|s| &s.files) {
            if let Err(e) = self
                .object_store
                .delete(&Self::file_path(name, &f.path))
                .await
            {
                tracing::warn!(collection = name, file = %f.path, error = %e, "could not remove uncommitted file");
            }
        }
    }

    async fn commit(&self, name: &str, change: &Change) -> Result<Arc<Manifest>> {
        // Start from the store's latest version, not our cache: another
        // process may have committed since.
        let base = manifest::load_latest(self.object_store.as_ref(), name).await?;
        let ts = self.clock.now();
        let committed = match manifest::commit(self.object_store.as_ref(), name, base, change, ts)
            .await
        {
            Ok(m) => Arc::new(m),
            Err(e) => {
                if let Change::Create { segments, .. } | Change::Append { segments, .. } = change {
                    self.remove_files(name, segments).await;
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
        let mut map = self.collections.write();
        if committed.is_live() {
            map.insert(name.to_string(), committed.clone());
        } else {
            map.remove(name);
        }
        Ok(committed)
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
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        "gs" => {
            let s = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let s = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(cfg)?;
            Ok(with_prefix(Arc::new(s)))
        }
        other => Err(Error::Config(format!(
            "store '{url}': unsupported scheme '{other}' (use a path, file://, s3://, gs://, az:// or memory://)"
        ))),
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
}
