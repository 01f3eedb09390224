//! Running a statement: a query starts on the query runtime with its span
//! and meter, its stream converted to the client's types; an update runs
//! through the store (INSERT, UPDATE as write-back, DELETE, TRUNCATE, DDL).

use crate::error::{Error, Result};
use crate::query::engine::client::to_client_stream;
use crate::query::engine::plan::explain_vector_cast;
use crate::query::engine::rewrite::VECTOR_LITERAL_MIN;
use crate::query::engine::statement::{Query, Statement};
use crate::query::engine::Engine;
use crate::query::plan_cache;
use crate::storage::format::schema::{
    CollectionSchema, ID_COLUMN, ROW_COLUMN, SEG_COLUMN, TS_COLUMN,
};
use crate::storage::IngestMode;
use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn count_of(batches: &[RecordBatch]) -> u64 {
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

/// A started query: its result stream and the physical plan that runs it.
pub struct RunningQuery {
    pub stream: SendableRecordBatchStream,
    pub plan: Arc<dyn ExecutionPlan>,
}

impl Engine {
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
        // A query with a session's settings plans in its own copy of the
        // state, which carries them to the physical optimizer.
        let fresh;
        let state = match (&query.cached, query.settings) {
            (Some(_), None) => self.query_state.as_ref(),
            (cached, settings) => {
                let mut s = match cached {
                    Some(_) => self.query_state.as_ref().clone(),
                    None => self.ctx.state(),
                };
                if let Some(settings) = settings {
                    s.config_mut()
                        .options_mut()
                        .extensions
                        .insert(crate::query::topk::ann::SearchConfig::of(settings));
                }
                fresh = s;
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
        // A session's own vector-search settings.
        let physical = match query.settings {
            Some(settings) => crate::query::topk::apply_settings(physical, settings)?,
            None => physical,
        };
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

    pub(crate) async fn run_update(&self, stmt: Statement) -> Result<u64> {
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
            Statement::CreateIndex {
                collection,
                request,
            } => self.create_index(&collection, request).await,
            Statement::DropIndex {
                collection,
                name,
                if_exists,
            } => {
                self.drop_index(collection.as_deref(), &name, if_exists)
                    .await
            }
            Statement::SetOption { name, .. } => Err(Error::NotAllowed(format!(
                "SET {name} changes a Flight SQL session's setting; this connection has no session \
                 (the server's default is set with --vector-search / --ivf-probes)"
            ))),
            Statement::ShowOption { name } => Err(Error::invalid(format!(
                "SHOW {name} is a query: run it as one"
            ))),
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
    pub(crate) fn check_update_keeps_keys(&self, name: &str, input: &LogicalPlan) -> Result<()> {
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
    pub(crate) fn explain_insert_error(
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
            // The server's setting (no session here).
            Statement::ShowOption { name } => {
                let value = self.search_defaults().get(&name).unwrap_or_default();
                Box::pin(self.sql(&crate::query::engine::show_sql(&name, &value))).await
            }
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
