//! File formats: collection schemas and keys, the vector column layout in
//! Parquet, segment files and delete logs, and the manifest that lists them.
//! Pure encoding and decoding: nothing here commits or caches.

pub(crate) mod keys;
pub(crate) mod layout;
pub(crate) mod manifest;
pub(crate) mod schema;
pub(crate) mod segment;
