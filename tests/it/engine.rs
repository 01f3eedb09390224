//! Storage and query behaviour through the library API: segments, column
//! groups, pruning, pushdown, restarts, concurrent writers, bad input.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::datatypes::{Float64Type, Int64Type, Schema};
use quiver::storage::vector_item_field;
use quiver::{Engine, IngestMode, Store, StoreConfig};

use crate::util::ingest;

const DIM: usize = 4;

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = ids.end - ids.start;
    let id: Vec<i64> = ids.clone().collect();
    let cat: Vec<&str> = ids
        .clone()
        .map(|i| if i % 2 == 0 { "a" } else { "b" })
        .collect();
    let price: Vec<f64> = ids.clone().map(|i| i as f64).collect();
    let values: Vec<f32> = ids
        .flat_map(|i| (0..DIM).map(move |j| (i as f32) + j as f32 * 0.5))
        .collect();
    let emb = FixedSizeListArray::new(
        vector_item_field(),
        DIM as i32,
        Arc::new(Float32Array::from(values)),
        None,
    );
    assert_eq!(emb.len() as i64, n);
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(id)) as ArrayRef),
        ("category", Arc::new(StringArray::from(cat)) as ArrayRef),
        ("price", Arc::new(Float64Array::from(price)) as ArrayRef),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

