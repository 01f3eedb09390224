//! `QuiverFlightSql`: the state of the Flight SQL service (the engine,
//! limits, prepared statements, queries started by `GetFlightInfo` and
//! waiting for their `DoGet`, cancellation tokens) and its helpers that
//! plan, start and serve queries.

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::PeekableFlightDataStream;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::flight::metadata::primary_keys_schema;
use crate::flight::stream::{
    abbreviate, begin_all, client_deadline, count_schema, encode, flight_info, log_status,
    receiver_stream, stoppable,
};
use crate::flight::stream::{DoGetStream, FlightLimits};
use crate::query::engine::{Engine, Statement};
use arrow_flight::{FlightDescriptor, FlightInfo};
use bytes::Bytes;
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

/// Cancellation handles of issued query tickets are kept this long.
pub(crate) const RUN_IDLE: Duration = Duration::from_secs(3600);

/// How long the plan made for a FlightInfo waits for its DoGet.
pub(crate) const PLANNED_TTL: Duration = Duration::from_secs(60);

/// At most this many plans wait for their DoGet.
pub(crate) const PLANNED_MAX: u64 = 1_000;

/// Prepared statements nobody used for this long are forgotten (1 hour).
pub(crate) const PREPARED_IDLE: Duration = Duration::from_secs(3600);

/// Open prepared statements kept at most.
pub(crate) const PREPARED_MAX: u64 = 10_000;

/// A statement prepared by a client, with its bound parameter rows.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    pub(crate) stmt: Statement,
    /// Whether the statement has parameters (`$1`, `?`).
    pub(crate) has_parameters: bool,
    /// The rows of the last parameter batch bound (`None`: none bound).
    pub(crate) params: Mutex<Option<Vec<Vec<ScalarValue>>>>,
}

