//! `MaterializeExec`: the collection scan operator. Its units are
//! segments, row groups or parts of row groups (`ScanUnit`, loaded in
//! `unit.rs`), shared among the workers; each unit's rows are filtered by
//! deletes, then their vector columns are materialized.

use crate::query::collection::materialize::{
    coalesce, ColumnSource, FetchCounters, Materialize, ScanLog,
};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use std::fmt;
use std::sync::Arc;
use tracing::Instrument;
type DFResult<T> = datafusion::common::Result<T>;

/// Name of the primary-key column appended to keyed batches.
pub const KEY_COLUMN: &str = "__quiver_key";

/// Turns rows of the key + scalar column group into result rows: drops
/// deleted rows, then reads the vector columns of exactly the surviving rows
/// (by `_seg`, `_row`) from their column-group files (late materialization).
/// The rows of the growing segments (in memory, deletes applied) form one
/// more partition after the input's.
#[derive(Debug)]
pub struct MaterializeExec {
    pub(crate) input: Arc<dyn ExecutionPlan>,
    pub(crate) work: Arc<Materialize>,
    /// Growing rows in the keyed schema.
    pub(crate) growing: Arc<Vec<RecordBatch>>,
    pub(crate) properties: Arc<PlanProperties>,
    /// `vector_fetches` (reads of a segment's vector file) and
    /// `vector_rows` (rows fetched), shown by EXPLAIN ANALYZE.
    pub(crate) metrics: ExecutionPlanMetricsSet,
    /// The counters of resident scans ([`MaterializeExec::load_unit`]).
    pub(crate) resident_counters: FetchCounters,
}

