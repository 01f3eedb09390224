//! `QuiverFlightService`: the Flight service as tonic serves it. It hands
//! every call to [`QuiverFlightSql`] (arrow-flight's Flight SQL dispatch)
//! except the two that dispatch cannot be told about: `GetSchema` (the
//! result schema of a statement or prepared statement without running it)
//! and `ListActions` (only the actions quiver carries out, so no client is
//! told of transactions or savepoints it does not have). It also defines
//! nothing else: the session actions are answered in `session.rs`.

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::flight::session::{CLOSE_SESSION, GET_SESSION_OPTIONS, SET_SESSION_OPTIONS};
use crate::flight::QuiverFlightSql;

/// The Flight service quiver serves.
pub struct QuiverFlightService {
    inner: QuiverFlightSql,
}

impl QuiverFlightService {
    pub fn new(inner: QuiverFlightSql) -> Self {
        Self { inner }
    }
}

/// The actions quiver carries out, with what they take and give.
const ACTIONS: [(&str, &str); 6] = [
    (
        "CreatePreparedStatement",
        "Prepares a statement (request: ActionCreatePreparedStatementRequest; result: \
         ActionCreatePreparedStatementResult with the result and parameter schemas)",
    ),
    (
        "ClosePreparedStatement",
        "Forgets a prepared statement (request: ActionClosePreparedStatementRequest)",
    ),
    (
        "CancelFlightInfo",
        "Stops the query of a FlightInfo (request: CancelFlightInfoRequest; result: \
         CancelFlightInfoResult)",
    ),
    (
        SET_SESSION_OPTIONS,
        "Sets session options: quiver.vector_search (auto, exact, ann), quiver.ivf_probes \
         (lists), quiver.hnsw_ef_search (candidates), quiver.refine_factor, and 'catalog' \
         (quiver) and 'schema' (public); opens a session (cookie \
         arrow_flight_session_id) (request: SetSessionOptionsRequest; result: \
         SetSessionOptionsResult)",
    ),
    (
        GET_SESSION_OPTIONS,
        "The session options: quiver.vector_search, quiver.ivf_probes, \
         quiver.hnsw_ef_search, quiver.refine_factor, 'catalog' and \
         'schema' (request: GetSessionOptionsRequest; result: GetSessionOptionsResult)",
    ),
    (
        CLOSE_SESSION,
        "Ends the session (request: CloseSessionRequest; result: CloseSessionResult)",
    ),
];

type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightService for QuiverFlightService {
    type HandshakeStream = <QuiverFlightSql as FlightService>::HandshakeStream;
    type ListFlightsStream = <QuiverFlightSql as FlightService>::ListFlightsStream;
    type DoGetStream = <QuiverFlightSql as FlightService>::DoGetStream;
    type DoPutStream = <QuiverFlightSql as FlightService>::DoPutStream;
    type DoActionStream = <QuiverFlightSql as FlightService>::DoActionStream;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = <QuiverFlightSql as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.inner, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.inner, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.inner, request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        FlightService::poll_flight_info(&self.inner, request).await
    }

    /// The schema of what the descriptor's command returns: a statement's
    /// or a prepared statement's result (planned, not run), a metadata
    /// command's fixed schema.
    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let descriptor = request.into_inner();
        let any = Any::decode(descriptor.cmd.as_ref()).map_err(|e| {
            Status::invalid_argument(format!("GetSchema: the descriptor is not a command: {e}"))
        })?;
        let command = Command::try_from(any)
            .map_err(|e| Status::invalid_argument(format!("GetSchema: {e}")))?;
        let schema = self.inner.command_schema(command).await?;
        let result = SchemaResult::try_from(arrow_flight::SchemaAsIpc::new(
            &schema,
            &arrow::ipc::writer::IpcWriteOptions::default(),
        ))
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(&self.inner, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.inner, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.inner, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.inner, request).await
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = ACTIONS.iter().map(|(t, d)| {
            Ok(ActionType {
                r#type: t.to_string(),
                description: d.to_string(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(
            actions.collect::<Vec<_>>(),
        ))))
    }
}
