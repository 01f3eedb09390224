//! The fused vector top-k (`VectorTopKExec`): thousands of random queries
//! give the same rows with the rule on as DataFusion's own sort with the
//! primary key as the last sort key (the fused operator's tie-break), over
//! sealed segments, committed deletes, growing rows and growing deletes;
//! EXPLAIN shows the operator for every plan shape it must handle and not
//! where it must not fire.

use std::path::Path;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::array::{
    ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::util::pretty::pretty_format_batches;
use quiver::storage::WalOptions;
use quiver::{Engine, EngineOptions, IngestMode, Store, StoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::{ingest, metric};

const DIM: usize = 8;

/// Rows `ids` with small integer coordinates, so many distances tie.
fn rows(ids: std::ops::Range<i64>, rng: &mut StdRng) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    let vec = |d: usize, rng: &mut StdRng| {
        Arc::new(FixedSizeListArray::new(
            quiver::storage::vector_item_field(),
            d as i32,
            Arc::new(Float32Array::from_iter_values(
                (0..n * d).map(|_| rng.random_range(0..3) as f32),
            )),
            None,
        )) as ArrayRef
    };
    let v = vec(DIM, rng);
    let w = vec(4, rng);
    let codes: Vec<Option<Vec<u8>>> = (0..n)
        .map(|_| {
            (!rng.random_bool(0.1)).then(|| vec![rng.random::<u8>() & 0x0f, rng.random::<u8>()])
        })
        .collect();
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(ids.clone())) as ArrayRef,
        ),
        (
            "cat",
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|_| rng.random_range(0..10)),
            )) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(ids.map(|i| format!("n{i}")))) as ArrayRef,
        ),
        ("v", v),
        ("w", w),
        (
            "code",
            Arc::new(BinaryArray::from_iter(codes.iter().map(|c| c.as_deref()))) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// A store whose collection `t` has three sealed segments, committed
/// deletes, and growing rows and deletes in the write-ahead log; and a
/// collection `g` whose rows are all growing.
async fn fixture(dir: &Path) -> Arc<Store> {
    let opts = WalOptions {
        flush_bytes: 32 * 1024,
        ..WalOptions::new(dir.join("_wal"))
    };
    let store = Store::open_with_wal(dir.to_str().unwrap(), StoreConfig::default(), opts)
        .await
        .unwrap();
    let engine = Engine::new(store.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(0x70b4);
    ingest(&store, "t", rows(0..1500, &mut rng), IngestMode::CREATE)
        .await
        .unwrap();
    ingest(&store, "t", rows(1500..3000, &mut rng), IngestMode::APPEND)
        .await
        .unwrap();
    engine.sql("DELETE FROM t WHERE id % 7 = 0").await.unwrap();
    // Replaced rows: the old versions are hidden by the new ones.
    ingest(&store, "t", rows(2500..4000, &mut rng), IngestMode::APPEND)
        .await
        .unwrap();
    store.flush_all().await.unwrap();
    // Growing rows (small writes go to the log), some of them upserts.
    for start in [4000, 4100, 2900, 100] {
        ingest(
            &store,
            "t",
            rows(start..start + 100, &mut rng),
            IngestMode::APPEND,
        )
        .await
        .unwrap();
    }
    engine.sql("DELETE FROM t WHERE id % 11 = 0").await.unwrap();
    let (growing_rows, growing_deletes, _) = store.growing_status("t");
    assert!(growing_rows > 0 && growing_deletes > 0);
    assert!(store.snapshot("t").unwrap().segments.len() >= 3);

    engine
        .sql("CREATE TABLE g (id BIGINT NOT NULL, cat INT, name VARCHAR, v FLOAT[8], w FLOAT[4], code BYTEA, PRIMARY KEY (id))")
        .await
        .unwrap();
    for start in [0, 50, 25] {
        ingest(
            &store,
            "g",
            rows(start..start + 50, &mut rng),
            IngestMode::APPEND,
        )
        .await
        .unwrap();
    }
    engine.sql("DELETE FROM g WHERE id % 5 = 0").await.unwrap();
    assert!(store.snapshot("g").unwrap().segments.is_empty());
    store
}

fn vector(rng: &mut StdRng, d: usize) -> String {
    let xs: Vec<String> = (0..d)
        .map(|_| format!("{}", rng.random_range(0..3)))
        .collect();
    format!("[{}]", xs.join(", "))
}

/// One random top-k query, and the same query with the primary key as the
/// last sort key (what the fused operator's tie-break must equal).
fn random_query(rng: &mut StdRng) -> (String, String) {
    let table = if rng.random_bool(0.15) { "g" } else { "t" };
    let metrics = [
        "l2_distance",
        "cosine_distance",
        "inner_product",
        "negative_inner_product",
        "l1_distance",
        "array_distance",
    ];
    let f = metrics[rng.random_range(0..metrics.len())];
    let (dist, dist2) = match rng.random_range(0..8) {
        0 => (
            format!(
                "hamming_distance(code, X'{:02x}{:02x}')",
                rng.random::<u8>() & 0x0f,
                rng.random::<u8>()
            ),
            format!("l2_distance(w, {})", vector(rng, 4)),
        ),
        1 => (
            format!("{f}(w, {})", vector(rng, 4)),
            format!("l1_distance(v, {})", vector(rng, DIM)),
        ),
        _ => (
            format!("{f}({}, v)", vector(rng, DIM)),
            format!("l2_distance(w, {})", vector(rng, 4)),
        ),
    };
    let filters = [
        String::new(),
        format!("cat = {}", rng.random_range(0..10)),
        format!("cat < {}", rng.random_range(0..10)),
        format!(
            "cat IN ({}, {})",
            rng.random_range(0..10),
            rng.random_range(0..10)
        ),
        format!("name LIKE 'n{}%'", rng.random_range(1..10)),
        "id % 3 = 0".to_string(),
        format!(
            "cat = {} AND id > {}",
            rng.random_range(0..10),
            rng.random_range(0..4000)
        ),
        format!("{dist2} < {}", rng.random_range(1..6)),
        "code IS NOT NULL".to_string(),
    ];
    let filter = &filters[rng.random_range(0..filters.len())];
    let wher = if filter.is_empty() {
        String::new()
    } else {
        format!(" WHERE {filter}")
    };
    let dir = if rng.random_bool(0.3) { " DESC" } else { "" };
    let k = [1, 3, 10, 57, 500, 10_000][rng.random_range(0..6)];
    let offset = if rng.random_bool(0.2) {
        format!(" OFFSET {}", rng.random_range(1..20))
    } else {
        String::new()
    };
    let (select, key, from) = match rng.random_range(0..5) {
        0 => (
            format!("id, {dist} AS d"),
            "d".to_string(),
            table.to_string(),
        ),
        1 => ("id, name".to_string(), dist.clone(), table.to_string()),
        2 => (
            format!("*, {dist} AS d"),
            "d".to_string(),
            table.to_string(),
        ),
        3 => (
            format!("id, cat, {dist} AS d, {dist2} AS d2"),
            "d".to_string(),
            table.to_string(),
        ),
        _ => (
            "id, d".to_string(),
            "d".to_string(),
            format!("(SELECT id, cat, name, code, v, w, {dist} AS d FROM {table})"),
        ),
    };
    let fused = format!("SELECT {select} FROM {from}{wher} ORDER BY {key}{dir} LIMIT {k}{offset}");
    let reference =
        format!("SELECT {select} FROM {from}{wher} ORDER BY {key}{dir}, id LIMIT {k}{offset}");
    (fused, reference)
}

async fn run(engine: &Engine, sql: &str) -> String {
    let batches = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn explain(engine: &Engine, sql: &str) -> String {
    run(engine, &format!("EXPLAIN {sql}")).await
}

/// An engine over `store` with the fused top-k rule off.
fn rule_off(store: Arc<Store>) -> Engine {
    Engine::with_options(
        store,
        EngineOptions {
            fused_topk: false,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The `VectorTopKExec` line of `EXPLAIN ANALYZE sql`, with its metrics.
async fn analyzed_topk(engine: &Engine, sql: &str) -> String {
    let plan = run(engine, &format!("EXPLAIN ANALYZE {sql}")).await;
    plan.lines()
        .find(|l| l.contains("VectorTopKExec"))
        .unwrap_or_else(|| panic!("{plan}"))
        .to_string()
}

/// Runs `queries` random queries with the rule on and off and compares.
async fn differential(store: Arc<Store>, seed: u64, queries: usize) {
    let on = Engine::new(store.clone()).unwrap();
    let off = rule_off(store);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut non_empty = 0;
    for _ in 0..queries {
        let (fused, reference) = random_query(&mut rng);
        let plan = explain(&on, &fused).await;
        // (Unless every segment was pruned: then there is nothing to scan.)
        let pruned = plan.contains("EmptyExec") && !plan.contains("DataSourceExec");
        assert!(plan.contains("VectorTopKExec") || pruned, "{fused}\n{plan}");
        assert!(!explain(&off, &reference).await.contains("VectorTopKExec"));
        let got = run(&on, &fused).await;
        let want = run(&off, &reference).await;
        assert_eq!(got, want, "{fused}");
        if got.lines().count() > 4 {
            non_empty += 1;
        }
    }
    // The queries are not all trivially empty.
    assert!(non_empty > queries * 3 / 4, "{non_empty} of {queries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_topk_gives_the_same_rows_as_a_sort_by_distance_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    // Columns from the decoded-column cache (the default), growing rows
    // and deletes included.
    differential(store.clone(), 0x5eed_70b4, 1200).await;
    store.flush_all().await.unwrap();
    drop(store);
    // Without the cache, the fused operator reads through the Parquet scan.
    let uncached = StoreConfig {
        decoded_cache_bytes: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path().to_str().unwrap(), uncached)
        .await
        .unwrap();
    differential(store, 0x5eed_70b5, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_where_the_fused_topk_fires_and_where_it_must_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    let engine = Engine::new(store).unwrap();
    let q = "[1, 0, 2, 1, 0, 0, 1, 2]";
    let fires = [
        // distance in the SELECT list, ordered by its alias
        format!("SELECT id, l2_distance(v, {q}) AS d FROM t ORDER BY d LIMIT 5"),
        // distance only in ORDER BY
        format!("SELECT id, name FROM t ORDER BY cosine_distance(v, {q}) LIMIT 5"),
        // the query vector first
        format!("SELECT id FROM t ORDER BY l2_distance({q}, v) LIMIT 5"),
        // filters pushed into the scan and one on another distance
        format!("SELECT id FROM t WHERE cat = 3 AND l1_distance(v, {q}) < 9 ORDER BY l2_distance(v, {q}) LIMIT 5"),
        // descending, with OFFSET
        format!("SELECT id, inner_product(v, {q}) AS s FROM t ORDER BY s DESC LIMIT 5 OFFSET 3"),
        // a join above the top-k
        format!("SELECT x.id, x.d, t.name FROM (SELECT id, l2_distance(v, {q}) AS d FROM t ORDER BY d LIMIT 5) x JOIN t ON t.id = x.id"),
        // all columns
        format!("SELECT * FROM t ORDER BY l2_distance(v, {q}) LIMIT 5"),
        // a collection whose rows are all in the growing segment
        format!("SELECT id FROM g ORDER BY l2_distance(v, {q}) LIMIT 5"),
        // binary vectors
        "SELECT id FROM t ORDER BY hamming_distance(code, X'0f0f') LIMIT 5".to_string(),
        // a second sort key after the distance
        format!("SELECT id, cat FROM t ORDER BY l2_distance(v, {q}), cat DESC LIMIT 5"),
    ];
    for sql in &fires {
        let plan = explain(&engine, sql).await;
        assert!(plan.contains("VectorTopKExec"), "{sql}\n{plan}");
        assert!(!plan.contains("SortExec"), "{sql}\n{plan}");
        // and it runs
        run(&engine, sql).await;
    }
    let does_not_fire = [
        // no LIMIT: a full sort
        format!("SELECT id FROM t ORDER BY l2_distance(v, {q})"),
        // the query vector is a column of each row
        "SELECT id FROM t ORDER BY l2_distance(v, v) LIMIT 5".to_string(),
        // the first key is not a distance
        format!("SELECT id FROM t ORDER BY cat, l2_distance(v, {q}) LIMIT 5"),
        // a top-k over a join
        format!(
            "SELECT a.id FROM t a JOIN t b ON a.id = b.id ORDER BY l2_distance(a.v, {q}) LIMIT 5"
        ),
    ];
    for sql in &does_not_fire {
        let plan = explain(&engine, sql).await;
        assert!(!plan.contains("VectorTopKExec"), "{sql}\n{plan}");
        run(&engine, sql).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_topk_reports_its_work_in_explain_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    let engine = Engine::new(store).unwrap();
    let line = analyzed_topk(
        &engine,
        "SELECT id FROM t WHERE cat = 3 ORDER BY l2_distance(v, [1, 0, 2, 1, 0, 0, 1, 2]) LIMIT 5",
    )
    .await;
    let scored = metric(&line, "rows_scored");
    // Only the rows of category 3 (about a tenth) are scored.
    let live: usize = run(&engine, "SELECT count(*) FROM t WHERE cat = 3")
        .await
        .lines()
        .nth(3)
        .and_then(|l| l.trim_matches(|c: char| c == '|' || c == ' ').parse().ok())
        .unwrap();
    assert_eq!(scored, live, "{line}");
    assert!(line.contains("output_rows=5"), "{line}");
}

/// A collection of one row group is cut into parts, one per worker, so
/// a small collection is scored on every core; the answers are those of
/// DataFusion's sort, with deletes and filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_group_is_scored_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(0x9a27);
    let n = 3 * quiver::query::MIN_PART_ROWS as i64 + 100;
    ingest(&store, "t", rows(0..n, &mut rng), IngestMode::CREATE)
        .await
        .unwrap();
    let on = Engine::new(store.clone()).unwrap();
    on.sql("DELETE FROM t WHERE id % 9 = 0").await.unwrap();
    store.flush_all().await.unwrap();
    assert_eq!(store.snapshot("t").unwrap().segments.len(), 1);
    let off = rule_off(store.clone());
    for i in 0..12 {
        let q = vector(&mut rng, 8);
        let filter = ["", "WHERE cat = 3", "WHERE cat < 8 AND id > 500"][i % 3];
        let sql =
            format!("SELECT id, l2_distance(v, {q}) AS d FROM t {filter} ORDER BY d, id LIMIT 10");
        assert_eq!(run(&on, &sql).await, run(&off, &sql).await, "{sql}");
    }
    let workers = on.context().state().config().target_partitions();
    let line = analyzed_topk(
        &on,
        "SELECT id FROM t ORDER BY l2_distance(v, [1, 0, 2, 1, 0, 0, 1, 2]) LIMIT 5",
    )
    .await;
    assert_eq!(metric(&line, "scan_units"), workers.clamp(1, 3), "{line}");
}

/// Filters on scalar columns run before any vector is read: a cold 1%
/// filter reads the vectors of the 1% of rows only, and caches no decoded
/// vectors; an unfiltered query reads (and caches) them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selective_filter_reads_only_the_vectors_it_selects() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        row_group_rows: 2_000,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path().to_str().unwrap(), config.clone())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    ingest(&store, "t", rows(0..20_000, &mut rng), IngestMode::CREATE)
        .await
        .unwrap();
    drop(store);
    // Cold: a new store over the same files.
    let store = Store::open(dir.path().to_str().unwrap(), config)
        .await
        .unwrap();
    let engine = Engine::new(store.clone()).unwrap();
    let q = "[1, 0, 2, 1, 0, 0, 1, 2]";
    let selective =
        format!("SELECT id FROM t WHERE id % 100 = 7 ORDER BY l2_distance(v, {q}) LIMIT 5");
    let plan = run(&engine, &format!("EXPLAIN ANALYZE {selective}")).await;
    assert!(plan.contains("VectorTopKExec"), "{plan}");
    assert_eq!(metric(&plan, "vector_rows"), 200, "{plan}");
    assert_eq!(metric(&plan, "rows_scored"), 200, "{plan}");
    assert_eq!(metric(&plan, "vector_rows_in_place"), 0, "{plan}");
    let gathered = run(&engine, &selective).await;
    let (_, _, cached) = store.decoded_cache_stats().await;
    // The key column of 20,000 rows is cached; no vector chunk is.
    let vectors = 20_000 * DIM as u64 * 4;
    assert!(cached < vectors / 2, "{cached} bytes cached");
    let all = format!("SELECT id FROM t ORDER BY l2_distance(v, {q}) LIMIT 5");
    let plan = run(&engine, &format!("EXPLAIN ANALYZE {all}")).await;
    // (EXPLAIN ANALYZE prints 20,000 as "20.00 K".)
    assert!(plan.contains("vector_rows=20.00 K"), "{plan}");
    let (_, _, cached) = store.decoded_cache_stats().await;
    assert!(cached >= vectors, "{cached} bytes cached");
    // Now the chunks are cached: the selective query scores its 200 rows
    // where they lie, copying none, with the same answers as the sparse
    // read gave.
    let plan = run(&engine, &format!("EXPLAIN ANALYZE {selective}")).await;
    assert_eq!(metric(&plan, "vector_rows_in_place"), 200, "{plan}");
    assert_eq!(metric(&plan, "rows_scored"), 200, "{plan}");
    assert_eq!(run(&engine, &selective).await, gathered);
    // A filter that reads a vector is evaluated on the rows it is given:
    // those get gathered (no in-place scoring).
    let on_vectors = format!(
        "SELECT id FROM t WHERE id % 100 = 7 AND l2_distance(v, {q}) < 1000 \
         ORDER BY l2_distance(v, {q}) LIMIT 5"
    );
    let plan = run(&engine, &format!("EXPLAIN ANALYZE {on_vectors}")).await;
    assert_eq!(metric(&plan, "vector_rows_in_place"), 0, "{plan}");
    assert_eq!(run(&engine, &on_vectors).await, gathered);
}

/// Cached vector chunks of 2 MiB or more move to memory advised for huge
/// pages (`StoreConfig::huge_pages`, the default): the same rows come back
/// as from a store over the same files that keeps ordinary pages, for
/// unfiltered, dense and sparse selections (a sparse one gathers scattered
/// rows of the cached chunks), and the store counts what it moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_page_chunks_give_the_same_rows_as_ordinary_ones() {
    const D: usize = 64;
    // Three row groups of 8,192 rows x 64 float32s: 2 MiB of vectors each.
    let (n, group) = (3 * 8_192, 8_192);
    let dir = tempfile::tempdir().unwrap();
    let config = |huge_pages| StoreConfig {
        row_group_rows: group,
        huge_pages,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path().to_str().unwrap(), config(true))
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        (
            "cat",
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|_| rng.random_range(0..100)),
            )) as ArrayRef,
        ),
        (
            "v",
            Arc::new(FixedSizeListArray::new(
                quiver::storage::vector_item_field(),
                D as i32,
                Arc::new(Float32Array::from_iter_values(
                    (0..n * D).map(|_| rng.random_range(-4..5) as f32 * 0.5),
                )),
                None,
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    ingest(&store, "h", batch, IngestMode::CREATE)
        .await
        .unwrap();
    let plain_store = Store::open(dir.path().to_str().unwrap(), config(false))
        .await
        .unwrap();
    let huge = Engine::new(store.clone()).unwrap();
    let plain = Engine::new(plain_store.clone()).unwrap();
    let queries: Vec<String> = (0..12)
        .map(|i| {
            let q = vector(&mut rng, D);
            let (metric, wher) = [
                ("l2_distance", ""),
                ("cosine_distance", " WHERE cat < 60"),
                ("l2_distance", " WHERE cat = 7"),
                ("inner_product", " WHERE cat < 3 AND id % 2 = 0"),
            ][i % 4];
            format!(
                "SELECT id, cat, {metric}(v, {q}) AS d FROM h{wher} ORDER BY d LIMIT {}",
                3 + i
            )
        })
        .collect();
    for round in 0..2 {
        // The first round loads the chunks (an unfiltered query first);
        // the second reads them from the cache.
        for sql in &queries {
            let got = run(&huge, sql).await;
            assert_eq!(got, run(&plain, sql).await, "round {round}: {sql}");
            assert!(got.lines().count() > 6, "{sql}\n{got}");
        }
    }
    // The 1% selection scores scattered rows of the cached chunks in place.
    let plan = run(&huge, &format!("EXPLAIN ANALYZE {}", queries[2])).await;
    assert!(plan.contains("VectorTopKExec"), "{plan}");
    assert!(metric(&plan, "vector_rows_in_place") > 100, "{plan}");
    let moved = store.decoded_huge_page_bytes();
    if cfg!(target_os = "linux") {
        assert_eq!(moved, (n * D * 4) as u64, "every chunk moved");
    } else {
        assert_eq!(moved, 0);
    }
    assert_eq!(plain_store.decoded_huge_page_bytes(), 0);
}

/// Long array literals (query vectors) are planned as parameters and bound
/// after planning: the answers equal those of the same vector written as a
/// `make_array(...)` call (planned the ordinary way), integers included,
/// and errors still name the dimensions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_vector_literals_give_the_same_answers() {
    let (_dir, store, engine) = crate::util::fresh_engine().await;
    const D: usize = 40;
    let mut rng = StdRng::seed_from_u64(9);
    let n = 2_000;
    let v = FixedSizeListArray::new(
        quiver::storage::vector_item_field(),
        D as i32,
        Arc::new(Float32Array::from_iter_values(
            (0..n * D).map(|_| rng.random_range(-1.0..1.0f32)),
        )),
        None,
    );
    let b = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        ("v", Arc::new(v) as ArrayRef),
    ])
    .unwrap();
    ingest(&store, "w", b, IngestMode::CREATE).await.unwrap();
    for ints in [false, true] {
        let xs: Vec<String> = (0..D)
            .map(|_| {
                if ints {
                    format!("{}", rng.random_range(-3..4))
                } else {
                    format!("{:.6}", rng.random_range(-1.0..1.0f64))
                }
            })
            .collect();
        let list = format!("[{}]", xs.join(", "));
        let call = format!("make_array({})", xs.join(", "));
        for f in [
            "l2_distance",
            "cosine_distance",
            "inner_product",
            "l1_distance",
        ] {
            let q = |vec: &str| {
                format!(
                    "SELECT id, {f}(v, {vec}) AS d FROM w WHERE id % 3 = 0 ORDER BY d, id LIMIT 7"
                )
            };
            assert_eq!(
                run(&engine, &q(&list)).await,
                run(&engine, &q(&call)).await,
                "{f}"
            );
            // Range search, in a filter rather than ORDER BY.
            let r = |vec: &str| format!("SELECT count(*) FROM w WHERE {f}(v, {vec}) < 0.5");
            assert_eq!(run(&engine, &r(&list)).await, run(&engine, &r(&call)).await);
        }
        // The literal was planned as a parameter (its name shows it).
        let named = run(
            &engine,
            &format!("SELECT l2_distance(v, {list}) FROM w LIMIT 1"),
        )
        .await;
        assert!(named.contains("$quiver_vector_1"), "{named}");
        let plan = explain(
            &engine,
            &format!("SELECT id FROM w ORDER BY l2_distance(v, {list}) LIMIT 3"),
        )
        .await;
        assert!(plan.contains("VectorTopKExec"), "{plan}");
    }
    let short = format!("[{}]", vec!["1"; 20].join(", "));
    let err = engine
        .sql(&format!("SELECT l2_distance(v, {short}) FROM w"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("different dimensions"), "{err}");
}

/// The rule runs first among the physical optimizer rules, so DataFusion's
/// own rules work on the small fused plan: EXPLAIN VERBOSE shows the fused
/// operator right after the first `fuse_vector_topk` pass, and the final
/// plan has no repartitioning or cooperative wrapper under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fused_topk_is_planned_before_datafusions_physical_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path()).await;
    let engine = Engine::new(store).unwrap();
    let q = "[1, 0, 2, 1, 0, 0, 1, 2]";
    let sql =
        format!("SELECT id, l2_distance(v, {q}) AS d FROM t WHERE cat < 3 ORDER BY d LIMIT 5");
    let verbose = engine.sql(&format!("EXPLAIN VERBOSE {sql}")).await.unwrap();
    let mut steps: Vec<(String, String)> = Vec::new();
    for b in &verbose {
        let (kind, plan) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            steps.push((kind.value(i).to_string(), plan.value(i).to_string()));
        }
    }
    let first = steps
        .iter()
        .position(|(k, _)| k == "physical_plan after fuse_vector_topk")
        .expect("the rule ran");
    assert!(
        steps[first].1.contains("VectorTopKExec"),
        "{}",
        steps[first].1
    );
    let ensure = steps
        .iter()
        .position(|(k, _)| k.starts_with("physical_plan after EnsureRequirements"))
        .expect("DataFusion's rules ran");
    assert!(first < ensure, "{steps:?}");
    let plan = explain(&engine, &sql).await;
    let below: Vec<&str> = plan
        .lines()
        .skip_while(|l| !l.contains("VectorTopKExec"))
        .skip(1)
        .filter(|l| l.contains("Exec"))
        .collect();
    assert!(below[0].contains("MaterializeExec"), "{plan}");
    assert!(
        !below
            .iter()
            .any(|l| l.contains("RepartitionExec") || l.contains("CooperativeExec")),
        "{plan}"
    );
}
