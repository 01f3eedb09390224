//! Fused vector top-k: `ORDER BY <distance>(vec, <constant>) LIMIT k` over a
//! quiver scan runs as one operator, [`VectorTopKExec`].
//!
//! The physical optimizer rule [`FuseVectorTopK`] looks for a `SortExec`
//! with a fetch (and the `SortPreservingMergeExec` above it, if any) whose
//! first sort key is a quiver distance function of a column and a literal
//! query vector, over a chain of projections, filters and repartitions that
//! ends at a collection scan ([`MaterializeExec`]). It replaces the chain
//! with a `VectorTopKExec` that, for every partition of the scan in
//! parallel, applies the filters, scores the surviving rows, drops rows
//! that cannot beat the current k-th best (one SIMD comparison per row) and
//! keeps the k best; the partitions' winners are merged and only then are
//! the projection's expressions evaluated, on k rows. Ties break by the
//! primary key (ascending), so results are deterministic.
//!
//! Where the rule does not apply (no LIMIT, a query vector that is a column,
//! a first sort key that is not a distance, a plan it does not know), the
//! plan is left as DataFusion built it.
//!
//! Files: `rule.rs` (the rule), `exec.rs` (the operator), `share.rs` (one
//! worker's scan and scoring), `best.rs` (its k best), `ann.rs` (segments
//! searched through a vector index: then EXPLAIN says `VectorAnnExec`).

pub(crate) mod ann;
mod best;
mod exec;
mod rule;
mod share;

pub use ann::{SearchSettings, SettingError, VectorSearch, SETTINGS};
pub use exec::apply_settings;
pub(crate) use exec::{TopKTemplate, VectorTopKExec};
pub(crate) use rule::FuseVectorTopK;
