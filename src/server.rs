//! `serve`: runs the Flight SQL service on a TCP listener until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::flight::QuiverFlightSql;

/// Largest request message the server accepts (1 GiB). Bulk ingest sends
/// each record batch as one message, and clients such as ADBC send a whole
/// in-memory table chunk at once (1M x 128-d float32 is 512 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024 * 1024;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub max_request_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
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
    let service = FlightServiceServer::new(QuiverFlightSql::new(engine))
        .max_decoding_message_size(options.max_request_bytes)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::internal(format!("server failed: {e}")))
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
