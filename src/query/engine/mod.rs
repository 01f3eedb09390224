//! `Engine`: plans and runs client SQL against a store. Queries go to
//! DataFusion; DDL and DML are handled by quiver itself; anything that would
//! touch the server's files is refused.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::common::{Constraint, ParamValues, ScalarValue};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, LogicalPlanBuilder, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use futures::{StreamExt, TryStreamExt};

use crate::query::functions::distance::register_distance_functions;
use crate::error::{Error, Result};
use crate::query::plan_cache::{self, PlanCache};
use crate::storage::format::schema::{CollectionSchema, ID_COLUMN, ROW_COLUMN, SEG_COLUMN, TS_COLUMN};
use crate::storage::{IngestMode, Store};
use crate::query::collection::{latest_table, CollectionTable, QuiverCatalog, CATALOG, SCHEMA};

/// A planned query.
#[derive(Debug, Clone)]
pub struct Query {
    plan: LogicalPlan,
    /// Already through the logical optimizer (from the plan cache).
    optimized: bool,
    /// The plan cache's entry this query was planned from, and the values
    /// of its query vectors: the entry's physical template, if any, plans
    /// it physically ([`plan_cache::PhysicalTemplate`]).
    cached: Option<plan_cache::CachedRun>,
}

impl Query {
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// Whether the plan is already optimized (planned by way of the plan
    /// cache).
    pub fn is_optimized(&self) -> bool {
        self.optimized
    }
}

/// A planned client statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// A read-only query (SELECT, EXPLAIN, SHOW, ...).
    Query(Query),
    /// `INSERT INTO <collection> ...`.
    Insert(LogicalPlan),
    /// `CREATE TABLE`, with or without `AS SELECT`.
    CreateTable {
        name: String,
        input: LogicalPlan,
        primary_key: Option<String>,
        if_not_exists: bool,
        or_replace: bool,
    },
    /// `DROP TABLE`.
    DropTable { name: String, if_exists: bool },
    /// `DELETE FROM <collection> [WHERE ...]`: `input` yields the rows to delete.
    Delete { name: String, input: LogicalPlan },
    /// `UPDATE <collection> SET ... [WHERE ...]`: `input` yields the changed
    /// rows, every column (the system columns too), under their keys.
    Update { name: String, input: LogicalPlan },
    /// `TRUNCATE [TABLE] <collection>`.
    Truncate { name: String },
}

impl Statement {
    pub fn is_query(&self) -> bool {
        matches!(self, Statement::Query(_))
    }

    /// Schema of the rows a query returns (as sent to clients).
    pub fn result_schema(&self) -> SchemaRef {
        match self {
            Statement::Query(q) => client_schema(q.plan.schema().as_arrow()),
            _ => Arc::new(Schema::empty()),
        }
    }

    fn plan(&self) -> Option<&LogicalPlan> {
        match self {
            Statement::Query(Query { plan: p, .. }) | Statement::Insert(p) => Some(p),
            Statement::CreateTable { input, .. }
            | Statement::Delete { input, .. }
            | Statement::Update { input, .. } => Some(input),
            Statement::DropTable { .. } | Statement::Truncate { .. } => None,
        }
    }

