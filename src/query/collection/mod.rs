//! Collections as DataFusion tables: the `quiver` catalog
//! (`catalog.rs`), the `TableProvider` that pins a manifest version and
//! plans the scan (`provider.rs`), segment pruning (`prune.rs`), the scan
//! operator `MaterializeExec` (`exec.rs`), its units (`unit.rs`: loading
//! row groups from the decoded cache, masks, rows by position) and the materialization of vector
//! columns it runs (`materialize.rs`), `INSERT INTO` (`sink.rs`) and the
//! `quiver_snapshot` time-travel table function (`snapshot.rs`), and
//! `quiver_indexes`, the vector indexes and their build state (`indexes.rs`).
//!
//! Guarantee: a scan reads the manifest version it pinned when it was
//! planned, whatever commits meanwhile; rows hidden by deletes at that
//! version are never returned.

mod catalog;
mod exec;
pub(crate) mod indexes;
mod materialize;
mod provider;
mod prune;
mod sink;
pub(crate) mod snapshot;
mod unit;

pub(crate) use catalog::{QuiverCatalog, CATALOG, SCHEMA};
pub(crate) use exec::MaterializeExec;
pub(crate) use materialize::true_positions;
pub(crate) use provider::{latest_table, CollectionTable};
pub(crate) use unit::ScanUnit;
pub use unit::MIN_PART_ROWS;
