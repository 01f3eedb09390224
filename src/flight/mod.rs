//! `QuiverFlightSql`: the Arrow Flight SQL service. A thin decoder: every
//! command is turned into a call on the [`Engine`] or the [`Store`].
//!
//! Tickets are self-describing `TicketStatementQuery` handles:
//! `q:<run>:<sql>` re-plans a query, `p:<run>:<handle>` runs a prepared
//! statement with its bound parameters, `r:<n>` returns the row count of an
//! update that ran when its `FlightInfo` was requested (ADBC's
//! `cursor.execute` sends DDL and DML down the query path). `<run>` is a
//! fresh id per `FlightInfo`, so `CancelFlightInfo` stops exactly that run.
//!
//! A query starts when its `FlightInfo` is made: it is planned (errors are
//! the `GetFlightInfo` call's), reads the data as it is then, and runs in
//! its own task while the client turns round to send `DoGet`, which takes
//! the running query ([`StartedQuery`]); its first batches wait for it, a
//! few at a time. A ticket redeemed again, or after [`PLANNED_TTL`], is
//! planned and run afresh; an expired ticket's query is dropped.
//!
//! A query's stream ends with an error when it runs past the server's query
//! timeout or the client's `grpc-timeout`, or when it is cancelled; a client
//! that drops the stream drops the query with it.

pub mod auth;
pub mod metadata;
pub(crate) mod service;
pub(crate) mod session;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bytes::Bytes;
use datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::query::engine::{Engine, Statement};
use crate::error::{Error, Result};
use crate::storage::format::manifest::OnExists;
use crate::storage::IngestMode;
use crate::query::collection::{CATALOG, SCHEMA};

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

/// Cancellation handles of issued query tickets are kept this long.
const RUN_IDLE: Duration = Duration::from_secs(3600);
/// How long the plan made for a FlightInfo waits for its DoGet.
const PLANNED_TTL: Duration = Duration::from_secs(60);
/// At most this many plans wait for their DoGet.
const PLANNED_MAX: u64 = 1_000;

/// Prepared statements nobody used for this long are forgotten (1 hour).
const PREPARED_IDLE: Duration = Duration::from_secs(3600);

/// Open prepared statements kept at most.
const PREPARED_MAX: u64 = 10_000;

type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// A statement prepared by a client, with its bound parameter rows.
#[derive(Debug)]
struct Prepared {
    sql: String,
    stmt: Statement,
    /// Whether the statement has parameters (`$1`, `?`).
    has_parameters: bool,
    /// The rows of the last parameter batch bound (`None`: none bound).
    params: Mutex<Option<Vec<Vec<ScalarValue>>>>,
}

impl Prepared {
    /// The statement once per bound parameter row, in order (a query bound
    /// to several rows returns the rows of each in turn, as ADBC expects);
    /// the statement itself when nothing was bound, and nothing at all for
    /// a statement with parameters bound to zero rows.
    fn bound(&self) -> Result<Vec<Statement>> {
        match self.params.lock().as_ref() {
            Some(rows) if self.has_parameters || !rows.is_empty() => rows
                .iter()
                .map(|row| self.stmt.clone().bind(row.clone()))
                .collect(),
            _ => Ok(vec![self.stmt.clone()]),
        }
    }
}

/// Batches a query started for its `FlightInfo` runs ahead of its `DoGet`.
const PREFETCH_BATCHES: usize = 2;

/// A query started when its `FlightInfo` was made, running in its own
/// task; `DoGet` takes it (once).
struct StartedQuery {
    /// For logs, abbreviated.
    sql: String,
    schema: SchemaRef,
    batches: tokio::sync::mpsc::Receiver<Result<RecordBatch, FlightError>>,
}

/// A started query, kept until its `DoGet` takes it.
type Planned = Arc<Mutex<Option<StartedQuery>>>;

/// A query's result as it leaves the engine: planned, metered, stoppable.
type Batches = Pin<Box<dyn Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static>>;

