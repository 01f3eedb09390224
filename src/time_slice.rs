//! `TimeSliceExec` and the rule that places it, `YieldInJoins`: operators
//! that make many rows from few (joins, unnest) can compute for seconds
//! inside one poll of their consumer, and a query is only dropped, and
//! another task only scheduled on its thread, when a poll returns. So a
//! cancelled query kept computing for seconds, and a `SELECT 1` waited
//! behind it.
//!
//! `TimeSliceExec` passes its input's batches through and returns
//! `Pending` (waking itself at once) when [`SLICE`] has passed since it
//! last did: every operator above it then returns too, the task goes back
//! to tokio, a dropped query ends there, and other queries' tasks run.
//! Above a nested-loop join's probe side it also cuts batches into
//! [`PROBE_ROWS`] rows, because such a join works through a whole probe
//! batch times its whole build side before it polls again.
//!
//! The rule puts one above every join and unnest, and one under every
//! nested-loop join's probe side; DataFusion's own `CooperativeExec` counts
//! batches, not time, and a join's batches can each take long.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::unnest::UnnestExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, RecordBatchStream,
    SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};

/// How long a sliced stream runs before it gives its thread back.
pub const SLICE: Duration = Duration::from_millis(2);

/// Rows per batch fed to a nested-loop join's probe side: with DataFusion's
/// batch of 8192 rows a join of that many probe rows with a build side of
/// 60,000 rows evaluates half a billion pairs before it polls again.
pub const PROBE_ROWS: usize = 256;

/// Passes batches through, giving the thread back every [`SLICE`] (and
/// cutting batches into `rows` rows, when set).
#[derive(Debug)]
pub struct TimeSliceExec {
    input: Arc<dyn ExecutionPlan>,
    rows: Option<usize>,
}

impl TimeSliceExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, rows: Option<usize>) -> Self {
        Self { input, rows }
    }
}

impl DisplayAs for TimeSliceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TimeSliceExec: slice={}ms", SLICE.as_millis())?;
        if let Some(rows) = self.rows {
            write!(f, ", rows={rows}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TimeSliceExec {
    fn name(&self) -> &str {
        "TimeSliceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = children.try_into().map_err(|_| {
            DataFusionError::Internal("TimeSliceExec takes exactly one child".into())
        })?;
        Ok(Arc::new(TimeSliceExec::new(input, self.rows)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(Sliced {
            schema: input.schema(),
            input,
            rows: self.rows,
            queued: VecDeque::new(),
            since: Instant::now(),
        }))
    }
}

struct Sliced {
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    rows: Option<usize>,
    /// The rest of a batch cut into pieces.
    queued: VecDeque<RecordBatch>,
    /// When the stream last returned `Pending`.
    since: Instant,
}

impl Stream for Sliced {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.since.elapsed() >= SLICE {
            self.since = Instant::now();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(b) = self.queued.pop_front() {
            return Poll::Ready(Some(Ok(b)));
        }
        match self.input.poll_next_unpin(cx) {
            Poll::Pending => {
                self.since = Instant::now();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(b))) => match self.rows {
                Some(rows) if b.num_rows() > rows => {
                    let mut at = rows;
                    while at < b.num_rows() {
                        let n = rows.min(b.num_rows() - at);
                        self.queued.push_back(b.slice(at, n));
                        at += n;
                    }
                    Poll::Ready(Some(Ok(b.slice(0, rows))))
                }
                _ => Poll::Ready(Some(Ok(b))),
            },
            other => other,
        }
    }
}

impl RecordBatchStream for Sliced {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Places [`TimeSliceExec`] above joins and unnests and under nested-loop
/// joins' probe sides (see the module docs). Runs last, so no other rule
/// sees the wrappers.
#[derive(Debug, Default)]
pub struct YieldInJoins;

fn multiplies_rows(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<CrossJoinExec>().is_some()
        || plan.downcast_ref::<NestedLoopJoinExec>().is_some()
        || plan.downcast_ref::<HashJoinExec>().is_some()
        || plan.downcast_ref::<SortMergeJoinExec>().is_some()
        || plan.downcast_ref::<SymmetricHashJoinExec>().is_some()
        || plan.downcast_ref::<UnnestExec>().is_some()
}

impl PhysicalOptimizerRule for YieldInJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Each node wraps its children (so a plan optimized again keeps
        // its wrappers and gets no second ones); the root wraps itself.
        let plan = plan
            .transform_up(|node| {
                let is_nlj = node.downcast_ref::<NestedLoopJoinExec>().is_some();
                let mut changed = false;
                let children: Vec<Arc<dyn ExecutionPlan>> = node
                    .children()
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let wrapped = c.downcast_ref::<TimeSliceExec>().is_some();
                        if is_nlj && i == 1 && !wrapped {
                            changed = true;
                            Arc::new(TimeSliceExec::new(c.clone(), Some(PROBE_ROWS)))
                                as Arc<dyn ExecutionPlan>
                        } else if multiplies_rows(c) {
                            changed = true;
                            Arc::new(TimeSliceExec::new(c.clone(), None))
                        } else {
                            c.clone()
                        }
                    })
                    .collect();
                if !changed {
                    return Ok(Transformed::no(node));
                }
                Ok(Transformed::yes(
                    datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                        node, children,
                    )?,
                ))
            })?
            .data;
        Ok(if multiplies_rows(&plan) {
            Arc::new(TimeSliceExec::new(plan, None))
        } else {
            plan
        })
    }

    fn name(&self) -> &str {
        "yield_in_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
