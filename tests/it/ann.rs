//! Vector indexes in process: probing every list is the exact answer (the
//! differential test of the index path), filters and deletes with it, time
//! travel with the indexes of the version read, a damaged index file named
//! in the error while other queries answer, builds that lose to a
//! compaction or die before their commit leave nothing referenced, and GC
//! removes what no version references.

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow::util::pretty::pretty_format_batches;
use quiver::query::{SearchSettings, VectorSearch};
use quiver::storage::vector_item_field;
use quiver::{Engine, EngineOptions, IngestMode, Store, StoreConfig};

use crate::util::{ingest, metric};

const DIM: usize = 16;

/// `n` rows from id `first`: vectors around 30 random centres, `bucket` =
/// id % 100.
fn batch(first: i64, n: usize, seed: u64) -> RecordBatch {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 20_000) as f32 / 10_000.0 - 1.0
    };
    let centres: Vec<f32> = (0..30 * DIM).map(|_| next() * 3.0).collect();
    let mut values = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let c = (i * 7 + (i / 3)) % 30;
        for j in 0..DIM {
            values.push(centres[c * DIM + j] + next());
        }
    }
    let ids: Vec<i64> = (first..first + n as i64).collect();
    let emb = FixedSizeListArray::new(
        vector_item_field(),
        DIM as i32,
        Arc::new(Float32Array::from(values)),
        None,
    );
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(ids.iter().copied())) as ArrayRef,
        ),
        (
            "bucket",
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 100))) as ArrayRef,
        ),
        ("emb", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

fn config() -> StoreConfig {
    StoreConfig {
        segment_max_rows: 2000,
        row_group_rows: 500,
        index_min_rows: 100,
        index_build_threads: 2,
        ..StoreConfig::default()
    }
}

/// A store in `dir` with collection `name` of 6000 rows (3 segments).
async fn store_with_rows(dir: &std::path::Path, name: &str) -> Arc<Store> {
    let store = Store::open(dir.to_str().unwrap(), config()).await.unwrap();
    for part in 0..3 {
        let mode = if part == 0 {
            IngestMode::CREATE
        } else {
            IngestMode::APPEND
        };
        ingest(
            &store,
            name,
            batch(part * 2000, 2000, 1 + part as u64),
            mode,
        )
        .await
        .unwrap();
    }
    assert_eq!(store.snapshot(name).unwrap().segments.len(), 3);
    store
}

fn engine(store: &Arc<Store>, mode: VectorSearch, probes: usize) -> Engine {
    engine_with(
        store,
        SearchSettings {
            mode,
            ivf_probes: probes,
            ..Default::default()
        },
    )
}

fn engine_with(store: &Arc<Store>, vector_search: SearchSettings) -> Engine {
    Engine::with_options(
        store.clone(),
        EngineOptions {
            vector_search,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Every index type, with the options the tests build it with.
const KINDS: [(&str, &str); 3] = [
    ("ivf", "lists = 12"),
    ("ivf_sq8", "lists = 12"),
    ("hnsw", "m = 8, ef_construction = 64"),
];

async fn run(engine: &Engine, sql: &str) -> String {
    let batches = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

fn query(q: u64) -> String {
    let b = batch(100_000 + q as i64, 1, 1000 + q);
    let v = b
        .column(2)
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .unwrap();
    let vals = v.value(0);
    let f = vals.as_any().downcast_ref::<Float32Array>().unwrap();
    let parts: Vec<String> = f.values().iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(", "))
}

fn index_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "arrow" || x == "usearch")
            {
                out.push(p);
            }
        }
    }
    out
}

