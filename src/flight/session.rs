//! Flight session options (`SetSessionOptions`, `GetSessionOptions`,
//! `CloseSession` actions): the messages of Flight.proto, which
//! arrow-flight 59 lacks, and their answers. quiver has one catalog and one
//! schema, so every session has the same options.

use std::collections::HashMap;

use arrow_flight::Action;
use prost::Message;
use tonic::Status;

use crate::query::collection::{CATALOG, SCHEMA};

pub const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub const CLOSE_SESSION: &str = "CloseSession";

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
