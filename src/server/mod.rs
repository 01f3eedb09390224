//! `serve`: runs the Flight SQL service on a TCP listener until shutdown,
//! with the background flush, compaction and GC loops; `exporter.rs`
//! serves Prometheus metrics. The top of the library: it may name every
//! layer, and nothing in the library names it.

pub mod exporter;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::flight::auth::{Auth, AuthLayer};
use crate::flight::{FlightLimits, QuiverFlightSql};
use crate::query::engine::Engine;

/// Largest request message the server accepts (1 GiB). Bulk ingest sends
/// each record batch as one message, and clients such as ADBC send a whole
/// in-memory table chunk at once (1M x 128-d float32 is 512 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024 * 1024;

/// How often growing segments are checked against their flush limits.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub max_request_bytes: usize,
    /// Background compaction period (zero: off).
    pub compact_interval: Duration,
    /// Background garbage collection period (zero: off).
    pub gc_interval: Duration,
    /// Retention window of background garbage collection.
    pub gc_retention: Duration,
    /// Users who may connect (None: anyone who can reach the port).
    pub auth: Option<Arc<Auth>>,
    /// Serve TLS with these PEM files.
    pub tls: Option<TlsOptions>,
    /// Query time limit and result message size.
    pub limits: FlightLimits,
}

/// Certificates of a TLS listener, PEM-encoded.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The server's certificate chain.
    pub cert: Vec<u8>,
    /// The server's private key.
    pub key: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<Vec<u8>>,
}

impl TlsOptions {
    /// Reads the PEM files; errors name the file.
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Result<Self> {
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                Error::Config(format!("cannot read the TLS {what} {}: {e}", p.display()))
            })
        };
        Ok(Self {
            cert: read("certificate", cert)?,
            key: read("key", key)?,
            client_ca: client_ca.map(|p| read("client CA", p)).transpose()?,
        })
    }

    fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        let mut cfg = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key));
        if let Some(ca) = &self.client_ca {
            cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        cfg
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            compact_interval: Duration::from_secs(600),
            gc_interval: Duration::from_secs(3600),
            gc_retention: Duration::from_secs(3600),
            auth: None,
            tls: None,
            limits: FlightLimits::default(),
        }
    }
}

/// Runs `job` every `every` until the returned handle is aborted.
fn every<F, Fut>(every: Duration, what: &'static str, job: F) -> Option<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = job().await {
                tracing::warn!(task = what, error = %e, "background task failed");
            }
        }
    }))
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))
}

/// Serves Flight SQL on `listener` until `shutdown` completes; in-flight
/// requests are finished first.
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    // A span per RPC: every event of a call (a query's id, phases, errors)
    // carries its method.
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()));
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server_config())
            .map_err(|e| Error::Config(format!("invalid TLS certificate or key: {e}")))?;
    }
    let background: Vec<_> = [
        // Growing segments are flushed by rows, bytes or age; checked often.
        every(FLUSH_CHECK_INTERVAL, "flush", {
            let store = engine.store().clone();
            move || {
                let store = store.clone();
                async move { store.flush_due().await }
            }
        }),
        every(options.compact_interval, "compaction", {
            let engine = engine.clone();
            move || {
                let engine = engine.clone();
                async move {
                    crate::admin::compact::compact(&engine, None)
                        .await
                        .map(|_| ())
                }
            }
        }),
        every(options.gc_interval, "gc", {
            let store = engine.store().clone();
            let retention = options.gc_retention;
            move || {
                let store = store.clone();
                async move { crate::admin::gc::gc(&store, retention).await.map(|_| ()) }
            }
        }),
    ]
    .into_iter()
    .flatten()
    // Index files of new segments and new indexes, built one at a time.
    .chain(std::iter::once(tokio::spawn(
        engine.store().clone().run_index_builder(),
    )))
    .collect();
    let service = FlightServiceServer::new(crate::flight::service::QuiverFlightService::new(
        QuiverFlightSql::with_limits(engine, options.limits.clone()),
    ))
    .max_decoding_message_size(options.max_request_bytes)
    .max_encoding_message_size(usize::MAX);
    let served = builder
        .layer(AuthLayer(options.auth.clone()))
        .add_service(service)
        // Builder::tcp_nodelay only reaches connections tonic accepts
        // itself; ours need it set here, or Nagle's algorithm and delayed
        // ACKs add ~40 ms to every small response.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| Error::internal(format!("server failed: {e}")));
    for task in background {
        task.abort();
    }
    served
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