/// IVF with every list probed scores every row, 8-bit codes re-ranked
/// from every row, and HNSW with a candidate list as long as the segment:
/// the same rows and distances as the exact search, with filters, deletes
/// and growing-free segments of several row groups; EXPLAIN shows which
/// path ran.
#[tokio::test]
async fn searching_everything_answers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_rows(dir.path(), "c").await;
    let exact = engine(&store, VectorSearch::Exact, 0);
    let all_lists = engine_with(
        &store,
        SearchSettings {
            mode: VectorSearch::Ann,
            ivf_probes: 100_000,
            hnsw_ef_search: 100_000,
            refine_factor: 1_000,
        },
    );
    let e = exact
        .sql("SELECT id FROM c ORDER BY l2_distance(emb, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) LIMIT 3")
        .await;
    assert!(e.is_ok());
    // With no index, `ann` says why it cannot run.
    let err = all_lists
        .sql(&format!(
            "SELECT id FROM c ORDER BY l2_distance(emb, {}) LIMIT 3",
            query(0)
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no index covers column 'emb'"), "{err}");
    for ((kind, options), (metric_name, order)) in KINDS.iter().flat_map(|k| {
        [
            ("l2", "l2_distance(emb, Q)"),
            ("cosine", "cosine_distance(emb, Q)"),
            ("inner_product", "inner_product(emb, Q) DESC"),
        ]
        .map(move |m| (k, m))
    }) {
        exact
            .sql(&format!(
                "CREATE INDEX c_{metric_name} ON c USING {kind} (emb) WITH (metric = '{metric_name}', {options}, wait = true)"
            ))
            .await
            .unwrap();
        for (q, filter) in [(1, ""), (2, "WHERE bucket < 3"), (3, "WHERE bucket >= 20")] {
            let sql = format!(
                "SELECT id, {} AS d FROM c {filter} ORDER BY {} LIMIT 10",
                order.replace(" DESC", "").replace('Q', &query(q)),
                order.replace('Q', &query(q))
            );
            let plan = run(&all_lists, &format!("EXPLAIN {sql}")).await;
            assert!(
                plan.contains(&format!(
                    "VectorAnnExec: index=c_{metric_name} type={kind} metric={metric_name}"
                )) && plan.contains("segments: ann=3 exact=0"),
                "{plan}"
            );
            assert!(!run(&exact, &format!("EXPLAIN {sql}"))
                .await
                .contains("VectorAnnExec"));
            assert_eq!(
                run(&all_lists, &sql).await,
                run(&exact, &sql).await,
                "{kind}: {sql}"
            );
        }
        exact
            .sql(&format!("DROP INDEX c_{metric_name}"))
            .await
            .unwrap();
    }
    // Deletes are honoured by the index path.
    exact
        .sql("CREATE INDEX c_l2 ON c USING ivf (emb) WITH (lists = 12, wait = true)")
        .await
        .unwrap();
    exact.sql("DELETE FROM c WHERE id % 3 = 0").await.unwrap();
    let sql = format!(
        "SELECT id, l2_distance(emb, {q}) AS d FROM c WHERE bucket < 50 ORDER BY d LIMIT 10",
        q = query(4)
    );
    assert_eq!(run(&all_lists, &sql).await, run(&exact, &sql).await);
    // Every list probed would score every allowed row anyway: the allowed
    // rows are scored directly.
    let analyzed = run(&all_lists, &format!("EXPLAIN ANALYZE {sql}")).await;
    assert_eq!(
        metric(&analyzed, "segments_filtered_exact"),
        3,
        "{analyzed}"
    );
    // Unfiltered and without deletes, every list of every segment is probed.
    let sql = format!(
        "SELECT id, l2_distance(emb, {q}) AS d FROM quiver_snapshot('c', {v}) ORDER BY d LIMIT 10",
        q = query(5),
        v = store.snapshot("c").unwrap().version - 1
    );
    assert_eq!(run(&all_lists, &sql).await, run(&exact, &sql).await);
    let analyzed = run(&all_lists, &format!("EXPLAIN ANALYZE {sql}")).await;
    assert_eq!(metric(&analyzed, "lists_probed"), 3 * 12, "{analyzed}");
    assert!(analyzed.contains("index_rows_scored=6.00 K"), "{analyzed}");
    assert_eq!(
        metric(&analyzed, "segments_filtered_exact"),
        0,
        "{analyzed}"
    );
}

/// A query of an older version uses that version's indexes: none before
/// the index was created.
#[tokio::test]
async fn time_travel_uses_the_indexes_of_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_rows(dir.path(), "tt").await;
    let e = engine(&store, VectorSearch::Auto, 0);
    let before = store.snapshot("tt").unwrap().version;
    e.sql("CREATE INDEX tt_l2 ON tt USING ivf (emb) WITH (wait = true)")
        .await
        .unwrap();
    let q = query(5);
    let now = run(
        &e,
        &format!("EXPLAIN SELECT id FROM tt ORDER BY l2_distance(emb, {q}) LIMIT 5"),
    )
    .await;
    assert!(now.contains("VectorAnnExec"), "{now}");
    let then = run(
        &e,
        &format!("EXPLAIN SELECT id FROM quiver_snapshot('tt', {before}) ORDER BY l2_distance(emb, {q}) LIMIT 5"),
    )
    .await;
    assert!(
        then.contains("VectorTopKExec") && !then.contains("VectorAnnExec"),
        "{then}"
    );
}

