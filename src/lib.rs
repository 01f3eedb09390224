//! quiver: vectors and scalar data stored as Milvus-style segments on object
//! storage, queried with SQL (DataFusion) and served over Arrow Flight SQL.
//!
//! The folders are layers; each names only the layers below it:
//!
//! ```text
//! server   the gRPC server, the metrics exporter, background upkeep
//! flight   Arrow Flight SQL: the service, metadata commands, auth
//! admin    compaction, garbage collection, verify, inspect
//! query    DataFusion: catalog, scan, top-k, functions, plan cache, engine
//! storage  object store I/O, file formats, the log, the store and its commits
//! error, metrics
//! ```
//!
//! `tests/it/layering.rs` fails when a file names a layer above its own;
//! `docs/architecture.md` walks through a query and a write.
//!
//! Embedders need [`Store`] (open a store), [`register`] (add quiver's
//! catalog and functions to a DataFusion `SessionContext`) or [`Engine`]
//! (quiver's own SQL gate, DDL and DML).

pub mod admin;
pub mod error;
pub mod flight;
pub mod metrics;
pub mod query;
pub mod server;
pub mod storage;

pub use error::{Error, Result};
pub use query::{register, Engine, EngineOptions};
pub use storage::{IngestMode, Store, StoreConfig};
