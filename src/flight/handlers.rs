//! The Flight SQL RPCs: statements, prepared statements, bulk ingest and
//! the metadata commands, each decoded and handed to the engine or the
//! store.

use crate::error::{Error, Result};
use crate::flight::metadata::primary_keys_schema;
use crate::flight::sql::{Prepared, QuiverFlightSql};
use crate::flight::stream::{
    count_schema, encode_batch, log_status, metadata_info, no_foreign_keys, schema_ipc, split_run,
};
use crate::query::collection::{CATALOG, SCHEMA};
use crate::storage::format::manifest::OnExists;
use crate::storage::IngestMode;
use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo,
    TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

/// Ingest option (`CommandStatementIngest.options`) naming the primary key
/// of a collection the ingest creates.
pub const INGEST_PRIMARY_KEY_OPTION: &str = "primary_key";

/// Request header naming it, for clients that cannot fill the ingest's
/// options: the ADBC driver sends a statement's
/// `adbc.flight.sql.rpc.call_header.x-quiver-primary-key` option as this
/// header with its bulk ingest.
pub const INGEST_PRIMARY_KEY_HEADER: &str = "x-quiver-primary-key";

/// The primary key an ingest asks for, from its options or its header.
pub(crate) fn ingest_primary_key(
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

pub(crate) fn ingest_mode(cmd: &CommandStatementIngest) -> Result<IngestMode, Status> {
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
        let is_query = stmt.is_query();
        let schema = stmt.result_schema();
        let caller = crate::flight::session::Caller::of(&request);
        let (stmts, opened) = self.session_statement(stmt, &caller).await?;
        let info = self
            .info_for_all(
                is_query,
                schema,
                stmts,
                &query.query,
                b'q',
                query.query.as_bytes(),
                request,
            )
            .await?;
        let mut response = Response::new(info);
        if let Some(id) = opened {
            set_cookie(&mut response, &id)?;
        }
        Ok(response)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.prepared(&cmd.prepared_statement_handle)?;
        let stmts = p.bound().map_err(|e| log_status("bind", &p.sql, e))?;
        let caller = crate::flight::session::Caller::of(&request);
        let (stmts, opened) = self.session_statements(stmts, &caller).await?;
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
        let mut response = Response::new(info);
        if let Some(id) = opened {
            set_cookie(&mut response, &id)?;
        }
        Ok(response)
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
            let caller = crate::flight::session::Caller::of(&request);
            let (stmts, _) = self.session_statements(vec![stmt], &caller).await?;
            let stmts = self.session_settings(stmts, &caller);
            return self.run_query(schema, stmts, sql, token, deadline).await;
        }
        if let Some(rest) = h.strip_prefix(b"p:") {
            let (run, id) = split_run(rest)?;
            let token = self.run_token(run)?;
            if let Some(started) = self.take_planned(run) {
                return Ok(self.serve_started(started, request.metadata()));
            }
            let p = self.prepared(&Bytes::copy_from_slice(id))?;
            let stmts = p.bound().map_err(|e| log_status("bind", &p.sql, e))?;
            let caller = crate::flight::session::Caller::of(&request);
            let (stmts, _) = self.session_statements(stmts, &caller).await?;
            let stmts = self.session_settings(stmts, &caller);
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
        let caller = crate::flight::session::Caller::of(&request);
        let (stmts, _) = self.session_statements(stmts, &caller).await?;
        let stmts = self.session_settings(stmts, &caller);
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
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let stmt = self.plan(&cmd.query).await?;
        let caller = crate::flight::session::Caller::of(&request);
        let n = self.update(stmt, &cmd.query, &caller).await?;
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
        let caller = crate::flight::session::Caller::of(&request);
        let rows = Self::read_param_rows(request.into_inner()).await?;
        let mut total = 0u64;
        // No rows: a statement without parameters runs once; one with
        // parameters runs once per row, so not at all (ADBC binds an empty
        // batch for `executemany(sql, [])`, and sends it like no batch).
        if rows.is_empty() && !p.has_parameters {
            total += self.update(p.stmt.clone(), &p.sql, &caller).await?;
        }
        for row in rows {
            let stmt = p
                .stmt
                .clone()
                .bind(row)
                .map_err(|e| log_status("bind", &p.sql, e))?;
            total += self.update(stmt, &p.sql, &caller).await?;
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
        let caller = crate::flight::session::Caller::of(&request);
        let action = request.into_inner();
        if let Some(answer) =
            crate::flight::session::session_action(&self.sessions, &action, &caller)?
        {
            let out = futures::stream::iter(vec![Ok(arrow_flight::Result { body: answer.body })]);
            let mut response = Response::new(Box::pin(out) as _);
            if let Some(id) = answer.opened {
                set_cookie(&mut response, &id)?;
            }
            return Ok(response);
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

/// Hands out session `id` with the response (`set-cookie`).
pub(crate) fn set_cookie<T>(response: &mut Response<T>, id: &str) -> Result<(), Status> {
    let value = crate::flight::session::Sessions::cookie(id)
        .parse()
        .map_err(|_| Status::internal("bad session cookie"))?;
    response.metadata_mut().insert("set-cookie", value);
    Ok(())
}