/// The Flight SQL service.
pub struct QuiverFlightSql {
    engine: Engine,
    limits: FlightLimits,
    /// Cancellation of each issued query ticket, by run id.
    runs: moka::sync::Cache<String, CancellationToken>,
    /// The query of each issued ticket, started for its FlightInfo and
    /// taken by its DoGet, so a query is planned once and runs while the
    /// client turns round. Kept for [`PLANNED_TTL`]; a later or repeated
    /// DoGet plans the ticket again. Dropping an entry stops its query.
    planned: moka::sync::Cache<String, Planned>,
    prepared: moka::sync::Cache<Bytes, Arc<Prepared>>,
    sql_info: SqlInfoData,
    xdbc_types: XdbcTypeInfoData,
}

impl QuiverFlightSql {
    pub fn new(engine: Engine) -> Self {
        Self::with_limits(engine, FlightLimits::default())
    }

    pub fn with_limits(engine: Engine, limits: FlightLimits) -> Self {
        let sql_info = crate::flight::metadata::sql_info(&engine.context().state());
        Self {
            engine,
            limits,
            runs: moka::sync::Cache::builder()
                .max_capacity(PREPARED_MAX * 10)
                .time_to_idle(RUN_IDLE)
                .build(),
            planned: moka::sync::Cache::builder()
                .max_capacity(PLANNED_MAX)
                .time_to_live(PLANNED_TTL)
                .build(),
            prepared: moka::sync::Cache::builder()
                .max_capacity(PREPARED_MAX)
                .time_to_idle(PREPARED_IDLE)
                .build(),
            sql_info,
            xdbc_types: crate::flight::metadata::xdbc_type_info(),
        }
    }

    fn prepared(&self, handle: &Bytes) -> Result<Arc<Prepared>, Status> {
        self.prepared.get(handle).ok_or_else(|| {
            Status::not_found(
                "unknown or expired prepared statement handle; prepare the statement again",
            )
        })
    }

