//! Flight sessions (`SetSessionOptions`, `GetSessionOptions`,
//! `CloseSession` actions): the messages of Flight.proto, which
//! arrow-flight 59 lacks, the sessions themselves and their answers.
//!
//! A session is opened by the first `SetSessionOptions` (or `SET`) that
//! sets one of quiver's settings ([`crate::query::SETTINGS`]); its id
//! travels in the cookie `arrow_flight_session_id` (the answer carries
//! `set-cookie`, which clients with a cookie middleware send back), and it
//! is also found by the client's connection (for clients without one), and
//! the queries of every call of the session run with its settings. quiver has one
//! catalog and one schema, so `catalog` and `schema` are the same for all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::Action;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::query::collection::{CATALOG, SCHEMA};
use crate::query::{SearchSettings, SettingError, SETTINGS};

/// The cookie that carries a session's id.
pub const SESSION_COOKIE: &str = "arrow_flight_session_id";

/// A session idle this long is forgotten.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Most sessions kept (the least recently used go first).
pub const MAX_SESSIONS: u64 = 100_000;

/// Who is calling, as far as sessions go: the session cookie it sent, and
/// its connection's address.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub cookie: Option<String>,
    pub peer: Option<std::net::SocketAddr>,
}

impl Caller {
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        Self::from_parts(request.metadata(), request.remote_addr())
    }

    pub fn from_parts(metadata: &MetadataMap, peer: Option<std::net::SocketAddr>) -> Self {
        let cookie = metadata
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == SESSION_COOKIE)
            .map(|(_, v)| v.to_string());
        Self { cookie, peer }
    }

    fn peer_key(&self) -> Option<String> {
        self.peer.map(|p| format!("peer:{p}"))
    }
}

/// The open sessions and their settings. A session is found by its cookie
/// or, for a client that does not send cookies back (the ADBC driver
/// unless `adbc.flight.sql.rpc.with_cookie_middleware` is on), by the
/// connection it was opened on.
pub struct Sessions {
    map: moka::sync::Cache<String, Arc<parking_lot::Mutex<SearchSettings>>>,
    defaults: SearchSettings,
}

impl Sessions {
    /// Sessions starting from the server's `defaults`.
    pub fn new(defaults: SearchSettings) -> Self {
        Self {
            map: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(SESSION_IDLE)
                .build(),
            defaults,
        }
    }

    /// The key of the caller's open session.
    pub fn id_of(&self, caller: &Caller) -> Option<String> {
        caller
            .cookie
            .clone()
            .filter(|id| self.map.contains_key(id))
            .or_else(|| caller.peer_key().filter(|k| self.map.contains_key(k)))
    }

    /// The settings of the caller's session (`None`: no session, the
    /// server's).
    pub fn settings(&self, caller: &Caller) -> Option<SearchSettings> {
        let id = self.id_of(caller)?;
        self.map.get(&id).map(|s| *s.lock())
    }