async fn open(dir: &std::path::Path) -> Arc<Store> {
    Store::open(dir.to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap()
}

/// Appends the rows `ids` to `docs`, writing again (at most 5 times) on a
/// CommitConflict, which is retryable by contract: a Bloom false positive
/// against a segment compacted meanwhile can cause one, and so can a
/// writer losing every rebase attempt while others keep committing. A
/// failed write leaves nothing, so each row lands exactly once.
async fn append_retrying(store: &Store, ids: std::ops::Range<i64>) -> quiver::Result<()> {
    let mut retries = 0;
    loop {
        match ingest(store, "docs", batch(ids.clone()), IngestMode::APPEND).await {
            Ok(_) => return Ok(()),
            Err(quiver::Error::CommitConflict { .. }) if retries < 5 => retries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// The single Int64 value a `SELECT count(*) ...` returns.
async fn scalar_i64(engine: &Engine, sql: &str) -> i64 {
    engine.sql(sql).await.unwrap()[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0)
}

async fn explain(engine: &Engine, sql: &str) -> String {
    let batches = engine.sql(&format!("EXPLAIN {sql}")).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

/// Three writes make three segments; a range filter on the key reads only
/// the segment that can match, and gives the same rows as an unprunable
/// form of the same filter.
#[tokio::test]
async fn segments_are_pruned_by_manifest_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    ingest(&store, "docs", batch(0..100), IngestMode::CREATE)
        .await
        .unwrap();
    ingest(&store, "docs", batch(100..200), IngestMode::APPEND)
        .await
        .unwrap();
    ingest(&store, "docs", batch(200..300), IngestMode::APPEND)
        .await
        .unwrap();
    assert_eq!(store.snapshot("docs").unwrap().segments.len(), 3);
    let engine = Engine::new(store).unwrap();

    let pruned = "SELECT id FROM docs WHERE id >= 250 ORDER BY id";
    let plan = explain(&engine, pruned).await;
    assert_eq!(
        plan.matches(".parquet").count(),
        1,
        "expected one file after pruning:\n{plan}"
    );
    // `id + 0` defeats min/max pruning: all three files are scanned.
    let unpruned = "SELECT id FROM docs WHERE id + 0 >= 250 ORDER BY id";
    let plan = explain(&engine, unpruned).await;
    assert_eq!(
        plan.matches(".parquet").count(),
        3,
        "expected three files:\n{plan}"
    );
    let a = ids(&engine.sql(pruned).await.unwrap());
    let b = ids(&engine.sql(unpruned).await.unwrap());
    assert_eq!(a, (250..300).collect::<Vec<_>>());
    assert_eq!(a, b);
    // EXPLAIN ANALYZE shows quiver's scan (which fetches the vectors) with
    // how many segments it pruned.
    for (filter, pruned_n) in [("id >= 250", 2), ("id + 0 >= 250", 0)] {
        let sql = format!("SELECT id, embedding FROM docs WHERE {filter}");
        let batches = engine.sql(&format!("EXPLAIN ANALYZE {sql}")).await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("MaterializeExec"), "{text}");
        assert_eq!(crate::util::metric(&text, "segments_total"), 3, "{text}");
        assert_eq!(
            crate::util::metric(&text, "segments_pruned"),
            pruned_n,
            "{text}"
        );
    }
}

/// The rows and bytes a query's scans read (`quiver_scan_rows_total` /
/// `quiver_scan_bytes_total`): pruned segments are not read, filters do not
/// hide the rows they examined, the fused top-k's resident scan counts
/// like the streaming one, and vectors add their bytes.
#[tokio::test]
async fn scans_count_the_rows_and_bytes_they_read() {
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for (i, from) in [0i64, 100, 200].into_iter().enumerate() {
        let mode = if i == 0 {
            IngestMode::CREATE
        } else {
            IngestMode::APPEND
        };
        ingest(&store, "docs", batch(from..from + 100), mode)
            .await
            .unwrap();
    }
    let engine = Engine::new(store).unwrap();
    let scanned = |sql: &'static str| {
        let engine = &engine;
        async move {
            let quiver::query::Statement::Query(plan) = engine.plan(sql).await.unwrap() else {
                panic!("a query")
            };
            let q = engine
                .start_query(plan, &tracing::Span::none())
                .await
                .unwrap();
            let out: Vec<RecordBatch> = q.stream.try_collect().await.unwrap();
            let n: usize = out.iter().map(|b| b.num_rows()).sum();
            let (rows, bytes) = quiver::query::scan_totals(&q.plan);
            (n, rows, bytes)
        }
    };
    // Streaming scans (DataFusion's Parquet reader, then the vectors).
    let (n, rows, all_bytes) = scanned("SELECT id, embedding FROM docs").await;
    assert_eq!((n, rows), (300, 300));
    assert!(all_bytes >= 300 * DIM as u64 * 4, "{all_bytes}");
    let (n, rows, bytes) = scanned("SELECT id, embedding FROM docs WHERE id >= 250").await;
    assert_eq!((n, rows), (50, 100), "one segment read, half of it passes");
    assert!(bytes > 0 && bytes < all_bytes, "{bytes} of {all_bytes}");
    let (n, rows, no_vectors) = scanned("SELECT id FROM docs WHERE id >= 250").await;
    assert_eq!((n, rows), (50, 100));
    assert!(
        no_vectors < bytes,
        "vectors add bytes: {no_vectors} vs {bytes}"
    );
    // The fused top-k (resident scan of row groups).
    let (n, rows, topk_bytes) = scanned(
        "SELECT id FROM docs ORDER BY l2_distance(embedding, [1.0, 1.5, 2.0, 2.5]) LIMIT 3",
    )
    .await;
    assert_eq!((n, rows), (3, 300));
    assert!(topk_bytes >= 300 * DIM as u64 * 4, "{topk_bytes}");
    let (n, rows, _) = scanned(
        "SELECT id FROM docs WHERE id >= 250 \
         ORDER BY l2_distance(embedding, [1.0, 1.5, 2.0, 2.5]) LIMIT 3",
    )
    .await;
    assert_eq!((n, rows), (3, 100));
}

/// Scalar filters run inside the Parquet scan; vector columns are read only
/// for the rows that pass, from their own column-group files.
#[tokio::test]
async fn filters_are_pushed_into_the_scan_and_vectors_fetched_late() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    ingest(&store, "docs", batch(0..1000), IngestMode::CREATE)
        .await
        .unwrap();
    let m = store.snapshot("docs").unwrap();
    let seg = &m.segments[0];
    assert_eq!(seg.files.len(), 2, "one scalar group and one vector group");
    assert_eq!(seg.files[1].columns, vec!["embedding".to_string()]);
    assert!(!seg.files[0].columns.contains(&"embedding".to_string()));
    let engine = Engine::new(store).unwrap();

    let sql = "SELECT id, l2_distance(embedding, [1.0, 1.5, 2.0, 2.5]) AS d FROM docs \
               WHERE category = 'b' AND price < 50 ORDER BY d LIMIT 3";
    let plan = explain(&engine, sql).await;
    assert!(plan.contains("MaterializeExec"), "{plan}");
    assert!(
        plan.contains("predicate="),
        "filter not pushed into the scan:\n{plan}"
    );
    let out = engine.sql(sql).await.unwrap();
    assert_eq!(ids(&out), vec![1, 3, 5]);
    let d: Vec<f64> = out
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
        .collect();
    assert!(
        (d[0] - 0.0).abs() < 1e-9 && (d[1] - 4.0).abs() < 1e-6,
        "{d:?}"
    );
}

/// Data committed by one process is there after reopening the store, and
/// two writers on one store never lose each other's commits.
#[tokio::test]
async fn commits_survive_reopen_and_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path()).await;
    ingest(&a, "docs", batch(0..10), IngestMode::CREATE)
        .await
        .unwrap();
    let b = open(dir.path()).await;
    let (wa, wb) = (a.clone(), b.clone());
    let t1 = tokio::spawn(async move {
        for i in 0..10 {
            ingest(
                &wa,
                "docs",
                batch(100 + i * 10..110 + i * 10),
                IngestMode::APPEND,
            )
            .await
            .unwrap();
        }
    });
    let t2 = tokio::spawn(async move {
        for i in 0..10 {
            ingest(
                &wb,
                "docs",
                batch(1000 + i * 10..1010 + i * 10),
                IngestMode::APPEND,
            )
            .await
            .unwrap();
        }
    });
    t1.await.unwrap();
    t2.await.unwrap();
    drop((a, b));
    let reopened = open(dir.path()).await;
    let m = reopened.snapshot("docs").unwrap();
    assert_eq!(m.version, 21);
    assert_eq!(m.num_rows(), 210);
    let engine = Engine::new(reopened).unwrap();
    let got = ids(&engine.sql("SELECT id FROM docs ORDER BY id").await.unwrap());
    let mut want: Vec<i64> = (0..10).chain(100..200).chain(1000..1100).collect();
    want.sort();
    assert_eq!(got, want);
}

