//! The write-ahead log: framed, checksummed records per collection, replayed
//! on open up to the first torn record, and the growing (in-memory) segment
//! that holds logged rows until they are flushed.

pub(crate) mod growing;
pub(crate) mod log;

pub use log::{list_files, WAL_DIR_NAME};
