//! Vector indexes of sealed segments (Milvus's `index_files/`): their
//! declarations and per-segment files as the manifest records them
//! (`def.rs`), the IVF index and its Arrow IPC file (`ivf.rs`) and the
//! k-means that trains it (`kmeans.rs`). Pure computation and encoding:
//! building, committing and caching index files is the store's
//! (`store/index.rs`); searching them inside a query is the query layer's.

pub(crate) mod def;
pub(crate) mod ivf;
pub(crate) mod kmeans;

pub use def::{IndexDef, IndexFile, IndexKind, IndexMetric};
pub use ivf::IvfIndex;