    /// Parameters (`$1`, `?`) of the statement, in order, with their types
    /// where DataFusion could infer them (`Null` otherwise).
    pub fn parameter_schema(&self) -> Result<SchemaRef> {
        let Some(plan) = self.plan() else {
            return Ok(Arc::new(Schema::empty()));
        };
        let mut params: Vec<(String, Option<DataType>)> =
            plan.get_parameter_types()?.into_iter().collect();
        params.sort_by_key(|(name, _)| param_index(name));
        let fields: Vec<Field> = params
            .into_iter()
            .map(|(name, dt)| Field::new(name, dt.unwrap_or(DataType::Null), true))
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Substitutes parameter values (one row of bound parameters).
    pub fn bind(self, values: Vec<ScalarValue>) -> Result<Statement> {
        if let Statement::Query(
            q @ Query {
                cached: Some(_), ..
            },
        ) = self
        {
            return bind_cached(q, values);
        }
        let types: HashMap<String, Option<DataType>> = match self.plan() {
            Some(p) => p.get_parameter_types()?,
            None => return Ok(self),
        };
        let mut names: Vec<&String> = types.keys().collect();
        names.sort_by_key(|n| param_index(n));
        check_bound(names.len(), values.len())?;
        // Convert each value to the type DataFusion inferred for its slot.
        let mut bound = Vec::with_capacity(values.len());
        for (name, v) in names.iter().zip(values) {
            let v = match types.get(*name).cloned().flatten() {
                Some(dt) if dt != v.data_type() && !v.is_null() => v.cast_to(&dt).map_err(|e| {
                    Error::invalid(format!(
                        "parameter {name}: cannot use a {} value as {dt}: {e}",
                        v.data_type()
                    ))
                })?,
                _ => v,
            };
            bound.push(v);
        }
        let params = ParamValues::from(bound);
        let bind = |p: LogicalPlan| p.with_param_values(params.clone()).map_err(Error::from);
        Ok(match self {
            Statement::Query(q) => Statement::Query(Query {
                plan: bind(q.plan)?,
                optimized: q.optimized,
                cached: None,
            }),
            Statement::Insert(p) => Statement::Insert(bind(p)?),
            Statement::CreateTable {
                name,
                input,
                primary_key,
                if_not_exists,
                or_replace,
            } => Statement::CreateTable {
                name,
                input: bind(input)?,
                primary_key,
                if_not_exists,
                or_replace,
            },
            Statement::Delete { name, input } => Statement::Delete {
                name,
                input: bind(input)?,
            },
            Statement::Update { name, input } => Statement::Update {
                name,
                input: bind(input)?,
            },
            s @ (Statement::DropTable { .. } | Statement::Truncate { .. }) => s,
        })
    }
}

/// Binds the query vectors of a prepared query planned by way of the
/// plan cache ([`plan_cache::vector_parameters_only`]) into its optimized
/// plan; the values go with it, for the entry's physical template. A null
/// or non-list value is bound the same way (the casts say what is wrong)
/// but runs without the template.
fn bind_cached(query: Query, values: Vec<ScalarValue>) -> Result<Statement> {
    let mut names: Vec<String> = query.plan.get_parameter_types()?.into_keys().collect();
    names.sort_by_key(|n| param_index(n));
    check_bound(names.len(), values.len())?;
    if names.is_empty() {
        // Nothing to bind (its vectors were literals of its text).
        return Ok(Statement::Query(query));
    }
    let vectors_only = values
        .iter()
        .all(|v| !v.is_null() && plan_cache::is_list(v));
    let values: HashMap<String, ScalarValue> = names
        .into_iter()
        .map(|n| n.trim_start_matches('$').to_string())
        .zip(values)
        .collect();
    let plan = plan_cache::bind(query.plan, &values)?;
    let cached = query
        .cached
        .filter(|_| vectors_only)
        .map(|(cached, _)| (cached, Arc::new(values)));
    Ok(Statement::Query(Query {
        plan,
        optimized: true,
        cached,
    }))
}

/// An error unless `values` values were bound for `parameters` parameters.
fn check_bound(parameters: usize, values: usize) -> Result<()> {
    if parameters != values {
        return Err(Error::invalid(format!(
            "the statement has {parameters} parameter(s), but {values} value(s) were bound"
        )));
    }
    Ok(())
}

fn param_index(name: &str) -> usize {
    name.trim_start_matches('$').parse().unwrap_or(usize::MAX)
}

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

/// Registers a store with a DataFusion `SessionContext`: its object store,
/// the `quiver` catalog and the distance functions. This is all an embedding
/// application needs to query collections from its own context.
pub fn register(ctx: &SessionContext, store: Arc<Store>) {
    register_with(ctx, store, false);
}

fn register_with(ctx: &SessionContext, store: Arc<Store>, system_columns: bool) {
    ctx.runtime_env()
        .register_object_store(store.store_url(), store.object_store().clone());
    ctx.register_catalog(
        CATALOG,
        Arc::new(QuiverCatalog::with_system_columns(
            store.clone(),
            system_columns,
        )),
    );
    ctx.register_udtf(
        crate::query::collection::snapshot::FUNCTION,
        Arc::new(crate::query::collection::snapshot::SnapshotFunction::new(
            store,
            system_columns,
        )),
    );
    register_distance_functions(ctx);
    crate::query::functions::vector::register_vector_functions(ctx);
    crate::query::functions::limits::register_capped_functions(ctx);
    crate::query::functions::hex::register_hex_functions(ctx);
    crate::query::functions::bits::register_bit_functions(ctx);
}

/// SQL names of the types DataFusion's planner lacks: `FLOAT16` (alias
/// `HALF`), so that `FLOAT16[d]` declares a float16 vector column (Milvus's
/// FLOAT16_VECTOR) in DDL and casts; `VARBINARY(n)` and `BLOB` (binary);
/// `TIME(p)` and `TIMESTAMP(p)` of any precision (seconds for p = 0,
/// milliseconds up to 3, microseconds up to 6, nanoseconds beyond;
/// microseconds without one, as PostgreSQL and DuckDB, where DataFusion
/// takes nanoseconds and so cannot write the years 1 or 9999); and
/// `TIMESTAMP[(p)] WITH TIME ZONE` as an instant in UTC (DataFusion drops
/// the zone).
#[derive(Debug)]
struct VectorTypePlanner;

impl datafusion::logical_expr::planner::TypePlanner for VectorTypePlanner {
    fn plan_type_field(
        &self,
        sql_type: &datafusion::sql::sqlparser::ast::DataType,
    ) -> datafusion::error::Result<Option<FieldRef>> {
        use arrow::datatypes::TimeUnit;
        use datafusion::sql::sqlparser::ast::{DataType as Sql, TimezoneInfo};
        let field = |t: DataType| Ok(Some(Arc::new(Field::new("item", t, true))));
        let unit = |p: u64| match p {
            0 => TimeUnit::Second,
            1..=3 => TimeUnit::Millisecond,
            4..=6 => TimeUnit::Microsecond,
            _ => TimeUnit::Nanosecond,
        };
        match sql_type {
            Sql::Custom(name, modifiers) => {
                let name = name.to_string();
                if modifiers.is_empty()
                    && (name.eq_ignore_ascii_case("float16") || name.eq_ignore_ascii_case("half"))
                {
                    return field(DataType::Float16);
                }
                Ok(None)
            }
            Sql::Varbinary(_) | Sql::Blob(_) => field(DataType::Binary),
            // Without a precision, microseconds (as PostgreSQL and DuckDB),
            // so a TIMESTAMP literal reaches from year 1 to 9999.
            Sql::Time(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                field(match unit(p.unwrap_or(6)) {
                    u @ (TimeUnit::Second | TimeUnit::Millisecond) => DataType::Time32(u),
                    u => DataType::Time64(u),
                })
            }
            Sql::Timestamp(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                field(DataType::Timestamp(unit(p.unwrap_or(6)), None))
            }
            Sql::Timestamp(p, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => field(
                DataType::Timestamp(unit(p.unwrap_or(6)), Some("UTC".into())),
            ),
            _ => Ok(None),
        }
    }
}

/// The session configuration quiver runs queries with.
pub fn session_config() -> SessionConfig {
    let mut cfg = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    let opts = cfg.options_mut();
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    // Clients (the JDBC driver in particular) expect Utf8, not Utf8View.
    opts.execution.parquet.schema_force_view_types = false;
    opts.sql_parser.map_string_types_to_utf8view = false;
    cfg
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
                .insert(0, Arc::new(crate::query::rewrite::time_units::UnifyTimeUnits));
            type Rule =
                Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>;
            let mut rules: Vec<Rule> = Vec::new();
            let fuse: Rule = Arc::new(crate::query::topk::FuseVectorTopK);
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

    /// Parses and plans one SQL statement.
    pub async fn plan(&self, sql: &str) -> Result<Statement> {
        self.plan_statement(sql).await.map_err(explain_vector_cast)
    }

    async fn plan_statement(&self, sql: &str) -> Result<Statement> {
        // A query planned before with other vectors: found by its text
        // with the vectors cut out, without parsing it.
        let cut = self
            .plans
            .as_ref()
            .and_then(|_| plan_cache::cut_vectors(sql, VECTOR_LITERAL_MIN));
        if let (Some(cut), Some(cache)) = (&cut, &self.plans) {
            if let Some(cached) = cache.get_text(&cut.key) {
                match self.refresh(cached.plan.clone()).await {
                    Ok(_) => {
                        tracing::debug!("plan cache hit (text)");
                        let vectors = cut.vectors.iter().cloned().collect();
                        return Ok(Statement::Query(Query {
                            plan: plan_cache::bind(cached.plan.clone(), &vectors)?,
                            optimized: true,
                            cached: Some((cached, Arc::new(vectors))),
                        }));
                    }
                    Err(_) => cache.invalidate_text(&cut.key),
                }
            }
        }
        // Parsed under the session's read lock: a copy of the session
        // state (its function registries and options) is made only to
        // plan, not for a statement the plan cache has.
        let mut stmt = {
            let state = self.ctx.state_ref();
            let state = state.read();
            let options = &state.config().options().sql_parser;
            if crate::query::rewrite::operators::has_joined_operators(sql) {
                // pgvector's `<->`, `<#>`, `<+>` (see `operators`).
                let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(
                    options.dialect.to_string(),
                )
                .ok_or_else(|| Error::internal("unknown SQL dialect"))?;
                crate::query::rewrite::operators::parse(sql, dialect.as_ref(), options.recursion_limit.get())?
            } else {
                state.sql_to_statement(sql, &options.dialect)?
            }
        };
        // First, so the passes below walk a statement without them.
        let hoisted = hoist_vector_literals(&mut stmt);
        // A query with parameters of its own (a prepared statement's)
        // may be cached too, if they are all query vectors.
        let own_parameters = hoisted.is_none() && is_sql_query(&stmt);
        number_positional_placeholders(&mut stmt);
        widen_fractional_literals(&mut stmt);
        crate::query::collection::snapshot::resolve(&self.store, &mut stmt).await?;
        // A DELETE or UPDATE names rows by their key, which for a
        // collection without a declared key is the hidden `_id`.
        let system = names_system_column(&stmt) || is_delete_or_update(&stmt);
        match &stmt {
            DFStatement::CreateExternalTable(_) => {
                return Err(Error::NotAllowed(
                    "CREATE EXTERNAL TABLE is not allowed: clients cannot make the server read its own files. \
                     Load data with bulk ingest or INSERT"
                        .into(),
                ))
            }
            DFStatement::CopyTo(_) => {
                return Err(Error::NotAllowed(
                    "COPY is not allowed: clients cannot make the server write files. \
                     Fetch the query result and write it on the client"
                        .into(),
                ))
            }
            DFStatement::Reset(_) => {
                return Err(Error::NotAllowed("RESET is not supported".into()))
            }
            _ => {}
        }
        let key = match &self.plans {
            Some(_) if hoisted.is_some() || own_parameters => Some((stmt.to_string(), system)),
            _ => None,
        };
        let hoisted = hoisted.unwrap_or_default();
        let vectors: HashMap<String, ScalarValue> = hoisted.iter().cloned().collect();
        if let (Some(key), Some(cache)) = (&key, &self.plans) {
            if let Some(cached) = cache.get(key) {
                // Stale if a collection was dropped or took other columns:
                // then it is planned afresh (which says what is wrong).
                match self.refresh(cached.plan.clone()).await {
                    Ok(_) => {
                        tracing::debug!("plan cache hit");
                        return Ok(Statement::Query(Query {
                            plan: plan_cache::bind(cached.plan.clone(), &vectors)?,
                            optimized: true,
                            cached: Some((cached, Arc::new(vectors))),
                        }));
                    }
                    Err(_) => cache.invalidate(key),
                }
            }
        }
        let state = if system {
            self.system_state()
        } else {
            self.ctx.state()
        };
        let plan = state.statement_to_plan(stmt).await?;
        if let (Some(key), Some(cache)) = (key, &self.plans) {
            if plan_cache::cacheable(&plan) {
                let plan = match self.classify(plan)? {
                    Statement::Query(q) => q.plan,
                    other => return Ok(other),
                };
                // Optimized with the vectors unbound, then bound; a plan
                // that does not optimize so is planned the ordinary way.
                if let Ok(optimized) = state.optimize(&plan) {
                    let bindable = if own_parameters {
                        // Bound later, by the client: kept only if every
                        // parameter is a query vector and the text has no
                        // vector of its own, so the physical template
                        // knows each vector in the plan for a parameter.
                        plan_cache::vector_parameters_only(&optimized)
                    } else {
                        plan_cache::parameters_in_casts(&optimized)
                    };
                    if bindable {
                        let cached =
                            cache.insert(key, plan_cache::unpin(optimized.clone())?, cut, &hoisted);
                        return Ok(Statement::Query(Query {
                            plan: plan_cache::bind(optimized, &vectors)?,
                            optimized: true,
                            cached: Some((cached, Arc::new(vectors))),
                        }));
                    }
                }
                return self.classify(bind_vectors(plan, vectors)?);
            }
        }
        self.classify(bind_vectors(plan, vectors)?)
    }

    fn classify(&self, plan: LogicalPlan) -> Result<Statement> {
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
                let name = collection_name(&c.name)?;
                let mut primary_key = None;
                for constraint in c.constraints.iter() {
                    if let Constraint::PrimaryKey(cols) = constraint {
                        let [i] = cols[..] else {
                            return Err(Error::invalid(format!(
                                "collection '{name}': the primary key must be a single column"
                            )));
                        };
                        let key = c.input.schema().field(i).name().clone();
                        if let Some(first) = &primary_key {
                            if *first != key {
                                return Err(Error::invalid(format!(
                                    "collection '{name}': only one primary key may be declared \
                                     ('{first}' and '{key}')"
                                )));
                            }
                        }
                        primary_key = Some(key);
                    }
                }
                if !c.column_defaults.is_empty() {
                    return Err(Error::invalid(format!(
                        "collection '{name}': DEFAULT column values are not supported"
                    )));
                }
                Ok(Statement::CreateTable {
                    name,
                    input: c.input.as_ref().clone(),
                    primary_key,
                    if_not_exists: c.if_not_exists,
                    or_replace: c.or_replace,
                })
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => Ok(Statement::DropTable {
                name: collection_name(&d.name)?,
                if_exists: d.if_exists,
            }),
            LogicalPlan::Ddl(other) => Err(Error::NotAllowed(format!(
                "{} is not supported by quiver",
                other.name()
            ))),
            LogicalPlan::Dml(d) => match d.op {
                WriteOp::Insert(_) => {
                    collection_name(&d.table_name)?;
                    Ok(Statement::Insert(LogicalPlan::Dml(d)))
                }
                WriteOp::Delete => Ok(Statement::Delete {
                    name: collection_name(&d.table_name)?,
                    input: d.input.as_ref().clone(),
                }),
                WriteOp::Update => {
                    let name = collection_name(&d.table_name)?;
                    self.check_update_keeps_keys(&name, &d.input)?;
                    Ok(Statement::Update {
                        name,
                        input: d.input.as_ref().clone(),
                    })
                }
                WriteOp::Truncate => Ok(Statement::Truncate {
                    name: collection_name(&d.table_name)?,
                }),
                op => Err(Error::NotAllowed(format!(
                    "{} is not supported yet",
                    op.to_string().to_uppercase()
                ))),
            },
            LogicalPlan::Copy(_) => Err(Error::NotAllowed("COPY is not allowed".into())),
            plan => {
                SQLOptions::new()
                    .with_allow_ddl(false)
                    .with_allow_dml(false)
                    .with_allow_statements(false)
                    .verify_plan(&plan)
                    .map_err(|e| Error::NotAllowed(e.strip_backtrace()))?;
                Ok(Statement::Query(Query {
                    plan,
                    optimized: false,
                    cached: None,
                }))
            }
        }
    }