impl MaterializeExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        work: Arc<Materialize>,
        growing: Arc<Vec<RecordBatch>>,
    ) -> Self {
        let schema = work.schema.clone();
        // Rows keep their order, so an ordering of the input on columns we
        // pass through is an ordering of the output (sorts can run below
        // this operator, on rows without vectors); the growing partition
        // has no order.
        let mut ordering = Vec::new();
        if let (Some(input_ordering), true) = (input.output_ordering(), growing.is_empty()) {
            for sort in input_ordering.iter() {
                let Some(col) = sort.expr.downcast_ref::<PhysicalColumn>() else {
                    break;
                };
                let Some(out) = work
                    .sources
                    .iter()
                    .position(|s| matches!(s, ColumnSource::Input(i) if *i == col.index()))
                else {
                    break;
                };
                let expr = Arc::new(PhysicalColumn::new(schema.field(out).name(), out))
                    as Arc<dyn PhysicalExpr>;
                ordering.push(PhysicalSortExpr::new(expr, sort.options));
            }
        }
        let eq = if ordering.is_empty() {
            EquivalenceProperties::new(schema.clone())
        } else {
            EquivalenceProperties::new_with_orderings(schema.clone(), [ordering])
        };
        let partitioning = if growing.is_empty() {
            input.output_partitioning().clone()
        } else {
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count() + 1)
        };
        let properties = Arc::new(PlanProperties::new(
            eq,
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let (metrics, resident_counters) = Self::fresh_metrics(&work);
        Self {
            input,
            work,
            growing,
            properties,
            metrics,
            resident_counters,
        }
    }

    /// New counters: the segment counts, and the resident scan's.
    pub(crate) fn fresh_metrics(work: &Materialize) -> (ExecutionPlanMetricsSet, FetchCounters) {
        let metrics = ExecutionPlanMetricsSet::new();
        MetricBuilder::new(&metrics)
            .counter("segments_total", 0)
            .add(work.segments_total);
        MetricBuilder::new(&metrics)
            .counter("segments_pruned", 0)
            .add(work.segments_pruned);
        let counters = FetchCounters::new(&metrics, 0);
        (metrics, counters)
    }

    /// This scan again, for another run of a fused top-k: the same plan
    /// with counters of its own. Only for a resident scan, which the top-k
    /// reads by row group ([`MaterializeExec::load_unit`]): the Parquet
    /// scan below, shared, is never run (its counters would add up).
    pub fn again(&self) -> Option<Self> {
        if !self.resident() {
            return None;
        }
        let (metrics, resident_counters) = Self::fresh_metrics(&self.work);
        Some(Self {
            input: self.input.clone(),
            work: self.work.clone(),
            growing: self.growing.clone(),
            properties: self.properties.clone(),
            metrics,
            resident_counters,
        })
    }

    /// The output schema with the primary key appended (as [`KEY_COLUMN`]).
    pub fn keyed_schema(&self) -> &SchemaRef {
        &self.work.keyed_schema
    }

    /// Name of the collection's primary key.
    pub fn primary_key(&self) -> &str {
        &self.work.key_name
    }

    /// Whether output column `i` is a vector column of the collection.
    pub fn is_vector_column(&self, i: usize) -> bool {
        matches!(self.work.sources.get(i), Some(ColumnSource::Vector(_)))
    }

    /// Like `execute`, with the primary key appended to every batch.
    pub fn execute_keyed(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        self.stream(partition, context, true)
    }

    /// Whether [`MaterializeExec::load_unit`] can serve the scan from the
    /// decoded-column cache (it is enabled).
    pub fn resident(&self) -> bool {
        self.work.store.config().decoded_cache_bytes > 0
    }

    pub(crate) fn stream(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
        keyed: bool,
    ) -> DFResult<SendableRecordBatchStream> {
        let schema = if keyed {
            self.work.keyed_schema.clone()
        } else {
            self.work.schema.clone()
        };
        let n_input = self.input.output_partitioning().partition_count();
        let span = tracing::debug_span!(
            parent: &crate::query::observe::phase_parent(&context),
            "scan",
            collection = %self.work.collection,
            partition
        );
        let counters = FetchCounters::new(&self.metrics, partition);
        if partition >= n_input {
            let width = self.work.schema.fields().len();
            let mut log = ScanLog::new(span);
            log.rows = self.growing.iter().map(|b| b.num_rows()).sum();
            log.batches = self.growing.len();
            let batches: Vec<DFResult<RecordBatch>> = self
                .growing
                .iter()
                .map(|b| {
                    counters.scanned(b.num_rows(), b.columns());
                    if keyed {
                        Ok(b.clone())
                    } else {
                        Ok(b.project(&(0..width).collect::<Vec<_>>())?)
                    }
                })
                .collect();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::iter(batches),
            )));
        }
        let batch_size = context.session_config().batch_size();
        let input = coalesce(self.input.execute(partition, context)?, batch_size);
        let work = self.work.clone();
        let mut log = ScanLog::new(span.clone());
        let stream = input
            .map(move |batch| {
                let work = work.clone();
                let counters = counters.clone();
                async move { work.process(batch?, &counters, keyed).await }.instrument(span.clone())
            })
            // Overlap object-store reads of consecutive batches, in order.
            .buffered(4)
            .inspect(move |b| {
                // The whole log moves into the stream: it reports when the
                // stream is dropped.
                let log = &mut log;
                if let Ok(b) = b {
                    log.rows += b.num_rows();
                    log.batches += 1;
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

impl DisplayAs for MaterializeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let vectors: Vec<&str> = self
            .work
            .sources
            .iter()
            .filter_map(|s| match s {
                ColumnSource::Vector(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        write!(f, "MaterializeExec: collection={}", self.work.collection)?;
        if !vectors.is_empty() {
            write!(
                f,
                ", vectors=[{}], segments={}",
                vectors.join(", "),
                self.work.files.len()
            )?;
        }
        if let Some(d) = &self.work.deletes {
            write!(f, ", deleted_keys={}", d.map.len())?;
        }
        if !self.growing.is_empty() {
            let rows: usize = self.growing.iter().map(|b| b.num_rows()).sum();
            write!(f, ", growing_rows={rows}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MaterializeExec {
    fn name(&self) -> &str {
        "MaterializeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [input] = children.try_into().map_err(|_| {
            DataFusionError::Internal("MaterializeExec takes exactly one child".into())
        })?;
        Ok(Arc::new(MaterializeExec::new(
            input,
            self.work.clone(),
            self.growing.clone(),
        )))
    }

    /// DataFusion pushes a sort below an operator that keeps its input's
    /// order with the sort's columns taken by index, so that holds only
    /// when every output column is the input column of the same index (no
    /// vector fetched, none moved); else a sort by a column after a vector
    /// column would sort the input by another column (`_seg`) and the plan
    /// fail. The growing partition has no order.
    fn maintains_input_order(&self) -> Vec<bool> {
        let same_places = self
            .work
            .sources
            .iter()
            .enumerate()
            .all(|(j, s)| matches!(s, ColumnSource::Input(i) if *i == j));
        vec![self.growing.is_empty() && same_places]
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        self.stream(partition, context, false)
    }
}