    async fn plan(&self, sql: &str) -> Result<Statement, Status> {
        let started = std::time::Instant::now();
        let stmt = self
            .engine
            .plan(sql)
            .await
            .map_err(|e| log_status("plan", sql, e))?;
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "sql planned");
        Ok(stmt)
    }

    /// The query a FlightInfo started for ticket `run`, if it is still kept.
    fn take_planned(&self, run: &str) -> Option<StartedQuery> {
        self.planned.remove(run).and_then(|p| p.lock().take())
    }

    /// FlightInfo for a statement: queries get a ticket to run later;
    /// updates run now and the ticket returns their row count.
    async fn info_for(
        &self,
        stmt: Statement,
        sql: &str,
        kind: u8,
        target: &[u8],
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        let schema = stmt.result_schema();
        let is_query = stmt.is_query();
        self.info_for_all(is_query, schema, vec![stmt], sql, kind, target, request)
            .await
    }

    /// [`Self::info_for`] for a statement bound to each of several rows of
    /// parameters (`stmts`, possibly none): a query returns the rows of
    /// each in turn, an update runs once per row and counts them all.
    #[allow(clippy::too_many_arguments)]
    async fn info_for_all(
        &self,
        is_query: bool,
        unbound_schema: SchemaRef,
        stmts: Vec<Statement>,
        sql: &str,
        kind: u8,
        target: &[u8],
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        // The call's own grpc-timeout bounds this call, not the query it
        // starts: that one's DoGet brings the client's deadline.
        let deadline = self.server_deadline();
        let descriptor = request.into_inner();
        let (schema, handle) = if is_query {
            let run = uuid::Uuid::new_v4().simple().to_string();
            let token = CancellationToken::new();
            self.runs.insert(run.clone(), token.clone());
            let started = self
                .start_all(unbound_schema, stmts, sql, token, deadline)
                .await?;
            let schema = started.schema.clone();
            self.planned
                .insert(run.clone(), Arc::new(Mutex::new(Some(started))));
            let mut handle = vec![kind, b':'];
            handle.extend_from_slice(run.as_bytes());
            handle.push(b':');
            handle.extend_from_slice(target);
            (schema, Bytes::from(handle))
        } else {
            let mut n = 0;
            for stmt in stmts {
                n += self.update(stmt, sql).await?;
            }
            (count_schema(), Bytes::from(format!("r:{n}")))
        };
        flight_info(&schema, handle, descriptor)
    }

    /// The cancellation token of a run; a run cancelled before it starts
    /// is refused.
    fn run_token(&self, run: &str) -> Result<CancellationToken, Status> {
        let token = self.runs.get(run).unwrap_or_default();
        if token.is_cancelled() {
            return Err(Status::cancelled(
                "the query was cancelled (CancelFlightInfo)",
            ));
        }
        Ok(token)
    }

    /// When a query starting now must stop by the server's limit.
    fn server_deadline(&self) -> Option<tokio::time::Instant> {
        (!self.limits.query_timeout.is_zero())
            .then(|| tokio::time::Instant::now() + self.limits.query_timeout)
    }

    /// When a query must stop: the server's limit or the client's
    /// `grpc-timeout`, whichever comes first.
    fn deadline(&self, metadata: &MetadataMap) -> Option<tokio::time::Instant> {
        let server = self.server_deadline();
        let client = client_deadline(metadata);
        match (server, client) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs a statement that writes (on the engine's query runtime when it
    /// has one, like queries, so a long `INSERT ... SELECT` or `DELETE`
    /// does not hold up the replies to other requests): the rows it wrote.
    /// Dropping the future (the client went away) stops it, as before.
    async fn update(&self, stmt: Statement, sql: &str) -> Result<u64, Status> {
        let run = {
            let engine = self.engine.clone();
            async move { engine.execute_update(stmt).await }
        };
        let task = tokio_util::task::AbortOnDropHandle::new(self.engine.spawn(run));
        task.await
            .map_err(|e| Status::internal(format!("the statement's task ended abnormally: {e}")))?
            .map_err(|e| log_status("update", sql, e))
    }

    /// Runs `stmt` for a `DoGet` that carries no started query.
    async fn run_query(
        &self,
        unbound_schema: SchemaRef,
        stmts: Vec<Statement>,
        sql: &str,
        token: CancellationToken,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Response<DoGetStream>, Status> {
        let started = self
            .start_all(unbound_schema, stmts, sql, token, deadline)
            .await?;
        Ok(Response::new(encode(
            started.schema,
            receiver_stream(started.batches),
            self.limits.max_message_bytes,
        )))
    }

    /// Starts `stmt`: planned physically now, then run by a task (on the
    /// engine's query runtime when it has one) that keeps up to
    /// [`PREFETCH_BATCHES`] batches ahead of the reader, and stops when the
    /// receiver is dropped.
    async fn start_all(
        &self,
        unbound_schema: SchemaRef,
        stmts: Vec<Statement>,
        sql: &str,
        token: CancellationToken,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<StartedQuery, Status> {
        let (schema, mut batches) = begin_all(
            &self.engine,
            &self.limits,
            unbound_schema,
            stmts,
            sql,
            token,
            deadline,
        )
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
        let run = async move {
            loop {
                let item = tokio::select! {
                    biased;
                    // Nobody will take the batches: drop the query.
                    _ = tx.closed() => break,
                    item = batches.next() => item,
                };
                let Some(item) = item else { break };
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        };
        drop(self.engine.spawn(run));
        Ok(StartedQuery {
            sql: abbreviate(sql),
            schema,
            batches: rx,
        })
    }

    /// The response of a `DoGet` that takes a started query; the client's
    /// `grpc-timeout` for this call still applies (the server's timeout
    /// runs from the start).
    fn serve_started(
        &self,
        started: StartedQuery,
        metadata: &MetadataMap,
    ) -> Response<DoGetStream> {
        let batches = stoppable(
            receiver_stream(started.batches),
            CancellationToken::new(),
            client_deadline(metadata),
            Duration::ZERO,
            started.sql,
        );
        Response::new(encode(
            started.schema,
            batches,
            self.limits.max_message_bytes,
        ))
    }

    /// The schema of what `command` returns, without running it (GetSchema).
    pub(crate) async fn command_schema(
        &self,
        command: arrow_flight::sql::Command,
    ) -> Result<SchemaRef, Status> {
        use arrow_flight::sql::Command as C;
        Ok(match command {
            C::CommandStatementQuery(q) => self.plan(&q.query).await?.result_schema(),
            C::CommandPreparedStatementQuery(cmd) => {
                let p = self.prepared(&cmd.prepared_statement_handle)?;
                let bound = p.bound().map_err(|e| log_status("bind", &p.sql, e))?;
                match bound.first() {
                    Some(s) => s.result_schema(),
                    None => p.stmt.result_schema(),
                }
            }
            C::CommandStatementUpdate(_)
            | C::CommandPreparedStatementUpdate(_)
            | C::CommandStatementIngest(_) => Arc::new(Schema::empty()),
            C::CommandGetCatalogs(q) => q.into_builder().schema(),
            C::CommandGetDbSchemas(q) => q.into_builder().schema(),
            C::CommandGetTables(q) => q.into_builder().schema(),
            C::CommandGetTableTypes(q) => q.into_builder().schema(),
            C::CommandGetSqlInfo(q) => q.into_builder(&self.sql_info).schema(),
            C::CommandGetXdbcTypeInfo(q) => q.into_builder(&self.xdbc_types).schema(),
            C::CommandGetPrimaryKeys(_) => primary_keys_schema(),
            C::CommandGetImportedKeys(_)
            | C::CommandGetExportedKeys(_)
            | C::CommandGetCrossReference(_) => crate::flight::metadata::foreign_keys_schema(),
            other => {
                return Err(Status::unimplemented(format!(
                    "GetSchema is not supported for {}",
                    other.type_url()
                )))
            }
        })
    }

    async fn read_param_rows(
        stream: PeekableFlightDataStream,
    ) -> Result<Vec<Vec<ScalarValue>>, Status> {
        // A statement without parameters may come as a lone message that
        // carries only the descriptor (arrow-flight's client sends that):
        // no IPC message, so nothing to decode.
        let messages = stream
            .try_filter(|m| futures::future::ready(!m.data_header.is_empty()))
            .map_err(FlightError::from);
        let mut batches = FlightRecordBatchStream::new_from_flight_data(messages);
        let mut rows = Vec::new();
        while let Some(batch) = batches.try_next().await? {
            for r in 0..batch.num_rows() {
                let row = batch
                    .columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, r))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::invalid_argument(format!("bad parameter value: {e}")))?;
                rows.push(row);
            }
        }
        Ok(rows)
    }
}

fn log_status(phase: &'static str, sql: &str, e: Error) -> Status {
    crate::metrics::statement_failed(phase);
    let status = e.to_status();
    tracing::info!(phase, sql = %abbreviate(sql), code = ?status.code(), error = %status.message(), "statement failed");
    status
}

/// Ids of queries in logs (one process-wide sequence).
static NEXT_QUERY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The first lines of a query's logical plan, for logs.
fn plan_summary(plan: &datafusion::logical_expr::LogicalPlan) -> String {
    const LINES: usize = 8;
    let text = plan.display_indent().to_string();
    let mut lines: Vec<String> = text.lines().take(LINES).map(elide_vectors).collect();
    if text.lines().count() > LINES {
        lines.push("...".into());
    }
    lines.join(" | ")
}

/// Long list literals (query vectors) as `[<n> numbers]`.
fn elide_vectors(text: &str) -> String {
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
fn abbreviate(sql: &str) -> String {
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

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::Int64,
        false,
    )]))
}