/// A flipped byte in an index file: the search through it fails naming the
/// file, every other query answers, and verify reports it.
#[tokio::test]
async fn a_damaged_index_file_is_named_and_other_queries_answer() {
    for (kind, options) in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_rows(dir.path(), "dmg").await;
        let e = engine(&store, VectorSearch::Auto, 0);
        e.sql(&format!(
            "CREATE INDEX dmg_l2 ON dmg USING {kind} (emb) WITH ({options}, wait = true)"
        ))
        .await
        .unwrap();
        let files = index_files(dir.path());
        assert_eq!(files.len(), 3, "{files:?}");
        let victim = &files[0];
        let mut bytes = std::fs::read(victim).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(victim, bytes).unwrap();
        // A new process: nothing cached.
        let store = Store::open(dir.path().to_str().unwrap(), config())
            .await
            .unwrap();
        let e = engine(&store, VectorSearch::Auto, 0);
        let name = victim.file_name().unwrap().to_str().unwrap().to_string();
        let err = e
            .sql(&format!(
                "SELECT id FROM dmg ORDER BY l2_distance(emb, {}) LIMIT 5",
                query(6)
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&name) && err.contains("checksum"),
            "{kind}: {err}"
        );
        assert!(run(&e, "SELECT count(*) FROM dmg").await.contains("6000"));
        let exact = engine(&store, VectorSearch::Exact, 0);
        run(
            &exact,
            &format!(
                "SELECT id FROM dmg ORDER BY l2_distance(emb, {}) LIMIT 5",
                query(6)
            ),
        )
        .await;
        let problems = quiver::admin::verify::verify(&store).await.unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.path.ends_with(&name) && p.problem.contains("crc32c")),
            "{kind}: {problems:?}"
        );
    }
}

/// A build whose segment was compacted away meanwhile commits nothing and
/// removes its file.
#[tokio::test]
async fn a_build_that_loses_to_a_compaction_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_rows(dir.path(), "race").await;
    let e = engine(&store, VectorSearch::Auto, 0);
    e.sql("CREATE INDEX race_l2 ON race USING ivf (emb)")
        .await
        .unwrap();
    let m = store.snapshot("race").unwrap();
    let def = m.indexes[0].clone();
    let seg = m.segments[0].clone();
    // Deleted rows make every segment a compaction candidate.
    e.sql("DELETE FROM race WHERE id % 10 = 0").await.unwrap();
    quiver::admin::compact::compact_collection(&e, "race")
        .await
        .unwrap();
    assert!(!store
        .snapshot("race")
        .unwrap()
        .segments
        .iter()
        .any(|s| s.id == seg.id));
    let built = store.build_segment_index("race", &def, &seg).await.unwrap();
    assert!(built.is_none());
    assert!(index_files(dir.path()).is_empty());
    // The new segments are built as usual.
    let report = store.build_indexes("race", None, &|_, _| {}).await.unwrap();
    let m = store.snapshot("race").unwrap();
    assert_eq!(
        report.built,
        m.segments.iter().filter(|s| s.rows >= 100).count()
    );
    assert_eq!(index_files(dir.path()).len(), report.built);
}

