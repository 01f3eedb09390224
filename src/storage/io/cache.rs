//! `ChunkCache`: an `ObjectStore` wrapper that keeps byte blocks of segment
//! files in memory (moka, weighed in bytes), in front of object storage.
//!
//! Segment files (`insert_log/`, `stats_log/`, `delta_log/`) are written
//! once under unique names and never change, so a block read once can be
//! served from memory until it is evicted. Reads are cut into fixed-size,
//! aligned blocks, so queries reading different column subsets of a file
//! share what overlaps; concurrent misses of one block fetch it once. Every
//! other path (manifests, listings) and every write goes straight through.
//! Because the cache is the store, it travels with every plan.
//!
//! Checksums: the manifest records a crc32c for every block of a data file
//! ([`BlockSums`], registered here when a manifest is loaded). A block is
//! checked when it is fetched, before anything reads it, so each byte is
//! verified once per fetch (and a cached block is served without checking
//! it again). A mismatch is an error naming the file and block; a file
//! without registered sums (written before checksums) is read unchecked.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};

/// Default capacity of the chunk cache (1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// Default block size (1 MiB): small enough not to read much beyond what a
/// query needs, large enough to keep object-store requests few.
pub const DEFAULT_BLOCK_BYTES: u64 = 1024 * 1024;

/// Path segments of immutable segment files.
const IMMUTABLE_DIRS: [&str; 3] = ["insert_log", "stats_log", "delta_log"];

/// The crc32c of every `block`-byte block of one file (the last one
/// shorter), as its manifest records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums {
    pub block: u64,
    pub crcs: Vec<u32>,
}

impl BlockSums {
    /// Computes the sums of `bytes` in blocks of `block` bytes.
    pub fn compute(bytes: &[u8], block: u64) -> Self {
        let block = block.max(MIN_BLOCK_BYTES);
        Self {
            block,
            crcs: bytes.chunks(block as usize).map(crc32c::crc32c).collect(),
        }
    }
}

/// Blocks are at least this large (4 KiB).
pub const MIN_BLOCK_BYTES: u64 = 4096;

/// Counters of a [`ChunkCache`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Blocks served from memory.
    pub hits: u64,
    /// Blocks fetched from the store.
    pub misses: u64,
    /// Bytes fetched from the store for blocks.
    pub fetched_bytes: u64,
    /// Blocks evicted to stay within capacity.
    pub evictions: u64,
    /// Requests sent to the underlying store (reads, writes, listings).
    pub requests: u64,
    /// Bytes held now.
    pub cached_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fetched_bytes: AtomicU64,
    evictions: AtomicU64,
    requests: AtomicU64,
}

/// A block cache in front of an object store (see the module docs).
pub struct ChunkCache {
    inner: Arc<dyn ObjectStore>,
    block: u64,
    blocks: moka::future::Cache<(Path, u64), Bytes>,
    metas: moka::future::Cache<Path, ObjectMeta>,
    sums: parking_lot::RwLock<std::collections::HashMap<Path, Arc<BlockSums>>>,
    counters: Arc<Counters>,
}

impl fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkCache")
            .field("inner", &self.inner.to_string())
            .field("block", &self.block)
            .field("capacity", &self.blocks.policy().max_capacity())
            .finish()
    }
}

impl fmt::Display for ChunkCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkCache({})", self.inner)
    }
}

impl ChunkCache {
    /// Caches up to `capacity` bytes of `block`-sized blocks of `inner`.
    /// A capacity of 0 turns caching off (every read goes to `inner`).
    pub fn new(inner: Arc<dyn ObjectStore>, capacity: u64, block: u64) -> Self {
        let counters = Arc::new(Counters::default());
        let on_evict = counters.clone();
        let blocks = moka::future::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k: &(Path, u64), v: &Bytes| v.len().try_into().unwrap_or(u32::MAX))
            .eviction_listener(move |_k, _v, cause| {
                if cause.was_evicted() {
                    on_evict.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            inner,
            block: block.max(MIN_BLOCK_BYTES),
            blocks,
            metas: moka::future::Cache::builder().max_capacity(1 << 16).build(),
            sums: Default::default(),
            counters,
        }
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fetched_bytes: c.fetched_bytes.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            cached_bytes: self.blocks.weighted_size(),
        }
    }

    /// Applies pending evictions (so `stats().cached_bytes` is exact).
    #[cfg(test)]
    pub async fn settle(&self) {
        self.blocks.run_pending_tasks().await;
    }

    /// Records the block checksums of the file at `location`: later reads
    /// of it are verified.
    pub fn register(&self, location: Path, sums: Arc<BlockSums>) {
        let known = self.sums.read().contains_key(&location);
        if !known {
            self.sums.write().insert(location, sums);
        }
    }

