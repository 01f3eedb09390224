//! `VectorTopKExec`: the fused top-k operator. Every worker takes scan
//! units from a shared queue, scores their rows and keeps its k best; the
//! workers' bests are merged into the k best of the query.

use crate::query::collection::{MaterializeExec, ScanUnit};
use crate::query::topk::ann::{ann_share, AnnCounters, AnnPlan, SearchSettings};
use crate::query::topk::best::Best;
use crate::query::topk::best::{Scorer, Shared};
use crate::query::topk::share::{scan_share, split_filters};
use arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use std::fmt;
use std::sync::Arc;
use tracing::Instrument;

/// The fused filtered top-k over a collection scan (see the module docs).
#[derive(Debug)]
pub struct VectorTopKExec {
    /// The collection scan ([`MaterializeExec`]).
    pub(crate) input: Arc<dyn ExecutionPlan>,
    /// Row filters, over the scan's schema.
    pub(crate) filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Sort keys over the scan's schema; the first is the distance.
    pub(crate) sort: Arc<[PhysicalSortExpr]>,
    /// The output columns, as expressions over the scan's schema.
    pub(crate) outputs: Vec<Arc<dyn PhysicalExpr>>,
    /// The sort keys over the output (for display and the plan's ordering).
    pub(crate) ordering: LexOrdering,
    pub(crate) fetch: usize,
    /// Index of the primary key in the scan's keyed batches.
    pub(crate) key_idx: usize,
    pub(crate) key_name: String,
    /// Direct scoring of the first sort key, when it is a plain distance.
    pub(crate) scorer: Option<Scorer>,
    /// How approximate search may run, and the index it runs through.
    pub(crate) settings: SearchSettings,
    pub(crate) ann: Option<Arc<AnnPlan>>,
    pub(crate) properties: Arc<PlanProperties>,
    pub(crate) metrics: ExecutionPlanMetricsSet,
}

impl VectorTopKExec {
    pub(crate) fn try_new(
        input: Arc<dyn ExecutionPlan>,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        sort: Vec<PhysicalSortExpr>,
        outputs: Vec<Arc<dyn PhysicalExpr>>,
        ordering: LexOrdering,
        schema: arrow::datatypes::SchemaRef,
        fetch: usize,
        settings: SearchSettings,
    ) -> Result<Self> {
        let scan = input.downcast_ref::<MaterializeExec>().ok_or_else(|| {
            DataFusionError::Internal("VectorTopKExec runs over a collection scan".into())
        })?;
        let key_idx = scan.keyed_schema().fields().len() - 1;
        let key_name = scan.primary_key().to_string();
        let scorer = Scorer::new(&sort[0].expr, &scan.keyed_schema().clone());
        let (_, post) = split_filters(&filters, &scan.scalar_columns())?;
        let ann = crate::query::topk::ann::choose(
            scan,
            scorer.as_ref(),
            sort[0].options,
            sort.len(),
            !post.is_empty(),
            settings,
        )?
        .map(Arc::new);
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
            settings,
            ann,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl VectorTopKExec {
    /// This operator with other vector-search settings (its index choice
    /// made again).
    pub(crate) fn with_settings(&self, settings: SearchSettings) -> Result<Self> {
        self.rebuild(self.input.clone(), settings)
    }

    /// This operator over `input` with `settings`.
    fn rebuild(&self, input: Arc<dyn ExecutionPlan>, settings: SearchSettings) -> Result<Self> {
        Self::try_new(
            input,
            self.filters.clone(),
            self.sort.to_vec(),
            self.outputs.clone(),
            self.ordering.clone(),
            self.schema(),
            self.fetch,
            settings,
        )
    }
}

/// `plan` with every fused top-k planned for `settings` (a session's).
pub fn apply_settings(
    plan: Arc<dyn ExecutionPlan>,
    settings: SearchSettings,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if let Some(t) = node.downcast_ref::<VectorTopKExec>() {
            if t.settings != settings {
                return Ok(Transformed::yes(
                    Arc::new(t.with_settings(settings)?) as Arc<dyn ExecutionPlan>
                ));
            }
        }
        Ok(Transformed::no(node))
    })
    .map(|t| t.data)
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
            settings: self.settings,
        })
    }
}