/// Rejected input changes nothing that is stored.
#[tokio::test]
async fn bad_input_is_rejected_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    ingest(&store, "docs", batch(0..10), IngestMode::CREATE)
        .await
        .unwrap();
    let before = store.snapshot("docs").unwrap().version;

    // Wrong dimension.
    let wrong = FixedSizeListArray::new(
        vector_item_field(),
        3,
        Arc::new(Float32Array::from(vec![0.0; 3])),
        None,
    );
    let one = batch(99..100);
    let b = RecordBatch::try_from_iter(vec![
        ("id", one.column(0).clone()),
        ("category", one.column(1).clone()),
        ("price", one.column(2).clone()),
        ("embedding", Arc::new(wrong) as ArrayRef),
    ])
    .unwrap();
    let e = ingest(&store, "docs", b, IngestMode::APPEND)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dimension 4") && e.contains("dimension 3"),
        "{e}"
    );

    // A bad batch after a good one: the good one is not committed either.
    let good = batch(10..20);
    let null_key = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![None, Some(1)])) as ArrayRef,
        ),
        ("category", good.column(1).slice(0, 2)),
        ("price", good.column(2).slice(0, 2)),
        ("embedding", good.column(3).slice(0, 2)),
    ])
    .unwrap();
    let schema: Arc<Schema> = good.schema();
    let e = store
        .ingest(
            "docs",
            schema,
            futures::stream::iter(vec![Ok(good), Ok(null_key)]),
            IngestMode::APPEND,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("primary key column 'id'") && e.contains("null"),
        "{e}"
    );

    let m = store.snapshot("docs").unwrap();
    assert_eq!(m.version, before);
    assert_eq!(m.num_rows(), 10);
    // The files of the aborted write were removed again.
    let files = walk(dir.path());
    assert_eq!(
        files.iter().filter(|p| p.ends_with(".parquet")).count(),
        2,
        "{files:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Appending new keys writes no deletes (key ranges rule old segments out
/// without reading them; inside a range the Bloom filter does, up to its
/// false-positive rate); overlapping keys replace the old rows, and the
/// count stays the same.
#[tokio::test]
async fn upserts_replace_rows_and_pure_appends_write_no_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let with_keys = |keys: Vec<i64>| {
        let b = batch(0..keys.len() as i64);
        RecordBatch::try_new(
            b.schema(),
            vec![
                Arc::new(Int64Array::from(keys)),
                b.column(1).clone(),
                b.column(2).clone(),
                b.column(3).clone(),
            ],
        )
        .unwrap()
    };
    let deletes = |store: &Store| -> u64 {
        store
            .snapshot("docs")
            .unwrap()
            .delete_logs
            .iter()
            .map(|d| d.rows)
            .sum()
    };
    ingest(
        &store,
        "docs",
        with_keys((0..1000).map(|i| 2 * i).collect()),
        IngestMode::CREATE,
    )
    .await
    .unwrap();
    // Odd keys: inside the old key range, but none exists.
    ingest(
        &store,
        "docs",
        with_keys((0..1000).map(|i| 2 * i + 1).collect()),
        IngestMode::APPEND,
    )
    .await
    .unwrap();
    let fp = deletes(&store);
    assert!(fp <= 30, "{fp} superfluous deletes for 1000 new keys");
    // Keys outside every segment's range: not a single delete.
    ingest(&store, "docs", batch(10_000..11_000), IngestMode::APPEND)
        .await
        .unwrap();
    assert_eq!(deletes(&store), fp);

    // 500 of these keys exist: they replace the old rows.
    ingest(&store, "docs", batch(10_500..11_500), IngestMode::APPEND)
        .await
        .unwrap();
    let replaced = deletes(&store) - fp;
    assert!(
        (500..=530).contains(&replaced),
        "deletes written: {replaced} (500 + Bloom false positives)"
    );
    let engine = Engine::new(store.clone()).unwrap();
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM docs").await, 3500);
    let got = ids(&engine
        .sql("SELECT id FROM docs WHERE id BETWEEN 10498 AND 10502 ORDER BY id")
        .await
        .unwrap());
    assert_eq!(got, vec![10498, 10499, 10500, 10501, 10502]);
    // The replacing rows are the newer ones.
    let ts = engine
        .sql("SELECT max(_ts) FILTER (WHERE id BETWEEN 10000 AND 10499), min(_ts) FILTER (WHERE id BETWEEN 10500 AND 10999) FROM docs")
        .await
        .unwrap();
    let old = ts[0]
        .column(0)
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .value(0);
    let new = ts[0]
        .column(1)
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .value(0);
    assert!(new > old);

    // Reopening reads the same state from the store.
    drop(engine);
    let reopened = Engine::new(open(dir.path()).await).unwrap();
    assert_eq!(
        scalar_i64(&reopened, "SELECT count(*) FROM docs WHERE id >= 10000").await,
        1500
    );
}

