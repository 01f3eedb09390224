//! `StoreConfig`: the numbers that shape how segments are written and read.

use parquet::basic::{Compression, ZstdLevel};

use crate::error::{Error, Result};

/// Rows per Parquet row group. Row groups are the unit of pruning and of
/// caching, so they are kept small enough to skip and large enough to
/// stream (64 Ki rows of a 128-d vector are 32 MiB).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows per sealed segment; a larger write becomes several segments
/// committed together.
pub const DEFAULT_SEGMENT_MAX_ROWS: usize = 1024 * 1024;

/// In-memory bytes of Arrow data per sealed segment (256 MiB), whichever
/// limit is reached first.
pub const DEFAULT_SEGMENT_MAX_BYTES: usize = 256 * 1024 * 1024;

/// Default memory for decoded vector chunks (2 GiB: 1M x 128-d float32
/// vectors are 512 MiB).
pub const DEFAULT_DECODED_CACHE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Largest vector dimension unless configured otherwise (as Milvus).
pub const DEFAULT_MAX_DIMENSION: usize = 32_768;

/// Segments with fewer rows are not indexed (searched exactly), as in
/// Milvus.
pub const DEFAULT_INDEX_MIN_ROWS: u64 = 1024;

/// Memory for loaded index files (1 GiB).
pub const DEFAULT_INDEX_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// Name of the WAL directory inside a local data directory (so no
/// collection may have it).
pub const WAL_DIR_NAME: &str = "_wal";

/// How segments are written.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub row_group_rows: usize,
    pub segment_max_rows: usize,
    pub segment_max_bytes: usize,
    pub compression: Compression,
    /// Bytes of segment-file blocks kept in memory in front of the object
    /// store (0: off).
    pub cache_bytes: u64,
    /// Size of one cached block.
    pub cache_block_bytes: u64,
    /// Bytes of decoded vector columns (per row group) kept in memory
    /// (0: off).
    pub decoded_cache_bytes: u64,
    /// Whether decoded vector chunks of at least 2 MiB are kept in memory
    /// advised for huge pages (Linux transparent huge pages), so selective
    /// searches that read scattered vectors take fewer TLB misses.
    pub huge_pages: bool,
    /// How transient object-store failures are retried.
    pub retry: crate::storage::io::retry::RetryPolicy,
    /// Files of at least this many bytes are written with a multipart
    /// upload.
    pub multipart_threshold_bytes: u64,
    /// Size of one part of a multipart upload (S3 needs at least 5 MiB for
    /// every part but the last).
    pub multipart_part_bytes: u64,
    /// Largest dimension a new vector column may have (a row of a
    /// `FLOAT[d]` column takes 4 d bytes).
    pub max_dimension: usize,
    /// Segments with fewer rows get no index file.
    pub index_min_rows: u64,
    /// Threads one index build uses (k-means and assignment).
    pub index_build_threads: usize,
    /// Bytes of loaded index files kept in memory (whole files, evicted
    /// least recently used).
    pub index_cache_bytes: u64,
}

/// Default size from which files are written with a multipart upload
/// (64 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;

/// Default part size of a multipart upload (16 MiB).
pub const DEFAULT_MULTIPART_PART_BYTES: u64 = 16 * 1024 * 1024;

/// Smallest part S3 accepts (except for the last part).
pub const MIN_MULTIPART_PART_BYTES: u64 = 5 * 1024 * 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            segment_max_rows: DEFAULT_SEGMENT_MAX_ROWS,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            compression: Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")),
            cache_bytes: crate::storage::io::cache::DEFAULT_CACHE_BYTES,
            cache_block_bytes: crate::storage::io::cache::DEFAULT_BLOCK_BYTES,
            decoded_cache_bytes: DEFAULT_DECODED_CACHE_BYTES,
            huge_pages: true,
            retry: crate::storage::io::retry::RetryPolicy::default(),
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD_BYTES,
            multipart_part_bytes: DEFAULT_MULTIPART_PART_BYTES,
            max_dimension: DEFAULT_MAX_DIMENSION,
            index_min_rows: DEFAULT_INDEX_MIN_ROWS,
            index_build_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            index_cache_bytes: DEFAULT_INDEX_CACHE_BYTES,
        }
    }
}

/// Parses a compression name as used on the command line.
pub fn parse_compression(name: &str) -> Result<Compression> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")),
        "lz4" => Compression::LZ4_RAW,
        "snappy" => Compression::SNAPPY,
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        other => {
            return Err(Error::Config(format!(
                "unknown compression '{other}' (use zstd, lz4, snappy or none)"
            )))
        }
    })
}