    fn sums(&self, location: &Path) -> Option<Arc<BlockSums>> {
        self.sums.read().get(location).cloned()
    }

    fn enabled(&self) -> bool {
        self.blocks.policy().max_capacity().unwrap_or(0) > 0
    }

    /// Whether reads of `location` go through blocks: cached files, and
    /// files with checksums (verified even when caching is off).
    fn cacheable(&self, location: &Path) -> bool {
        (self.enabled()
            && location
                .parts()
                .any(|p| IMMUTABLE_DIRS.contains(&p.as_ref())))
            || self.sums.read().contains_key(location)
    }

    fn request(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    async fn meta(&self, location: &Path) -> Result<ObjectMeta> {
        let inner = self.inner.clone();
        let counters = self.counters.clone();
        self.metas
            .try_get_with(location.clone(), async move {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                inner.head(location).await
            })
            .await
            .map_err(unshare)
    }

    async fn block(
        &self,
        location: &Path,
        index: u64,
        size: u64,
        sums: Option<&Arc<BlockSums>>,
    ) -> Result<Bytes> {
        let key = (location.clone(), index);
        if self.enabled() {
            if let Some(b) = self.blocks.get(&key).await {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(b);
            }
        }
        let block = sums.map_or(self.block, |s| s.block);
        let start = index * block;
        let end = (start + block).min(size);
        let inner = self.inner.clone();
        let counters = self.counters.clone();
        let path = location.clone();
        let want = match sums {
            Some(s) => Some(s.crcs.get(index as usize).copied().ok_or_else(|| {
                corrupt(
                    location,
                    format!(
                        "the file has {size} bytes, more than the {} blocks of {block} bytes its manifest records",
                        s.crcs.len()
                    ),
                )
            })?),
            None => None,
        };
        let fetch = async move {
            counters.misses.fetch_add(1, Ordering::Relaxed);
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let b = inner.get_range(&path, start..end).await?;
            counters
                .fetched_bytes
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            if let Some(want) = want {
                let got = crc32c::crc32c(&b);
                if got != want {
                    return Err(corrupt(
                        &path,
                        format!(
                            "checksum mismatch in block {index} (bytes {start}..{end}): crc32c {got:08x} but the manifest records {want:08x}"
                        ),
                    ));
                }
            }
            Ok::<_, object_store::Error>(b)
        };
        if !self.enabled() {
            return fetch.await;
        }
        self.blocks.try_get_with(key, fetch).await.map_err(unshare)
    }

    /// Bytes `range` of `location` (whose size is `size`) from blocks.
    async fn read(&self, location: &Path, range: Range<u64>, size: u64) -> Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let sums = self.sums(location);
        let block = sums.as_ref().map_or(self.block, |s| s.block);
        let first = range.start / block;
        let last = (range.end - 1) / block;
        let blocks: Vec<Bytes> = futures::stream::iter(first..=last)
            .map(|i| self.block(location, i, size, sums.as_ref()))
            .buffered(8)
            .try_collect()
            .await?;
        let skip = (range.start - first * block) as usize;
        let len = (range.end - range.start) as usize;
        if blocks.len() == 1 {
            return Ok(blocks[0].slice(skip..skip + len));
        }
        let mut out = BytesMut::with_capacity(len);
        let mut offset = skip;
        for b in &blocks {
            let take = (b.len() - offset).min(len - out.len());
            out.extend_from_slice(&b[offset..offset + take]);
            offset = 0;
        }
        Ok(out.freeze())
    }

    async fn cached_get(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let meta = self.meta(location).await?;
        options.check_preconditions(&meta)?;
        let size = meta.size;
        let range = match &options.range {
            None => 0..size,
            Some(GetRange::Bounded(r)) => r.start..r.end.min(size),
            Some(GetRange::Offset(o)) => *o..size,
            Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
        };
        if range.start > size || (range.start == size && size > 0 && options.range.is_some()) {
            // Let the store produce its own out-of-range error.
            self.request();
            return self.inner.get_opts(location, options).await;
        }
        let bytes = if options.head {
            Bytes::new()
        } else {
            self.read(location, range.clone(), size).await?
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes: Default::default(),
        })
    }
}

/// A block that does not match its checksum.
fn corrupt(location: &Path, reason: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "quiver",
        source: Box::new(SharedError(format!(
            "corrupt data in '{location}': {reason}"
        ))),
    }
}

