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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{Cast, Placeholder, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan, TableSource, Volatility};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::Result;
use crate::query::collection::{CollectionTable, MaterializeExec};
use crate::query::topk::{TopKTemplate, VectorTopKExec};

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

/// The physical plan of a fused vector top-k over one collection, without
/// its scan and with its query vectors known by name, so the plan for
/// other vectors over the collection's latest version is built without
/// DataFusion's physical planner and optimizer. It holds no collection
/// data: the scan is planned for the run, or taken from the run before
/// over the same version ([`ScanMemo`]).
#[derive(Debug)]
pub struct PhysicalTemplate {
    /// From the top: the operators above the top-k.
    above: Vec<Above>,
    topk: TopKTemplate,
    /// Each vector literal of the plan, and the parameter it is the value
    /// of (cast to the literal's type).
    literals: Vec<(ScalarValue, String)>,
}

/// An operator above the fused top-k.
#[derive(Debug)]
enum Above {
    Projection(Vec<ProjectionExpr>, SchemaRef),
    GlobalLimit(usize, Option<usize>),
    LocalLimit(usize),
    Cooperative,
    CoalescePartitions(Option<usize>),
}

pub fn is_list(v: &ScalarValue) -> bool {
    matches!(
        v,
        ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_)
    )
}

impl PhysicalTemplate {
    /// The template of `plan`, planned with the parameter values
    /// `vectors`: `None` unless it is a fused top-k over a collection scan
    /// under only projections, limits and merges, and each of its vector
    /// literals of at least `min` numbers is the value of exactly one
    /// parameter (a shorter list is part of the query's text, not a
    /// parameter).
    pub fn capture(
        plan: &Arc<dyn ExecutionPlan>,
        vectors: &HashMap<String, ScalarValue>,
        min: usize,
    ) -> Option<Self> {
        let mut above = Vec::new();
        let mut node = plan.clone();
        let topk = loop {
            if let Some(t) = node.downcast_ref::<VectorTopKExec>() {
                break t.template()?;
            }
            let next = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                above.push(Above::Projection(p.expr().to_vec(), p.schema()));
                p.input().clone()
            } else if let Some(l) = node.downcast_ref::<GlobalLimitExec>() {
                above.push(Above::GlobalLimit(l.skip(), l.fetch()));
                l.input().clone()
            } else if let Some(l) = node.downcast_ref::<LocalLimitExec>() {
                above.push(Above::LocalLimit(l.fetch()));
                l.input().clone()
            } else if let Some(c) = node.downcast_ref::<CooperativeExec>() {
                above.push(Above::Cooperative);
                c.input().clone()
            } else if let Some(c) = node.downcast_ref::<CoalescePartitionsExec>() {
                above.push(Above::CoalescePartitions(c.fetch()));
                c.input().clone()
            } else {
                return None;
            };
            node = next;
        };
        let mut found = Vec::new();
        let exprs = above
            .iter()
            .flat_map(|a| match a {
                Above::Projection(p, _) => p.iter().map(|e| &e.expr).collect(),
                _ => Vec::new(),
            })
            .chain(topk.expressions());
        for e in exprs {
            let _ = e.apply(|e| {
                if let Some(l) = e.downcast_ref::<Literal>() {
                    if is_list(l.value()) {
                        found.push(l.value().clone());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        let mut literals: Vec<(ScalarValue, String)> = Vec::new();
        for value in found {
            if literals.iter().any(|(v, _)| *v == value) {
                continue;
            }
            let to = value.data_type();
            let names: Vec<&String> = vectors
                .iter()
                .filter(|(_, v)| v.cast_to(&to).is_ok_and(|c| c == value))
                .map(|(n, _)| n)
                .collect();
            match names[..] {
                [name] => literals.push((value, name.clone())),
                [] if list_len(&value).is_some_and(|n| n < min) => {}
                _ => return None,
            }
        }
        Some(Self {
            above,
            topk,
            literals,
        })
    }

    /// The plan over `scan` (the collection planned afresh) with the
    /// parameter values `vectors`; `None` if `scan` is not a scan the
    /// template can run over (all of the collection pruned, say).
    pub fn build(
        &self,
        scan: Arc<dyn ExecutionPlan>,
        vectors: &HashMap<String, ScalarValue>,
    ) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
        use datafusion::error::DataFusionError;
        let rebind =
            |e: &Arc<dyn PhysicalExpr>| -> datafusion::error::Result<Arc<dyn PhysicalExpr>> {
                e.clone()
                    .transform(|e| {
                        let Some(l) = e.downcast_ref::<Literal>() else {
                            return Ok(Transformed::no(e));
                        };
                        let Some((old, name)) = self.literals.iter().find(|(v, _)| v == l.value())
                        else {
                            return Ok(Transformed::no(e));
                        };
                        let value = vectors.get(name).ok_or_else(|| {
                            DataFusionError::Plan(format!("no value for parameter ${name}"))
                        })?;
                        let value = value.cast_to(&old.data_type())?;
                        Ok(Transformed::yes(
                            Arc::new(Literal::new(value)) as Arc<dyn PhysicalExpr>
                        ))
                    })
                    .map(|t| t.data)
            };
        let Some(mut plan) = self.topk.build(scan, &rebind)? else {
            return Ok(None);
        };
        for a in self.above.iter().rev() {
            plan = match a {
                Above::Projection(exprs, schema) => {
                    let exprs = exprs
                        .iter()
                        .map(|p| {
                            Ok(ProjectionExpr {
                                expr: rebind(&p.expr)?,
                                alias: p.alias.clone(),
                            })
                        })
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    Arc::new(ProjectionExec::try_new_with_schema_metadata(
                        exprs,
                        plan,
                        schema.as_ref(),
                    )?)
                }
                Above::GlobalLimit(skip, fetch) => {
                    Arc::new(GlobalLimitExec::new(plan, *skip, *fetch))
                }
                Above::LocalLimit(fetch) => Arc::new(LocalLimitExec::new(plan, *fetch)),
                Above::Cooperative => Arc::new(CooperativeExec::new(plan)),
                Above::CoalescePartitions(fetch) => {
                    Arc::new(CoalescePartitionsExec::new(plan).with_fetch(*fetch))
                }
            };
        }
        Ok(Some(plan))
    }
}

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

/// A query vector's value as [`crate::query::engine::Engine::plan`] binds it:
/// the numbers (each with whether it was written as an integer) as a list
/// of Int64 when every one is an integer that fits, else of Float64.
pub fn vector_value(xs: &[(f64, bool)]) -> ScalarValue {
    let all_int = xs.iter().all(|(x, int)| *int && x.abs() < 9.0e15);
    let values: ArrayRef = if all_int {
        Arc::new(Int64Array::from_iter_values(
            xs.iter().map(|(x, _)| *x as i64),
        ))
    } else {
        Arc::new(Float64Array::from_iter_values(xs.iter().map(|(x, _)| *x)))
    };
    ScalarValue::List(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(values.data_type().clone(), true)),
        OffsetBuffer::from_lengths([values.len()]),
        values,
        None,
    )))
}