/// Compaction merges small segments, drops deleted rows and applied delete
/// logs, keeps every row's `_ts`, and changes no query answer; a query
/// pinned to the old version still reads it; GC then removes what no kept
/// version uses and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_gc_keep_answers_and_remove_only_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    ingest(&store, "docs", batch(0..100), IngestMode::CREATE)
        .await
        .unwrap();
    // Each write replaces 20 rows of the one before.
    for i in 1..5 {
        ingest(
            &store,
            "docs",
            batch(i * 80..i * 80 + 100),
            IngestMode::APPEND,
        )
        .await
        .unwrap();
    }
    let engine = Engine::new(store.clone()).unwrap();
    engine
        .sql("DELETE FROM docs WHERE id % 7 = 0")
        .await
        .unwrap();
    let probe = "SELECT id, _ts, category, price, embedding FROM docs ORDER BY id";
    let before = engine.sql(probe).await.unwrap();
    let before_topk = engine
        .sql(
            "SELECT id FROM docs ORDER BY l2_distance(embedding, [90.0, 90.5, 91.0, 91.5]), id LIMIT 5",
        )
        .await
        .unwrap();
    let old = store.snapshot("docs").unwrap();
    assert_eq!(old.segments.len(), 5);
    // A table pinned to the old version, as a running query holds it.
    let pinned = engine.context().table_provider("docs").await.unwrap();

    let r = quiver::admin::compact::compact_collection(&engine, "docs")
        .await
        .unwrap();
    assert_eq!(r.merged_segments, 5);
    assert_eq!(r.written_segments, 1);
    assert_eq!(r.dropped_delete_logs, old.delete_logs.len());
    assert_eq!(old.delete_logs.len(), 5, "4 upserts and one DELETE");
    let m = store.snapshot("docs").unwrap();
    assert_eq!(m.segments.len(), 1);
    assert!(m.delete_logs.is_empty());
    assert_eq!(m.segments[0].rows, r.rows_after);
    assert_eq!(engine.sql(probe).await.unwrap(), before);
    let after_topk = engine
        .sql(
            "SELECT id FROM docs ORDER BY l2_distance(embedding, [90.0, 90.5, 91.0, 91.5]), id LIMIT 5",
        )
        .await
        .unwrap();
    assert_eq!(ids(&after_topk), ids(&before_topk));
    // Nothing left to do.
    assert_eq!(
        quiver::admin::compact::compact_collection(&engine, "docs")
            .await
            .unwrap()
            .version,
        None
    );

    // The pinned old version still reads its files.
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_table("old_docs", pinned).unwrap();
    quiver::register(&ctx, store.clone());
    let n = ctx
        .sql("SELECT count(*) FROM old_docs")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        n[0].column(0).as_primitive::<Int64Type>().value(0),
        before.iter().map(|b| b.num_rows() as i64).sum::<i64>()
    );

    // GC with a long retention removes nothing; with none, only garbage.
    let r = quiver::admin::gc::gc(&store, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(r[0].removed_files, 0);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = quiver::admin::gc::gc(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(r[0].removed_files >= 11, "{r:?}");
    assert!(r[0].removed_manifests >= 1);
    let parquet = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert_eq!(parquet, 2, "the compacted segment's two group files remain");
    let reopened = Engine::new(open(dir.path()).await).unwrap();
    assert_eq!(reopened.sql(probe).await.unwrap(), before);
}

/// `quiver_snapshot(collection, time)` reads the version current at that time.
#[tokio::test]
async fn time_travel_by_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    ingest(&store, "docs", batch(0..10), IngestMode::CREATE)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let between = std::time::SystemTime::now();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    ingest(&store, "docs", batch(10..15), IngestMode::APPEND)
        .await
        .unwrap();
    let engine = Engine::new(store).unwrap();
    let at = humantime::format_rfc3339_millis(between).to_string();
    let old = scalar_i64(
        &engine,
        &format!("SELECT count(*) FROM quiver_snapshot('docs', '{at}')"),
    )
    .await;
    assert_eq!(old, 10);
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM docs").await, 15);
}

