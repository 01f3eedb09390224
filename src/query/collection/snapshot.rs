//! Time travel: `quiver_snapshot('docs', 12)` reads version 12 of `docs`;
//! `quiver_snapshot('docs', '2026-11-22T02:00:00Z')` reads the version that
//! was current at that time.
//!
//! DataFusion calls table functions synchronously, while manifests live on
//! object storage. So the engine resolves every `quiver_snapshot` call of a
//! statement before planning ([`resolve`]): it loads the version (finding it
//! by commit time if a time was given), pins it in the store, and rewrites
//! the argument to the version number. The table function then only looks
//! the pinned version up.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result as DFResult, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value, VisitMut, VisitorMut,
};

use crate::error::{Error, Result};
use crate::query::collection::CollectionTable;
use crate::storage::format::manifest;
use crate::storage::store::Store;

/// Name of the time-travel table function.
pub const FUNCTION: &str = "quiver_snapshot";

/// The table function, registered with the engine's contexts.
#[derive(Debug)]
pub struct SnapshotFunction {
    store: Arc<Store>,
    system_columns: bool,
}

impl SnapshotFunction {
    pub fn new(store: Arc<Store>, system_columns: bool) -> Self {
        Self {
            store,
            system_columns,
        }
    }
}

impl TableFunctionImpl for SnapshotFunction {
    fn call(&self, exprs: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        let (Some(Expr::Literal(name, _)), Some(Expr::Literal(version, _))) =
            (exprs.first(), exprs.get(1))
        else {
            return plan_err!(
                "{FUNCTION}(collection, version or time) takes two literal arguments"
            );
        };
        let ScalarValue::Utf8(Some(name)) = name else {
            return plan_err!("{FUNCTION}: the first argument is the collection name, as a string");
        };
        let version = match version {
            ScalarValue::Int64(Some(v)) if *v > 0 => *v as u64,
            other => {
                return plan_err!(
                    "{FUNCTION}: a version number or a time string is expected, got {other}"
                )
            }
        };
        match self.store.pinned(name, version) {
            Some((m, deletes)) => Ok(Arc::new(CollectionTable::new(self.store.clone(), m, deletes, self.system_columns))),
            None => plan_err!(
                "{FUNCTION}('{name}', {version}) can only be used in SQL sent to quiver (the snapshot was not loaded)"
            ),
        }
    }
}

/// What a `quiver_snapshot` call asks for.
enum Wanted {
    Version(u64),
    /// Milliseconds since the epoch.
    AsOf(u64),
}

/// Finds the `quiver_snapshot` calls of a statement.
struct Calls<'a> {
    found: Vec<(String, Wanted)>,
    /// When set, the versions to write back, in order of appearance.
    rewrite: Option<&'a [u64]>,
    next: usize,
    error: Option<Error>,
}

impl VisitorMut for Calls<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = t
        else {
            return ControlFlow::Continue(());
        };
        let is_ours = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case(FUNCTION));
        if !is_ours {
            return ControlFlow::Continue(());
        }
        let mut exprs: Vec<&mut SqlExpr> = args
            .args
            .iter_mut()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        let bad =
            |what: &str| Error::invalid(format!("{FUNCTION}(collection, version or time): {what}"));
        if exprs.len() != 2 {
            self.error = Some(bad("takes two arguments"));
            return ControlFlow::Break(());
        }
        if let Some(versions) = self.rewrite {
            let v = versions[self.next];
            self.next += 1;
            *exprs[1] = SqlExpr::value(Value::Number(v.to_string(), false));
            return ControlFlow::Continue(());
        }
        let collection = match &*exprs[0] {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => String::new(),
            },
            SqlExpr::Identifier(i) => i.value.clone(),
            _ => String::new(),
        };
        if collection.is_empty() {
            self.error = Some(bad("the first argument is the collection name"));
            return ControlFlow::Break(());
        }
        let wanted = match &*exprs[1] {
            SqlExpr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .map(Wanted::Version),
                Value::SingleQuotedString(s) => {
                    arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
                        .ok()
                        .map(|ns| Wanted::AsOf((ns / 1_000_000).max(0) as u64))
                }
                _ => None,
            },
            _ => None,
        };
        match wanted {
            Some(w) => self.found.push((collection, w)),
            None => {
                self.error = Some(bad(
                    "the second argument is a version number (1, 2, ...) or a time string",
                ));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Loads and pins every snapshot a statement asks for, and rewrites time
/// arguments to the version numbers they resolve to.
pub async fn resolve(store: &Store, stmt: &mut DFStatement) -> Result<()> {
    let inner = match stmt {
        DFStatement::Statement(inner) => inner,
        // EXPLAIN [ANALYZE] of a time-travel query pins its versions too.
        DFStatement::Explain(e) => return Box::pin(resolve(store, &mut e.statement)).await,
        _ => return Ok(()),
    };
    let mut calls = Calls {
        found: Vec::new(),
        rewrite: None,
        next: 0,
        error: None,
    };
    let _ = inner.visit(&mut calls);
    if let Some(e) = calls.error {
        return Err(e);
    }
    if calls.found.is_empty() {
        return Ok(());
    }
    let mut versions = Vec::with_capacity(calls.found.len());
    for (name, wanted) in &calls.found {
        let m = match wanted {
            Wanted::Version(v) => manifest::load_version(store.object_store().as_ref(), name, *v)
                .await
                .map_err(|e| match e {
                    Error::ObjectStore(object_store::Error::NotFound { .. }) => Error::invalid(format!(
                        "version {v} of collection '{name}' does not exist (never written, or removed by gc)"
                    )),
                    other => other,
                })?,
            Wanted::AsOf(ms) => find_as_of(store, name, *ms).await?,
        };
        if !m.is_live() {
            return Err(Error::invalid(format!(
                "collection '{name}' was dropped in version {}",
                m.version
            )));
        }
        versions.push(m.version);
        store.pin(Arc::new(m)).await?;
    }
    let mut rewrite = Calls {
        found: Vec::new(),
        rewrite: Some(&versions),
        next: 0,
        error: None,
    };
    let _ = inner.visit(&mut rewrite);
    Ok(())
}

/// The newest version of `name` committed at or before `ms`.
async fn find_as_of(store: &Store, name: &str, ms: u64) -> Result<manifest::Manifest> {
    let os = store.object_store().as_ref();
    let mut versions = manifest::list_versions(os, name).await?;
    versions.sort_unstable();
    for v in versions.into_iter().rev() {
        let m = manifest::load_version(os, name, v).await?;
        if m.committed_at_ms <= ms {
            return Ok(m);
        }
    }
    Err(Error::invalid(format!(
        "collection '{name}' has no version committed at or before that time (or it was removed by gc)"
    )))
}
