//! Authentication: a tower layer in front of every RPC of the Flight
//! service.
//!
//! A client logs in with the Flight handshake carrying
//! `authorization: Basic base64(user:password)`; the layer answers with
//! `authorization: Bearer <token>` in the response headers, and every later
//! RPC must carry that bearer token (or the Basic credentials again).
//! Tokens are `<id>.<secret>`: the id finds the session, the secret is
//! compared in constant time, and sessions expire after a configured time.
//! Requests without valid credentials get `Unauthenticated` before any
//! handler runs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;
use tonic::Status;

/// How long a bearer token stays valid by default (1 hour).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Open sessions kept at most; the oldest are dropped beyond this.
const MAX_SESSIONS: u64 = 100_000;

/// The gRPC path of the Flight handshake, where logins happen.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Accepts standard base64 with or without padding (the Go Flight client,
/// which the ADBC driver uses, sends it unpadded).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Debug)]
struct Session {
    user: String,
    secret: String,
}

/// Users and their open sessions.
#[derive(Debug)]
pub struct Auth {
    users: HashMap<String, String>,
    sessions: moka::sync::Cache<String, Arc<Session>>,
}

impl Auth {
    /// `users`: user name and password pairs; `ttl`: lifetime of a token.
    pub fn new(users: impl IntoIterator<Item = (String, String)>, ttl: Duration) -> Self {
        Self {
            users: users.into_iter().collect(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Checks a user name and password (in constant time for the password).
    fn check_password(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(expected) => bool::from(expected.as_bytes().ct_eq(password.as_bytes())),
            None => {
                // Same work for an unknown user as for a wrong password.
                let _ = password.as_bytes().ct_eq(password.as_bytes());
                false
            }
        }
    }

    /// A new session for `user`; returns its bearer token.
    fn open_session(&self, user: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let token = format!("{id}.{secret}");
        self.sessions.insert(
            id,
            Arc::new(Session {
                user: user.to_string(),
                secret,
            }),
        );
        token
    }

    fn check_bearer(&self, token: &str) -> Option<String> {
        let (id, secret) = token.split_once('.')?;
        let session = self.sessions.get(id)?;
        bool::from(session.secret.as_bytes().ct_eq(secret.as_bytes())).then(|| session.user.clone())
    }

    fn check_basic(&self, encoded: &str) -> Result<String, Status> {
        let decoded = BASE64
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        if self.check_password(user, password) {
            Ok(user.to_string())
        } else {
            Err(Status::unauthenticated("invalid user name or password"))
        }
    }

    /// Checks the `authorization` headers of a request (a client may send
    /// a stale bearer token beside fresh Basic credentials when it logs in
    /// again: any valid one is enough). On the handshake path, valid
    /// credentials open a session and its token is returned.
    fn authorize(&self, headers: &HeaderMap, handshake: bool) -> Result<Option<String>, Status> {
        let mut first_error = None;
        for value in headers.get_all(http::header::AUTHORIZATION) {
            match self.authorize_one(value) {
                Ok(user) => return Ok(handshake.then(|| self.open_session(&user))),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            Status::unauthenticated(
                "authentication required: log in with the Flight handshake (Basic user:password) \
                 and send the bearer token it returns",
            )
        }))
    }

    fn authorize_one(&self, value: &HeaderValue) -> Result<String, Status> {
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            self.check_basic(rest)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.check_bearer(rest.trim()).ok_or_else(|| {
                Status::unauthenticated(
                    "invalid or expired bearer token; log in again with the handshake",
                )
            })
        } else {
            Err(Status::unauthenticated(format!(
                "unsupported authorization scheme '{scheme}' (use Basic or Bearer)"
            )))
        }
    }
}

/// The tower layer that puts [`Auth`] in front of a service; `None`
/// passes every request through (no credentials configured).
#[derive(Debug, Clone)]
pub struct AuthLayer(pub Option<Arc<Auth>>);

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let token = match &self.auth {
            None => None,
            Some(auth) => match auth.authorize(req.headers(), req.uri().path() == HANDSHAKE_PATH) {
                Ok(token) => token,
                Err(status) => {
                    tracing::info!(
                        path = req.uri().path(),
                        error = status.message(),
                        "request refused"
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            },
        };
        // The instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            if let Some(token) = token {
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                    response
                        .headers_mut()
                        .insert(http::header::AUTHORIZATION, v);
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn basic_logs_in_and_the_token_authorizes() {
        let auth = Auth::new([("ann".into(), "s3cret".into())], DEFAULT_TOKEN_TTL);
        // Unpadded, as the Go client sends it ("ann:s3cret" is 10 bytes).
        let basic = format!(
            "Basic {}",
            BASE64.encode("ann:s3cret").trim_end_matches('=')
        );
        let token = auth.authorize(&headers(&basic), true).unwrap().unwrap();
        assert_eq!(
            auth.authorize(&headers(&format!("Bearer {token}")), false)
                .unwrap(),
            None
        );
        // Basic works on any call, but only the handshake opens a session.
        assert_eq!(auth.authorize(&headers(&basic), false).unwrap(), None);
        // A token with one character of the secret changed is refused.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        for bad in [
            format!("Bearer {forged}"),
            "Bearer nope".into(),
            format!("Basic {}", BASE64.encode("ann:wrong")),
            format!("Basic {}", BASE64.encode("bob:s3cret")),
            "Basic !!!".into(),
            "Digest x".into(),
        ] {
            let e = auth.authorize(&headers(&bad), false).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let e = auth.authorize(&HeaderMap::new(), false).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn tokens_expire() {
        let auth = Auth::new([("ann".into(), "pw".into())], Duration::from_millis(200));
        let basic = format!("Basic {}", BASE64.encode("ann:pw"));
        let token = auth.authorize(&headers(&basic), true).unwrap().unwrap();
        let bearer = headers(&format!("Bearer {token}"));
        assert!(auth.authorize(&bearer, false).is_ok());
        std::thread::sleep(Duration::from_millis(400));
        assert!(auth.authorize(&bearer, false).is_err());
    }
}
