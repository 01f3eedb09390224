//! A planned statement: a query (its logical plan, parameters and plan-cache
//! entry) or an update, insert, delete or DDL that quiver runs itself, and
//! the binding of parameter values.

use crate::error::{Error, Result};
use crate::query::engine::client::client_schema;
use crate::query::plan_cache;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use std::collections::HashMap;
use std::sync::Arc;

/// A planned query.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) plan: LogicalPlan,
    /// Already through the logical optimizer (from the plan cache).
    pub(crate) optimized: bool,
    /// The plan cache's entry this query was planned from, and the values
    /// of its query vectors: the entry's physical template, if any, plans
    /// it physically ([`plan_cache::PhysicalTemplate`]).
    pub(crate) cached: Option<plan_cache::CachedRun>,
    /// The session's vector-search settings, when they are not the
    /// server's ([`crate::query::topk::apply_settings`]).
    pub(crate) settings: Option<crate::query::topk::SearchSettings>,
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

    /// Runs the query with these vector-search settings (a session's).
    pub fn with_settings(mut self, settings: crate::query::topk::SearchSettings) -> Self {
        self.settings = Some(settings);
        self
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
    /// `CREATE INDEX <name> ON <collection> USING ivf (<column>) WITH (...)`.
    CreateIndex {
        collection: String,
        request: crate::storage::index::def::IndexRequest,
    },
    /// `DROP INDEX [IF EXISTS] [<collection>.]<name>`.
    DropIndex {
        collection: Option<String>,
        name: String,
        if_exists: bool,
    },
    /// `SET quiver.<setting> = <value>` (checked; the session applies it).
    SetOption { name: String, value: String },
    /// `SHOW quiver.<setting>`.
    ShowOption { name: String },
}

impl Statement {
    pub fn is_query(&self) -> bool {
        matches!(self, Statement::Query(_) | Statement::ShowOption { .. })
    }

    /// Schema of the rows a query returns (as sent to clients).
    pub fn result_schema(&self) -> SchemaRef {
        match self {
            Statement::Query(q) => client_schema(q.plan.schema().as_arrow()),
            Statement::ShowOption { name } => {
                Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
            }
            _ => Arc::new(Schema::empty()),
        }
    }

    pub(crate) fn plan(&self) -> Option<&LogicalPlan> {
        match self {
            Statement::Query(Query { plan: p, .. }) | Statement::Insert(p) => Some(p),
            Statement::CreateTable { input, .. }
            | Statement::Delete { input, .. }
            | Statement::Update { input, .. } => Some(input),
            Statement::DropTable { .. }
            | Statement::Truncate { .. }
            | Statement::CreateIndex { .. }
            | Statement::DropIndex { .. }
            | Statement::SetOption { .. }
            | Statement::ShowOption { .. } => None,
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
                settings: q.settings,
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
            s @ (Statement::DropTable { .. }
            | Statement::Truncate { .. }
            | Statement::CreateIndex { .. }
            | Statement::DropIndex { .. }
            | Statement::SetOption { .. }
            | Statement::ShowOption { .. }) => s,
        })
    }
}

/// Binds the query vectors of a prepared query planned by way of the
/// plan cache ([`plan_cache::vector_parameters_only`]) into its optimized
/// plan; the values go with it, for the entry's physical template. A null
/// or non-list value is bound the same way (the casts say what is wrong)
/// but runs without the template.
pub(crate) fn bind_cached(query: Query, values: Vec<ScalarValue>) -> Result<Statement> {
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
        settings: query.settings,
    }))
}

/// An error unless `values` values were bound for `parameters` parameters.
pub(crate) fn check_bound(parameters: usize, values: usize) -> Result<()> {
    if parameters != values {
        return Err(Error::invalid(format!(
            "the statement has {parameters} parameter(s), but {values} value(s) were bound"
        )));
    }
    Ok(())
}

pub(crate) fn param_index(name: &str) -> usize {
    name.trim_start_matches('$').parse().unwrap_or(usize::MAX)
}
