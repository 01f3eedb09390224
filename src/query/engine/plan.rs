//! Planning a statement: the SQL gate (what clients may run), the plan
//! cache, DDL and DML classification, and refreshing a cached plan onto the
//! latest manifest versions.

use crate::error::{Error, Result};
use crate::query::collection::{latest_table, CollectionTable, CATALOG, SCHEMA};
use crate::query::engine::rewrite::{
    bind_vectors, hoist_vector_literals, is_delete_or_update, is_sql_query, names_system_column,
    number_positional_placeholders, widen_fractional_literals, VECTOR_LITERAL_MIN,
};
use crate::query::engine::statement::{Query, Statement};
use crate::query::engine::Engine;
use crate::query::plan_cache;
use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::{Constraint, ScalarValue};
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SQLOptions;
use datafusion::sql::parser::Statement as DFStatement;
use std::collections::HashMap;
use std::sync::Arc;

/// A vector of the wrong length cast to a `FLOAT[d]` column (in INSERT
/// VALUES, UPDATE SET, a cast) fails in Arrow's cast, which does not say
/// that the dimension is at fault: say so, keeping the original message.
pub(crate) fn explain_vector_cast(e: Error) -> Error {
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

/// Only collections of the `quiver.public` schema can be written.
pub(crate) fn collection_name(t: &TableReference) -> Result<String> {
    let ok = t.catalog().is_none_or(|c| c == CATALOG) && t.schema().is_none_or(|s| s == SCHEMA);
    if !ok {
        return Err(Error::NotAllowed(format!(
            "'{t}' is not a quiver collection: collections live in {CATALOG}.{SCHEMA}"
        )));
    }
    Ok(t.table().to_string())
}

impl Engine {
    /// Parses and plans one SQL statement.
    pub async fn plan(&self, sql: &str) -> Result<Statement> {
        self.plan_statement(sql).await.map_err(explain_vector_cast)
    }

    pub(crate) async fn plan_statement(&self, sql: &str) -> Result<Statement> {
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
                            settings: None,
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
                crate::query::rewrite::operators::parse(
                    sql,
                    dialect.as_ref(),
                    options.recursion_limit.get(),
                )?
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
        if let Some(s) = crate::query::engine::index_ddl::index_statement(&stmt)? {
            return Ok(s);
        }
        if let Some(s) = crate::query::engine::settings::setting_statement(&stmt)? {
            return Ok(s);
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
                            settings: None,
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
                            settings: None,
                        }));
                    }
                }
                return self.classify(bind_vectors(plan, vectors)?);
            }
        }
        self.classify(bind_vectors(plan, vectors)?)
    }

    pub(crate) fn classify(&self, plan: LogicalPlan) -> Result<Statement> {
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
                    settings: None,
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
    pub(crate) async fn plan_from_template(
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
}
