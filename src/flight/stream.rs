//! Result streams: starting a query's run (with its deadline and
//! cancellation), encoding batches as Flight data within the message size,
//! `FlightInfo` for tickets, and the logging of failed statements.

use crate::error::{Error, Result};
use crate::query::engine::{Engine, Statement};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::sql::TicketStatementQuery;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Response, Status};
use tracing::Instrument;

pub(crate) fn log_status(phase: &'static str, sql: &str, e: Error) -> Status {
    crate::metrics::statement_failed(phase);
    let status = e.to_status();
    tracing::info!(phase, sql = %abbreviate(sql), code = ?status.code(), error = %status.message(), "statement failed");
    status
}

/// Ids of queries in logs (one process-wide sequence).
static NEXT_QUERY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The first lines of a query's logical plan, for logs.
pub(crate) fn plan_summary(plan: &datafusion::logical_expr::LogicalPlan) -> String {
    const LINES: usize = 8;
    let text = plan.display_indent().to_string();
    let mut lines: Vec<String> = text.lines().take(LINES).map(elide_vectors).collect();
    if text.lines().count() > LINES {
        lines.push("...".into());
    }
    lines.join(" | ")
}

/// Long list literals (query vectors) as `[<n> numbers]`.
pub(crate) fn elide_vectors(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(len) = rest[open..].find(']') else {
            break;
        };
        let inner = &rest[open + 1..open + len];
        out.push_str(&rest[..open]);
        let commas = inner.matches(',').count();
        if commas >= 8 && !inner.contains('[') {
            out.push_str(&format!("[{} numbers]", commas + 1));
        } else {
            out.push_str(&rest[open..=open + len]);
        }
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

/// SQL for logs: vector literals elided, at most 300 bytes.
pub(crate) fn abbreviate(sql: &str) -> String {
    const MAX: usize = 300;
    let sql = elide_vectors(sql);
    if sql.len() <= MAX {
        return sql;
    }
    let mut end = MAX;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &sql[..end], sql.len())
}

pub(crate) fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::Int64,
        false,
    )]))
}

pub(crate) fn flight_info(
    schema: &Schema,
    handle: Bytes,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let ticket = TicketStatementQuery {
        statement_handle: handle,
    };
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
        )
        .with_descriptor(descriptor);
    Ok(info)
}

pub(crate) fn metadata_info<M: ProstMessageExt>(
    cmd: &M,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(cmd.as_any().encode_to_vec())))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// Encodes batches as Flight data in messages of at most about
/// `max_bytes`; the schema is sent even when there are no rows.
pub(crate) fn encode<S>(schema: SchemaRef, batches: S, max_bytes: usize) -> DoGetStream
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
{
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(max_bytes)
            .build(batches)
            .map_err(Status::from),
    )
}

/// The answer to the foreign-key commands: quiver has none.
pub(crate) fn no_foreign_keys() -> DoGetStream {
    encode_batch(RecordBatch::new_empty(
        crate::flight::metadata::foreign_keys_schema(),
    ))
}

pub(crate) fn encode_batch(batch: RecordBatch) -> DoGetStream {
    encode(
        batch.schema(),
        futures::stream::once(async { Ok(batch) }),
        MAX_FLIGHT_DATA_BYTES,
    )
}

/// `<run>:<rest>` of a query ticket.
pub(crate) fn split_run(rest: &[u8]) -> Result<(&str, &[u8]), Status> {
    let malformed = || Status::invalid_argument("malformed ticket");
    let colon = rest.iter().position(|b| *b == b':').ok_or_else(malformed)?;
    let run = std::str::from_utf8(&rest[..colon]).map_err(|_| malformed())?;
    Ok((run, &rest[colon + 1..]))
}

/// The client's deadline for a call: its `grpc-timeout`, if it sent one.
pub(crate) fn client_deadline(metadata: &MetadataMap) -> Option<tokio::time::Instant> {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| tokio::time::Instant::now() + d)
}

/// Parses a `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// [`begin`] for a query bound to each of several parameter rows: the
/// first starts now, each further one when the one before has returned
/// its rows. No rows at all (a statement with parameters bound to none)
/// is an empty result in the unbound statement's schema.
pub(crate) async fn begin_all(
    engine: &Engine,
    limits: &FlightLimits,
    unbound_schema: SchemaRef,
    stmts: Vec<Statement>,
    sql: &str,
    token: CancellationToken,
    deadline: Option<tokio::time::Instant>,
) -> Result<(SchemaRef, Batches), Status> {
    let mut stmts = stmts.into_iter();
    let Some(first) = stmts.next() else {
        return Ok((unbound_schema, Box::pin(futures::stream::empty())));
    };
    let (schema, batches) = begin(engine, limits, first, sql, token.clone(), deadline).await?;
    let rest: Vec<Statement> = stmts.collect();
    if rest.is_empty() {
        return Ok((schema, batches));
    }
    for s in &rest {
        if s.result_schema().fields() != schema.fields() {
            return Err(Status::invalid_argument(
                "the rows of parameters bound give results of different types",
            ));
        }
    }
    let (engine, limits, sql) = (engine.clone(), limits.clone(), sql.to_string());
    let later = futures::stream::iter(rest)
        .then(move |stmt| {
            let (engine, limits, sql, token) =
                (engine.clone(), limits.clone(), sql.clone(), token.clone());
            async move {
                begin(&engine, &limits, stmt, &sql, token, deadline)
                    .await
                    .map(|(_, b)| b)
                    .map_err(FlightError::from)
            }
        })
        .try_flatten();
    Ok((schema, Box::pin(batches.chain(later))))
}