/// Dropping an index forgets its files; GC removes them once no version in
/// the retention window lists them.
#[tokio::test]
async fn dropped_index_files_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_rows(dir.path(), "gcx").await;
    let e = engine(&store, VectorSearch::Auto, 0);
    e.sql("CREATE INDEX gcx_l2 ON gcx USING ivf (emb) WITH (wait = true)")
        .await
        .unwrap();
    assert_eq!(index_files(dir.path()).len(), 3);
    quiver::admin::gc::gc(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        index_files(dir.path()).len(),
        3,
        "referenced files were removed"
    );
    e.sql("DROP INDEX gcx_l2").await.unwrap();
    // GC keeps what the versions current within the window list: let the
    // window (zero) pass the drop's commit.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(store
        .snapshot("gcx")
        .unwrap()
        .segments
        .iter()
        .all(|s| s.index_files.is_empty()));
    quiver::admin::gc::gc(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(index_files(dir.path()).is_empty());
}

/// A build that dies between writing its file and committing it leaves the
/// manifest as it was; the next build completes; GC removes the orphan.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_crash_before_the_index_commit_leaves_nothing_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_rows(dir.path(), "ann_fp").await;
    let e = engine(&store, VectorSearch::Auto, 0);
    e.sql("CREATE INDEX ann_fp_l2 ON ann_fp USING ivf (emb)")
        .await
        .unwrap();
    let version = store.snapshot("ann_fp").unwrap().version;
    fail::cfg("before-index-commit", "return(ann_fp)").unwrap();
    let failed = store.build_indexes("ann_fp", None, &|_, _| {}).await;
    fail::remove("before-index-commit");
    assert!(failed.is_err());
    let m = store.snapshot("ann_fp").unwrap();
    assert_eq!(m.version, version);
    assert!(m.segments.iter().all(|s| s.index_files.is_empty()));
    assert_eq!(
        index_files(dir.path()).len(),
        1,
        "the orphan of the failed build"
    );
    // Queries run exactly meanwhile.
    let plan = run(
        &e,
        &format!(
            "EXPLAIN SELECT id FROM ann_fp ORDER BY l2_distance(emb, {}) LIMIT 5",
            query(7)
        ),
    )
    .await;
    assert!(plan.contains("segments: ann=0 exact=3"), "{plan}");
    // A restarted process resumes.
    let store = Store::open(dir.path().to_str().unwrap(), config())
        .await
        .unwrap();
    let report = store
        .build_indexes("ann_fp", None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.built, 3);
    quiver::admin::gc::gc(&store, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(index_files(dir.path()).len(), 3);
}

/// A bug that panics inside a running query fails that query with an
/// error (before, the result stream just ended: an empty answer that
/// looked whole); the server goes on serving.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_query_is_an_error_not_a_short_answer() {
    use futures::TryStreamExt;
    let mut f = crate::flight::Fixture::start().await;
    f.update("CREATE TABLE panicky (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))")
        .await;
    f.update("INSERT INTO panicky SELECT value, [value * 1.0, 1.0] FROM generate_series(1, 100)")
        .await;
    let sql = "SELECT id FROM panicky ORDER BY l2_distance(v, [3.0, 1.0]) LIMIT 3";
    fail::cfg("panic-in-topk", "return(panicky)").unwrap();
    let info = f.client.execute(sql.to_string(), None).await;
    let outcome = match info {
        Err(e) => Err(e.to_string()),
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            match f.client.do_get(ticket).await {
                Err(e) => Err(e.to_string()),
                Ok(stream) => stream
                    .try_collect::<Vec<_>>()
                    .await
                    .map(|b| b.iter().map(|b| b.num_rows()).sum::<usize>())
                    .map_err(|e| e.to_string()),
            }
        }
    };
    fail::remove("panic-in-topk");
    let err = outcome.expect_err("a panicking query returned rows");
    assert!(
        err.contains("internal error") && err.contains("injected panic"),
        "{err}"
    );
    let rows: usize = f.query(sql).await.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    f.stop().await;
}