/// A query's text with its vector literals cut out, and their values.
#[derive(Debug)]
pub struct CutText {
    /// The text without the vectors, and where each was: two texts with
    /// the same key differ only in the numbers of their vectors.
    pub key: String,
    /// The vectors' values, in the order of the text, named as
    /// `hoist_vector_literals` names them.
    pub vectors: Vec<(String, ScalarValue)>,
}

/// Finds the vector literals of `sql` without parsing it: bracketed lists
/// of at least `min` plain numbers (`-1.5e3`, `2`), outside quotes, so a
/// repeated query can be looked up by its text ([`PlanCache::get_text`]).
/// `None` if there are none, or the text has anything the scan does not
/// follow (comments, backslashes, dollar quoting): such queries are only
/// looked up by their parsed statement.
///
/// Whether a text's vectors are the ones the parser hoists is checked
/// once, when the plan is cached under the text ([`PlanCache::insert`]):
/// a text with the same key differs only inside the cut-out lists, which
/// hold nothing but numbers, commas and spaces, so it parses the same way.
pub fn cut_vectors(sql: &str, min: usize) -> Option<CutText> {
    if sql.contains(['\\', '$', '`']) || sql.contains("--") || sql.contains("/*") {
        return None;
    }
    let b = sql.as_bytes();
    let (mut key, mut vectors, mut spans) = (String::new(), Vec::new(), Vec::new());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                // To the closing quote (a doubled one is an escaped quote).
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(&c) if c == q => {
                            if b.get(i + 1) == Some(&q) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'[' => match number_list(b, i + 1) {
                Some((xs, end)) if xs.len() >= min => {
                    key.push_str(&sql[copied..i]);
                    spans.push(key.len());
                    copied = end;
                    i = end;
                    let name = format!("quiver_vector_{}", vectors.len() + 1);
                    vectors.push((name, vector_value(&xs)));
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    if vectors.is_empty() {
        return None;
    }
    key.push_str(&sql[copied..]);
    key.push('\0');
    for s in spans {
        key.push_str(&s.to_string());
        key.push(',');
    }
    Some(CutText { key, vectors })
}

/// The numbers of a list `n, n, ..., n]` starting at `b[i]`, and the index
/// after its `]`; each number with whether it is written as an integer.
fn number_list(b: &[u8], mut i: usize) -> Option<(Vec<(f64, bool)>, usize)> {
    let skip_space = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut xs = Vec::new();
    loop {
        skip_space(&mut i);
        let start = i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
        let mut int = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
            int = false;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
            int = false;
        }
        let text = std::str::from_utf8(&b[start..i]).ok()?;
        xs.push((text.parse::<f64>().ok()?, int));
        skip_space(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Some((xs, i + 1)),
            _ => return None,
        }
    }
}

/// Whether the (unoptimized) plan of a query may be cached: it reads at
/// least one collection, every scan reads a collection at its latest
/// version, and it calls no function whose result may change between runs.
pub fn cacheable(plan: &LogicalPlan) -> bool {
    if matches!(
        plan,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
    ) {
        return false;
    }
    let mut scans = 0;
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(s) = node {
            let latest = source_as_provider(&s.source).is_ok_and(|p| {
                p.downcast_ref::<CollectionTable>()
                    .is_some_and(|t| t.is_latest())
            });
            if !latest {
                ok = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            scans += 1;
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.signature().volatility != Volatility::Immutable {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok && scans > 0
}

/// Whether every parameter of the optimized plan sits directly in a cast
/// (the type the analyzer gave it), so binding can fold a value.
pub fn parameters_in_casts(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. })
                        if matches!(expr.as_ref(), Expr::Placeholder(_)) =>
                    {
                        return Ok(TreeNodeRecursion::Jump);
                    }
                    Expr::Placeholder(_) => {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    ok
}

/// Whether every parameter of the optimized plan is a query vector that
/// sits directly in a cast to a list type, and the plan holds no list
/// literal of its own: a prepared query whose parameters the client binds
/// can then be cached and run from its physical template, where each list
/// literal is the value of a parameter.
pub fn vector_parameters_only(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let mut parameters = 0;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
                        if matches!(expr.as_ref(), Expr::Placeholder(_)) =>
                    {
                        if !matches!(
                            field.data_type(),
                            DataType::List(_)
                                | DataType::LargeList(_)
                                | DataType::FixedSizeList(..)
                        ) {
                            ok = false;
                            return Ok(TreeNodeRecursion::Stop);
                        }
                        parameters += 1;
                        return Ok(TreeNodeRecursion::Jump);
                    }
                    Expr::Placeholder(_) => {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Expr::Literal(v, _) if is_list(v) => {
                        ok = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    ok && parameters > 0
}

/// The plan with its collections replaced by [`CollectionRef`]s, so the
/// cache holds no collection data.
pub fn unpin(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = plan.transform_up_with_subqueries(|node| {
        Ok(match node {
            LogicalPlan::TableScan(mut s) => {
                let provider = source_as_provider(&s.source)?;
                match provider.downcast_ref::<CollectionTable>() {
                    Some(t) => {
                        s.source = Arc::new(CollectionRef {
                            name: t.manifest().collection.clone(),
                            system_columns: t.has_system_columns(),
                            schema: s.source.schema(),
                        });
                        Transformed::yes(LogicalPlan::TableScan(s))
                    }
                    None => Transformed::no(LogicalPlan::TableScan(s)),
                }
            }
            other => Transformed::no(other),
        })
    })?;
    Ok(plan.data)
}

/// Binds query vectors into an optimized plan: each `CAST($name AS T)` the
/// analyzer made becomes the value cast to `T`, under the name the
/// expression had, so the plan's schemas stay as they are.
pub fn bind(plan: LogicalPlan, values: &HashMap<String, ScalarValue>) -> Result<LogicalPlan> {
    if values.is_empty() {
        return Ok(plan);
    }
    let plan = plan.transform_up_with_subqueries(|node| {
        // Plans whose expressions make their output columns keep the
        // names; the others' expressions name nothing.
        let keep_names = !matches!(
            node,
            LogicalPlan::Filter(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Statement(_)
        );
        node.map_expressions(|e| {
            if !has_placeholder(&e) {
                return Ok(Transformed::no(e));
            }
            let name = match (&e, keep_names) {
                (Expr::Alias(_), _) | (_, false) => None,
                _ => Some(e.qualified_name()),
            };
            let bound = e.transform_down(|e| fold(e, values))?.data;
            Ok(Transformed::yes(match name {
                Some((relation, name)) => bound.alias_qualified(relation, name),
                None => bound,
            }))
        })
    })?;
    Ok(plan.data)
}

fn has_placeholder(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::Placeholder(_))))
        .unwrap_or(false)
}

/// The parameter's value cast to `to`, if `e` is `CAST($name AS to)`.
fn cast_parameter(
    e: &Expr,
    values: &HashMap<String, ScalarValue>,
) -> Option<std::result::Result<(ScalarValue, DataType, String), String>> {
    let (inner, to) = match e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr.as_ref(), field.data_type())
        }
        _ => return None,
    };
    let Expr::Placeholder(Placeholder { id, .. }) = inner else {
        return None;
    };
    let Some(value) = values.get(id.trim_start_matches('$')) else {
        return Some(Err(format!("no value for parameter {id}")));
    };
    Some(Ok((value.clone(), to.clone(), id.clone())))
}

fn list_len(v: &ScalarValue) -> Option<usize> {
    match v {
        ScalarValue::List(a) => Some(a.value_length(0) as usize),
        ScalarValue::FixedSizeList(a) => Some(a.value_length() as usize),
        _ => None,
    }
}

fn fold(
    e: Expr,
    values: &HashMap<String, ScalarValue>,
) -> datafusion::error::Result<Transformed<Expr>> {
    use datafusion::error::DataFusionError;
    let cast = |value: ScalarValue, to: &DataType, id: &str| {
        value.cast_to(to).map_err(|err| {
            DataFusionError::Plan(format!("query vector {id}: cannot use it as {to}: {err}"))
        })
    };
    match e {
        // A distance function's vector: its dimension must be the column's.
        Expr::ScalarFunction(mut f) => {
            let mut changed = false;
            for i in 0..f.args.len() {
                let Some(found) = cast_parameter(&f.args[i], values) else {
                    continue;
                };
                let (value, to, id) = found.map_err(DataFusionError::Plan)?;
                // The analyzer gave the parameter the other vector's type.
                if let (DataType::FixedSizeList(_, d), Some(n)) = (&to, list_len(&value)) {
                    if n != *d as usize {
                        let (a, b) = if i == 0 {
                            (n, *d as usize)
                        } else {
                            (*d as usize, n)
                        };
                        return Err(DataFusionError::Plan(format!(
                            "{}: the vectors have different dimensions ({a} and {b})",
                            f.name()
                        )));
                    }
                }
                f.args[i] = Expr::Literal(cast(value, &to, &id)?, None);
                changed = true;
            }
            Ok(if changed {
                Transformed::yes(Expr::ScalarFunction(f))
            } else {
                Transformed::no(Expr::ScalarFunction(f))
            })
        }
        e => match cast_parameter(&e, values) {
            Some(found) => {
                let (value, to, id) = found.map_err(DataFusionError::Plan)?;
                Ok(Transformed::yes(Expr::Literal(
                    cast(value, &to, &id)?,
                    None,
                )))
            }
            None => Ok(Transformed::no(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_of(n: usize, f: impl Fn(usize) -> String) -> String {
        let xs: Vec<String> = (0..n).map(f).collect();
        format!("[{}]", xs.join(", "))
    }

    #[test]
    fn cut_vectors_finds_the_vectors_and_keys_the_rest_of_the_text() {
        let a = vec_of(16, |i| format!("{i}.5"));
        let b = vec_of(16, |i| format!("-{i}e-2"));
        let c = vec_of(20, |i| format!("{i}"));
        let sql = |v: &str, w: &str| {
            format!("SELECT id, l2_distance(v, {v}) AS d FROM t WHERE l1_distance(v, {w}) < 3 ORDER BY d LIMIT 5")
        };
        let x = cut_vectors(&sql(&a, &b), 16).unwrap();
        let y = cut_vectors(&sql(&c, &a), 16).unwrap();
        // Same text around other vectors (of other lengths): same key.
        assert_eq!(x.key, y.key);
        assert_eq!(x.vectors.len(), 2);
        assert_eq!(x.vectors[0].0, "quiver_vector_1");
        assert_eq!(x.vectors[1].0, "quiver_vector_2");
        let parsed: Vec<(f64, bool)> = (0..16).map(|i| (-(i as f64) / 100.0, false)).collect();
        assert_eq!(x.vectors[1].1, vector_value(&parsed));
        // Integers stay integers.
        let ints: Vec<(f64, bool)> = (0..20).map(|i| (i as f64, true)).collect();
        assert_eq!(y.vectors[0].1, vector_value(&ints));
        assert!(
            matches!(&y.vectors[0].1, ScalarValue::List(l) if l.values().data_type() == &DataType::Int64)
        );
        // Other text: another key.
        let other = cut_vectors(&sql(&a, &b).replace("< 3", "< 4"), 16).unwrap();
        assert_ne!(other.key, x.key);
        // The text between the vectors matters even when the rest is equal.
        let moved = format!("SELECT {a}, 'x' || {a}");
        let moved2 = format!("SELECT {a} || 'x', {a}");
        assert_ne!(
            cut_vectors(&moved, 16).unwrap().key,
            cut_vectors(&moved2, 16).unwrap().key
        );
    }

    #[test]
    fn cut_vectors_leaves_what_is_not_a_vector() {
        let v = vec_of(16, |i| format!("{i}"));
        // Inside a string or a quoted name: not cut, so part of the key.
        let quoted = format!("SELECT '{v}' AS \"{v}\", 'it''s {v}' FROM t");
        assert!(cut_vectors(&quoted, 16).is_none());
        let with = |s: &str| format!("SELECT '{s}', l2_distance(v, {v}) FROM t");
        let (p, q) = (
            cut_vectors(&with(&v), 16).unwrap(),
            cut_vectors(&with(&v.replace('1', "2")), 16).unwrap(),
        );
        assert_eq!(p.vectors.len(), 1);
        assert_ne!(p.key, q.key);
        // Too short, not only numbers, or not plain numbers.
        for not in [
            vec_of(15, |i| format!("{i}")),
            vec_of(16, |i| if i == 3 { "x".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { "- 1".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { ".5".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { "1e".into() } else { format!("{i}") }),
            vec_of(16, |i| if i == 3 { "(1)".into() } else { format!("{i}") }),
        ] {
            assert!(
                cut_vectors(&format!("SELECT l2_distance(v, {not}) FROM t"), 16).is_none(),
                "{not}"
            );
        }
        // Text the scan does not follow.
        for odd in [
            format!("SELECT {v} -- comment"),
            format!("SELECT {v} /* comment */"),
            format!("SELECT {v}, $1"),
            format!("SELECT {v}, E'\\''"),
            format!("SELECT {v}, 'unclosed"),
        ] {
            assert!(cut_vectors(&odd, 16).is_none(), "{odd}");
        }
    }
}