/// Plans `stmt` physically and starts it: its batches, metered (the
/// query's log line and metrics when the stream ends) and stopped by
/// `token`, the deadline or the server's query timeout.
pub(crate) async fn begin(
    engine: &Engine,
    limits: &FlightLimits,
    stmt: Statement,
    sql: &str,
    token: CancellationToken,
    deadline: Option<tokio::time::Instant>,
) -> Result<(SchemaRef, Batches), Status> {
    let Statement::Query(plan) = stmt else {
        return Err(Status::invalid_argument("not a query"));
    };
    let schema = crate::query::engine::client_schema(plan.plan().schema().as_arrow());
    let id = NEXT_QUERY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The plan's text is made only when it is logged.
    let logical = plan.clone();
    let span = tracing::info_span!("query", id, sql = %abbreviate(sql));
    span.in_scope(|| {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(plan = %plan_summary(plan.plan()), "executing");
        }
    });
    let running = engine
        .start_query(plan, &span)
        .instrument(span.clone())
        .await
        .map_err(|e| log_status("execute", sql, e))?;
    let stream = running.stream;
    let mut meter = crate::query::observe::QueryMeter::start(
        span,
        abbreviate(sql),
        Box::new(move || plan_summary(logical.plan())),
        limits.slow_query,
    )
    .with_plan(running.plan);
    let batches = stream
        .map_err(|e| FlightError::from(Error::from(e).to_status()))
        // The stream owns the meter: it records when the stream ends.
        .inspect(move |b| meter.observe(b.as_ref().ok()));
    let timeout = limits.query_timeout;
    let batches = stoppable(batches, token, deadline, timeout, abbreviate(sql));
    Ok((schema, Box::pin(batches)))
}

/// The batches a started query's task sends, as a stream.
pub(crate) fn receiver_stream(
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, FlightError>>,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Ends a result stream with an error when the run is cancelled or its
/// deadline passes; the query's stream (and the work behind it) is dropped
/// at that moment.
pub(crate) fn stoppable<S>(
    batches: S,
    token: CancellationToken,
    deadline: Option<tokio::time::Instant>,
    server_timeout: Duration,
    sql: String,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
{
    let sleep = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let sql: Arc<str> = sql.into();
    let state = Some((Box::pin(batches), Box::pin(sleep), token, sql));
    futures::stream::unfold(state, move |state| async move {
        let (mut batches, mut sleep, token, sql) = state?;
        tokio::select! {
            biased;
            _ = token.cancelled() => {
                tracing::info!(sql = %sql, "query cancelled");
                let status = Status::cancelled("the query was cancelled (CancelFlightInfo)");
                Some((Err(FlightError::from(status)), None))
            }
            _ = &mut sleep => {
                tracing::info!(sql = %sql, "query timed out");
                let msg = if server_timeout.is_zero() {
                    "the query ran past the client's deadline (grpc-timeout)".to_string()
                } else {
                    format!(
                        "the query ran past its deadline (server --query-timeout {} or the client's grpc-timeout)",
                        humantime::format_duration(server_timeout)
                    )
                };
                Some((Err(FlightError::from(Status::deadline_exceeded(msg))), None))
            }
            item = batches.next() => item.map(|i| (i, Some((batches, sleep, token, sql)))),
        }
    })
}

pub(crate) fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// Largest Flight data message the server sends (2 MiB). Clients refuse
/// messages over their receive limit (16 MiB for ADBC); large results are
/// split into several messages of about this size.
pub const MAX_FLIGHT_DATA_BYTES: usize = 2 * 1024 * 1024;

/// Default server-side query time limit (15 minutes).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Limits a server applies to each request.
#[derive(Debug, Clone)]
pub struct FlightLimits {
    /// Queries running longer are stopped (zero: no limit).
    pub query_timeout: Duration,
    /// Largest Flight data message of a result.
    pub max_message_bytes: usize,
    /// Queries that take longer are logged (warn) with their SQL and plan.
    pub slow_query: Duration,
}

/// Default threshold of the slow-query log (1 s).
pub const DEFAULT_SLOW_QUERY: Duration = Duration::from_secs(1);

impl Default for FlightLimits {
    fn default() -> Self {
        Self {
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            max_message_bytes: MAX_FLIGHT_DATA_BYTES,
            slow_query: DEFAULT_SLOW_QUERY,
        }
    }
}

pub(crate) type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// A query's result as it leaves the engine: planned, metered, stoppable.
pub(crate) type Batches =
    Pin<Box<dyn Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static>>;