/// Two writers (separate store handles, as separate processes) and a
/// compactor on one collection: no lost rows, no duplicated rows, version
/// numbers contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path()).await;
    ingest(&a, "docs", batch(0..10), IngestMode::CREATE)
        .await
        .unwrap();
    let b = open(dir.path()).await;
    let c = Engine::new(open(dir.path()).await).unwrap();
    let writer = |store: Arc<Store>, base: i64| {
        tokio::spawn(async move {
            for i in 0..15 {
                let start = base + i * 20;
                append_retrying(&store, start..start + 20)
                    .await
                    .unwrap_or_else(|e| panic!("write failed: {e}"));
            }
        })
    };
    let (wa, wb) = (writer(a.clone(), 1000), writer(b.clone(), 5000));
    let compactor = tokio::spawn(async move {
        let mut done = 0;
        for _ in 0..10 {
            c.store().reload().await.unwrap();
            match quiver::admin::compact::compact_collection(&c, "docs").await {
                Ok(r) if r.version.is_some() => done += 1,
                Ok(_) => {}
                // A compaction may lose to a writer that compacted/replaced
                // the same segments; that is a clean, retryable conflict.
                Err(quiver::Error::CommitConflict { .. }) => {}
                Err(e) => panic!("compaction failed: {e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        done
    });
    wa.await.unwrap();
    wb.await.unwrap();
    let compactions = compactor.await.unwrap();
    assert!(compactions > 0, "no compaction ran concurrently");

    let fresh = open(dir.path()).await;
    let m = fresh.snapshot("docs").unwrap();
    let mut versions = quiver::storage::list_versions(fresh.object_store().as_ref(), "docs")
        .await
        .unwrap();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=m.version).collect::<Vec<_>>(),
        "versions are contiguous"
    );
    let engine = Engine::new(fresh).unwrap();
    let got = ids(&engine.sql("SELECT id FROM docs ORDER BY id").await.unwrap());
    let want: Vec<i64> = (0..10).chain(1000..1300).chain(5000..5300).collect();
    assert_eq!(got, want, "no lost or duplicated rows");
}

