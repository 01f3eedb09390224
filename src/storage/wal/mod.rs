//! The write-ahead log: framed, checksummed records per collection, replayed
//! on open (a torn record at the end of the newest file is dropped; damage
//! anywhere else is corruption), and the growing (in-memory) segment that
//! holds logged rows until they are flushed.

pub(crate) mod growing;
pub(crate) mod key_check;
pub(crate) mod log;
pub(crate) mod state;

pub use log::{list_files, WAL_DIR_NAME};
