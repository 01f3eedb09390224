//! Helpers shared by the integration test modules.

use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::ObjectStore;
use quiver::{Engine, IngestMode, Store, StoreConfig};

/// Where a storage test runs: a local directory, or a fresh prefix of the
/// S3 bucket `scripts/test.sh` sets up on a SeaweedFS server on loopback
/// (`QUIVER_TEST_S3`, e.g. `s3://quiver-test`, with the `AWS_*` variables).
pub enum Backend {
    Local(tempfile::TempDir),
    S3(String),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Local(_) => f.write_str("local"),
            Backend::S3(url) => write!(f, "s3 ({url})"),
        }
    }
}

impl Backend {
    /// A local directory, and S3 when the test command provides it.
    pub async fn all() -> Vec<Backend> {
        std::iter::once(Backend::local())
            .chain(Backend::s3())
            .collect()
    }

    /// A fresh prefix in the test bucket, if the test command provides one.
    pub fn s3() -> Option<Backend> {
        match std::env::var("QUIVER_TEST_S3") {
            Ok(bucket) if !bucket.is_empty() => Some(Backend::S3(format!(
                "{}/{}",
                bucket.trim_end_matches('/'),
                uuid::Uuid::new_v4().simple()
            ))),
            _ => {
                eprintln!(
                    "QUIVER_TEST_S3 is not set: storage tests run on a local directory only (scripts/test.sh runs them on S3 too)"
                );
                None
            }
        }
    }

    pub fn local() -> Backend {
        Backend::Local(tempfile::tempdir().unwrap())
    }

    /// The store URL.
    pub fn url(&self) -> String {
        match self {
            Backend::Local(d) => d.path().to_str().unwrap().to_string(),
            Backend::S3(url) => url.clone(),
        }
    }

    /// The raw object store under the URL (no cache, no retries).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        quiver::storage::open_object_store(&self.url()).unwrap()
    }
}

/// An empty store with the default configuration in a fresh temporary
/// directory (removed when the returned guard drops), and an engine over it.
pub async fn fresh_engine() -> (tempfile::TempDir, Arc<Store>, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let engine = Engine::new(store.clone()).unwrap();
    (dir, store, engine)
}

/// Ingests one batch into collection `name` as one write.
pub async fn ingest(
    store: &Store,
    name: &str,
    b: RecordBatch,
    mode: IngestMode,
) -> quiver::Result<u64> {
    let schema = b.schema();
    store
        .ingest(name, schema, futures::stream::iter(vec![Ok(b)]), mode, None)
        .await
}

/// The value of metric `name` in EXPLAIN ANALYZE text (the first one).
pub fn metric(text: &str, name: &str) -> usize {
    text.split(&format!("{name}="))
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} metric in:\n{text}"))
}
