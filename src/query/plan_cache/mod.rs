//! The plan cache: optimized logical plans of queries, keyed by their SQL
//! with the query vectors taken out.
//!
//! A vector search is usually the same SQL again and again with another
//! query vector. [`crate::query::engine::Engine::plan`] replaces long numeric
//! array literals (query vectors) with named parameters before planning,
//! so such queries share one statement text. The first time a text is
//! seen, its plan is analyzed and optimized with the parameters unbound
//! and kept here; later queries of that text skip SQL-to-plan and the
//! logical optimizer and only bind their vectors into the cached plan.
//! They skip parsing too when [`cut_vectors`] finds the vectors in the
//! text itself, and, for a fused vector top-k, physical planning: the
//! first run leaves a [`PhysicalTemplate`] that builds the same physical
//! plan for other vectors over a fresh scan.
//!
//! A cached plan holds no data: its collections are [`CollectionRef`]s
//! (name and columns), which the engine's `refresh` replaces by the
//! latest version of each collection before a plan runs. A collection
//! dropped or recreated with other columns makes the entry stale: the
//! statement is planned afresh. Only plans whose outcome depends on
//! nothing but the SQL and the collections' columns are cached: every
//! scan reads a quiver collection at its latest version (no time travel,
//! no catalog tables), every function is immutable (`now()` and
//! `random()` are planned each time), and every query-vector parameter
//! sits in a cast the analyzer put there (so binding is folding a value).

mod bind;
mod template;
mod text;

pub use bind::{bind, cacheable, is_list, parameters_in_casts, unpin, vector_parameters_only};
pub use template::PhysicalTemplate;
pub use text::{cut_vectors, vector_value, CutText};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan, TableSource};
use datafusion::physical_plan::ExecutionPlan;

use crate::query::collection::{CollectionTable, MaterializeExec};

/// A collection by name and columns, standing for the version a cached
/// plan will read once it is refreshed.
#[derive(Debug)]
pub struct CollectionRef {
    pub name: String,
    pub system_columns: bool,
    pub schema: SchemaRef,
}

impl TableSource for CollectionRef {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A cached query: its optimized plan with the vectors unbound and, once
/// it has run, the physical plan to run it again with other vectors.
#[derive(Debug)]
pub struct Cached {
    pub plan: LogicalPlan,
    /// Set by the first run whose physical plan a [`PhysicalTemplate`]
    /// can build again.
    pub physical: OnceLock<PhysicalTemplate>,
    /// The collection scan the template last ran over, for the next run
    /// over the same collection version ([`ScanMemo`]).
    pub scan: parking_lot::Mutex<Option<ScanMemo>>,
}

/// A collection scan planned for a template run, with what it was planned
/// from: a later run that scans the same manifest (and nothing growing)
/// with the same arguments takes it again ([`MaterializeExec::again`])
/// instead of planning it (pruning segments, building the Parquet scan).
#[derive(Debug)]
pub struct ScanMemo {
    manifest: Arc<crate::storage::format::manifest::Manifest>,
    system_columns: bool,
    projection: Option<Vec<usize>>,
    filters: Vec<Expr>,
    fetch: Option<usize>,
    scan: Arc<MaterializeExec>,
}

impl ScanMemo {
    /// The memo of `scan`, planned over `table` with these arguments; `None`
    /// if the table shows more than its manifest or the scan is not one
    /// that can run again.
    pub fn new(
        table: &CollectionTable,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        fetch: Option<usize>,
        scan: &Arc<dyn ExecutionPlan>,
    ) -> Option<Self> {
        let manifest = table.flushed_manifest()?.clone();
        let scan = scan.downcast_ref::<MaterializeExec>()?;
        Some(Self {
            manifest,
            system_columns: table.has_system_columns(),
            projection: projection.cloned(),
            filters: filters.to_vec(),
            fetch,
            scan: Arc::new(scan.again()?),
        })
    }

