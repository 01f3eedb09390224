//! `RetryStore`: an `ObjectStore` wrapper that retries transient failures
//! with exponential backoff and full jitter, bounded in count and in time.
//!
//! quiver owns retries (the S3, GCS and Azure clients are built with their
//! own retries off), so `RetryPolicy` alone bounds how often and how long an
//! operation is tried:
//!
//! ```text
//!   attempt 1 ── transient error ── sleep U(0, min(max, init x 2^0)) ──
//!   attempt 2 ── transient error ── sleep U(0, min(max, init x 2^1)) ──
//!   ...        until attempts = max_retries + 1, or the next sleep would
//!              end after `timeout` from the first attempt: the last error,
//!              "... failed after N attempts in T"
//! ```
//!
//! Transient means `object_store::Error::Generic` (network, 5xx, a body that
//! broke off mid-stream). Answers such as `NotFound`, `AlreadyExists`,
//! `Precondition` or `PermissionDenied` are returned at once. Reads collect
//! the whole body inside the retry, so a stream that fails half-way is read
//! again, never handed on half-read. Writes are retried with the same
//! payload: segment files have unique names, and a manifest put (create-only)
//! that succeeded although its answer was lost comes back as `AlreadyExists`,
//! which the commit recognises as its own by the manifest's commit id.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// How transient object-store failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: fail on the first error).
    pub max_retries: u32,
    /// No attempt starts later than this after the first one.
    pub timeout: Duration,
    /// Upper bound of the first wait; it doubles with every retry ...
    pub initial_backoff: Duration,
    /// ... up to this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): uniformly random up to
    /// `min(max_backoff, initial_backoff x 2^retry)` ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .initial_backoff
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_backoff);
        jitter(cap)
    }

    /// Runs `op` until it succeeds, fails with a non-transient error, or the
    /// policy's count or time runs out. `what` names the operation in the
    /// final error ("get insert_log/...").
    pub async fn run<T, F, Fut>(
        &self,
        what: impl Fn() -> String,
        stats: &RetryStats,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut retry = 0u32;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) if !is_transient(&e) => return Err(e),
                Err(e) => e,
            };
            let wait = self.backoff(retry);
            if retry >= self.max_retries || start.elapsed() + wait > self.timeout {
                stats.gave_up.fetch_add(1, Ordering::Relaxed);
                return Err(object_store::Error::Generic {
                    store: "quiver",
                    source: Box::new(GaveUp {
                        what: what(),
                        attempts: retry + 1,
                        elapsed: start.elapsed(),
                        last: err,
                    }),
                });
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            crate::metrics::object_store_retry();
            tracing::debug!(operation = %what(), retry, error = %err, "transient object store error, retrying");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }
}

/// A uniformly random duration in `[0, cap)`.
pub fn jitter(cap: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let nanos = cap.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_nanos(random % nanos)
}

/// Whether retrying `e` can help.
pub fn is_transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

/// The error after the last attempt.
#[derive(Debug)]
struct GaveUp {
    what: String,
    attempts: u32,
    elapsed: Duration,
    last: object_store::Error,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed after {} attempt{} in {:.1?}: {}",
            self.what,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.elapsed,
            self.last
        )
    }
}

impl std::error::Error for GaveUp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.last)
    }
}

/// Counters of a [`RetryStore`].
#[derive(Debug, Default)]
pub struct RetryStats {
    /// Attempts after a transient failure.
    pub retries: AtomicU64,
    /// Operations that failed after their last allowed attempt.
    pub gave_up: AtomicU64,
}

/// Retries transient failures of `inner` (see the module docs).
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    stats: Arc<RetryStats>,
}

impl RetryStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Self {
            inner,
            policy,
            stats: Arc::default(),
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn stats(&self) -> &Arc<RetryStats> {
        &self.stats
    }

