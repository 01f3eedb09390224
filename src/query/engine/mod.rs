//! `Engine`: plans and runs client SQL against a store. Queries go to
//! DataFusion; DDL and DML are handled by quiver itself; anything that would
//! touch the server's files is refused. Files: `statement.rs` (what a
//! planned statement is), `session.rs` (`register`), `plan.rs` and
//! `rewrite.rs` (the gate and planning), `run.rs` (queries and updates),
//! `index_ddl.rs` (`CREATE INDEX`, `DROP INDEX`), `settings.rs` (`SET` and
//! `SHOW` of quiver's session settings),
//! `client.rs` (the types clients see). Like all of `query`, it never
//! names `flight`, `admin` or `server`.

mod client;
mod index_ddl;
mod plan;
mod rewrite;
mod run;
mod session;
mod settings;
mod statement;

pub use client::client_schema;
pub use session::{register, session_config};
pub use settings::show_sql;
pub use statement::{Query, Statement};

use std::sync::Arc;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::query::engine::session::{register_with, VectorTypePlanner};
use crate::query::plan_cache::PlanCache;
use crate::storage::Store;

/// How an [`Engine`] plans queries.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Plan `ORDER BY <distance> LIMIT k` over a collection as the fused
    /// [`crate::query::topk::VectorTopKExec`] (default on; off runs DataFusion's
    /// own sort, for comparison).
    pub fused_topk: bool,
    /// Memory all running queries may hold for sorts, joins and
    /// aggregations together (0: unbounded). Spillable operators spill to
    /// disk at the limit; others fail with `ResourcesExhausted`.
    pub query_memory_bytes: usize,
    /// Optimized plans of queries kept for their next run, by SQL text
    /// with the query vectors taken out ([`crate::query::plan_cache`]; 0: off).
    pub plan_cache_entries: u64,
    /// Run a cached fused top-k again from its physical plan with the new
    /// vectors, without DataFusion's physical planner
    /// ([`crate::query::plan_cache::PhysicalTemplate`]; default on; off plans
    /// every run physically, for comparison).
    pub physical_templates: bool,
    /// Joins and unnests give their thread back every couple of
    /// milliseconds ([`crate::query::time_slice`]; default on; off for
    /// comparison), so a cancelled query stops at once and other queries
    /// are not held up behind it.
    pub time_slices: bool,
    /// Whether fused top-k queries search through vector indexes, and
    /// with how many IVF lists (`--vector-search`, `--ivf-probes`).
    pub vector_search: crate::query::topk::SearchSettings,
}

/// Default number of cached query plans.
pub const DEFAULT_PLAN_CACHE_ENTRIES: u64 = 1024;

/// Default bound of query memory (4 GiB).
pub const DEFAULT_QUERY_MEMORY_BYTES: usize = 4 * 1024 * 1024 * 1024;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            fused_topk: true,
            query_memory_bytes: DEFAULT_QUERY_MEMORY_BYTES,
            plan_cache_entries: DEFAULT_PLAN_CACHE_ENTRIES,
            physical_templates: true,
            time_slices: true,
            vector_search: Default::default(),
        }
    }
}

/// Plans and executes SQL for one store.
#[derive(Clone)]
pub struct Engine {
    store: Arc<Store>,
    ctx: SessionContext,
    /// The same store with the system columns `_ts`, `_seg`, `_row` visible,
    /// for statements that name them.
    ctx_system: SessionContext,
    plans: Option<Arc<PlanCache>>,
    /// [`EngineOptions::physical_templates`].
    physical_templates: bool,
    /// [`EngineOptions::vector_search`].
    search_defaults: crate::query::topk::SearchSettings,
    /// The session state, copied once when the engine is made, that plans
    /// queries from the plan cache physically. Their plans call no function
    /// whose result depends on when they run ([`plan_cache::cacheable`]),
    /// and clients cannot change the session (`SET` is refused), so a copy
    /// of the state per query (its function registries, its options) would
    /// buy nothing.
    query_state: Arc<datafusion::execution::session_state::SessionState>,
    /// Where queries run ([`Engine::with_query_runtime`]).
    query_runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store.url())
            .finish()
    }
}

impl Engine {
    pub fn new(store: Arc<Store>) -> Result<Self> {
        Self::with_options(store, EngineOptions::default())
    }

