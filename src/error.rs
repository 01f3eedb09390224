//! `Error`: every failure quiver reports, with one mapping to `tonic::Status`
//! and one to `DataFusionError`.

use datafusion::error::DataFusionError;

/// Result alias used throughout quiver.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors name the collection, column, file or statement at fault so the user
/// knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input does not fit the collection: wrong column, type, dimension,
    /// null key. Nothing was written.
    #[error("{0}")]
    InvalidInput(String),

    /// A collection that does not exist was named.
    #[error("collection '{0}' does not exist")]
    CollectionNotFound(String),

    /// A collection was created twice.
    #[error("collection '{0}' already exists")]
    CollectionExists(String),

    /// An ingest that may create the collection (ADBC's `create_append`)
    /// found it existing with columns its input does not fit.
    #[error("collection '{collection}' already exists with other columns: {reason}")]
    ExistsWithOtherColumns { collection: String, reason: String },

    /// SQL that quiver refuses to run (file access, unsupported statements).
    #[error("{0}")]
    NotAllowed(String),

    /// No vector index of that name (in the collection, or anywhere).
    #[error("index '{0}' does not exist")]
    IndexNotFound(String),

    /// An index of that name exists already.
    #[error("index '{0}' already exists")]
    IndexExists(String),

    /// Another writer committed first and the change could not be rebased
    /// onto it. Retrying the whole operation may succeed.
    #[error("commit conflict on collection '{collection}': {reason}. Help: retry the operation")]
    CommitConflict { collection: String, reason: String },

    /// The manifest put failed in a way that does not tell whether it landed
    /// (the store stopped answering). The written files are kept.
    #[error("the commit of collection '{collection}' may or may not have landed: {reason}. Help: check the collection's contents before retrying")]
    CommitUnknown { collection: String, reason: String },

    /// A stored file or manifest is unreadable or inconsistent.
    #[error("corrupt data in '{path}': {reason}")]
    Corrupt { path: String, reason: String },

    /// Configuration or store URL problems.
    #[error("configuration error: {0}")]
    Config(String),

    #[error("object store error: {0}")]
    ObjectStore(#[from] object_store::Error),

    #[error("{0}")]
    DataFusion(#[from] DataFusionError),

    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Reading or writing the write-ahead log failed (names the file).
    #[error("{0}")]
    Wal(String),

    #[error("internal error: {0}")]
    Internal(String),
}

/// Whether a test injected a failure at fail point `point` for
/// `collection`: `fail::cfg(point, "return(<collection>)")` (the `failpoints`
/// feature). Scoped to one collection so that tests running at the same
/// time in one process do not trip over each other's failures.
pub(crate) fn injected(point: &str, collection: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(point, |arg| arg.as_deref() == Some(collection)).unwrap_or(false)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (point, collection);
        false
    }
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    /// Unwraps errors that travelled through DataFusion back to quiver's own.
    fn root(&self) -> &Error {
        if let Error::DataFusion(DataFusionError::External(e)) = self {
            if let Some(inner) = e.downcast_ref::<Error>() {
                return inner.root();
            }
        }
        self
    }

    /// The gRPC status a client sees for this error.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Status;
        let msg = self.root().to_string();
        match self.root() {
            Error::InvalidInput(_) => Status::invalid_argument(msg),
            Error::CollectionNotFound(_) | Error::IndexNotFound(_) => Status::not_found(msg),
            Error::CollectionExists(_)
            | Error::IndexExists(_)
            | Error::ExistsWithOtherColumns { .. } => Status::already_exists(msg),
            Error::NotAllowed(_) => Status::permission_denied(msg),
            Error::CommitConflict { .. } => Status::aborted(msg),
            Error::CommitUnknown { .. } => Status::unavailable(msg),
            Error::Corrupt { .. } => Status::data_loss(msg),
            Error::Config(_) => Status::failed_precondition(msg),
            Error::DataFusion(e) => datafusion_status(e, msg),
            Error::Arrow(_) => Status::invalid_argument(msg),
            Error::ObjectStore(_) | Error::Parquet(_) | Error::Io(_) | Error::Wal(_) => {
                Status::unavailable(msg)
            }
            Error::Internal(_) => Status::internal(msg),
        }
    }
}

fn datafusion_status(e: &DataFusionError, msg: String) -> tonic::Status {
    use tonic::Status;
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::ArrowError(..)
        | DataFusionError::Execution(_)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(msg),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(msg),
        _ => Status::internal(msg),
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}
