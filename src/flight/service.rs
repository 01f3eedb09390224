//! `QuiverFlightService`: the Flight service as tonic serves it. It hands
//! every call to [`QuiverFlightSql`] (arrow-flight's Flight SQL dispatch)
//! except the two that dispatch cannot be told about: `GetSchema` (the
//! result schema of a statement or prepared statement without running it)
//! and `ListActions` (only the actions quiver carries out, so no client is
//! told of transactions or savepoints it does not have). It also defines
//! the Flight session-option messages, which arrow-flight 59 lacks.

use std::collections::HashMap;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::flight::QuiverFlightSql;
use crate::query::collection::{CATALOG, SCHEMA};

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
        "Sets session options: 'catalog' (quiver) and 'schema' (public) (request: \
         SetSessionOptionsRequest; result: SetSessionOptionsResult)",
    ),
    (
        GET_SESSION_OPTIONS,
        "The session options: 'catalog' and 'schema' (request: GetSessionOptionsRequest; \
         result: GetSessionOptionsResult)",
    ),
    (
        CLOSE_SESSION,
        "Ends the session (request: CloseSessionRequest; result: CloseSessionResult)",
    ),
];

pub const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub const CLOSE_SESSION: &str = "CloseSession";

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

/// `SessionOptionValue` of Flight.proto.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "session_option_value::OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<session_option_value::OptionValue>,
}

pub mod session_option_value {
    /// `SessionOptionValue.StringListValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringListValue {
        #[prost(string, repeated, tag = "1")]
        pub values: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum OptionValue {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(sfixed64, tag = "3")]
        Int64Value(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        StringListValue(StringListValue),
    }
}

/// `SetSessionOptionsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// `SetSessionOptionsResult`: an error per option that was not set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionsError>,
}

/// `SetSessionOptionsResult.Error`; `value` is an `ErrorValue`:
/// 1 invalid name, 2 invalid value, 3 error.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsError {
    #[prost(int32, tag = "1")]
    pub value: i32,
}

pub const INVALID_NAME: i32 = 1;
pub const INVALID_VALUE: i32 = 2;

/// `GetSessionOptionsResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// `CloseSessionResult`; `status` 1 is CLOSED.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// quiver has one catalog and one schema, so every session has the same
/// options: `catalog` = quiver, `schema` = public (what ADBC reads as the
/// current catalog and schema).
fn session_options() -> HashMap<String, SessionOptionValue> {
    let text = |s: &str| SessionOptionValue {
        option_value: Some(session_option_value::OptionValue::StringValue(s.into())),
    };
    HashMap::from([
        ("catalog".to_string(), text(CATALOG)),
        ("schema".to_string(), text(SCHEMA)),
    ])
}

/// Answers the session actions: their result message, encoded.
pub fn session_action(action: &Action) -> Result<Option<bytes::Bytes>, Status> {
    let body = match action.r#type.as_str() {
        GET_SESSION_OPTIONS => GetSessionOptionsResult {
            session_options: session_options(),
        }
        .encode_to_vec(),
        SET_SESSION_OPTIONS => {
            let request = SetSessionOptionsRequest::decode(action.body.as_ref()).map_err(|e| {
                Status::invalid_argument(format!("bad SetSessionOptionsRequest: {e}"))
            })?;
            let current = session_options();
            let mut errors = HashMap::new();
            for (name, value) in request.session_options {
                let error = match current.get(&name) {
                    // Setting an option to the value it has is fine;
                    // there is no other catalog or schema to switch to.
                    Some(have) if *have == value => continue,
                    Some(_) => INVALID_VALUE,
                    None => INVALID_NAME,
                };
                errors.insert(name, SetSessionOptionsError { value: error });
            }
            SetSessionOptionsResult { errors }.encode_to_vec()
        }
        CLOSE_SESSION => CloseSessionResult { status: 1 }.encode_to_vec(),
        _ => return Ok(None),
    };
    Ok(Some(body.into()))
}
