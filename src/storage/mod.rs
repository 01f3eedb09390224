//! Storage: bytes, files and commits on an object store. It knows nothing of
//! SQL, Flight or servers: nothing here names `query`, `flight`, `admin` or
//! `server`.
//!
//! Guarantees: a commit (a new manifest version) is visible to all readers
//! or to none; files are immutable once written and named uniquely, so any
//! cache keyed by path and range stays valid; an acknowledged write is in
//! the write-ahead log (fsynced) or in a committed manifest; a block of a
//! data file is checked against its recorded checksum when it is fetched.

pub(crate) mod config;
pub(crate) mod format;
pub(crate) mod index;
pub(crate) mod io;
pub(crate) mod store;
pub mod wal;

pub use config::{
    parse_compression, StoreConfig, DEFAULT_DECODED_CACHE_BYTES, DEFAULT_INDEX_CACHE_BYTES,
    DEFAULT_INDEX_MIN_ROWS, DEFAULT_MAX_DIMENSION, DEFAULT_MULTIPART_PART_BYTES,
    DEFAULT_MULTIPART_THRESHOLD_BYTES, DEFAULT_ROW_GROUP_ROWS, DEFAULT_SEGMENT_MAX_ROWS,
    MIN_MULTIPART_PART_BYTES,
};
pub use format::layout::{from_stored, gather, stored_field, to_stored};
pub use format::manifest::{list_versions, Manifest};
pub use format::schema::{vector_item_field, vector_type, ID_COLUMN};
pub use index::hnsw::HnswIndex;
pub use index::ivf::IvfIndex;
pub use index::{IndexDef, IndexFile, IndexKind, IndexMetric, SegmentIndex};
pub use io::cache::{DEFAULT_BLOCK_BYTES, DEFAULT_CACHE_BYTES};
pub use io::open::open_object_store;
pub use io::retry::{RetryPolicy, RetryStore};
pub use store::write::IngestMode;
pub use store::Store;
pub use wal::state::{WalOptions, DEFAULT_FLUSH_BYTES, DEFAULT_FLUSH_ROWS};
