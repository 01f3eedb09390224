//! Transient object-store faults: a store wrapper that injects them per
//! operation kind, and the guarantees quiver keeps under them: retries are
//! bounded in count and time, no query answers wrongly, every write that
//! fails is reported (and leaves nothing half-done), nothing acknowledged is
//! lost.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};
use parking_lot::Mutex;
use quiver::storage::{RetryPolicy, RetryStore};
use quiver::{Engine, IngestMode, Store, StoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::batch;
use crate::util::Backend;

/// Kinds of operations faults are chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Get,
    Put,
    Multipart,
    /// Completing a multipart upload.
    Complete,
    List,
    Delete,
    Copy,
}

/// Which calls fail, and how.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The first call of these kinds fails.
    pub fail_first: Vec<Kind>,
    /// Every n-th call (of any kind) fails.
    pub every_nth: Option<u64>,
    /// This fraction of calls (of any kind) fails.
    pub fraction: f64,
    /// Calls of this kind take this much longer.
    pub slow: Option<(Kind, Duration)>,
    /// Only these kinds fail (empty: all).
    pub only: Vec<Kind>,
}

/// How one failing call fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    /// Before reaching the store.
    Before,
    /// A write is done, but its answer is lost; a read's body breaks off
    /// half-way.
    After,
}

/// An `ObjectStore` that injects the faults of its [`Faults`].
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<State>,
}

/// What the store and its uploads and streams share.
#[derive(Debug)]
pub struct State {
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    calls: Mutex<BTreeMap<Kind, u64>>,
    total: AtomicU64,
    pub injected: AtomicU64,
}

impl std::ops::Deref for FaultyStore {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

/// A [`FaultyStore`] over `inner`; `seed` makes its choices repeatable.
pub fn faulty(inner: Arc<dyn ObjectStore>, faults: Faults, seed: u64) -> Arc<FaultyStore> {
    Arc::new(FaultyStore {
        inner,
        state: Arc::new(State {
            faults: Mutex::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            calls: Mutex::default(),
            total: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }),
    })
}

impl State {
    pub fn set(&self, faults: Faults) {
        *self.faults.lock() = faults;
    }

    /// Calls of `kind` so far.
    pub fn calls(&self, kind: Kind) -> u64 {
        self.calls.lock().get(&kind).copied().unwrap_or(0)
    }