/// A rewrite of physical expressions.
pub(crate) type ExprMap<'a> = dyn Fn(&Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> + 'a;

/// A [`VectorTopKExec`] without its scan ([`VectorTopKExec::template`]).
#[derive(Debug)]
pub(crate) struct TopKTemplate {
    pub(crate) filters: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) sort: Vec<PhysicalSortExpr>,
    pub(crate) outputs: Vec<Arc<dyn PhysicalExpr>>,
    pub(crate) ordering: Vec<PhysicalSortExpr>,
    pub(crate) schema: arrow::datatypes::SchemaRef,
    pub(crate) fetch: usize,
    /// The schema of the scan it was over.
    pub(crate) keyed_schema: arrow::datatypes::SchemaRef,
    pub(crate) settings: SearchSettings,
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
            self.settings,
        )?)))
    }
}

impl DisplayAs for VectorTopKExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let sort: Vec<String> = self.sort.iter().map(|s| s.to_string()).collect();
        if let Some(ann) = &self.ann {
            write!(
                f,
                "VectorAnnExec: index={} type={} metric={} {} segments: ann={} exact={}, ",
                ann.index.name,
                ann.index.kind.name(),
                ann.index.metric.name(),
                ann.describe(),
                ann.segments.len(),
                ann.exact_segments,
            )?;
        } else {
            write!(f, "VectorTopKExec: ")?;
        }
        write!(f, "fetch={}, expr=[{}]", self.fetch, sort.join(", "))?;
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
        if self.ann.is_some() {
            "VectorAnnExec"
        } else {
            "VectorTopKExec"
        }
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
        Ok(Arc::new(self.rebuild(input, self.settings)?))
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
            && crate::storage::format::schema::is_key_type(
                scan.keyed_schema().field(self.key_idx).data_type(),
            );
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
        let ann = self.ann.clone().filter(|_| scan.resident());
        // Counters of the index search (EXPLAIN ANALYZE), when there is one.
        let ann_counters = ann.as_ref().map(|_| AnnCounters {
            lists_probed: MetricBuilder::new(&self.metrics).counter("lists_probed", 0),
            lists_widened: MetricBuilder::new(&self.metrics).counter("lists_widened", 0),
            index_rows_scored: MetricBuilder::new(&self.metrics).counter("index_rows_scored", 0),
            candidates: MetricBuilder::new(&self.metrics).counter("candidates_reranked", 0),
            filtered_exact: MetricBuilder::new(&self.metrics).counter("segments_filtered_exact", 0),
        });
        let fut = async move {
            let started = std::time::Instant::now();
            let scan = input
                .downcast_ref::<MaterializeExec>()
                .expect("checked in try_new");
            if crate::error::injected("panic-in-topk", scan.collection()) {
                panic!("injected panic in a top-k of '{}'", scan.collection());
            }
            let mut tasks = Vec::new();
            if scan.resident() {
                // Row groups (and the growing rows) dealt out to workers;
                // columns come from the decoded-column cache.
                let mut units = scan.units(workers).await?;
                if let (Some(ann), Some(ann_counters)) = (&ann, &ann_counters) {
                    // Indexed segments go through their index instead.
                    let indexed: std::collections::HashSet<usize> =
                        ann.segments.iter().map(|(s, _)| *s).collect();
                    units.retain(|u| {
                        !matches!(u, ScanUnit::RowGroup { segment, .. } if indexed.contains(segment))
                    });
                    for w in 0..workers.min(ann.segments.len()) {
                        let span = tracing::debug_span!(parent: &topk_span, "ann", worker = w);
                        let share = ann_share(
                            input.clone(),
                            ann.clone(),
                            shared.clone(),
                            ann_counters.clone(),
                            w,
                            workers,
                        );
                        tasks.push(SpawnedTask::spawn(share.instrument(span)));
                    }
                }
                let units = Arc::new(units);
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
pub(crate) type CarriedColumns = (Vec<usize>, Vec<Arc<dyn PhysicalExpr>>);

/// The columns (of the keyed schema) that `outputs` read, and the key
/// column, in order; and `outputs` over just those columns.
pub(crate) fn carried(outputs: &[Arc<dyn PhysicalExpr>], key_idx: usize) -> Result<CarriedColumns> {
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
