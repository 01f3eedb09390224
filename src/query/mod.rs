//! Query: collections as DataFusion tables, quiver's functions, rules and
//! operators, the plan cache and the engine that gates client SQL. It reads
//! through `storage` and never names `flight`, `admin` or `server`.
//!
//! Guarantees: a query reads one pinned manifest version (plus the growing
//! rows published when it was pinned) from planning to its last batch; every
//! optimisation (fused top-k, pruning, the plan cache) returns the rows the
//! plain plan would.

pub(crate) mod collection;
pub(crate) mod engine;
pub(crate) mod functions;
pub(crate) mod observe;
pub(crate) mod plan_cache;
pub(crate) mod rewrite;
pub(crate) mod time_slice;
pub(crate) mod topk;

pub use collection::MIN_PART_ROWS;
pub use engine::{
    register, Engine, EngineOptions, Query, Statement, DEFAULT_PLAN_CACHE_ENTRIES,
    DEFAULT_QUERY_MEMORY_BYTES,
};
pub use functions::distance::Metric;
pub use observe::scan_totals;
pub use topk::{SearchSettings, SettingError, VectorSearch, SETTINGS};