/// Eight writers (tasks in one process, each with a store of its own, so
/// they race on the conditional put like separate processes) commit 50
/// times each to one collection, on a local directory and on S3: exactly
/// 400 versions after CREATE, numbered contiguously, every acknowledged row
/// present exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_commit_every_version_exactly_once() {
    const WRITERS: i64 = 8;
    const COMMITS: i64 = 50;
    for backend in crate::util::Backend::all().await {
        let url = backend.url();
        let first = Store::open(&url, StoreConfig::default()).await.unwrap();
        ingest(&first, "docs", batch(0..1), IngestMode::CREATE)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = Store::open(&url, StoreConfig::default()).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for j in 0..COMMITS {
                    let start = 1000 + w * 10_000 + j * 2;
                    // Plain appends never conflict beyond the rebase; a
                    // writer that loses every rebase attempt (possible on a
                    // loaded machine) writes again like a client.
                    append_retrying(&store, start..start + 2)
                        .await
                        .unwrap_or_else(|e| panic!("writer {w}, commit {j}: {e}"));
                    acked.extend(start..start + 2);
                }
                acked
            }));
        }
        let mut want: Vec<i64> = vec![0];
        for t in tasks {
            want.extend(t.await.unwrap());
        }
        want.sort_unstable();
        let fresh = Store::open(&url, StoreConfig::default()).await.unwrap();
        let mut versions = quiver::storage::list_versions(fresh.object_store().as_ref(), "docs")
            .await
            .unwrap();
        versions.sort_unstable();
        let n = (WRITERS * COMMITS) as u64;
        assert_eq!(versions, (1..=n + 1).collect::<Vec<_>>(), "{backend:?}");
        let engine = Engine::new(fresh).unwrap();
        let got = ids(&engine.sql("SELECT id FROM docs ORDER BY id").await.unwrap());
        assert_eq!(got, want, "{backend:?}: lost or duplicated rows");
    }
}

