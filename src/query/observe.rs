//! What a query leaves behind for operators: its tracing span (carried in
//! the task's session config, because operators run on tasks DataFusion
//! spawns), the rows and bytes its scans read, and the [`QueryMeter`] that
//! counts and logs it when its stream ends.

use std::sync::Arc;
use std::time::Instant;

use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use metrics::{counter, histogram};

/// The tracing span of the query a plan runs for, carried in the task's
/// session config: operators run on tasks DataFusion spawns, where the
/// caller's current span is gone.
#[derive(Debug)]
pub struct QuerySpan(pub tracing::Span);

/// A span for a phase of the query that `context` runs for, under the
/// query's span (or the current span when there is none: embedded use).
pub fn phase_parent(context: &TaskContext) -> tracing::Span {
    match context.session_config().get_extension::<QuerySpan>() {
        Some(q) => q.0.clone(),
        None => tracing::Span::current(),
    }
}

/// Rows and bytes the scans of an executed plan read: quiver's scans
/// (`rows_scanned`, `bytes_scanned`: the decoded size of the columns
/// read) and DataFusion's Parquet scans (rows decoded, before pushed-down
/// filters: `output_rows` + `pushdown_rows_pruned`; Parquet bytes read:
/// `bytes_scanned`).
pub fn scan_totals(plan: &Arc<dyn ExecutionPlan>) -> (u64, u64) {
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut todo = vec![plan.clone()];
    while let Some(node) = todo.pop() {
        if let Some(m) = node.metrics() {
            let sum = |name: &str| {
                m.sum_by_name(name)
                    .map(|v| v.as_usize() as u64)
                    .unwrap_or(0)
            };
            rows += sum("rows_scanned");
            bytes += sum("bytes_scanned");
            if node.name() == "DataSourceExec" {
                rows += m.output_rows().unwrap_or(0) as u64 + sum("pushdown_rows_pruned");
            }
        }
        todo.extend(node.children().into_iter().cloned());
    }
    (rows, bytes)
}

/// Records one query's outcome when dropped (its stream ended, failed or
/// was dropped by the client).
/// Also logs it: at debug level always, at warn level (with its SQL and
/// plan summary) when it took longer than the slow-query threshold.
pub struct QueryMeter {
    start: Instant,
    rows: u64,
    bytes: u64,
    failed: bool,
    span: tracing::Span,
    /// The `stream` phase: from the start of execution to the end of the
    /// result stream.
    stream_span: tracing::Span,
    sql: String,
    /// The plan's summary, made when a slow query is logged.
    plan: Box<dyn Fn() -> String + Send>,
    slow: std::time::Duration,
    /// The physical plan, whose scans' metrics are read at the end.
    executed: Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
}

impl QueryMeter {
    pub fn start(
        span: tracing::Span,
        sql: String,
        plan: Box<dyn Fn() -> String + Send>,
        slow: std::time::Duration,
    ) -> Self {
        Self {
            start: Instant::now(),
            rows: 0,
            bytes: 0,
            failed: false,
            stream_span: tracing::debug_span!(parent: &span, "stream"),
            span,
            sql,
            plan,
            slow,
            executed: None,
        }
    }

    /// Counts the rows and bytes `plan`'s scans read when the query ends.
    pub fn with_plan(mut self, plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> Self {
        self.executed = Some(plan);
        self
    }

    /// One item of the result stream: a batch, or `None` for an error.
    pub fn observe(&mut self, batch: Option<&arrow::array::RecordBatch>) {
        match batch {
            Some(b) => {
                self.rows += b.num_rows() as u64;
                self.bytes += b.get_array_memory_size() as u64;
            }
            None => self.failed = true,
        }
    }
}

impl Drop for QueryMeter {
    fn drop(&mut self) {
        counter!("quiver_queries_total").increment(1);
        if self.failed {
            counter!("quiver_query_errors_total", "phase" => "stream").increment(1);
        }
        counter!("quiver_query_rows_total").increment(self.rows);
        counter!("quiver_query_bytes_total").increment(self.bytes);
        let took = self.start.elapsed();
        histogram!("quiver_query_duration_seconds").record(took.as_secs_f64());
        let ms = took.as_secs_f64() * 1e3;
        let (scanned_rows, scanned_bytes) = self.executed.as_ref().map_or((0, 0), scan_totals);
        counter!("quiver_scan_rows_total").increment(scanned_rows);
        counter!("quiver_scan_bytes_total").increment(scanned_bytes);
        let in_stream = self.stream_span.enter();
        tracing::debug!(
            ms,
            rows = self.rows,
            bytes = self.bytes,
            scanned_rows,
            scanned_bytes,
            "stream finished"
        );
        drop(in_stream);
        let _query = self.span.enter();
        if !self.slow.is_zero() && took >= self.slow {
            tracing::warn!(ms, rows = self.rows, failed = self.failed, sql = %self.sql, plan = %(self.plan)(), "slow query");
        } else {
            tracing::debug!(ms, rows = self.rows, failed = self.failed, "query finished");
        }
    }
}