    /// The scan again, if it is the scan of `table` with these arguments.
    pub fn again(
        &self,
        table: &CollectionTable,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        fetch: Option<usize>,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        let same = table
            .flushed_manifest()
            .is_some_and(|m| Arc::ptr_eq(m, &self.manifest))
            && table.has_system_columns() == self.system_columns
            && projection == self.projection.as_ref()
            && filters == self.filters.as_slice()
            && fetch == self.fetch;
        if !same {
            return None;
        }
        Some(Arc::new(self.scan.again()?))
    }
}

/// A query planned from a cache entry, with the values of its vectors.
pub type CachedRun = (Arc<Cached>, Arc<HashMap<String, ScalarValue>>);

/// Cache key: the statement text without its query vectors, and whether
/// it was planned with the system columns visible.
pub type Key = (String, bool);

/// Cached plans with hit and miss counters.
pub struct PlanCache {
    plans: moka::sync::Cache<Key, Arc<Cached>>,
    /// The same plans by [`CutText::key`], for the queries whose vectors
    /// [`cut_vectors`] finds: looked up before the text is parsed.
    texts: moka::sync::Cache<String, Arc<Cached>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The hits found by text, before parsing.
    text_hits: AtomicU64,
    /// Runs planned from a physical template.
    template_runs: AtomicU64,
    /// Template runs that took their scan from the run before ([`ScanMemo`]).
    scan_reuses: AtomicU64,
}

impl PlanCache {
    pub fn new(entries: u64) -> Self {
        Self {
            plans: moka::sync::Cache::new(entries),
            texts: moka::sync::Cache::new(entries),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            text_hits: AtomicU64::new(0),
            template_runs: AtomicU64::new(0),
            scan_reuses: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Cached>> {
        let hit = self.plans.get(key);
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::plan_cache(hit.is_some());
        hit
    }

    /// The plan cached for a text's [`CutText::key`]; counted as a hit
    /// when found (a text not found is looked up again once parsed).
    pub fn get_text(&self, key: &str) -> Option<Arc<Cached>> {
        let hit = self.texts.get(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.text_hits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::plan_cache(true);
        Some(hit)
    }

    /// Caches `plan` under its statement `key` and, if given, under the
    /// text of the query it was planned for, cut by [`cut_vectors`]. The
    /// text key is kept only if the cut found exactly the vectors the
    /// parser hoisted (`hoisted`, in the parser's order) and they are all
    /// different, so that each cut-out list is known to be the parameter
    /// of its name.
    pub fn insert(
        &self,
        key: Key,
        plan: LogicalPlan,
        text: Option<CutText>,
        hoisted: &[(String, ScalarValue)],
    ) -> Arc<Cached> {
        let plan = Arc::new(Cached {
            plan,
            physical: OnceLock::new(),
            scan: parking_lot::Mutex::new(None),
        });
        if let Some(text) = text {
            let same = text.vectors.len() == hoisted.len()
                && text.vectors.iter().zip(hoisted).all(|(a, b)| a == b);
            let distinct = hoisted
                .iter()
                .enumerate()
                .all(|(i, (_, v))| hoisted[..i].iter().all(|(_, w)| w != v));
            if same && distinct {
                self.texts.insert(text.key, plan.clone());
            }
        }
        self.plans.insert(key, plan.clone());
        plan
    }

    pub fn invalidate(&self, key: &Key) {
        self.plans.invalidate(key);
    }

    pub fn invalidate_text(&self, key: &str) {
        self.texts.invalidate(key);
    }

    /// Lookups that found a plan, and lookups that did not.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// The hits found by the query's text, without parsing it.
    pub fn text_hits(&self) -> u64 {
        self.text_hits.load(Ordering::Relaxed)
    }

    /// Counts a run planned from a [`PhysicalTemplate`].
    pub fn template_run(&self) {
        self.template_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// The runs planned from a [`PhysicalTemplate`].
    pub fn template_runs(&self) -> u64 {
        self.template_runs.load(Ordering::Relaxed)
    }

    /// Counts a template run that took its scan from a [`ScanMemo`].
    pub fn scan_reused(&self) {
        self.scan_reuses.fetch_add(1, Ordering::Relaxed);
    }

    /// The template runs that took their scan from a [`ScanMemo`].
    pub fn scan_reuses(&self) -> u64 {
        self.scan_reuses.load(Ordering::Relaxed)
    }
}