    /// Calls of every kind so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether this call fails (and how), and how long it is delayed.
    fn decide(&self, kind: Kind) -> (Option<How>, Duration) {
        let n = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let nth_of_kind = {
            let mut calls = self.calls.lock();
            let c = calls.entry(kind).or_default();
            *c += 1;
            *c
        };
        let f = self.faults.lock().clone();
        let delay = match f.slow {
            Some((k, d)) if k == kind => d,
            _ => Duration::ZERO,
        };
        let eligible = f.only.is_empty() || f.only.contains(&kind);
        let mut rng = self.rng.lock();
        let fails = eligible
            && ((f.fail_first.contains(&kind) && nth_of_kind == 1)
                || f.every_nth.is_some_and(|e| n.is_multiple_of(e))
                || (f.fraction > 0.0 && rng.random_bool(f.fraction)));
        if !fails {
            return (None, delay);
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let how = if rng.random_bool(0.5) {
            How::After
        } else {
            How::Before
        };
        (Some(how), delay)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {what}").into(),
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let (fault, delay) = self.decide(Kind::Put);
        tokio::time::sleep(delay).await;
        match fault {
            None => self.inner.put_opts(location, payload, opts).await,
            Some(How::Before) => Err(injected("put refused")),
            Some(How::After) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected("put done, answer lost"))
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let (fault, delay) = self.decide(Kind::Multipart);
        tokio::time::sleep(delay).await;
        if fault.is_some() {
            return Err(injected("multipart upload refused"));
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            state: self.state.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let (fault, delay) = self.decide(Kind::Get);
        tokio::time::sleep(delay).await;
        match fault {
            None => self.inner.get_opts(location, options).await,
            Some(How::Before) => Err(injected("get refused")),
            Some(How::After) => {
                // The body breaks off half-way.
                let r = self.inner.get_opts(location, options).await?;
                let (meta, range, attributes) =
                    (r.meta.clone(), r.range.clone(), r.attributes.clone());
                let body = r.bytes().await?;
                let half = body.slice(..body.len() / 2);
                let stream = futures::stream::iter(vec![
                    Ok(half),
                    Err(injected("connection reset while reading the body")),
                ])
                .boxed();
                Ok(GetResult {
                    payload: GetResultPayload::Stream(stream),
                    meta,
                    range,
                    attributes,
                })
            }
        }
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let (fault, delay) = self.decide(Kind::Get);
        tokio::time::sleep(delay).await;
        match fault {
            None => self.inner.get_ranges(location, ranges).await,
            Some(_) => Err(injected("ranged get refused")),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (inner, state) = (self.inner.clone(), self.state.clone());
        locations
            .then(move |p| {
                let (inner, state) = (inner.clone(), state.clone());
                async move {
                    let p = p?;
                    let (fault, delay) = state.decide(Kind::Delete);
                    tokio::time::sleep(delay).await;
                    match fault {
                        None => {
                            inner.delete(&p).await?;
                            Ok(p)
                        }
                        Some(How::Before) => Err(injected("delete refused")),
                        Some(How::After) => {
                            inner.delete(&p).await?;
                            Err(injected("delete done, answer lost"))
                        }
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (fault, _) = self.decide(Kind::List);
        if fault.is_some() {
            return futures::stream::once(async { Err(injected("list refused")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let (fault, delay) = self.decide(Kind::List);
        tokio::time::sleep(delay).await;
        if fault.is_some() {
            return Err(injected("list refused"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let (fault, _) = self.decide(Kind::Copy);
        if fault.is_some() {
            return Err(injected("copy refused"));
        }
        self.inner.copy_opts(from, to, options).await
    }
}

/// A multipart upload whose parts and completion may fail.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    state: Arc<State>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (fault, _) = self.state.decide(Kind::Multipart);
        if fault.is_some() {
            return async { Err(injected("part upload refused")) }.boxed();
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (fault, _) = self.state.decide(Kind::Complete);
        if fault.is_some() {
            return Err(injected("completing the upload refused"));
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        timeout: Duration::from_secs(10),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn retries_are_bounded_by_count_and_by_time() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let p = Path::from("c/insert_log/1/0/a.parquet");
    inner
        .put(&p, Bytes::from_static(b"0123456789").into())
        .await
        .unwrap();

    // Every get fails: 1 + max_retries attempts, then the error says so.
    let all = Faults {
        fraction: 1.0,
        ..Default::default()
    };
    let f = faulty(inner.clone(), all.clone(), 1);
    let r = RetryStore::new(f.clone(), fast_retries(3));
    let err = r.get_range(&p, 0..4).await.unwrap_err().to_string();
    assert_eq!(f.calls(Kind::Get), 4);
    assert!(err.contains("failed after 4 attempts"), "{err}");
    assert!(err.contains("c/insert_log/1/0/a.parquet"), "{err}");

    // Many retries allowed, little time: time bounds them.
    let f = faulty(inner.clone(), all, 2);
    let policy = RetryPolicy {
        max_retries: 1_000_000,
        timeout: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
    };
    let r = RetryStore::new(f.clone(), policy);
    let start = Instant::now();
    let err = r.get_range(&p, 0..4).await.unwrap_err().to_string();
    let took = start.elapsed();
    assert!(f.calls(Kind::Get) < 1000, "{} attempts", f.calls(Kind::Get));
    assert!(
        took < Duration::from_secs(5),
        "gave up after {took:?} with a 300 ms budget"
    );
    assert!(err.contains("failed after"), "{err}");

    // First call of each kind fails, every 3rd call fails, a body breaks off
    // half-way, a call is slow: with retries, every answer is right.
    let f = faulty(
        inner.clone(),
        Faults {
            fail_first: vec![Kind::Get, Kind::Put, Kind::List],
            every_nth: Some(3),
            slow: Some((Kind::Get, Duration::from_millis(20))),
            ..Default::default()
        },
        3,
    );
    let r = RetryStore::new(f.clone(), fast_retries(4));
    for i in 0..20u8 {
        let q = Path::from(format!("c/x/{i}"));
        r.put(&q, Bytes::from(vec![i; 100]).into()).await.unwrap();
        let got = r.get(&q).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, Bytes::from(vec![i; 100]));
    }
    let listed: Vec<_> =
        futures::TryStreamExt::try_collect::<Vec<_>>(r.list(Some(&Path::from("c/x"))))
            .await
            .unwrap();
    assert_eq!(listed.len(), 20);
    assert!(f.injected.load(Ordering::Relaxed) >= 10);
    assert!(r.stats().retries.load(Ordering::Relaxed) >= 10);

    // Answers that retrying cannot change come back at once.
    let f = faulty(inner, Faults::default(), 4);
    let r = RetryStore::new(f.clone(), fast_retries(4));
    let err = r.get(&Path::from("c/missing")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    assert_eq!(f.calls(Kind::Get), 1);
}

#[tokio::test]
async fn a_manifest_put_that_landed_but_lost_its_answer_commits_once() {
    for backend in Backend::all().await {
        let base = backend.object_store();
        // Every put lands and then reports a failure, once.
        let f = faulty(
            base.clone(),
            Faults {
                every_nth: Some(1),
                only: vec![Kind::Put],
                ..Default::default()
            },
            5,
        );
        f.set(Faults::default());
        let store = Store::open_with(
            f.clone(),
            backend.url(),
            StoreConfig {
                retry: fast_retries(3),
                ..StoreConfig::default()
            },
        )
        .await
        .unwrap();
        crate::util::ingest(&store, "t", batch(&[(1, 1)]), IngestMode::CREATE)
            .await
            .unwrap();
        // From now on, the first attempt of every put lands but its answer
        // is lost; the retry finds the object there.
        f.set(Faults {
            every_nth: Some(2),
            only: vec![Kind::Put],
            ..Default::default()
        });
        let before = quiver::storage::list_versions(base.as_ref(), "t")
            .await
            .unwrap();
        for i in 2..6 {
            crate::util::ingest(&store, "t", batch(&[(i, i)]), IngestMode::APPEND)
                .await
                .unwrap();
        }
        let mut after = quiver::storage::list_versions(base.as_ref(), "t")
            .await
            .unwrap();
        after.sort();
        assert_eq!(before, vec![1], "{backend:?}");
        assert_eq!(
            after,
            vec![1, 2, 3, 4, 5],
            "one version per write ({backend:?})"
        );
        let engine = Engine::new(store).unwrap();
        let n = engine.sql("SELECT count(*) FROM t").await.unwrap();
        assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 5);
    }
}

/// Keys of the rows `SELECT id, value` returns, or the error.
async fn rows(engine: &Engine) -> quiver::Result<BTreeMap<i64, i64>> {
    let batches: Vec<RecordBatch> = engine.sql("SELECT id, value FROM docs").await?;
    let mut out = BTreeMap::new();
    for b in &batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let v = b.column(1).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            assert!(
                out.insert(id.value(i), v.value(i) as i64).is_none(),
                "key {} twice",
                id.value(i)
            );
        }
    }
    Ok(out)
}

/// The faulty run's figures.
#[derive(Debug, Default)]
struct Tally {
    writes_ok: u64,
    writes_failed: u64,
    queries_ok: u64,
    queries_failed: u64,
}

/// Random writes, deletes, compactions and queries on a store whose
/// operations fail at `fraction`, checked against a model after every step,
/// until the store has seen `ops` operations. A write that reports an error
/// must have changed nothing or everything (atomic commit); a write that
/// succeeded must be visible; a query that succeeds must be right.
async fn churn(
    backend: &Backend,
    fraction: f64,
    retries: u32,
    ops: u64,
    seed: u64,
) -> (Tally, u64) {
    let f = faulty(backend.object_store(), Faults::default(), seed);
    let config = StoreConfig {
        segment_max_rows: 16,
        // Reads go to the store: nothing is answered from memory.
        cache_bytes: 0,
        decoded_cache_bytes: 0,
        retry: fast_retries(retries),
        ..StoreConfig::default()
    };
    let store = Store::open_with(f.clone(), backend.url(), config.clone())
        .await
        .unwrap();
    crate::util::ingest(&store, "docs", batch(&[(0, 0)]), IngestMode::CREATE)
        .await
        .unwrap();
    let mut engine = Engine::new(store).unwrap();
    let mut model = BTreeMap::from([(0i64, 0i64)]);
    f.set(Faults {
        fraction,
        ..Default::default()
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut step = 0u64;
    let mut last_failure = String::new();
    while f.total() < ops && step < 20_000 {
        step += 1;
        let before = model.clone();
        let choice = rng.random_range(0..10);
        let (result, expect): (quiver::Result<()>, BTreeMap<i64, i64>) = match choice {
            0..=4 => {
                let rows: Vec<(i64, i64)> = (0..rng.random_range(1..20))
                    .map(|_| (rng.random_range(0..300), rng.random_range(0..1000)))
                    .collect();
                let mut want = model.clone();
                for (k, v) in &rows {
                    want.insert(*k, *v);
                }
                let r =
                    crate::util::ingest(engine.store(), "docs", batch(&rows), IngestMode::APPEND)
                        .await
                        .map(|_| ());
                (r, want)
            }
            5 => {
                let x = rng.random_range(0..1000);
                let mut want = model.clone();
                want.retain(|_, v| *v >= x);
                let r = engine
                    .sql(&format!("DELETE FROM docs WHERE value < {x}"))
                    .await
                    .map(|_| ());
                (r, want)
            }
            6 => {
                let r = quiver::admin::compact::compact_collection(&engine, "docs")
                    .await
                    .map(|_| ());
                (r, model.clone())
            }
            7 => {
                // A new process on the same store.
                let store = Store::open_with(f.clone(), backend.url(), config.clone()).await;
                match store {
                    Ok(s) => {
                        engine = Engine::new(s).unwrap();
                        (Ok(()), model.clone())
                    }
                    Err(e) => (Err(e), model.clone()),
                }
            }
            _ => {
                // Queries only.
                let k = rng.random_range(0..300);
                let got = engine
                    .sql(&format!("SELECT value FROM docs WHERE id = {k}"))
                    .await;
                match got {
                    Ok(b) => {
                        tally.queries_ok += 1;
                        let v: Vec<i64> = b
                            .iter()
                            .flat_map(|b| {
                                b.column(0)
                                    .as_primitive::<Float64Type>()
                                    .values()
                                    .iter()
                                    .map(|v| *v as i64)
                                    .collect::<Vec<_>>()
                            })
                            .collect();
                        assert_eq!(
                            v,
                            model.get(&k).copied().into_iter().collect::<Vec<_>>(),
                            "point lookup {k} at step {step}"
                        );
                    }
                    Err(_) => tally.queries_failed += 1,
                }
                (Ok(()), model.clone())
            }
        };
        let written = result.is_ok();
        if written {
            tally.writes_ok += 1;
            model = expect.clone();
        } else {
            tally.writes_failed += 1;
            last_failure = format!(
                "step {step}, operation {choice}: {:?}",
                result.as_ref().err()
            );
        }
        if !written {
            // A failed commit whose outcome was unknown may have landed:
            // look at the store, not at this process's view of it.
            let mut reloaded = false;
            for _ in 0..50 {
                if engine.store().reload().await.is_ok() {
                    reloaded = true;
                    break;
                }
            }
            assert!(reloaded, "50 reloads in a row failed");
        }
        // The truth, read by a process whose store does not fail.
        let clean =
            Engine::new(Store::open(&backend.url(), config.clone()).await.unwrap()).unwrap();
        let truth = rows(&clean).await.unwrap();
        if written {
            assert_eq!(
                truth, model,
                "acknowledged write missing or wrong at step {step} (operation {choice}; last failure: {last_failure})"
            );
        } else {
            // A failed write changed nothing, or (its commit landed although
            // the answer was lost) everything.
            assert!(
                truth == before || truth == expect,
                "a failed write left a partial change at step {step}: {:?}",
                result.err()
            );
            model = truth;
        }
        // The faulty process answers right, or fails; never wrongly.
        match rows(&engine).await {
            Ok(got) => {
                tally.queries_ok += 1;
                assert_eq!(got, model, "a wrong answer at step {step}");
            }
            Err(_) => tally.queries_failed += 1,
        }
    }
    (tally, f.total())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_faults_give_no_wrong_answers_and_lose_nothing() {
    for backend in Backend::all().await {
        // With retries: faults are absorbed.
        let (t, ops) = churn(&backend, 0.05, 6, 10_000, 42).await;
        eprintln!("{backend:?} with retries: {ops} operations, {t:?}");
        assert!(ops >= 10_000);
        assert_eq!(t.writes_failed, 0, "{t:?}");
    }
    for backend in Backend::all().await {
        // Without retries: faults surface as errors, never as wrong answers
        // or half-done writes.
        let (t, ops) = churn(&backend, 0.05, 0, 3_000, 43).await;
        eprintln!("{backend:?} without retries: {ops} operations, {t:?}");
        assert!(t.writes_failed > 0 && t.queries_failed > 0, "{t:?}");
    }
}

/// Rows with 128-d vectors: 3,000 rows make a vector file of 1.5 MiB.
fn wide(ids: std::ops::Range<i64>) -> RecordBatch {
    use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array};
    let emb = FixedSizeListArray::new(
        quiver::storage::vector_item_field(),
        128,
        Arc::new(Float32Array::from_iter_values(ids.clone().flat_map(|i| {
            (0..128).map(move |j| ((i * 31 + j) % 977) as f32)
        }))),
        None,
    );
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(ids)) as ArrayRef,
        ),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

/// Objects under `prefix`, by path.
async fn objects(os: &dyn ObjectStore, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut all: Vec<(String, Option<String>)> =
        futures::TryStreamExt::try_collect::<Vec<_>>(os.list(Some(&Path::from(prefix))))
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.location.to_string(), m.e_tag))
            .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_go_up_in_parts_and_a_failed_upload_leaves_nothing() {
    for backend in Backend::all().await {
        let base = backend.object_store();
        let f = faulty(base.clone(), Faults::default(), 9);
        let config = StoreConfig {
            multipart_threshold_bytes: 6 * 1024 * 1024,
            multipart_part_bytes: quiver::storage::MIN_MULTIPART_PART_BYTES,
            retry: fast_retries(2),
            ..StoreConfig::default()
        };
        let store = Store::open_with(f.clone(), backend.url(), config.clone())
            .await
            .unwrap();
        // 15,000 x 128-d float32: a 7.7 MB vector file, in two parts.
        crate::util::ingest(&store, "t", wide(0..15_000), IngestMode::CREATE)
            .await
            .unwrap();
        assert_eq!(
            f.calls(Kind::Complete),
            1,
            "{backend:?}: one multipart upload"
        );
        assert_eq!(
            f.calls(Kind::Multipart),
            1 + 2,
            "{backend:?}: start and two parts"
        );
        let files = objects(base.as_ref(), "t/insert_log").await;
        if matches!(backend, Backend::S3(_)) {
            // S3 marks a multipart object's ETag with its part count.
            assert!(
                files
                    .iter()
                    .any(|(_, tag)| tag.as_deref().is_some_and(|t| t.contains("-2"))),
                "{files:?}"
            );
        }
        let engine = Engine::new(store.clone()).unwrap();
        let sum = "SELECT count(*), sum(embedding[5]) FROM t";
        let want = pretty_format(&engine.sql(sum).await.unwrap());

        // Completing the upload fails every time: each attempt is aborted,
        // the write fails, and nothing of it is visible.
        let versions = quiver::storage::list_versions(base.as_ref(), "t")
            .await
            .unwrap();
        f.set(Faults {
            fraction: 1.0,
            only: vec![Kind::Complete],
            ..Default::default()
        });
        let before = f.calls(Kind::Complete);
        let err = crate::util::ingest(&store, "t", wide(20_000..35_000), IngestMode::APPEND)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("multipart upload of t/insert_log/"), "{err}");
        assert!(err.contains("after 3 attempts"), "{err}");
        assert_eq!(f.calls(Kind::Complete) - before, 3);
        f.set(Faults::default());
        assert_eq!(
            objects(base.as_ref(), "t/insert_log").await,
            files,
            "{backend:?}"
        );
        assert_eq!(
            quiver::storage::list_versions(base.as_ref(), "t")
                .await
                .unwrap(),
            versions
        );
        let fresh = Engine::new(Store::open(&backend.url(), config).await.unwrap()).unwrap();
        assert_eq!(pretty_format(&fresh.sql(sum).await.unwrap()), want);
    }
}

fn pretty_format(b: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(b)
        .unwrap()
        .to_string()
}