    /// The caller's session, or a new one (then `true`): found by its
    /// cookie and its connection.
    pub fn open(&self, caller: &Caller) -> (String, bool) {
        if let Some(id) = self.id_of(caller) {
            return (id, false);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let session = Arc::new(parking_lot::Mutex::new(self.defaults));
        self.map.insert(id.clone(), session.clone());
        if let Some(k) = caller.peer_key() {
            self.map.insert(k, session);
        }
        (id, true)
    }

    /// Sets a setting of session `id`; `None` resets it to the server's.
    pub fn set(&self, id: &str, name: &str, value: Option<&str>) -> Result<(), SettingError> {
        let Some(session) = self.map.get(id) else {
            return Err(SettingError::BadValue("the session has ended".into()));
        };
        let mut settings = session.lock();
        let mut next = *settings;
        match value {
            Some(v) => next.set(name, v)?,
            None => {
                let default = self.defaults.get(name).ok_or_else(|| {
                    SettingError::UnknownName(format!("unknown setting '{name}'"))
                })?;
                next.set(name, &default)?;
            }
        }
        *settings = next;
        Ok(())
    }

    /// Ends the caller's session.
    pub fn close(&self, caller: &Caller) {
        if let Some(c) = &caller.cookie {
            self.map.invalidate(c);
        }
        if let Some(k) = caller.peer_key() {
            self.map.invalidate(&k);
        }
    }

    /// The `set-cookie` value that hands out session `id`.
    pub fn cookie(id: &str) -> String {
        format!("{SESSION_COOKIE}={id}")
    }
}

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

/// The options every session shows: `catalog` = quiver, `schema` =
/// public (what ADBC reads as the current catalog and schema), and
/// quiver's settings with the session's values.
fn session_options(settings: &SearchSettings) -> HashMap<String, SessionOptionValue> {
    let text = |s: &str| SessionOptionValue {
        option_value: Some(session_option_value::OptionValue::StringValue(s.into())),
    };
    let mut out = HashMap::from([
        ("catalog".to_string(), text(CATALOG)),
        ("schema".to_string(), text(SCHEMA)),
    ]);
    for name in SETTINGS {
        let value = settings.get(name).unwrap_or_default();
        let v = match value.parse::<i64>() {
            Ok(n) => SessionOptionValue {
                option_value: Some(session_option_value::OptionValue::Int64Value(n)),
            },
            Err(_) => text(&value),
        };
        out.insert(name.to_string(), v);
    }
    out
}

/// A session option's value as text (`None`: erase it).
fn option_text(v: &SessionOptionValue) -> Result<Option<String>, ()> {
    use session_option_value::OptionValue;
    Ok(match &v.option_value {
        None => None,
        Some(OptionValue::StringValue(s)) => Some(s.clone()),
        Some(OptionValue::Int64Value(n)) => Some(n.to_string()),
        Some(OptionValue::BoolValue(b)) => Some(b.to_string()),
        Some(OptionValue::DoubleValue(d)) => Some(d.to_string()),
        Some(OptionValue::StringListValue(_)) => return Err(()),
    })
}

/// The answer to a session action: its result message, encoded, and the
/// id of a session it opened (for `set-cookie`).
pub struct SessionAnswer {
    pub body: bytes::Bytes,
    pub opened: Option<String>,
}

/// Answers the session actions (`None`: not one).
pub fn session_action(
    sessions: &Sessions,
    action: &Action,
    caller: &Caller,
) -> Result<Option<SessionAnswer>, Status> {
    let mut opened = None;
    let current = |sessions: &Sessions| sessions.settings(caller).unwrap_or(sessions.defaults);
    let body = match action.r#type.as_str() {
        GET_SESSION_OPTIONS => GetSessionOptionsResult {
            session_options: session_options(&current(sessions)),
        }
        .encode_to_vec(),
        SET_SESSION_OPTIONS => {
            let request = SetSessionOptionsRequest::decode(action.body.as_ref()).map_err(|e| {
                Status::invalid_argument(format!("bad SetSessionOptionsRequest: {e}"))
            })?;
            let fixed = session_options(&current(sessions));
            let mut errors = HashMap::new();
            for (name, value) in request.session_options {
                let error = if name == "catalog" || name == "schema" {
                    match fixed.get(&name) {
                        // Setting an option to the value it has is fine;
                        // there is no other catalog or schema to switch to.
                        Some(have) if *have == value => continue,
                        _ => INVALID_VALUE,
                    }
                } else if SETTINGS.contains(&name.as_str()) {
                    match option_text(&value) {
                        Err(()) => INVALID_VALUE,
                        Ok(text) => {
                            let (id, new) = sessions.open(caller);
                            if new {
                                opened = Some(id.clone());
                            }
                            match sessions.set(&id, &name, text.as_deref()) {
                                Ok(()) => continue,
                                Err(SettingError::UnknownName(_)) => INVALID_NAME,
                                Err(SettingError::BadValue(_)) => INVALID_VALUE,
                            }
                        }
                    }
                } else {
                    INVALID_NAME
                };
                errors.insert(name, SetSessionOptionsError { value: error });
            }
            SetSessionOptionsResult { errors }.encode_to_vec()
        }
        CLOSE_SESSION => {
            sessions.close(caller);
            CloseSessionResult { status: 1 }.encode_to_vec()
        }
        _ => return Ok(None),
    };
    Ok(Some(SessionAnswer {
        body: body.into(),
        opened,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(cookie: Option<&str>, port: u16) -> Caller {
        let mut md = MetadataMap::new();
        if let Some(c) = cookie {
            md.insert(
                "cookie",
                format!("other=1; {SESSION_COOKIE}={c}").parse().unwrap(),
            );
        }
        Caller::from_parts(&md, Some(([127, 0, 0, 1], port).into()))
    }

    /// A session is found by its cookie, or by the connection that opened
    /// it; others start from the server's settings; closing forgets it.
    #[test]
    fn sessions_follow_their_cookie_or_their_connection() {
        let sessions = Sessions::new(SearchSettings::default());
        let first = caller(None, 1000);
        assert_eq!(sessions.settings(&first), None);
        let (id, new) = sessions.open(&first);
        assert!(new);
        sessions.set(&id, "quiver.ivf_probes", Some("12")).unwrap();
        assert_eq!(sessions.settings(&first).unwrap().ivf_probes, 12);
        // The same session from another connection that sends the cookie.
        let by_cookie = caller(Some(&id), 2000);
        assert_eq!(sessions.settings(&by_cookie).unwrap().ivf_probes, 12);
        assert_eq!(sessions.open(&by_cookie), (id.clone(), false));
        // Another connection without it, or with an unknown cookie.
        assert_eq!(sessions.settings(&caller(None, 3000)), None);
        assert_eq!(sessions.settings(&caller(Some("nope"), 3000)), None);
        // Bad values and names are refused; the setting stays.
        assert!(matches!(
            sessions.set(&id, "quiver.ivf_probes", Some("x")),
            Err(SettingError::BadValue(_))
        ));
        assert!(matches!(
            sessions.set(&id, "quiver.nope", Some("1")),
            Err(SettingError::UnknownName(_))
        ));
        assert_eq!(sessions.settings(&first).unwrap().ivf_probes, 12);
        // Erasing an option goes back to the server's value.
        sessions.set(&id, "quiver.ivf_probes", None).unwrap();
        assert_eq!(sessions.settings(&first).unwrap().ivf_probes, 0);
        sessions.close(&by_cookie);
        sessions.close(&first);
        assert_eq!(sessions.settings(&first), None);
        assert_eq!(sessions.settings(&by_cookie), None);
    }
}
