//! quiver: vectors and scalar data stored as Milvus-style segments on object
//! storage, queried with SQL (DataFusion) and served over Arrow Flight SQL.
//!
//! Layers, bottom up:
//! - [`schema`], [`segment`], [`manifest`], [`store`]: the storage format and
//!   the commit protocol on an `object_store`.
//! - [`table`], [`distance`]: collections as DataFusion tables and the SIMD
//!   vector distance functions.
//! - [`engine`]: client SQL, gated; DDL and DML handled by quiver.
//! - [`flight`], [`server`], [`auth`]: the Arrow Flight SQL service.

pub mod auth;
pub mod bits;
pub mod cache;
pub mod compact;
pub mod config;
pub mod distance;
pub mod engine;
pub mod error;
pub mod files;
pub mod flight;
pub mod flight_meta;
pub mod flight_service;
pub mod flush;
pub mod fn_limits;
pub mod gc;
pub mod growing;
pub mod hex;
pub mod inspect;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod metrics;
pub mod operators;
pub mod plan_cache;
pub mod retry;
pub mod schema;
pub mod segment;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod time_slice;
pub mod time_units;
pub mod topk;
pub mod vector_fns;
pub mod verify;
pub mod wal;

pub use config::StoreConfig;
pub use engine::{register, Engine, EngineOptions};
pub use error::{Error, Result};
pub use store::{IngestMode, Store};