/// An error that concurrent readers of one block shared; a missing file
/// stays `NotFound` (callers tell it apart).
fn unshare(e: Arc<object_store::Error>) -> object_store::Error {
    match Arc::try_unwrap(e) {
        Ok(e) => e,
        Err(shared) => match shared.as_ref() {
            object_store::Error::NotFound { path, .. } => object_store::Error::NotFound {
                path: path.clone(),
                source: Box::new(SharedError(shared.to_string())),
            },
            _ => object_store::Error::Generic {
                store: "ChunkCache",
                source: Box::new(SharedError(shared.to_string())),
            },
        },
    }
}

#[derive(Debug)]
struct SharedError(String);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SharedError {}

#[async_trait]
impl ObjectStore for ChunkCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.request();
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.request();
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = options.version.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none();
        if plain && self.cacheable(location) {
            return self.cached_get(location, options).await;
        }
        self.request();
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if !self.cacheable(location) {
            self.request();
            return self.inner.get_ranges(location, ranges).await;
        }
        let size = self.meta(location).await?.size;
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            if r.end > size {
                self.request();
                return self.inner.get_ranges(location, ranges).await;
            }
            out.push(self.read(location, r.clone(), size).await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Segment files are never rewritten under the same name, so cached
        // blocks of a deleted file can only age out.
        let counters = self.counters.clone();
        let locations = locations
            .inspect(move |_| {
                counters.requests.fetch_add(1, Ordering::Relaxed);
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.request();
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.request();
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.request();
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.request();
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn setup(capacity: u64) -> (Arc<InMemory>, ChunkCache, Bytes) {
        let inner = Arc::new(InMemory::new());
        let data: Bytes = (0..10_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        inner
            .put(
                &Path::from("c/insert_log/1/0/a.parquet"),
                data.clone().into(),
            )
            .await
            .unwrap();
        let cache = ChunkCache::new(inner.clone(), capacity, 4096);
        (inner, cache, data)
    }

    #[tokio::test]
    async fn ranges_match_the_store_and_warm_reads_make_no_requests() {
        let (_inner, cache, data) = setup(1 << 20).await;
        let p = Path::from("c/insert_log/1/0/a.parquet");
        for r in [0..10, 4090..4100, 100..9000, 9999..10_000, 0..10_000] {
            let got = cache.get_range(&p, r.clone()).await.unwrap();
            assert_eq!(got, data.slice(r.start as usize..r.end as usize), "{r:?}");
        }
        let got = cache.get_ranges(&p, &[5..6, 8000..9000]).await.unwrap();
        assert_eq!(got[1], data.slice(8000..9000));
        let whole = cache.get(&p).await.unwrap().bytes().await.unwrap();
        assert_eq!(whole, data);
        let suffix = cache
            .get_opts(
                &p,
                GetOptions {
                    range: Some(GetRange::Suffix(8)),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(suffix, data.slice(9992..));
        let before = cache.stats();
        assert_eq!(before.misses, 3, "three 4 KiB blocks, each fetched once");
        cache.get_range(&p, 0..10_000).await.unwrap();
        let after = cache.stats();
        assert_eq!(
            after.requests, before.requests,
            "a warm read makes no request"
        );
        assert!(after.hits > before.hits);
    }

    #[tokio::test]
    async fn capacity_is_respected_and_zero_turns_it_off() {
        let (_inner, cache, _) = setup(8192).await;
        let p = Path::from("c/insert_log/1/0/a.parquet");
        cache.get_range(&p, 0..10_000).await.unwrap();
        cache.settle().await;
        assert!(cache.stats().cached_bytes <= 8192, "{:?}", cache.stats());

        let (_inner, off, data) = setup(0).await;
        let got = off.get_range(&p, 10..20).await.unwrap();
        assert_eq!(got, data.slice(10..20));
        off.get_range(&p, 10..20).await.unwrap();
        assert_eq!(off.stats().hits, 0);
        assert_eq!(off.stats().requests, 2);
    }

    #[tokio::test]
    async fn a_missing_file_is_not_found() {
        let (_inner, cache, _) = setup(1 << 20).await;
        let p = Path::from("c/insert_log/1/0/gone.parquet");
        let err = cache.get_range(&p, 0..10).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn manifests_are_never_cached() {
        let inner = Arc::new(InMemory::new());
        let cache = ChunkCache::new(inner.clone(), 1 << 20, 4096);
        let p = Path::from("c/_manifest/00000000000000000001.json");
        inner
            .put(&p, Bytes::from_static(b"one").into())
            .await
            .unwrap();
        assert_eq!(cache.get(&p).await.unwrap().bytes().await.unwrap(), "one");
        assert_eq!(cache.stats().misses, 0);
    }
}