    /// Re-pins every collection `plan` reads or writes by name at its
    /// latest version (committed segments, growing rows, deletes), so a
    /// statement planned earlier, such as a prepared statement run again,
    /// sees the data as it is now. Time travel (`quiver_snapshot`) keeps
    /// its version. A collection dropped since, or recreated with other
    /// columns, is an error that asks for the statement to be prepared again.
    pub async fn refresh(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        use datafusion::catalog::TableProvider;
        use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
        use datafusion::datasource::{provider_as_source, source_as_provider};
        use datafusion::logical_expr::TableSource;

        // A collection read by name (the latest version when planned, or
        // a cached plan's reference): its name, system columns, columns.
        fn named(source: &Arc<dyn TableSource>) -> Option<((String, bool), SchemaRef)> {
            if let Some(r) = source.downcast_ref::<plan_cache::CollectionRef>() {
                return Some(((r.name.clone(), r.system_columns), r.schema.clone()));
            }
            let provider = source_as_provider(source).ok()?;
            let t = provider.downcast_ref::<CollectionTable>()?;
            t.is_latest().then(|| {
                (
                    (t.manifest().collection.clone(), t.has_system_columns()),
                    provider.schema(),
                )
            })
        }
        // The collections named, with the columns they were planned with.
        let mut collections: Vec<((String, bool), SchemaRef)> = Vec::new();
        plan.apply_with_subqueries(|node| {
            let source = match node {
                LogicalPlan::TableScan(s) => Some(&s.source),
                LogicalPlan::Dml(d) => Some(&d.target),
                _ => None,
            };
            if let Some((key, schema)) = source.and_then(named) {
                if !collections.iter().any(|(k, _)| *k == key) {
                    collections.push((key, schema));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if collections.is_empty() {
            return Ok(plan);
        }
        let mut fresh: HashMap<(String, bool), Arc<dyn TableSource>> = HashMap::new();
        for ((name, system), planned) in collections {
            let table = latest_table(&self.store, &name, system)
                .await?
                .ok_or_else(|| Error::CollectionNotFound(name.clone()))?;
            if table.schema() != planned {
                return Err(Error::invalid(format!(
                    "collection '{name}' was recreated with other columns since the statement \
                     was prepared; prepare the statement again"
                )));
            }
            fresh.insert((name, system), provider_as_source(table));
        }
        let swap = |source: &Arc<dyn TableSource>| -> Option<Arc<dyn TableSource>> {
            let (key, _) = named(source)?;
            fresh.get(&key).cloned()
        };
        let plan = plan.transform_up_with_subqueries(|node| {
            Ok(match node {
                LogicalPlan::TableScan(mut s) => match swap(&s.source) {
                    Some(source) => {
                        s.source = source;
                        Transformed::yes(LogicalPlan::TableScan(s))
                    }
                    None => Transformed::no(LogicalPlan::TableScan(s)),
                },
                LogicalPlan::Dml(mut d) => match swap(&d.target) {
                    Some(target) => {
                        d.target = target;
                        Transformed::yes(LogicalPlan::Dml(d))
                    }
                    None => Transformed::no(LogicalPlan::Dml(d)),
                },
                other => Transformed::no(other),
            })
        })?;
        Ok(plan.data)
    }

    /// The physical plan of a query planned from the plan cache, built
    /// from the entry's physical template over a fresh scan of the
    /// collection's version in `plan`; `None` if there is no template or
    /// it does not fit (then the query is planned the ordinary way).
    async fn plan_from_template(
        &self,
        cached: Option<&plan_cache::CachedRun>,
        plan: &LogicalPlan,
        state: &datafusion::execution::session_state::SessionState,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        use datafusion::datasource::source_as_provider;
        use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
        let Some((cached, vectors)) = cached else {
            return Ok(None);
        };
        let Some(template) = cached.physical.get() else {
            return Ok(None);
        };
        // The collection scan, planned as DataFusion's planner plans it.
        let mut scans = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(s) = node {
                scans.push(s.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let [scan] = &scans[..] else {
            return Ok(None);
        };
        let provider = source_as_provider(&scan.source)?;
        let filters = unnormalize_cols(scan.filters.iter().cloned());
        let (projection, fetch) = (scan.projection.as_ref(), scan.fetch);
        let table = provider.downcast_ref::<CollectionTable>();
        let again = table.and_then(|t| {
            let memo = cached.scan.lock();
            memo.as_ref()?.again(t, projection, &filters, fetch)
        });
        let leaf = match again {
            Some(leaf) => {
                if let Some(cache) = &self.plans {
                    cache.scan_reused();
                }
                leaf
            }
            None => {
                let leaf = provider.scan(state, projection, &filters, fetch).await?;
                if let Some(t) = table {
                    *cached.scan.lock() =
                        plan_cache::ScanMemo::new(t, projection, &filters, fetch, &leaf);
                }
                leaf
            }
        };
        let built = template.build(leaf, vectors)?;
        if let (Some(_), Some(cache)) = (&built, &self.plans) {
            cache.template_run();
        }
        Ok(built)
    }

    /// Runs a query and streams its result in the client schema.
    pub async fn execute_query(&self, query: Query) -> Result<SendableRecordBatchStream> {
        Ok(self
            .start_query(query, &tracing::Span::current())
            .await?
            .stream)
    }

    /// Plans `plan` physically (in a `plan` span under `span`) and starts
    /// it; quiver's operators open their phase spans (`scan`, `topk`)
    /// under `span` too, also on the tasks DataFusion spawns. The physical
    /// plan is returned with the stream so its metrics can be read when
    /// the stream ends ([`crate::query::observe::scan_totals`]).
    pub async fn start_query(&self, query: Query, span: &tracing::Span) -> Result<RunningQuery> {
        use tracing::Instrument;
        let plan = self.refresh(query.plan).await?;
        let fresh;
        let state = match query.cached {
            Some(_) => self.query_state.as_ref(),
            None => {
                fresh = self.ctx.state();
                &fresh
            }
        };
        let plan_span = tracing::debug_span!(parent: span, "plan");
        let started = std::time::Instant::now();
        let physical = async {
            if let Some(p) = self
                .plan_from_template(query.cached.as_ref(), &plan, state)
                .await?
            {
                return Ok(p);
            }
            let physical = if query.optimized {
                state
                    .query_planner()
                    .create_physical_plan(&plan, state)
                    .await?
            } else {
                state.create_physical_plan(&plan).await?
            };
            // Captured by the first run that can be (one whose collection
            // was all pruned away cannot).
            if let (Some((cached, vectors)), true) = (&query.cached, self.physical_templates) {
                if cached.physical.get().is_none() {
                    if let Some(t) = plan_cache::PhysicalTemplate::capture(
                        &physical,
                        vectors,
                        VECTOR_LITERAL_MIN,
                    ) {
                        let _ = cached.physical.set(t);
                    }
                }
            }
            Ok::<_, Error>(physical)
        }
        .instrument(plan_span.clone())
        .await?;
        // Events are logged inside their span (entered), so the span list
        // of a JSON log line holds the phase, the query and the RPC.
        plan_span
            .in_scope(|| tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "planned"));
        // The operators need the options, the runtime and the query's span,
        // not the function registries (their plans hold the functions), so
        // those are not copied into the task context.
        let config = state
            .config()
            .clone()
            .with_extension(Arc::new(crate::query::observe::QuerySpan(span.clone())));
        let task = Arc::new(TaskContext::new(
            None,
            state.session_id().to_string(),
            config,
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            state.runtime_env().clone(),
        ));
        let stream = {
            // Operators that spawn their inputs' tasks as they start do so
            // on the query runtime.
            let _on = self.query_runtime.as_ref().map(|rt| rt.enter());
            datafusion::physical_plan::execute_stream(physical.clone(), task)?
        };
        Ok(RunningQuery {
            stream: to_client_stream(stream),
            plan: physical,
        })
    }

    /// Runs a statement that changes data; returns the affected row count.
    pub async fn execute_update(&self, stmt: Statement) -> Result<u64> {
        self.run_update(stmt).await.map_err(explain_vector_cast)
    }

    async fn run_update(&self, stmt: Statement) -> Result<u64> {
        match stmt {
            Statement::Query(_) => Err(Error::invalid(
                "a query was sent as an update; use a query call (execute / read_sql) for SELECT",
            )),
            Statement::Insert(plan) => {
                let plan = self.refresh(plan).await?;
                let target = match &plan {
                    LogicalPlan::Dml(d) => d.table_name.table().to_string(),
                    _ => String::new(),
                };
                let run = async {
                    let df = self.ctx.execute_logical_plan(plan).await?;
                    df.collect().await
                };
                match run.await {
                    Ok(batches) => Ok(count_of(&batches)),
                    Err(e) => Err(self.explain_insert_error(&target, e)),
                }
            }
            Statement::CreateTable {
                name,
                input,
                primary_key,
                if_not_exists,
                or_replace,
            } => {
                let schema = Arc::new(input.schema().as_arrow().clone());
                if self.store.snapshot(&name).is_some() && if_not_exists {
                    return Ok(0);
                }
                let input = self.refresh(input).await?;
                // Check the schema before running the input.
                CollectionSchema::infer_with(
                    &name,
                    &schema,
                    primary_key.as_deref(),
                    self.store.config().max_dimension,
                )?;
                let stream = self
                    .ctx
                    .execute_logical_plan(input)
                    .await?
                    .execute_stream()
                    .await?
                    .map_err(Error::from);
                let mode = if or_replace {
                    IngestMode::REPLACE
                } else {
                    IngestMode::CREATE
                };
                self.store
                    .ingest(&name, schema, stream, mode, primary_key.as_deref())
                    .await
            }
            Statement::DropTable { name, if_exists } => {
                self.store.drop_collection(&name, if_exists).await?;
                Ok(0)
            }
            Statement::Truncate { name } => {
                let _dml = self.store.dml_lock(&name).await;
                self.store.truncate(&name).await?;
                Ok(0)
            }
            Statement::Update { name, input } => {
                // One UPDATE or DELETE of a collection at a time, each
                // reading the rows as the one before left them.
                let _dml = self.store.dml_lock(&name).await;
                let input = self.refresh(input).await?;
                let schema = self
                    .store
                    .require(&name)?
                    .schema
                    .clone()
                    .ok_or_else(|| Error::CollectionNotFound(name.clone()))?;
                // The stored columns (the generated key too), by name.
                let columns: Vec<datafusion::prelude::Expr> = schema
                    .fields()
                    .iter()
                    .map(|f| datafusion::prelude::ident(f.name()))
                    .collect();
                let plan = LogicalPlanBuilder::from(input).project(columns)?.build()?;
                let stream = self
                    .ctx_system
                    .execute_logical_plan(plan)
                    .await?
                    .execute_stream()
                    .await?
                    .map_err(Error::from);
                self.store.write_back(&name, stream).await
            }
            Statement::Delete { name, input } => {
                let _dml = self.store.dml_lock(&name).await;
                let input = self.refresh(input).await?;
                // The keys of the visible rows that match, at this snapshot.
                let pk = self
                    .store
                    .require(&name)?
                    .schema
                    .as_ref()
                    .map(|s| s.primary_key().to_string())
                    .ok_or_else(|| Error::CollectionNotFound(name.clone()))?;
                let plan = LogicalPlanBuilder::from(input)
                    .project(vec![datafusion::prelude::ident(pk)])?
                    .build()?;
                let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                let arrays: Vec<&dyn arrow::array::Array> =
                    batches.iter().map(|b| b.column(0).as_ref()).collect();
                if arrays.is_empty() {
                    return Ok(0);
                }
                let keys = arrow::compute::concat(&arrays)?;
                self.store.delete_keys(&name, keys).await
            }
        }
    }

    /// An UPDATE may change any column but the primary key and the system
    /// columns: its input must pass those through as they are.
    fn check_update_keeps_keys(&self, name: &str, input: &LogicalPlan) -> Result<()> {
        let LogicalPlan::Projection(p) = input else {
            return Ok(());
        };
        let key = self
            .store
            .require(name)?
            .schema
            .as_ref()
            .map(|s| s.primary_key().to_string());
        for (expr, field) in p.expr.iter().zip(p.schema.fields()) {
            let fixed = [TS_COLUMN, SEG_COLUMN, ROW_COLUMN, ID_COLUMN];
            let is_key = key.as_deref() == Some(field.name().as_str());
            if !is_key && !fixed.contains(&field.name().as_str()) {
                continue;
            }
            let inner = match expr {
                datafusion::prelude::Expr::Alias(a) => a.expr.as_ref(),
                e => e,
            };
            let same =
                matches!(inner, datafusion::prelude::Expr::Column(c) if c.name == *field.name());
            if !same {
                return Err(Error::invalid(if is_key {
                    format!(
                        "UPDATE {name}: the primary key '{}' cannot be changed; delete the row \
                         and insert it with the new key",
                        field.name()
                    )
                } else {
                    format!(
                        "UPDATE {name}: '{}' is a system column and cannot be changed",
                        field.name()
                    )
                }));
            }
        }
        Ok(())
    }

    /// DataFusion checks NOT NULL columns of `INSERT ... VALUES` itself and
    /// names its internal column (`column1`); say which collection columns
    /// may not be null instead.
    fn explain_insert_error(
        &self,
        collection: &str,
        e: datafusion::error::DataFusionError,
    ) -> Error {
        let text = e.to_string();
        if !text.contains("non-nullable but contains null values") {
            return e.into();
        }
        let Some(schema) = self
            .store
            .snapshot(collection)
            .and_then(|m| m.schema.clone())
        else {
            return e.into();
        };
        let required: Vec<String> = schema
            .visible_fields()
            .iter()
            .filter(|f| !f.is_nullable())
            .map(|f| {
                if f.name() == schema.primary_key() {
                    format!("'{}' (the primary key)", f.name())
                } else {
                    format!("'{}'", f.name())
                }
            })
            .collect();
        Error::invalid(format!(
            "INSERT INTO {collection}: a value is null in a column that may not be null: {}",
            required.join(", ")
        ))
    }

    /// Runs one SQL statement to completion: the rows of a query, or one
    /// row with the `count` of affected rows for anything else.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let stmt = self.plan(sql).await?;
        match stmt {
            Statement::Query(query) => Ok(self.execute_query(query).await?.try_collect().await?),
            other => {
                let n = self.execute_update(other).await?;
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "count",
                    DataType::UInt64,
                    false,
                )]));
                Ok(vec![RecordBatch::try_new(
                    schema,
                    vec![Arc::new(UInt64Array::from(vec![n]))],
                )?])
            }
        }
    }
}

/// A vector of the wrong length cast to a `FLOAT[d]` column (in INSERT
/// VALUES, UPDATE SET, a cast) fails in Arrow's cast, which does not say
/// that the dimension is at fault: say so, keeping the original message.
fn explain_vector_cast(e: Error) -> Error {
    let text = e.to_string();
    let Some(at) = text.find("Cannot cast to FixedSizeList(") else {
        return e;
    };
    let rest = &text[at + "Cannot cast to FixedSizeList(".len()..];
    let want = rest.split(')').next().unwrap_or("?");
    let got = rest
        .split("has length ")
        .nth(1)
        .map(|s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("?"))
        .unwrap_or("?");
    Error::invalid(format!(
        "a vector of dimension {got} given for a vector of dimension {want} ({})",
        &text[at..]
    ))
}

/// Whether the statement is a DELETE or an UPDATE.
fn is_delete_or_update(stmt: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as S;
    match stmt {
        DFStatement::Statement(s) => matches!(s.as_ref(), S::Delete(_) | S::Update(_)),
        DFStatement::Explain(e) => is_delete_or_update(&e.statement),
        _ => false,
    }
}

/// Whether the statement names `_ts`, `_seg`, `_row` or `_id`.
fn names_system_column(stmt: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
    use std::ops::ControlFlow;
    let inner = match stmt {
        DFStatement::Statement(s) => s.as_ref(),
        DFStatement::Explain(e) => return names_system_column(&e.statement),
        _ => return false,
    };
    let system = |name: &str| [TS_COLUMN, SEG_COLUMN, ROW_COLUMN, ID_COLUMN].contains(&name);
    visit_expressions(inner, |e: &Expr| {
        let hit = match e {
            Expr::Identifier(i) => system(&i.value),
            Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|i| system(&i.value)),
            _ => false,
        };
        if hit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Rewrites positional `?` placeholders (JDBC / ODBC style) to `$1`, `$2`,
/// ... in the order they appear in the text, which DataFusion binds.
fn number_positional_placeholders(stmt: &mut DFStatement) {
    use datafusion::sql::sqlparser::ast::{visit_expressions, visit_expressions_mut, Expr, Value};
    use std::ops::ControlFlow;
    let DFStatement::Statement(inner) = stmt else {
        return;
    };
    let is_positional = |e: &Expr| matches!(e, Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if p == "?"));
    let mut positions = Vec::new();
    let _ = visit_expressions(inner.as_ref(), |e: &Expr| {
        if let (true, Expr::Value(v)) = (is_positional(e), e) {
            positions.push((v.span.start.line, v.span.start.column));
        }
        ControlFlow::<()>::Continue(())
    });
    if positions.is_empty() {
        return;
    }
    positions.sort();
    let _ = visit_expressions_mut(inner.as_mut(), |e: &mut Expr| {
        if is_positional(e) {
            if let Expr::Value(v) = e {
                let at = (v.span.start.line, v.span.start.column);
                let n = positions.iter().position(|p| *p == at).map_or(0, |i| i + 1);
                v.value = Value::Placeholder(format!("${n}"));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Gives a `TIME '..'` or `TIMESTAMP '..'` literal with more than six
/// fractional digits nanoseconds (`TIME(9)`, `TIMESTAMP(9)`): without a
/// precision such literals are microseconds (see `VectorTypePlanner`), so
/// `TIMESTAMP '2023-05-15 13:45:30.123456789'` would lose its last digits.
fn widen_fractional_literals(stmt: &mut DFStatement) {
    use datafusion::sql::sqlparser::ast::{visit_expressions_mut, DataType as Sql, Expr, Value};
    use std::ops::ControlFlow;
    let DFStatement::Statement(inner) = stmt else {
        return;
    };
    let _ = visit_expressions_mut(inner.as_mut(), |e: &mut Expr| {
        if let Expr::TypedString(ts) = e {
            let text = match &ts.value.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.as_str()),
                _ => None,
            };
            let fraction = text
                .and_then(|s| s.split_once('.'))
                .map(|(_, f)| f.chars().take_while(|c| c.is_ascii_digit()).count())
                .unwrap_or(0);
            if fraction > 6 {
                match &mut ts.data_type {
                    Sql::Timestamp(p @ None, _) | Sql::Time(p @ None, _) => *p = Some(9),
                    _ => {}
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Array literals of at least this many numbers are query vectors.
const VECTOR_LITERAL_MIN: usize = 16;

/// Replaces the long numeric array literals (query vectors) of a query with
/// named parameters, returning their values to bind after planning.
/// DataFusion would otherwise coerce, fold and format every element of a
/// `make_array(...)` in each optimizer pass: ~5 ms for a 768-number vector.
/// Only for queries without parameters of their own (a statement binds
/// either positional or named values): `None` for other statements.
fn hoist_vector_literals(stmt: &mut DFStatement) -> Option<Vec<(String, ScalarValue)>> {
    use datafusion::sql::sqlparser::ast::{
        visit_expressions, visit_expressions_mut, Expr, Statement as Sql, UnaryOperator, Value,
    };
    use std::ops::ControlFlow;
    let DFStatement::Statement(inner) = stmt else {
        return None;
    };
    if !matches!(inner.as_ref(), Sql::Query(_)) {
        return None;
    }
    let has_placeholders = visit_expressions(inner.as_ref(), |e: &Expr| match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    if has_placeholders {
        return None;
    }
    // The number a literal element spells, and whether it is an integer.
    fn number(e: &Expr) -> Option<(f64, bool)> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => {
                    let int = !n.contains(['.', 'e', 'E']);
                    n.parse::<f64>().ok().map(|x| (x, int))
                }
                _ => None,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => number(expr).map(|(x, int)| (-x, int)),
            Expr::Nested(e) => number(e),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let _ = visit_expressions_mut(inner.as_mut(), |e: &mut Expr| {
        if let Expr::Array(a) = e {
            if a.elem.len() >= VECTOR_LITERAL_MIN {
                let xs: Option<Vec<(f64, bool)>> = a.elem.iter().map(number).collect();
                if let Some(xs) = xs {
                    // Integers stay integers (as DataFusion would type
                    // them) when every element is one and fits.
                    let list = plan_cache::vector_value(&xs);
                    let name = format!("quiver_vector_{}", out.len() + 1);
                    *e = Expr::value(Value::Placeholder(format!("${name}")));
                    out.push((name, list));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Some(out)
}

/// Whether `stmt` is a plain query (`SELECT`, `WITH`, `VALUES`, ...).
fn is_sql_query(stmt: &DFStatement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    matches!(stmt, DFStatement::Statement(s) if matches!(s.as_ref(), Sql::Query(_)))
}

/// Binds hoisted query vectors into an unoptimized plan, each converted
/// to the type DataFusion inferred for its parameter, if any.
fn bind_vectors(plan: LogicalPlan, vectors: HashMap<String, ScalarValue>) -> Result<LogicalPlan> {
    if vectors.is_empty() {
        return Ok(plan);
    }
    let types = plan.get_parameter_types()?;
    let mut values = HashMap::new();
    for (name, v) in vectors {
        let v = match types.get(&format!("${name}")).cloned().flatten() {
            Some(dt) if dt != v.data_type() => v.cast_to(&dt)?,
            _ => v,
        };
        values.insert(name, v);
    }
    Ok(plan.with_param_values(ParamValues::from(values))?)
}

/// Only collections of the `quiver.public` schema can be written.
fn collection_name(t: &TableReference) -> Result<String> {
    let ok = t.catalog().is_none_or(|c| c == CATALOG) && t.schema().is_none_or(|s| s == SCHEMA);
    if !ok {
        return Err(Error::NotAllowed(format!(
            "'{t}' is not a quiver collection: collections live in {CATALOG}.{SCHEMA}"
        )));
    }
    Ok(t.table().to_string())
}

fn count_of(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter(|b| b.num_columns() > 0 && b.num_rows() > 0)
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.value(0))
        })
        .sum()
}

/// The type a client receives for a column: view types become their plain
/// counterparts, which every Flight SQL client understands.
fn client_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(client_field(f)),
        DataType::LargeList(f) => DataType::LargeList(client_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(client_field(f), *n),
        other => other.clone(),
    }
}

fn client_field(f: &FieldRef) -> FieldRef {
    Arc::new(
        f.as_ref()
            .clone()
            .with_data_type(client_type(f.data_type())),
    )
}

/// Schema as sent to clients.
pub fn client_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema.fields().iter().map(client_field).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A started query: its result stream and the physical plan that runs it.
pub struct RunningQuery {
    pub stream: SendableRecordBatchStream,
    pub plan: Arc<dyn ExecutionPlan>,
}

/// Converts a stream to the client schema, casting view-typed columns.
pub fn to_client_stream(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = client_schema(&stream.schema());
    if schema == stream.schema() {
        return stream;
    }
    let out = schema.clone();
    let mapped = stream.map(move |batch| {
        let batch = batch?;
        let cols: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(out.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast(c, f.data_type())
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(RecordBatch::try_new(out.clone(), cols)?)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, mapped))
}