    /// Runs `f` under the policy; `label` names the operation in metrics.
    async fn retry<T, F, Fut>(
        &self,
        op: &str,
        label: &'static str,
        location: &Path,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.policy
            .run(
                || format!("{op} {location}"),
                &self.stats,
                || {
                    crate::metrics::object_store_request(label);
                    f()
                },
            )
            .await
    }
}

impl fmt::Debug for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStore")
            .field("inner", &self.inner.to_string())
            .field("policy", &self.policy)
            .finish()
    }
}

impl fmt::Display for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let size = payload.content_length() as u64;
        let r = self
            .retry("put", "put", location, || {
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await?;
        crate::metrics::object_store_bytes("put", size);
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        // Parts are not retried one by one (a part number cannot be reused
        // through this API); `segment::upload` retries a whole upload.
        self.retry("start multipart upload of", "multipart", location, || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retry("get", "get", location, || async {
            let r = self.inner.get_opts(location, options.clone()).await?;
            let (meta, range, attributes) = (r.meta.clone(), r.range.clone(), r.attributes.clone());
            // The whole body inside the attempt: a stream that breaks off is
            // read again rather than handed on half-read.
            let body = if options.head {
                Bytes::new()
            } else {
                r.bytes().await?
            };
            crate::metrics::object_store_bytes("get", body.len() as u64);
            Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async move { Ok(body) }).boxed(),
                ),
                meta,
                range,
                attributes,
            })
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let got = self
            .retry("get ranges of", "get", location, || {
                self.inner.get_ranges(location, ranges)
            })
            .await?;
        crate::metrics::object_store_bytes("get", got.iter().map(|b| b.len() as u64).sum());
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        let policy = self.policy;
        let stats = self.stats.clone();
        locations
            .and_then(move |path| {
                let inner = inner.clone();
                let stats = stats.clone();
                async move {
                    policy
                        .run(|| format!("delete {path}"), &stats, || inner.delete(&path))
                        .await?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // A listing that fails part-way is listed again from the start.
        let inner = self.inner.clone();
        let policy = self.policy;
        let stats = self.stats.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            policy
                .run(
                    || format!("list {}", prefix.as_ref().map_or("/", |p| p.as_ref())),
                    &stats,
                    || {
                        crate::metrics::object_store_request("list");
                        inner.list(prefix.as_ref()).try_collect::<Vec<_>>()
                    },
                )
                .await
        })
        .map_ok(|all| futures::stream::iter(all.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let what = prefix.cloned().unwrap_or_default();
        self.retry("list", "list", &what, || {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.retry("copy", "copy", from, || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_within_it() {
        let p = RetryPolicy {
            max_retries: 10,
            timeout: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        };
        for retry in 0..40 {
            let cap = Duration::from_millis((10u64 << retry.min(20)).min(100));
            for _ in 0..50 {
                assert!(p.backoff(retry) < cap, "retry {retry}");
            }
        }
        // Jittered: not the same wait every time.
        let waits: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(5)).collect();
        assert!(waits.len() > 10);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_and_names_the_operation() {
        let p = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(1),
            ..Default::default()
        };
        let stats = RetryStats::default();
        let calls = AtomicU64::new(0);
        let err = p
            .run(
                || "get a/b".into(),
                &stats,
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Err::<(), _>(object_store::Error::Generic {
                        store: "test",
                        source: "connection reset".into(),
                    })
                },
            )
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        let msg = err.to_string();
        assert!(msg.contains("get a/b failed after 4 attempts"), "{msg}");
        assert!(msg.contains("connection reset"), "{msg}");
        assert_eq!(stats.retries.load(Ordering::Relaxed), 3);

        // Not transient: one attempt, the error unchanged.
        calls.store(0, Ordering::Relaxed);
        let err = p
            .run(
                || "get a/b".into(),
                &stats,
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Err::<(), _>(object_store::Error::NotFound {
                        path: "a/b".into(),
                        source: "gone".into(),
                    })
                },
            )
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(matches!(err, object_store::Error::NotFound { .. }));
    }
}
