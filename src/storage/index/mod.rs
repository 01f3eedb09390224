//! Vector indexes of sealed segments (Milvus's `index_files/`): their
//! declarations and per-segment files as the manifest records them
//! (`def.rs`), the IVF index, flat or with 8-bit codes (`sq8.rs`), and its
//! Arrow IPC file (`ivf.rs`), the k-means that trains it (`kmeans.rs`), the HNSW
//! graph through USearch (`hnsw.rs`) and one type over both
//! (`segment.rs`). Pure computation and encoding: building, committing and
//! caching index files is the store's (`store/index.rs`); searching them
//! inside a query is the query layer's.

pub(crate) mod def;
pub(crate) mod hnsw;
pub(crate) mod ivf;
pub(crate) mod kmeans;
pub(crate) mod segment;
pub(crate) mod sq8;

pub use def::{IndexDef, IndexFile, IndexKind, IndexMetric};
pub use segment::SegmentIndex;