/// A collection without a declared key (its rows numbered in `_id`) goes
/// through everything a keyed one does: appends that keep repeated rows,
/// deletes and updates by predicate, the fused top-k (whose tie-break
/// reads the generated key), compaction, GC and verification; the numbers
/// stay unique and the answers stay the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_key_survives_compaction_gc_and_top_k() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let plain = |ids: std::ops::Range<i64>| {
        let b = batch(ids);
        // No `id` column: the rows get a generated key.
        let keep = [1usize, 2, 3];
        RecordBatch::try_new(
            Arc::new(b.schema().project(&keep).unwrap()),
            keep.iter().map(|&i| b.column(i).clone()).collect(),
        )
        .unwrap()
    };
    ingest(&store, "gen", plain(0..100), IngestMode::CREATE)
        .await
        .unwrap();
    for _ in 0..3 {
        // The same rows again: appended, not replaced.
        ingest(&store, "gen", plain(0..100), IngestMode::APPEND)
            .await
            .unwrap();
    }
    let schema = store.snapshot("gen").unwrap().schema.clone().unwrap();
    assert!(schema.auto_id());
    assert_eq!(schema.primary_key(), quiver::storage::ID_COLUMN);
    let engine = Engine::new(store.clone()).unwrap();
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM gen").await, 400);
    engine
        .sql("DELETE FROM gen WHERE price >= 90")
        .await
        .unwrap();
    engine
        .sql("UPDATE gen SET category = 'c' WHERE price < 10")
        .await
        .unwrap();
    let probe = "SELECT _id, category, price, embedding FROM gen ORDER BY _id";
    let topk = "SELECT price, category FROM gen ORDER BY l2_distance(embedding, [50.0, 50.5, 51.0, 51.5]) LIMIT 6";
    let before = engine.sql(probe).await.unwrap();
    let before_topk = engine.sql(topk).await.unwrap();
    assert!(explain(&engine, topk).await.contains("VectorTopKExec"));
    let pretty = |b: &[RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    assert!(
        pretty(&before_topk).contains("| 50.0  | a        |"),
        "{}",
        pretty(&before_topk)
    );
    assert_eq!(before.iter().map(|b| b.num_rows()).sum::<usize>(), 360);
    assert_eq!(
        scalar_i64(&engine, "SELECT count(DISTINCT _id) FROM gen").await,
        360
    );
    assert_eq!(
        scalar_i64(&engine, "SELECT count(*) FROM gen WHERE category = 'c'").await,
        40
    );

    let r = quiver::admin::compact::compact_collection(&engine, "gen")
        .await
        .unwrap();
    assert!(r.merged_segments >= 2, "{r:?}");
    assert_eq!(pretty(&engine.sql(probe).await.unwrap()), pretty(&before));
    assert_eq!(
        pretty(&engine.sql(topk).await.unwrap()),
        pretty(&before_topk)
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    quiver::admin::gc::gc(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(quiver::admin::verify::verify(&store)
        .await
        .unwrap()
        .is_empty());
    // Reopened, the clock numbers new rows above every stored one.
    drop(engine);
    drop(store);
    let store = open(dir.path()).await;
    ingest(&store, "gen", plain(0..100), IngestMode::APPEND)
        .await
        .unwrap();
    let engine = Engine::new(store).unwrap();
    assert_eq!(
        scalar_i64(&engine, "SELECT count(DISTINCT _id) - count(*) FROM gen").await,
        0
    );
    assert_eq!(scalar_i64(&engine, "SELECT count(*) FROM gen").await, 460);
    assert_eq!(
        pretty(&engine.sql(probe).await.unwrap()).lines().count() > 360,
        true
    );
}
