//! `QuiverFlightSql`: the Arrow Flight SQL service. A thin decoder: every
//! command is turned into a call on the `Engine` or the `Store`. It names
//! `query` and `storage`, never `admin` or `server`. Files: `sql.rs` (the
//! service's state), `handlers.rs` (the RPCs), `stream.rs` (runs and result
//! streams), `service.rs`, `session.rs`, `metadata.rs`, `auth.rs`.
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
//! the running query (`StartedQuery`); its first batches wait for it, a
//! few at a time. A ticket redeemed again, or after `PLANNED_TTL`, is
//! planned and run afresh; an expired ticket's query is dropped.
//!
//! A query's stream ends with an error when it runs past the server's query
//! timeout or the client's `grpc-timeout`, or when it is cancelled; a client
//! that drops the stream drops the query with it.

pub mod auth;
mod handlers;
pub mod metadata;
pub(crate) mod service;
pub(crate) mod session;
mod sql;
mod stream;

pub use handlers::{INGEST_PRIMARY_KEY_HEADER, INGEST_PRIMARY_KEY_OPTION};
pub use sql::QuiverFlightSql;
pub use stream::{FlightLimits, DEFAULT_QUERY_TIMEOUT, DEFAULT_SLOW_QUERY, MAX_FLIGHT_DATA_BYTES};