impl Prepared {
    /// The statement once per bound parameter row, in order (a query bound
    /// to several rows returns the rows of each in turn, as ADBC expects);
    /// the statement itself when nothing was bound, and nothing at all for
    /// a statement with parameters bound to zero rows.
    pub(crate) fn bound(&self) -> Result<Vec<Statement>> {
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
pub(crate) const PREFETCH_BATCHES: usize = 2;

/// A query started when its `FlightInfo` was made, running in its own
/// task; `DoGet` takes it (once).
pub(crate) struct StartedQuery {
    /// For logs, abbreviated.
    pub(crate) sql: String,
    pub(crate) schema: SchemaRef,
    pub(crate) batches: tokio::sync::mpsc::Receiver<Result<RecordBatch, FlightError>>,
}

/// A started query, kept until its `DoGet` takes it.
pub(crate) type Planned = Arc<Mutex<Option<StartedQuery>>>;

/// The Flight SQL service.
pub struct QuiverFlightSql {
    pub(crate) engine: Engine,
    pub(crate) limits: FlightLimits,
    /// Cancellation of each issued query ticket, by run id.
    pub(crate) runs: moka::sync::Cache<String, CancellationToken>,
    /// The query of each issued ticket, started for its FlightInfo and
    /// taken by its DoGet, so a query is planned once and runs while the
    /// client turns round. Kept for [`PLANNED_TTL`]; a later or repeated
    /// DoGet plans the ticket again. Dropping an entry stops its query.
    pub(crate) planned: moka::sync::Cache<String, Planned>,
    pub(crate) prepared: moka::sync::Cache<Bytes, Arc<Prepared>>,
    pub(crate) sql_info: SqlInfoData,
    pub(crate) xdbc_types: XdbcTypeInfoData,
    /// Flight sessions and their settings.
    pub(crate) sessions: crate::flight::session::Sessions,
}

impl QuiverFlightSql {
    pub fn new(engine: Engine) -> Self {
        Self::with_limits(engine, FlightLimits::default())
    }

    pub fn with_limits(engine: Engine, limits: FlightLimits) -> Self {
        let sql_info = crate::flight::metadata::sql_info(&engine.context().state());
        let search_defaults = engine.search_defaults();
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
            sessions: crate::flight::session::Sessions::new(search_defaults),
            sql_info,
            xdbc_types: crate::flight::metadata::xdbc_type_info(),
        }
    }

    pub(crate) fn prepared(&self, handle: &Bytes) -> Result<Arc<Prepared>, Status> {
        self.prepared.get(handle).ok_or_else(|| {
            Status::not_found(
                "unknown or expired prepared statement handle; prepare the statement again",
            )
        })
    }

    pub(crate) async fn plan(&self, sql: &str) -> Result<Statement, Status> {
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
    pub(crate) fn take_planned(&self, run: &str) -> Option<StartedQuery> {
        self.planned.remove(run).and_then(|p| p.lock().take())
    }

    /// FlightInfo for a statement bound to each of several rows of
    /// parameters (`stmts`, possibly none): a query gets a ticket to run
    /// later and returns the rows of each in turn; an update runs now, once
    /// per row, and the ticket returns the rows it counted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn info_for_all(
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
        let caller = crate::flight::session::Caller::of(&request);
        let stmts = self.session_settings(stmts, &caller);
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
                n += self.update(stmt, sql, &caller).await?;
            }
            (count_schema(), Bytes::from(format!("r:{n}")))
        };
        flight_info(&schema, handle, descriptor)
    }

    /// The cancellation token of a run; a run cancelled before it starts
    /// is refused.
    pub(crate) fn run_token(&self, run: &str) -> Result<CancellationToken, Status> {
        let token = self.runs.get(run).unwrap_or_default();
        if token.is_cancelled() {
            return Err(Status::cancelled(
                "the query was cancelled (CancelFlightInfo)",
            ));
        }
        Ok(token)
    }

    /// When a query starting now must stop by the server's limit.
    pub(crate) fn server_deadline(&self) -> Option<tokio::time::Instant> {
        (!self.limits.query_timeout.is_zero())
            .then(|| tokio::time::Instant::now() + self.limits.query_timeout)
    }

    /// When a query must stop: the server's limit or the client's
    /// `grpc-timeout`, whichever comes first.
    pub(crate) fn deadline(&self, metadata: &MetadataMap) -> Option<tokio::time::Instant> {
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
    pub(crate) async fn update(
        &self,
        stmt: Statement,
        sql: &str,
        caller: &crate::flight::session::Caller,
    ) -> Result<u64, Status> {
        if let Statement::SetOption { name, value } = &stmt {
            // A session of the request's cookie (one is opened by a
            // statement's FlightInfo, see `session_statement`).
            let id = self.sessions.id_of(caller).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "SET {name} changes a session's setting, and this call carries no session: \
                     open one with SetSessionOptions (ADBC: conn.adbc_connection.set_options(\
                     **{{'adbc.flight.sql.session.option.{name}': '{value}'}})) or run the SET as a query"
                ))
            })?;
            self.sessions
                .set(&id, name, Some(value))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            return Ok(0);
        }
        let run = {
            let engine = self.engine.clone();
            async move { engine.execute_update(stmt).await }
        };
        let task = tokio_util::task::AbortOnDropHandle::new(self.engine.spawn(run));
        task.await
            .map_err(|e| Status::internal(format!("the statement's task ended abnormally: {e}")))?
            .map_err(|e| log_status("update", sql, e))
    }

    /// `stmts` with the queries set to run with the request's session
    /// settings, if it has a session.
    pub(crate) fn session_settings(
        &self,
        stmts: Vec<Statement>,
        caller: &crate::flight::session::Caller,
    ) -> Vec<Statement> {
        let Some(settings) = self.sessions.settings(caller) else {
            return stmts;
        };
        stmts
            .into_iter()
            .map(|s| match s {
                Statement::Query(q) => Statement::Query(q.with_settings(settings)),
                other => other,
            })
            .collect()
    }

    /// [`Self::session_statement`] of each of `stmts`: what to run, and the
    /// id of a session opened (for `set-cookie`).
    pub(crate) async fn session_statements(
        &self,
        stmts: Vec<Statement>,
        caller: &crate::flight::session::Caller,
    ) -> Result<(Vec<Statement>, Option<String>), Status> {
        let mut out = Vec::with_capacity(stmts.len());
        let mut opened = None;
        for stmt in stmts {
            let (mut these, new) = self.session_statement(stmt, caller).await?;
            out.append(&mut these);
            opened = opened.or(new);
        }
        Ok((out, opened))
    }

    /// A statement's `SET` / `SHOW` of a session setting, answered here:
    /// `SET` is applied to the request's session (opened if it has none:
    /// then its id comes back, for `set-cookie`) and leaves nothing to
    /// run; `SHOW` becomes the query of its value. Other statements pass.
    pub(crate) async fn session_statement(
        &self,
        stmt: Statement,
        caller: &crate::flight::session::Caller,
    ) -> Result<(Vec<Statement>, Option<String>), Status> {
        match stmt {
            Statement::SetOption { name, value } => {
                let (id, new) = self.sessions.open(caller);
                if let Err(e) = self.sessions.set(&id, &name, Some(&value)) {
                    if new {
                        self.sessions.close(caller);
                    }
                    return Err(Status::invalid_argument(e.to_string()));
                }
                Ok((Vec::new(), new.then_some(id)))
            }
            Statement::ShowOption { name } => {
                let settings = self
                    .sessions
                    .settings(caller)
                    .unwrap_or_else(|| self.engine.search_defaults());
                let value = settings.get(&name).unwrap_or_default();
                let query = self
                    .plan(&crate::query::engine::show_sql(&name, &value))
                    .await?;
                Ok((vec![query], None))
            }
            other => Ok((vec![other], None)),
        }
    }

    /// Runs `stmt` for a `DoGet` that carries no started query.
    pub(crate) async fn run_query(
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
    pub(crate) async fn start_all(
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
        let logged = abbreviate(sql);
        let run = async move {
            use futures::FutureExt;
            loop {
                let item = tokio::select! {
                    biased;
                    // Nobody will take the batches: drop the query.
                    _ = tx.closed() => break,
                    item = std::panic::AssertUnwindSafe(batches.next()).catch_unwind() => item,
                };
                // A bug that panics inside the query fails the query (the
                // client must not read the end of the stream as the whole
                // answer); the server goes on.
                let item = match item {
                    Ok(item) => item,
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("a panic");
                        tracing::error!(sql = %logged, panic = what, "query failed with an internal error");
                        let status = Status::internal(format!(
                            "internal error while running the query: {what}"
                        ));
                        let _ = tx.send(Err(FlightError::Tonic(Box::new(status)))).await;
                        break;
                    }
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
    pub(crate) fn serve_started(
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

    pub(crate) async fn read_param_rows(
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
