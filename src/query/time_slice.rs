//! `TimeSliceExec` and the rule that places it, `YieldInJoins`: operators
//! that make many rows from few (joins, unnest) can compute for seconds
//! inside one poll of their consumer, and a query is only dropped, and
//! another task only scheduled on its thread, when a poll returns. So a
//! cancelled query kept computing for seconds, and a `SELECT 1` waited
//! behind it.
//!
//! `TimeSliceExec` passes its input's batches through and, when [`SLICE`]
//! has passed since it last did, first yields (`tokio::task::yield_now`:
//! the task goes to the back of the queue): every operator above it
//! returns too, a dropped query ends there, and other queries' tasks run.
//!
//! The rule puts one above every join and unnest, and one under every
//! nested-loop join's probe side (such a join works through a whole probe
//! batch times its whole build side before it polls again, so it yields
//! between probe batches; within one it cannot be stopped from outside,
//! and cutting its probe batches smaller makes it slower per pair: 1024
//! rows instead of 8192 doubled the time of a 100,000 x 100,000 join).
//! DataFusion's own `CooperativeExec` counts batches, not time, and a
//! join's batches can each take long.

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

/// Passes batches through, giving the thread back every [`SLICE`].
#[derive(Debug)]
pub struct TimeSliceExec {
    input: Arc<dyn ExecutionPlan>,
}

impl TimeSliceExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

impl DisplayAs for TimeSliceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TimeSliceExec: slice={}ms", SLICE.as_millis())
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
        Ok(Arc::new(TimeSliceExec::new(input)))
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
            since: Instant::now(),
            yielding: None,
        }))
    }
}

struct Sliced {
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    /// When the stream last returned `Pending`.
    since: Instant,
    /// A yield under way: `tokio::task::yield_now`, which puts the task at
    /// the back of the queue (a task that woke itself would be polled
    /// again at once, ahead of the others).
    yielding: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Stream for Sliced {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.yielding.is_none() && self.since.elapsed() >= SLICE {
            self.yielding = Some(Box::pin(tokio::task::yield_now()));
        }
        if let Some(y) = self.yielding.as_mut() {
            if y.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.yielding = None;
            self.since = Instant::now();
        }
        let next = self.input.poll_next_unpin(cx);
        if next.is_pending() {
            self.since = Instant::now();
        }
        next
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
                        if (is_nlj && i == 1 && !wrapped) || multiplies_rows(c) {
                            changed = true;
                            Arc::new(TimeSliceExec::new(c.clone())) as Arc<dyn ExecutionPlan>
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
            Arc::new(TimeSliceExec::new(plan))
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