fn flight_info(
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

fn metadata_info<M: ProstMessageExt>(
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
fn encode<S>(schema: SchemaRef, batches: S, max_bytes: usize) -> DoGetStream
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
fn no_foreign_keys() -> DoGetStream {
    encode_batch(RecordBatch::new_empty(
        crate::flight::metadata::foreign_keys_schema(),
    ))
}

fn encode_batch(batch: RecordBatch) -> DoGetStream {
    encode(
        batch.schema(),
        futures::stream::once(async { Ok(batch) }),
        MAX_FLIGHT_DATA_BYTES,
    )
}

/// `<run>:<rest>` of a query ticket.
fn split_run(rest: &[u8]) -> Result<(&str, &[u8]), Status> {
    let malformed = || Status::invalid_argument("malformed ticket");
    let colon = rest.iter().position(|b| *b == b':').ok_or_else(malformed)?;
    let run = std::str::from_utf8(&rest[..colon]).map_err(|_| malformed())?;
    Ok((run, &rest[colon + 1..]))
}

/// The client's deadline for a call: its `grpc-timeout`, if it sent one.
fn client_deadline(metadata: &MetadataMap) -> Option<tokio::time::Instant> {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| tokio::time::Instant::now() + d)
}

/// Parses a `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
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
async fn begin_all(
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
async fn begin(
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
fn receiver_stream(
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, FlightError>>,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Ends a result stream with an error when the run is cancelled or its
/// deadline passes; the query's stream (and the work behind it) is dropped
/// at that moment.
fn stoppable<S>(
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

fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// Ingest option (`CommandStatementIngest.options`) naming the primary key
/// of a collection the ingest creates.
pub const INGEST_PRIMARY_KEY_OPTION: &str = "primary_key";

/// Request header naming it, for clients that cannot fill the ingest's
/// options: the ADBC driver sends a statement's
/// `adbc.flight.sql.rpc.call_header.x-quiver-primary-key` option as this
/// header with its bulk ingest.
pub const INGEST_PRIMARY_KEY_HEADER: &str = "x-quiver-primary-key";

/// The primary key an ingest asks for, from its options or its header.
fn ingest_primary_key(
    cmd: &CommandStatementIngest,
    metadata: &MetadataMap,
) -> Result<Option<String>, Status> {
    let from_header = metadata
        .get(INGEST_PRIMARY_KEY_HEADER)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                Status::invalid_argument(format!("header {INGEST_PRIMARY_KEY_HEADER} is not text"))
            })
        })
        .transpose()?;
    let from_option = cmd.options.get(INGEST_PRIMARY_KEY_OPTION).cloned();
    for (key, value) in &cmd.options {
        if key != INGEST_PRIMARY_KEY_OPTION {
            return Err(Status::invalid_argument(format!(
                "unknown ingest option '{key}' (= '{value}'); quiver takes '{INGEST_PRIMARY_KEY_OPTION}'"
            )));
        }
    }
    match (from_option, from_header) {
        (Some(a), Some(b)) if a != b => Err(Status::invalid_argument(format!(
            "the ingest names two primary keys: option '{a}' and header '{b}'"
        ))),
        (a, b) => Ok(a.or(b).filter(|k| !k.is_empty())),
    }
}

fn ingest_mode(cmd: &CommandStatementIngest) -> Result<IngestMode, Status> {
    let opts = cmd.table_definition_options.unwrap_or_default();
    let create = match TableNotExistOption::try_from(opts.if_not_exist)
        .unwrap_or(TableNotExistOption::Unspecified)
    {
        TableNotExistOption::Create => true,
        TableNotExistOption::Fail => false,
        // Unspecified: like ADBC's default ("create").
        TableNotExistOption::Unspecified => true,
    };
    let on_exists = match TableExistsOption::try_from(opts.if_exists)
        .unwrap_or(TableExistsOption::Unspecified)
    {
        TableExistsOption::Fail | TableExistsOption::Unspecified => OnExists::Fail,
        TableExistsOption::Append => OnExists::Append,
        TableExistsOption::Replace => OnExists::Replace,
    };
    if cmd.temporary {
        return Err(Status::invalid_argument(
            "temporary tables are not supported",
        ));
    }
    if cmd.catalog.as_deref().is_some_and(|c| c != CATALOG)
        || cmd.schema.as_deref().is_some_and(|s| s != SCHEMA)
    {
        return Err(Status::invalid_argument(format!(
            "collections live in {CATALOG}.{SCHEMA}; cannot ingest into {}.{}",
            cmd.catalog.as_deref().unwrap_or(CATALOG),
            cmd.schema.as_deref().unwrap_or(SCHEMA)
        )));
    }
    Ok(IngestMode { create, on_exists })
}

#[tonic::async_trait]
impl FlightSqlService for QuiverFlightSql {
    type FlightService = QuiverFlightSql;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let out = futures::stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::new(),
        })]);
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let stmt = self.plan(&query.query).await?;
        let info = self
            .info_for(stmt, &query.query, b'q', query.query.as_bytes(), request)
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.prepared(&cmd.prepared_statement_handle)?;
        let stmts = p.bound().map_err(|e| log_status("bind", &p.sql, e))?;
        let info = self
            .info_for_all(
                p.stmt.is_query(),
                p.stmt.result_schema(),
                stmts,
                &p.sql,
                b'p',
                &cmd.prepared_statement_handle,
                request,
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let h = ticket.statement_handle;
        let deadline = self.deadline(request.metadata());
        if let Some(rest) = h.strip_prefix(b"q:") {
            let (run, sql) = split_run(rest)?;
            let sql = std::str::from_utf8(sql)
                .map_err(|_| Status::invalid_argument("ticket is not UTF-8"))?;
            let token = self.run_token(run)?;
            if let Some(started) = self.take_planned(run) {
                return Ok(self.serve_started(started, request.metadata()));
            }
            let stmt = self.plan(sql).await?;
            let schema = stmt.result_schema();
            return self
                .run_query(schema, vec![stmt], sql, token, deadline)
                .await;
        }
        if let Some(rest) = h.strip_prefix(b"p:") {
            let (run, id) = split_run(rest)?;
            let token = self.run_token(run)?;
            if let Some(started) = self.take_planned(run) {
                return Ok(self.serve_started(started, request.metadata()));
            }
            let p = self.prepared(&Bytes::copy_from_slice(id))?;
            let stmts = p.bound().map_err(|e| log_status("bind", &p.sql, e))?;
            return self
                .run_query(p.stmt.result_schema(), stmts, &p.sql, token, deadline)
                .await;
        }
        if let Some(n) = h.strip_prefix(b"r:") {
            let n: i64 = std::str::from_utf8(n)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Status::invalid_argument("malformed ticket"))?;
            let batch =
                RecordBatch::try_new(count_schema(), vec![Arc::new(Int64Array::from(vec![n]))])
                    .map_err(|e| Status::internal(e.to_string()))?;
            return Ok(Response::new(encode_batch(batch)));
        }
        Err(Status::invalid_argument("malformed ticket"))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.prepared(&cmd.prepared_statement_handle)?;
        let stmts = p.bound().map_err(|e| log_status("bind", &p.sql, e))?;
        let deadline = self.deadline(request.metadata());
        self.run_query(
            p.stmt.result_schema(),
            stmts,
            &p.sql,
            CancellationToken::new(),
            deadline,
        )
        .await
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let stmt = self.plan(&cmd.query).await?;
        let n = self.update(stmt, &cmd.query).await?;
        Ok(n as i64)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let mode = ingest_mode(&cmd)?;
        let primary_key = ingest_primary_key(&cmd, request.metadata())?;
        let stream = request.into_inner();
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
        // The schema arrives before the first batch.
        let first = batches.try_next().await?;
        let schema = batches
            .schema()
            .cloned()
            .ok_or_else(|| Status::invalid_argument("ingest stream carries no schema"))?;
        let rest = batches.map_err(|e| Error::invalid(format!("ingest stream: {e}")));
        let all = futures::stream::iter(first.map(Ok)).chain(rest);
        let rows = self
            .engine
            .store()
            .ingest(&cmd.table, schema, all, mode, primary_key.as_deref())
            .await
            .map_err(|e| log_status("ingest", &cmd.table, e))?;
        Ok(rows as i64)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let stmt = self.plan(&query.query).await?;
        // Queries advertise their result schema; an empty one marks an update
        // (the JDBC driver relies on that).
        let dataset_schema = if stmt.is_query() {
            schema_ipc(&stmt.result_schema())?
        } else {
            Bytes::new()
        };
        let params = stmt.parameter_schema().map_err(|e| e.to_status())?;
        let parameter_schema = schema_ipc(&params)?;
        let handle = Bytes::from(uuid::Uuid::new_v4().as_bytes().to_vec());
        self.prepared.insert(
            handle.clone(),
            Arc::new(Prepared {
                sql: query.query,
                stmt,
                has_parameters: !params.fields().is_empty(),
                params: Mutex::new(None),
            }),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let p = self.prepared(&cmd.prepared_statement_handle)?;
        let rows = Self::read_param_rows(request.into_inner()).await?;
        // Check the values bind before acknowledging them.
        for row in &rows {
            p.stmt
                .clone()
                .bind(row.clone())
                .map_err(|e| log_status("bind", &p.sql, e))?;
        }
        *p.params.lock() = Some(rows);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let p = self.prepared(&cmd.prepared_statement_handle)?;
        let rows = Self::read_param_rows(request.into_inner()).await?;
        let mut total = 0u64;
        // No rows: a statement without parameters runs once; one with
        // parameters runs once per row, so not at all (ADBC binds an empty
        // batch for `executemany(sql, [])`, and sends it like no batch).
        if rows.is_empty() && !p.has_parameters {
            total += self.update(p.stmt.clone(), &p.sql).await?;
        }
        for row in rows {
            let stmt = p
                .stmt
                .clone()
                .bind(row)
                .map_err(|e| log_status("bind", &p.sql, e))?;
            total += self.update(stmt, &p.sql).await?;
        }
        Ok(total as i64)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.prepared.invalidate(&query.prepared_statement_handle);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query.into_builder(&self.sql_info).build()?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut b = query.into_builder();
        b.append(CATALOG);
        Ok(Response::new(encode_batch(b.build()?)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut b = query.into_builder();
        b.append(CATALOG, SCHEMA);
        Ok(Response::new(encode_batch(b.build()?)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let store = self.engine.store();
        let mut b = query.into_builder();
        for name in store.collection_names() {
            let Some(m) = store.snapshot(&name) else {
                continue;
            };
            let Some(schema) = &m.schema else { continue };
            let arrow_schema = crate::flight::metadata::table_schema_with_metadata(
                &crate::query::engine::client_schema(&schema.table_schema()),
                schema.declared_key(),
            );
            b.append(CATALOG, SCHEMA, &name, "TABLE", &arrow_schema)?;
        }
        Ok(Response::new(encode_batch(b.build()?)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut b = query.into_builder();
        b.append("TABLE");
        Ok(Response::new(encode_batch(b.build()?)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query, &primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let store = self.engine.store();
        let matches_scope = query.catalog.as_deref().is_none_or(|c| c == CATALOG)
            && query.db_schema.as_deref().is_none_or(|s| s == SCHEMA);
        let key = store
            .snapshot(&query.table)
            .filter(|_| matches_scope)
            .and_then(|m| {
                m.schema
                    .as_ref()
                    .and_then(|s| s.declared_key().map(str::to_string))
            });
        let n = usize::from(key.is_some());
        let batch = RecordBatch::try_new(
            primary_keys_schema(),
            vec![
                Arc::new(StringArray::from(vec![Some(CATALOG); n])),
                Arc::new(StringArray::from(vec![Some(SCHEMA); n])),
                Arc::new(StringArray::from(vec![query.table.as_str(); n])),
                Arc::new(StringArray::from(
                    key.iter().map(String::as_str).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(Int32Array::from(vec![1; n])),
            ],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc_types).schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query.into_builder(&self.xdbc_types).build()?;
        Ok(Response::new(encode_batch(batch)))
    }

    // quiver has no foreign keys: these answer with no rows, in the schema
    // the spec gives.
    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = crate::flight::metadata::foreign_keys_schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(no_foreign_keys()))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = crate::flight::metadata::foreign_keys_schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(no_foreign_keys()))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = crate::flight::metadata::foreign_keys_schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(no_foreign_keys()))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        if let Some(body) = crate::flight::session::session_action(&action)? {
            let out = futures::stream::iter(vec![Ok(arrow_flight::Result { body })]);
            return Ok(Response::new(Box::pin(out)));
        }
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown action '{}'",
                action.r#type
            )));
        }
        let req = CancelFlightInfoRequest::decode(action.body)
            .map_err(|e| Status::invalid_argument(format!("bad CancelFlightInfoRequest: {e}")))?;
        let mut found = false;
        for ep in req.info.map(|i| i.endpoint).unwrap_or_default() {
            let Some(ticket) = ep.ticket else { continue };
            let Ok(any) = arrow_flight::sql::Any::decode(ticket.ticket) else {
                continue;
            };
            let Ok(Some(t)) = any.unpack::<TicketStatementQuery>() else {
                continue;
            };
            let h = t.statement_handle;
            let Some(rest) = h.strip_prefix(b"q:").or_else(|| h.strip_prefix(b"p:")) else {
                continue;
            };
            if let Ok((run, _)) = split_run(rest) {
                if let Some(token) = self.runs.get(run) {
                    token.cancel();
                    found = true;
                }
            }
        }
        if !found {
            return Err(Status::not_found(
                "no running or pending query matches this FlightInfo",
            ));
        }
        let result = CancelFlightInfoResult {
            status: CancelStatus::Cancelled as i32,
        };
        let out = futures::stream::iter(vec![Ok(arrow_flight::Result {
            body: result.encode_to_vec().into(),
        })]);
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        Some(vec![Ok(arrow_flight::ActionType {
            r#type: "CancelFlightInfo".into(),
            description: "Stops the query of a FlightInfo (request: CancelFlightInfoRequest; \
                          result: CancelFlightInfoResult)"
                .into(),
        })])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}