    pub fn with_options(store: Arc<Store>, options: EngineOptions) -> Result<Self> {
        let mut runtime = RuntimeEnvBuilder::new();
        if options.query_memory_bytes > 0 {
            // Fair among spilling queries; the five largest consumers are
            // named in the error when the pool runs out.
            runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(options.query_memory_bytes),
                std::num::NonZeroUsize::new(5).expect("non-zero"),
            )));
        }
        let runtime = runtime.build_arc()?;
        let context = |system_columns: bool| {
            let mut builder = SessionStateBuilder::new()
                .with_config(session_config())
                .with_runtime_env(runtime.clone())
                .with_default_features()
                .with_type_planner(Arc::new(VectorTypePlanner));
            builder
                .expr_planners()
                .get_or_insert_with(Vec::new)
                .push(Arc::new(crate::query::rewrite::operators::VectorOperators));
            // Before type coercion, which finds no common type for times
            // of two units.
            builder
                .analyzer()
                .get_or_insert_with(datafusion::optimizer::Analyzer::new)
                .rules
                .insert(
                    0,
                    Arc::new(crate::query::rewrite::time_units::UnifyTimeUnits),
                );
            type Rule =
                Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>;
            let mut rules: Vec<Rule> = Vec::new();
            let fuse: Rule = Arc::new(crate::query::topk::FuseVectorTopK {
                settings: options.vector_search,
            });
            if options.fused_topk {
                // First, so DataFusion's own rules then work on the small
                // fused plan (they cost more than the top-k at 0.1%
                // selectivity); and last again, for the shapes they make.
                rules.push(fuse.clone());
            }
            rules.extend(datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules);
            if options.fused_topk {
                rules.push(fuse);
            }
            if options.time_slices {
                // Last: no other rule sees the wrappers.
                rules.push(Arc::new(crate::query::time_slice::YieldInJoins));
            }
            builder = builder.with_physical_optimizer_rules(rules);
            let state = builder.build();
            let ctx = SessionContext::new_with_state(state);
            register_with(&ctx, store.clone(), system_columns);
            ctx
        };
        let (ctx, ctx_system) = (context(false), context(true));
        let plans = (options.plan_cache_entries > 0)
            .then(|| Arc::new(PlanCache::new(options.plan_cache_entries)));
        Ok(Self {
            store,
            query_state: Arc::new(ctx.state()),
            ctx,
            ctx_system,
            plans,
            physical_templates: options.physical_templates,
            search_defaults: options.vector_search,
            query_runtime: None,
        })
    }

    /// Runs queries on `runtime`, apart from the runtime serving requests:
    /// the tasks a query spawns when it starts go there, and a caller that
    /// drives a query's stream there too (as the Flight service does, with
    /// [`Engine::spawn`]) runs all of it there. A running scan then
    /// never holds up the reply to another request on a busy worker; the
    /// kernel shares the cores between the two runtimes' threads.
    pub fn with_query_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.query_runtime = Some(runtime);
        self
    }

    /// Spawns a task of a query or statement: on the query runtime when
    /// there is one, else on the caller's.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.query_runtime {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// The server's vector-search settings (what a session starts from).
    pub fn search_defaults(&self) -> crate::query::topk::SearchSettings {
        self.search_defaults
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plan cache lookups that hit and that missed (0, 0 when it is off).
    pub fn plan_cache_stats(&self) -> (u64, u64) {
        self.plans.as_ref().map_or((0, 0), |c| c.stats())
    }

    /// The plan cache hits found by the query's text alone, without
    /// parsing it (of those [`Engine::plan_cache_stats`] counts).
    pub fn plan_cache_text_hits(&self) -> u64 {
        self.plans.as_ref().map_or(0, |c| c.text_hits())
    }

    /// The queries planned physically from the plan cache's template of
    /// their fused top-k, without DataFusion's physical planner
    /// ([`EngineOptions::physical_templates`]).
    pub fn plan_cache_template_runs(&self) -> u64 {
        self.plans.as_ref().map_or(0, |c| c.template_runs())
    }

    /// Template runs that took the scan of the run before, over the same
    /// collection version ([`plan_cache::ScanMemo`]).
    pub fn plan_cache_scan_reuses(&self) -> u64 {
        self.plans.as_ref().map_or(0, |c| c.scan_reuses())
    }

    /// The session state for statements that see the system columns: the
    /// engine's own (with any function an embedder registered on
    /// [`Engine::context`]), over the catalog and the time-travel function
    /// that show them.
    fn system_state(&self) -> datafusion::execution::session_state::SessionState {
        let system = self.ctx_system.state();
        let mut functions = self.ctx.state().table_functions().clone();
        functions.extend(
            system
                .table_functions()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_catalog_list(system.catalog_list().clone())
            .with_table_functions(functions)
            .build()
    }
}
