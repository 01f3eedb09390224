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

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, Scalar, UInt32Array};
use arrow::compute::kernels::boolean::and;
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::compute::{
    concat, concat_batches, interleave_record_batch, is_null, lexsort_to_indices, or_kleene,
    sort_to_indices, take, take_record_batch, SortColumn, SortOptions,
};
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr, ScalarFunctionExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use tracing::Instrument;

use crate::query::functions::bits::BitDistanceUdf;
use crate::query::functions::distance::{score_rows, DistanceUdf, Metric};
use crate::storage::format::keys::{key_at, Key};
use crate::query::collection::{true_positions, MaterializeExec, ScanUnit};

/// The physical optimizer rule that plans [`VectorTopKExec`].
#[derive(Debug, Default)]
pub struct FuseVectorTopK;

impl PhysicalOptimizerRule for FuseVectorTopK {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            // A merge of per-partition top-k sorts: the fused operator
            // replaces both.
            if let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() {
                if let Some(sort) = merge.input().downcast_ref::<SortExec>() {
                    if merge.fetch().is_some()
                        && merge.fetch() == sort.fetch()
                        && merge.expr() == sort.expr()
                    {
                        if let Some(fused) = fuse(sort)? {
                            return Ok(Transformed::new(fused, true, TreeNodeRecursion::Jump));
                        }
                    }
                }
                return Ok(Transformed::no(node));
            }
            if let Some(sort) = node.downcast_ref::<SortExec>() {
                // A sort that keeps its input's partitions feeds a parent
                // that expects them (other than the merge handled above):
                // leave it, unless there is one partition anyway.
                let partitions = sort.input().output_partitioning().partition_count();
                if sort.preserve_partitioning() && partitions > 1 {
                    return Ok(Transformed::no(node));
                }
                if let Some(fused) = fuse(sort)? {
                    return Ok(Transformed::new(fused, true, TreeNodeRecursion::Jump));
                }
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "fuse_vector_topk"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Rewrites `expr` (over a node's output) to an expression over the node's
/// input, given the expressions that produce each output column.
fn substitute(
    expr: &Arc<dyn PhysicalExpr>,
    outputs: &[Arc<dyn PhysicalExpr>],
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.clone()
        .transform(|e| {
            if let Some(c) = e.downcast_ref::<Column>() {
                let Some(src) = outputs.get(c.index()) else {
                    return Err(DataFusionError::Internal(format!(
                        "column {c} is out of range while fusing a vector top-k"
                    )));
                };
                return Ok(Transformed::yes(src.clone()));
            }
            Ok(Transformed::no(e))
        })
        .map(|t| t.data)
}

/// The expressions the rule carries down the plan, all over the schema of
/// the node it is looking at.
struct Carried {
    sort: Vec<PhysicalSortExpr>,
    outputs: Vec<Arc<dyn PhysicalExpr>>,
    filters: Vec<Arc<dyn PhysicalExpr>>,
}

impl Carried {
    fn rewrite(&mut self, through: &[Arc<dyn PhysicalExpr>]) -> Result<()> {
        for s in &mut self.sort {
            s.expr = substitute(&s.expr, through)?;
        }
        for e in self.outputs.iter_mut().chain(self.filters.iter_mut()) {
            *e = substitute(e, through)?;
        }
        Ok(())
    }
}

/// Whether `expr` is a quiver distance of a column and a literal.
fn is_vector_distance(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let Some(f) = expr.downcast_ref::<ScalarFunctionExpr>() else {
        return false;
    };
    let inner = f.fun().inner();
    if inner.downcast_ref::<DistanceUdf>().is_none()
        && inner.downcast_ref::<BitDistanceUdf>().is_none()
    {
        return false;
    }
    let [a, b] = f.args() else {
        return false;
    };
    let is_col = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().is_some();
    let is_lit = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some();
    (is_col(a) && is_lit(b)) || (is_lit(a) && is_col(b))
}

/// The fused operator for `sort`, if its plan has a shape the rule knows.
fn fuse(sort: &SortExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(fetch) = sort.fetch() else {
        return Ok(None);
    };
    let input_schema = sort.input().schema();
    let mut carried = Carried {
        sort: sort.expr().iter().cloned().collect(),
        outputs: input_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect(),
        filters: Vec::new(),
    };
    let mut node = sort.input().clone();
    let leaf = loop {
        if node.downcast_ref::<MaterializeExec>().is_some() {
            break node;
        }
        // A limit inside the chain would have to run before the top-k.
        if node.fetch().is_some() {
            return Ok(None);
        }
        let next = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
            let through: Vec<_> = p.expr().iter().map(|e| e.expr.clone()).collect();
            carried.rewrite(&through)?;
            p.input().clone()
        } else if let Some(f) = node.downcast_ref::<FilterExec>() {
            let in_schema = f.input().schema();
            if let Some(projection) = f.projection() {
                let through: Vec<Arc<dyn PhysicalExpr>> = projection
                    .iter()
                    .map(|&i| {
                        Arc::new(Column::new(in_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                carried.rewrite(&through)?;
            }
            carried.filters.push(f.predicate().clone());
            f.input().clone()
        } else if let Some(r) = node.downcast_ref::<RepartitionExec>() {
            r.input().clone()
        } else if let Some(c) = node.downcast_ref::<CoalescePartitionsExec>() {
            c.input().clone()
        } else if let Some(c) = node.downcast_ref::<CooperativeExec>() {
            c.input().clone()
        } else {
            return Ok(None);
        };
        node = next;
    };
    if !is_vector_distance(&carried.sort[0].expr) {
        return Ok(None);
    }
    Ok(Some(Arc::new(VectorTopKExec::try_new(
        leaf,
        carried.filters,
        carried.sort,
        carried.outputs,
        sort.expr().clone(),
        sort.schema(),
        fetch,
    )?)))
}

/// The fused filtered top-k over a collection scan (see the module docs).
#[derive(Debug)]
pub struct VectorTopKExec {
    /// The collection scan ([`MaterializeExec`]).
    input: Arc<dyn ExecutionPlan>,
    /// Row filters, over the scan's schema.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Sort keys over the scan's schema; the first is the distance.
    sort: Arc<[PhysicalSortExpr]>,
    /// The output columns, as expressions over the scan's schema.
    outputs: Vec<Arc<dyn PhysicalExpr>>,
    /// The sort keys over the output (for display and the plan's ordering).
    ordering: LexOrdering,
    fetch: usize,
    /// Index of the primary key in the scan's keyed batches.
    key_idx: usize,
    key_name: String,
    /// Direct scoring of the first sort key, when it is a plain distance.
    scorer: Option<Scorer>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl VectorTopKExec {
    fn try_new(
        input: Arc<dyn ExecutionPlan>,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        sort: Vec<PhysicalSortExpr>,
        outputs: Vec<Arc<dyn PhysicalExpr>>,
        ordering: LexOrdering,
        schema: arrow::datatypes::SchemaRef,
        fetch: usize,
    ) -> Result<Self> {
        let scan = input.downcast_ref::<MaterializeExec>().ok_or_else(|| {
            DataFusionError::Internal("VectorTopKExec runs over a collection scan".into())
        })?;
        let key_idx = scan.keyed_schema().fields().len() - 1;
        let key_name = scan.primary_key().to_string();
        let scorer = Scorer::new(&sort[0].expr, &scan.keyed_schema().clone());
        let eq = EquivalenceProperties::new_with_orderings(
            schema.clone(),
            [ordering.iter().cloned().collect::<Vec<_>>()],
        );
        // Cooperative: it only waits on its workers' tasks (tokio's budget
        // applies), and reads the scan directly, so the scan needs no
        // `CooperativeExec` of its own between the two.
        let properties = Arc::new(
            PlanProperties::new(
                eq,
                Partitioning::UnknownPartitioning(1),
                EmissionType::Final,
                Boundedness::Bounded,
            )
            .with_scheduling_type(SchedulingType::Cooperative),
        );
        Ok(Self {
            input,
            filters,
            sort: sort.into(),
            outputs,
            ordering,
            fetch,
            key_idx,
            key_name,
            scorer,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl VectorTopKExec {
    /// Everything of this operator but its scan, to build it again over
    /// another scan of the collection.
    pub(crate) fn template(&self) -> Option<TopKTemplate> {
        let scan = self.input.downcast_ref::<MaterializeExec>()?;
        Some(TopKTemplate {
            filters: self.filters.clone(),
            sort: self.sort.to_vec(),
            outputs: self.outputs.clone(),
            ordering: self.ordering.iter().cloned().collect(),
            schema: self.schema(),
            fetch: self.fetch,
            keyed_schema: scan.keyed_schema().clone(),
        })
    }
}

/// A rewrite of physical expressions.
pub(crate) type ExprMap<'a> = dyn Fn(&Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> + 'a;

/// A [`VectorTopKExec`] without its scan ([`VectorTopKExec::template`]).
#[derive(Debug)]
pub(crate) struct TopKTemplate {
    filters: Vec<Arc<dyn PhysicalExpr>>,
    sort: Vec<PhysicalSortExpr>,
    outputs: Vec<Arc<dyn PhysicalExpr>>,
    ordering: Vec<PhysicalSortExpr>,
    schema: arrow::datatypes::SchemaRef,
    fetch: usize,
    /// The schema of the scan it was over.
    keyed_schema: arrow::datatypes::SchemaRef,
}

impl TopKTemplate {
    /// Every expression of the operator.
    pub(crate) fn expressions(&self) -> impl Iterator<Item = &Arc<dyn PhysicalExpr>> {
        self.filters
            .iter()
            .chain(self.sort.iter().map(|s| &s.expr))
            .chain(self.outputs.iter())
            .chain(self.ordering.iter().map(|s| &s.expr))
    }

    /// The operator over `input`, each of its expressions replaced by `f`
    /// of it; `None` if `input` is not a collection scan with the keyed
    /// schema the operator was planned over.
    pub(crate) fn build(
        &self,
        input: Arc<dyn ExecutionPlan>,
        f: &ExprMap<'_>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        match input.downcast_ref::<MaterializeExec>() {
            Some(scan) if scan.keyed_schema() == &self.keyed_schema => {}
            _ => return Ok(None),
        }
        let sorted = |s: &PhysicalSortExpr| Ok(PhysicalSortExpr::new(f(&s.expr)?, s.options));
        let ordering = self
            .ordering
            .iter()
            .map(sorted)
            .collect::<Result<Vec<_>>>()?;
        let ordering = LexOrdering::new(ordering).ok_or_else(|| {
            DataFusionError::Internal("a vector top-k without an ordering".into())
        })?;
        Ok(Some(Arc::new(VectorTopKExec::try_new(
            input,
            self.filters.iter().map(f).collect::<Result<_>>()?,
            self.sort.iter().map(sorted).collect::<Result<_>>()?,
            self.outputs.iter().map(f).collect::<Result<_>>()?,
            ordering,
            self.schema.clone(),
            self.fetch,
        )?)))
    }
}

impl DisplayAs for VectorTopKExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let sort: Vec<String> = self.sort.iter().map(|s| s.to_string()).collect();
        write!(
            f,
            "VectorTopKExec: fetch={}, expr=[{}]",
            self.fetch,
            sort.join(", ")
        )?;
        write!(f, ", tie_break={} ASC", self.key_name)?;
        if !self.filters.is_empty() {
            let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", filter=[{}]", filters.join(" AND "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for VectorTopKExec {
    fn name(&self) -> &str {
        "VectorTopKExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The scan is read row group by row group by the operator's own
    /// workers: no repartitioning in between.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for e in self
            .filters
            .iter()
            .chain(self.sort.iter().map(|s| &s.expr))
            .chain(self.outputs.iter())
        {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = children.try_into().map_err(|_| {
            DataFusionError::Internal("VectorTopKExec takes exactly one child".into())
        })?;
        Ok(Arc::new(VectorTopKExec::try_new(
            input,
            self.filters.clone(),
            self.sort.to_vec(),
            self.outputs.clone(),
            self.ordering.clone(),
            self.schema(),
            self.fetch,
        )?))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "VectorTopKExec has one partition, not {partition}"
            )));
        }
        let input = self.input.clone();
        // Filters over scalar columns only run before any vector is read
        // (on the scan's scalar columns); the others after.
        let scan = self
            .input
            .downcast_ref::<MaterializeExec>()
            .expect("checked in try_new");
        let (pre, post) = split_filters(&self.filters, &scan.scalar_columns())?;
        let lean = self.scorer.is_some()
            && self.sort.len() == 1
            && crate::storage::format::schema::is_key_type(scan.keyed_schema().field(self.key_idx).data_type());
        let mut outputs = self.outputs.clone();
        let mut best_schema = scan.keyed_schema().clone();
        let (mut carry, mut best_key_idx) = (None, self.key_idx);
        if lean {
            let (columns, remapped) = carried(&self.outputs, self.key_idx)?;
            best_key_idx = columns
                .iter()
                .position(|&c| c == self.key_idx)
                .expect("the key is carried");
            best_schema = Arc::new(best_schema.project(&columns)?);
            outputs = remapped;
            carry = Some(columns);
        }
        let shared = Arc::new(Shared {
            filters: self.filters.clone(),
            pre_filters: pre,
            post_filters: post,
            sort: self.sort.clone(),
            scorer: self.scorer.clone(),
            key_idx: self.key_idx,
            fetch: self.fetch,
            lean,
            carry,
            best_key_idx,
            scored: MetricBuilder::new(&self.metrics).counter("rows_scored", 0),
            skipped: MetricBuilder::new(&self.metrics).counter("rows_below_threshold", 0),
        });
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let schema = self.schema();
        let out_schema = schema.clone();
        let workers = context.session_config().target_partitions().max(1);
        let span = tracing::debug_span!(
            parent: &crate::query::observe::phase_parent(&context),
            "topk",
            k = self.fetch
        );
        let topk_span = span.clone();
        let scored = shared.scored.clone();
        let scan_units = MetricBuilder::new(&self.metrics).counter("scan_units", 0);
        let fut = async move {
            let started = std::time::Instant::now();
            let scan = input
                .downcast_ref::<MaterializeExec>()
                .expect("checked in try_new");
            let mut tasks = Vec::new();
            if scan.resident() {
                // Row groups (and the growing rows) dealt out to workers;
                // columns come from the decoded-column cache.
                let units = Arc::new(scan.units(workers).await?);
                scan_units.add(units.len());
                // Spawned, every share: one run here, on the query's task,
                // would hold back the last share spawned (tokio keeps it in
                // this worker's LIFO slot, where no other worker takes it)
                // until this one is done.
                for w in 0..workers.min(units.len()) {
                    let span = tracing::debug_span!(parent: &topk_span, "scan", worker = w);
                    let share =
                        scan_share(input.clone(), units.clone(), shared.clone(), w, workers);
                    tasks.push(SpawnedTask::spawn(share.instrument(span)));
                }
            } else {
                for p in 0..input.output_partitioning().partition_count() {
                    let mut stream = scan.execute_keyed(p, context.clone())?;
                    let shared = shared.clone();
                    tasks.push(SpawnedTask::spawn(async move {
                        let mut best = Best::default();
                        while let Some(batch) = stream.next().await {
                            best.consider(&shared, &shared.filters, batch?, None)?;
                        }
                        best.flush(&shared)?;
                        Ok::<_, DataFusionError>(best)
                    }));
                }
            }
            let mut all = Best::default();
            for t in tasks {
                let best = t
                    .join_unwind()
                    .await
                    .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
                if let Some((batch, keys)) = best.best {
                    all.offer(&shared, batch, keys[0].clone())?;
                }
            }
            let timer = baseline.elapsed_compute().timer();
            let winners = match all.best {
                Some((b, _)) => b,
                None => RecordBatch::new_empty(best_schema),
            };
            let n = winners.num_rows();
            let columns = outputs
                .iter()
                .map(|e| e.evaluate(&winners)?.into_array(n))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
            let out = RecordBatch::try_new_with_options(out_schema, columns, &opts)?;
            timer.done();
            baseline.record_output(out.num_rows());
            tracing::debug!(
                ms = started.elapsed().as_secs_f64() * 1e3,
                scored = scored.value(),
                rows = out.num_rows(),
                "top-k finished"
            );
            Ok(out)
        }
        .instrument(span);
        // An empty result is no batch, like DataFusion's own operators.
        let stream = futures::stream::once(fut)
            .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.num_rows() == 0)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Columns of the keyed schema, and expressions over just those columns.
type CarriedColumns = (Vec<usize>, Vec<Arc<dyn PhysicalExpr>>);

/// The columns (of the keyed schema) that `outputs` read, and the key
/// column, in order; and `outputs` over just those columns.
fn carried(outputs: &[Arc<dyn PhysicalExpr>], key_idx: usize) -> Result<CarriedColumns> {
    let mut columns = vec![key_idx];
    for e in outputs {
        e.apply(|node| {
            if let Some(c) = node.downcast_ref::<Column>() {
                columns.push(c.index());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    columns.sort_unstable();
    columns.dedup();
    let remapped = outputs
        .iter()
        .map(|e| {
            e.clone()
                .transform(|node| {
                    Ok(match node.downcast_ref::<Column>() {
                        Some(c) => {
                            let at = columns
                                .binary_search(&c.index())
                                .expect("a column the outputs read is carried");
                            Transformed::yes(Arc::new(Column::new(c.name(), at)) as _)
                        }
                        None => Transformed::no(node),
                    })
                })
                .map(|t| t.data)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((columns, remapped))
}

/// How long a worker's share of a resident scan runs before it lets other
/// tasks have the worker (between two units).
const SHARE_SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// Worker `w`'s share of a resident scan: every `workers`-th unit from
/// the `w`-th, filtered, scored and kept in a [`Best`] of its own.
async fn scan_share(
    input: Arc<dyn ExecutionPlan>,
    units: Arc<Vec<ScanUnit>>,
    shared: Arc<Shared>,
    w: usize,
    workers: usize,
) -> Result<Best> {
    let started = std::time::Instant::now();
    let scan = input
        .downcast_ref::<MaterializeExec>()
        .expect("checked in try_new");
    let mut best = Best::default();
    let (mut n_units, mut rows) = (0usize, 0usize);
    // Sparse selections of cached vectors are scored where they lie when
    // the scorer reads only the selected rows: no filter reads a vector.
    let in_place = shared.scorer.is_some() && shared.post_filters.is_empty();
    let prefilter = |b: &RecordBatch| all_true(&shared.pre_filters, b, None);
    let mut slice = std::time::Instant::now();
    for unit in units.iter().skip(w).step_by(workers) {
        for (batch, live) in scan.load_unit(*unit, &prefilter, in_place).await? {
            rows += batch.num_rows();
            best.consider(&shared, &shared.post_filters, batch, live)?;
        }
        n_units += 1;
        // Units come from memory, so nothing above waits: a long share
        // gives its worker up now and then, letting the other queries'
        // tasks run between its units rather than after all of them.
        if slice.elapsed() >= SHARE_SLICE {
            tokio::task::yield_now().await;
            slice = std::time::Instant::now();
        }
    }
    best.flush(&shared)?;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        units = n_units,
        rows,
        "scan finished"
    );
    Ok(best)
}

/// Scores rows with a distance kernel directly: the first sort key is a
/// quiver distance of a `FLOAT[d]` column and a constant vector.
#[derive(Debug, Clone)]
struct Scorer {
    metric: Metric,
    column: usize,
    query: Arc<[f32]>,
    query_first: bool,
}

impl Scorer {
    fn new(expr: &Arc<dyn PhysicalExpr>, schema: &arrow::datatypes::Schema) -> Option<Self> {
        let f = expr.downcast_ref::<ScalarFunctionExpr>()?;
        let metric = f.fun().inner().downcast_ref::<DistanceUdf>()?.metric();
        let [a, b] = f.args() else {
            return None;
        };
        let (col, lit, query_first) =
            match (a.downcast_ref::<Column>(), b.downcast_ref::<Literal>()) {
                (Some(c), Some(l)) => (c, l, false),
                _ => (
                    b.downcast_ref::<Column>()?,
                    a.downcast_ref::<Literal>()?,
                    true,
                ),
            };
        match schema.field(col.index()).data_type() {
            DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => {}
            _ => return None,
        }
        Some(Self {
            metric,
            column: col.index(),
            query: crate::query::functions::distance::query_vector(lit.value())?.into(),
            query_first,
        })
    }
}

/// What every worker of one execution shares.
struct Shared {
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The filters that read no vector column, over the scan's scalar
    /// columns ([`MaterializeExec::scalar_columns`]), and the rest.
    pre_filters: Vec<Arc<dyn PhysicalExpr>>,
    post_filters: Vec<Arc<dyn PhysicalExpr>>,
    sort: Arc<[PhysicalSortExpr]>,
    scorer: Option<Scorer>,
    key_idx: usize,
    fetch: usize,
    /// Whether workers keep their best rows the lean way ([`Best::heap`]):
    /// the only sort key is a distance the scorer computes, and the primary
    /// key is an integer or a string.
    lean: bool,
    /// The lean path's columns of the keyed schema that the best rows carry
    /// on: those the output reads, and the key. A vector the distance was
    /// computed from is left behind unless it is selected, so the winners'
    /// vectors are not copied as they are merged.
    carry: Option<Vec<usize>>,
    /// The key's column in the best rows ([`Best::best`]): `key_idx`, or
    /// its place among the carried columns.
    best_key_idx: usize,
    scored: Count,
    skipped: Count,
}

/// The rows of `batch` where `mask` (if any) and every filter are true;
/// `None` for all rows.
fn all_true(
    filters: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
    mask: Option<BooleanArray>,
) -> Result<Option<BooleanArray>> {
    let mut mask = mask;
    for f in filters {
        let m = f.evaluate(batch)?.into_array(batch.num_rows())?;
        let m = m.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("filter {f} did not give booleans"))
        })?;
        mask = Some(match mask {
            None => m.clone(),
            Some(prev) => and(&prev, m)?,
        });
    }
    Ok(mask)
}

type Filters = Vec<Arc<dyn PhysicalExpr>>;

/// Splits `filters` (over the scan's keyed schema) into those that read
/// only `scalar` columns, rewritten over a batch of just those columns,
/// and the others.
fn split_filters(
    filters: &[Arc<dyn PhysicalExpr>],
    scalar: &[usize],
) -> Result<(Filters, Filters)> {
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    for f in filters {
        let mut only_scalar = true;
        f.apply(|e| {
            if let Some(c) = e.downcast_ref::<Column>() {
                only_scalar &= scalar.contains(&c.index());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if !only_scalar {
            post.push(f.clone());
            continue;
        }
        let remapped = f
            .clone()
            .transform(|e| {
                if let Some(c) = e.downcast_ref::<Column>() {
                    let at = scalar
                        .iter()
                        .position(|&i| i == c.index())
                        .expect("checked");
                    return Ok(Transformed::yes(
                        Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>
                    ));
                }
                Ok(Transformed::no(e))
            })?
            .data;
        pre.push(remapped);
    }
    Ok((pre, post))
}

/// Positions of the values of `first` not behind `t` in the order `opts`
/// (equal ones included); `None` if that is all of them.
fn not_behind(
    first: &ArrayRef,
    t: &Scalar<ArrayRef>,
    opts: SortOptions,
) -> Result<Option<UInt32Array>> {
    let mut keep = if opts.descending {
        gt_eq(first, t)?
    } else {
        lt_eq(first, t)?
    };
    if opts.nulls_first && first.null_count() > 0 {
        keep = or_kleene(&keep, &is_null(first)?)?;
    }
    Ok((keep.true_count() < first.len()).then(|| true_positions(&keep)))
}

/// A row among a worker's k best in the lean path ([`Best::heap`]): its
/// place in the order (null class, then the distance encoded so that
/// integer order is the sort's order, then the primary key) and where it
/// is (a batch of `Best::kept`, a row of it).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    class: u8,
    rank: u64,
    key: Key,
    batch: u32,
    row: u32,
}

/// Where a distance goes in the order `opts`: a class (nulls before or
/// after the values) and a rank whose integer order is the total order of
/// `f64` (as Arrow sorts floats), reversed when descending.
fn place(value: Option<f64>, opts: SortOptions) -> (u8, u64) {
    match value {
        None => (if opts.nulls_first { 0 } else { 2 }, 0),
        Some(v) => {
            let bits = v.to_bits();
            let rank = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            (1, if opts.descending { !rank } else { rank })
        }
    }
}

/// The distance [`place`] put where it is.
fn unplace(class: u8, rank: u64, opts: SortOptions) -> Option<f64> {
    if class != 1 {
        return None;
    }
    let rank = if opts.descending { !rank } else { rank };
    let bits = if rank >> 63 == 1 {
        rank & !(1 << 63)
    } else {
        !rank
    };
    Some(f64::from_bits(bits))
}

/// Batches a lean heap may point into before its rows are copied out
/// into one ([`Best::compact`]).
const MAX_KEPT_BATCHES: usize = 64;

/// The k best rows seen so far, in order, with their sort-key values.
#[derive(Default)]
struct Best {
    /// The lean path, when the only sort key is a distance the operator
    /// computes itself ([`Shared::lean`]): the k best rows as a heap of
    /// [`Candidate`]s (worst on top) pointing into `kept`, so a scanned
    /// batch costs one comparison per scored row and nothing is copied
    /// until the end.
    heap: std::collections::BinaryHeap<Candidate>,
    kept: Vec<RecordBatch>,
    best: Option<(RecordBatch, Vec<ArrayRef>)>,
    /// The k-th best value of the first sort key, once there are k rows.
    threshold: Option<Scalar<ArrayRef>>,
    /// Rows that beat the threshold, with their first sort key, not yet
    /// merged into `best` ([`Best::flush`]): a selective scan finds a few
    /// such rows per row group, and merging (concatenating and sorting)
    /// once per k of them costs far less than once per row group.
    pending: Vec<(RecordBatch, ArrayRef)>,
    pending_rows: usize,
}

impl Best {
    /// Filters and scores the rows of `batch` (where `live` is true) and
    /// keeps those that belong among the best. Only the distances of the
    /// surviving rows are computed, and only rows that can beat the current
    /// k-th best are copied.
    fn consider(
        &mut self,
        shared: &Shared,
        filters: &[Arc<dyn PhysicalExpr>],
        batch: RecordBatch,
        live: Option<BooleanArray>,
    ) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 || shared.fetch == 0 {
            return Ok(());
        }
        let mask = all_true(filters, &batch, live)?;
        // Rows that pass every filter (a null is not a pass).
        let selected: Option<UInt32Array> = match &mask {
            Some(m) if m.true_count() < rows => Some(true_positions(m)),
            _ => None,
        };
        let n = selected.as_ref().map_or(rows, |s| s.len());
        if n == 0 {
            return Ok(());
        }
        shared.scored.add(n);
        // The first sort key of the selected rows.
        let first: ArrayRef = match (&shared.scorer, &selected) {
            (Some(sc), sel) => {
                let vectors = batch.column(sc.column).as_fixed_size_list();
                match sel {
                    // Few rows: score just those.
                    Some(s) if n * 10 < rows * 3 => Arc::new(score_rows(
                        sc.metric,
                        vectors,
                        &sc.query,
                        sc.query_first,
                        s.values(),
                    )?),
                    // Many: one sequential pass over every vector is
                    // faster than skipping about.
                    _ => {
                        let all: Vec<u32> = (0..rows as u32).collect();
                        let scores: ArrayRef = Arc::new(score_rows(
                            sc.metric,
                            vectors,
                            &sc.query,
                            sc.query_first,
                            &all,
                        )?);
                        match sel {
                            Some(s) => take(scores.as_ref(), s, None)?,
                            None => scores,
                        }
                    }
                }
            }
            (None, Some(s)) => {
                let sub = take_record_batch(&batch, s)?;
                shared.sort[0].expr.evaluate(&sub)?.into_array(n)?
            }
            (None, None) => shared.sort[0].expr.evaluate(&batch)?.into_array(rows)?,
        };
        if shared.lean {
            return self.consider_lean(shared, batch, &first, selected.as_ref());
        }
        // Keep only rows not behind the current k-th best, nor behind the
        // k-th best of this batch (ties stay: the later keys decide them),
        // so that only about k rows are copied.
        let opts = shared.sort[0].options;
        let mut first = first;
        let mut positions: Option<UInt32Array> = None; // into `first` as computed
        if let Some(t) = &self.threshold {
            if let Some(p) = not_behind(&first, t, opts)? {
                shared.skipped.add(n - p.len());
                if p.is_empty() {
                    return Ok(());
                }
                first = take(first.as_ref(), &p, None)?;
                positions = Some(p);
            }
        }
        if first.len() > shared.fetch {
            let idx = sort_to_indices(&first, Some(opts), Some(shared.fetch))?;
            let kth = idx.value(shared.fetch - 1) as usize;
            if first.is_valid(kth) {
                let t = Scalar::new(first.slice(kth, 1));
                if let Some(p) = not_behind(&first, &t, opts)? {
                    first = take(first.as_ref(), &p, None)?;
                    positions = Some(match positions {
                        Some(prev) => take(&prev, &p, None)?
                            .as_primitive::<arrow::datatypes::UInt32Type>()
                            .clone(),
                        None => p,
                    });
                }
            }
        }
        let rows_idx = match (positions, &selected) {
            (None, None) => None,
            (None, Some(s)) => Some(s.clone()),
            (Some(p), None) => Some(p),
            (Some(p), Some(s)) => Some(
                take(s, &p, None)?
                    .as_primitive::<arrow::datatypes::UInt32Type>()
                    .clone(),
            ),
        };
        let batch = match rows_idx {
            Some(idx) => take_record_batch(&batch, &idx)?,
            None => batch,
        };
        self.pending_rows += batch.num_rows();
        self.pending.push((batch, first));
        // Until there is a threshold every row is a candidate: merge at
        // once to get one.
        if self.threshold.is_none() || self.pending_rows >= shared.fetch {
            self.flush(shared)?;
        }
        Ok(())
    }

    /// The lean path of [`Best::consider`]: `first` holds the distances
    /// of the rows `selected` (all rows if `None`) of `batch`.
    fn consider_lean(
        &mut self,
        shared: &Shared,
        batch: RecordBatch,
        first: &ArrayRef,
        selected: Option<&UInt32Array>,
    ) -> Result<()> {
        let scores = first.as_primitive::<arrow::datatypes::Float64Type>();
        let keys = batch.column(shared.key_idx);
        let opts = shared.sort[0].options;
        let at = self.kept.len() as u32;
        let (mut used, mut skipped) = (false, 0);
        for i in 0..scores.len() {
            let value = scores.is_valid(i).then(|| scores.value(i));
            let (class, rank) = place(value, opts);
            let row = selected.map_or(i, |s| s.value(i) as usize);
            if self.heap.len() == shared.fetch {
                let worst = self.heap.peek().expect("k rows");
                match (class, rank).cmp(&(worst.class, worst.rank)) {
                    std::cmp::Ordering::Greater => {
                        skipped += 1;
                        continue;
                    }
                    // A tie on the distance: the primary key decides.
                    std::cmp::Ordering::Equal
                        if Key::from(key_at(keys.as_ref(), row)) >= worst.key =>
                    {
                        skipped += 1;
                        continue;
                    }
                    _ => {}
                }
                self.heap.pop();
            }
            self.heap.push(Candidate {
                class,
                rank,
                key: key_at(keys.as_ref(), row).into(),
                batch: at,
                row: row as u32,
            });
            used = true;
        }
        shared.skipped.add(skipped);
        if used {
            self.kept.push(match &shared.carry {
                Some(columns) => batch.project(columns)?,
                None => batch,
            });
            if self.kept.len() >= MAX_KEPT_BATCHES {
                self.compact(shared)?;
            }
        }
        Ok(())
    }

    /// Copies the rows of the lean heap out of the batches they are in
    /// into one batch, in order, and points the heap at it; returns that
    /// batch with its distances.
    fn compact(&mut self, shared: &Shared) -> Result<Option<(RecordBatch, ArrayRef)>> {
        if self.heap.is_empty() {
            self.kept.clear();
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.heap).into_sorted_vec();
        let at: Vec<(usize, usize)> = rows
            .iter()
            .map(|c| (c.batch as usize, c.row as usize))
            .collect();
        let kept: Vec<&RecordBatch> = self.kept.iter().collect();
        let batch = interleave_record_batch(&kept, &at)?;
        let opts = shared.sort[0].options;
        let first: ArrayRef = Arc::new(arrow::array::Float64Array::from_iter(
            rows.iter().map(|c| unplace(c.class, c.rank, opts)),
        ));
        self.heap = rows
            .into_iter()
            .enumerate()
            .map(|(i, c)| Candidate {
                batch: 0,
                row: i as u32,
                ..c
            })
            .collect();
        self.kept = vec![batch.clone()];
        Ok(Some((batch, first)))
    }

    /// Merges the pending rows into the best rows.
    fn flush(&mut self, shared: &Shared) -> Result<()> {
        if shared.lean {
            if let Some((batch, first)) = self.compact(shared)? {
                self.offer(shared, batch, first)?;
            }
            return Ok(());
        }
        let (batches, firsts): (Vec<RecordBatch>, Vec<ArrayRef>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        self.pending_rows = 0;
        let (batch, first) = match batches.len() {
            0 => return Ok(()),
            1 => (batches[0].clone(), firsts[0].clone()),
            _ => {
                let firsts: Vec<&dyn Array> = firsts.iter().map(|a| a.as_ref()).collect();
                (
                    concat_batches(&batches[0].schema(), &batches)?,
                    concat(&firsts)?,
                )
            }
        };
        self.offer(shared, batch, first)
    }

    /// Merges `batch` (whose first sort key is `first`) into the best rows.
    fn offer(&mut self, shared: &Shared, batch: RecordBatch, first: ArrayRef) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(shared.sort.len() + 1);
        keys.push(first);
        for s in &shared.sort[1..] {
            keys.push(s.expr.evaluate(&batch)?.into_array(rows)?);
        }
        keys.push(batch.column(shared.best_key_idx).clone());
        let (batch, keys) = match self.best.take() {
            None => (batch, keys),
            Some((b, k)) => {
                let merged = concat_batches(&b.schema(), [&b, &batch])?;
                let keys = k
                    .iter()
                    .zip(&keys)
                    .map(|(a, b)| concat(&[a.as_ref(), b.as_ref()]))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                (merged, keys)
            }
        };
        let mut options: Vec<SortOptions> = shared.sort.iter().map(|s| s.options).collect();
        // The tie-break: the primary key, ascending.
        options.push(SortOptions::new(false, false));
        let columns: Vec<SortColumn> = keys
            .iter()
            .zip(options)
            .map(|(values, o)| SortColumn {
                values: values.clone(),
                options: Some(o),
            })
            .collect();
        let idx = lexsort_to_indices(&columns, Some(shared.fetch))?;
        let top = take_record_batch(&batch, &idx)?;
        let keys = keys
            .iter()
            .map(|k| take(k.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.threshold = (top.num_rows() >= shared.fetch && keys[0].is_valid(shared.fetch - 1))
            .then(|| Scalar::new(keys[0].slice(shared.fetch - 1, 1)));
        self.best = Some((top, keys));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{FixedSizeListArray, Float32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use rand::{Rng, SeedableRng};

    /// Runs `batches` (vector column 0, key column 1) through one worker's
    /// `Best` the lean way or the general way; returns the keys and
    /// distances of the k best, in order.
    fn best_of(
        batches: &[RecordBatch],
        selections: &[Option<BooleanArray>],
        fetch: usize,
        options: SortOptions,
        lean: bool,
    ) -> (ArrayRef, ArrayRef) {
        let key = Arc::new(Column::new("id", 1)) as Arc<dyn PhysicalExpr>;
        let shared = Shared {
            filters: Vec::new(),
            pre_filters: Vec::new(),
            post_filters: Vec::new(),
            // The scorer computes the first key; only its order counts.
            sort: vec![PhysicalSortExpr::new(key, options)].into(),
            scorer: Some(Scorer {
                metric: Metric::L2,
                column: 0,
                query: vec![1.0, 0.0, 2.0].into(),
                query_first: false,
            }),
            key_idx: 1,
            fetch,
            lean,
            // The lean path leaves the vectors behind.
            carry: lean.then(|| vec![1]),
            best_key_idx: if lean { 0 } else { 1 },
            scored: Count::new(),
            skipped: Count::new(),
        };
        let mut best = Best::default();
        for (b, live) in batches.iter().zip(selections) {
            best.consider(&shared, &[], b.clone(), live.clone())
                .unwrap();
        }
        best.flush(&shared).unwrap();
        let (batch, keys) = best.best.expect("rows");
        assert_eq!(batch.num_columns(), if lean { 1 } else { 2 });
        (batch.column(shared.best_key_idx).clone(), keys[0].clone())
    }

    /// The lean path (a heap pointing into the scanned batches, compacted
    /// every [`MAX_KEPT_BATCHES`]) keeps exactly the rows the general path
    /// (merging sorted batches) keeps: same keys, same distances, same
    /// order, ties on the distance broken by key, nulls placed as asked.
    #[test]
    fn the_lean_path_keeps_the_same_rows_as_the_general_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1ea7);
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        for case in 0..60 {
            let string_keys = case % 3 == 0;
            let schema = Arc::new(Schema::new(vec![
                Field::new("v", DataType::FixedSizeList(item.clone(), 3), true),
                Field::new(
                    "id",
                    if string_keys {
                        DataType::Utf8
                    } else {
                        DataType::Int64
                    },
                    false,
                ),
            ]));
            let n_batches = rng.random_range(1..200);
            let (mut batches, mut selections) = (Vec::new(), Vec::new());
            let mut next_key = 0i64;
            for _ in 0..n_batches {
                let rows = rng.random_range(1..12);
                // Small integer coordinates: many equal distances.
                let values: Vec<f32> = (0..rows * 3)
                    .map(|_| rng.random_range(-2..3) as f32)
                    .collect();
                let nulls: Vec<bool> = (0..rows).map(|_| !rng.random_bool(0.05)).collect();
                let vectors = FixedSizeListArray::new(
                    item.clone(),
                    3,
                    Arc::new(Float32Array::from(values)),
                    Some(nulls.into()),
                );
                // Keys not in scan order, so the tie-break matters.
                let keys: Vec<i64> = (0..rows)
                    .map(|i| (next_key + i as i64) * 7919 % 100_003)
                    .collect();
                next_key += rows as i64;
                let keys: ArrayRef = if string_keys {
                    Arc::new(StringArray::from_iter_values(
                        keys.iter().map(|k| format!("k{k}")),
                    ))
                } else {
                    Arc::new(Int64Array::from(keys))
                };
                batches.push(
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(vectors), keys]).unwrap(),
                );
                selections.push(rng.random_bool(0.5).then(|| {
                    BooleanArray::from_iter((0..rows).map(|_| Some(rng.random_bool(0.4))))
                }));
            }
            let fetch = [1, 2, 10, 57, 500][rng.random_range(0..5)];
            let options = SortOptions::new(rng.random_bool(0.5), rng.random_bool(0.5));
            let lean = best_of(&batches, &selections, fetch, options, true);
            let general = best_of(&batches, &selections, fetch, options, false);
            assert_eq!(lean.0.as_ref(), general.0.as_ref(), "case {case}: keys");
            assert_eq!(
                lean.1.as_ref(),
                general.1.as_ref(),
                "case {case}: distances"
            );
        }
    }

    #[test]
    fn place_orders_distances_as_arrow_sorts_them() {
        let values = [
            None,
            Some(f64::NEG_INFINITY),
            Some(-1.5),
            Some(-0.0),
            Some(0.0),
            Some(2.0),
            Some(f64::INFINITY),
            Some(f64::NAN),
        ];
        let array: ArrayRef = Arc::new(arrow::array::Float64Array::from(values.to_vec()));
        for (descending, nulls_first) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let opts = SortOptions::new(descending, nulls_first);
            let by_arrow = sort_to_indices(&array, Some(opts), None).unwrap();
            let mut by_place: Vec<u32> = (0..values.len() as u32).collect();
            by_place.sort_by_key(|&i| place(values[i as usize], opts));
            assert_eq!(by_arrow.values().to_vec(), by_place, "{opts:?}");
            for v in values {
                let (class, rank) = place(v, opts);
                let back = unplace(class, rank, opts);
                assert_eq!(back.map(f64::to_bits), v.map(f64::to_bits));
            }
        }
    }
}
