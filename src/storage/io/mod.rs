//! Object-store I/O: retries with backoff for transient failures and the
//! block cache (checksummed, keyed by path and block) in front of every read.

pub(crate) mod cache;
pub(crate) mod open;
pub(crate) mod retry;
