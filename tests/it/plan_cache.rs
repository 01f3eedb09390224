//! The plan cache: a query run again with other query vectors reuses the
//! optimized plan of its SQL text. Cached and freshly planned queries give
//! the same rows (also after writes, deletes and a collection recreated
//! with other columns), the fused top-k still fires on a cached plan and
//! is built again from its physical template into the plan DataFusion's
//! planner would make, and plans that depend on more than the SQL text
//! are not cached.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::util::pretty::pretty_format_batches;
use datafusion::physical_plan::displayable;
use futures::TryStreamExt;
use quiver::query::Statement;
use quiver::{Engine, EngineOptions, IngestMode, Store, StoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::ingest;

/// Vectors long enough to be taken out of the SQL text as parameters.
const D: usize = 24;

fn rows(ids: std::ops::Range<i64>, rng: &mut StdRng) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    let v = FixedSizeListArray::new(
        quiver::storage::vector_item_field(),
        D as i32,
        Arc::new(Float32Array::from_iter_values(
            (0..n * D).map(|_| rng.random_range(0..4) as f32),
        )),
        None,
    );
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(ids.clone())) as ArrayRef,
        ),
        (
            "cat",
            Arc::new(Int32Array::from_iter_values(
                ids.clone().map(|i| (i % 10) as i32),
            )) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(ids.map(|i| format!("n{i}")))) as ArrayRef,
        ),
        ("v", Arc::new(v) as ArrayRef),
    ])
    .unwrap()
}

fn vector(rng: &mut StdRng, d: usize) -> String {
    let xs: Vec<String> = (0..d)
        .map(|_| {
            if rng.random_bool(0.5) {
                format!("{}", rng.random_range(0..4))
            } else {
                format!("{:.3}", rng.random_range(0.0..4.0f64))
            }
        })
        .collect();
    format!("[{}]", xs.join(", "))
}

/// Query shapes, `{q}` and `{r}` standing for query vectors.
const SHAPES: &[&str] = &[
    "SELECT id, l2_distance(v, {q}) AS d FROM c ORDER BY d LIMIT 7",
    "SELECT id, name FROM c WHERE cat = 3 ORDER BY cosine_distance(v, {q}) LIMIT 5",
    "SELECT id FROM c WHERE cat < 4 AND id > 100 ORDER BY l1_distance({q}, v) LIMIT 9 OFFSET 2",
    "SELECT id, inner_product(v, {q}) AS s FROM c ORDER BY s DESC, id LIMIT 6",
    "SELECT * FROM c ORDER BY l2_distance(v, {q}), id LIMIT 4",
    "SELECT count(*) FROM c WHERE l2_distance(v, {q}) < 20",
    "SELECT cat, min(l2_distance(v, {q})) AS m FROM c GROUP BY cat ORDER BY cat",
    "SELECT id, l2_distance(v, {q}) AS d, l1_distance(v, {r}) AS d2 FROM c WHERE l1_distance(v, {r}) < 40 ORDER BY d, id LIMIT 8",
    "SELECT x.id, x.d, c.name FROM (SELECT id, l2_distance(v, {q}) AS d FROM c ORDER BY d, id LIMIT 5) x JOIN c ON c.id = x.id ORDER BY x.d, x.id",
    "SELECT id, l2_distance(v, {q}) FROM c WHERE id IN (SELECT id FROM c WHERE cat = 1) ORDER BY 2, id LIMIT 3",
];

/// The shapes that are a top-k by distance over the collection.
const TOPK_SHAPES: &[usize] = &[0, 1, 2, 3, 4, 7];

fn fill(shape: &str, rng: &mut StdRng) -> String {
    shape
        .replace("{q}", &vector(rng, D))
        .replace("{r}", &vector(rng, D))
}

async fn run(engine: &Engine, sql: &str) -> Result<String, String> {
    let batches = engine.sql(sql).await.map_err(|e| e.to_string())?;
    Ok(pretty_format_batches(&batches).unwrap().to_string())
}

/// Plans and starts `sql`: whether the plan came from the cache's path,
/// the physical plan, and the rows.
async fn started(engine: &Engine, sql: &str) -> (bool, String, String) {
    let Statement::Query(query) = engine.plan(sql).await.unwrap() else {
        panic!("a query: {sql}")
    };
    let optimized = query.is_optimized();
    let (physical, out) = run_planned(engine, query, sql).await;
    (
        optimized,
        physical,
        pretty_format_batches(&out).unwrap().to_string(),
    )
}

/// Starts a planned query (`sql` names it in panics): its physical plan
/// and its rows.
async fn run_planned(
    engine: &Engine,
    query: quiver::query::Query,
    sql: &str,
) -> (String, Vec<RecordBatch>) {
    let running = engine
        .start_query(query, &tracing::Span::none())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let physical = displayable(running.plan.as_ref()).indent(true).to_string();
    (physical, running.stream.try_collect().await.unwrap())
}

/// Writes between two rounds of queries: rows `appended` (new keys, or
/// replacing rows) and the deletes of `delete` (a `WHERE` condition).
async fn write_round(
    store: &Arc<Store>,
    engine: &Engine,
    rng: &mut StdRng,
    appended: std::ops::Range<i64>,
    delete: &str,
) {
    ingest(store, "c", rows(appended, rng), IngestMode::APPEND)
        .await
        .unwrap();
    engine
        .sql(&format!("DELETE FROM c WHERE {delete}"))
        .await
        .unwrap();
}

/// A store with the collection `c` of `n` rows, and the random source
/// that made them.
async fn collection(n: i64, seed: u64) -> (tempfile::TempDir, Arc<Store>, StdRng) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    ingest(&store, "c", rows(0..n, &mut rng), IngestMode::CREATE)
        .await
        .unwrap();
    (dir, store, rng)
}

fn engines(store: &Arc<Store>) -> (Engine, Engine) {
    let cached = Engine::new(store.clone()).unwrap();
    let fresh = Engine::with_options(
        store.clone(),
        EngineOptions {
            plan_cache_entries: 0,
            ..Default::default()
        },
    )
    .unwrap();
    (cached, fresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_plans_give_the_same_rows_as_fresh_ones() {
    let (_dir, store, mut rng) = collection(2000, 0xcac4e).await;
    let (cached, fresh) = engines(&store);
    let untemplated = Engine::with_options(
        store.clone(),
        EngineOptions {
            physical_templates: false,
            ..Default::default()
        },
    )
    .unwrap();
    let rounds = 6;
    for round in 0..rounds {
        for (i, shape) in SHAPES.iter().enumerate() {
            let sql = fill(shape, &mut rng);
            let (optimized, physical, got) = started(&cached, &sql).await;
            // Built from the physical template (a top-k run before) or
            // planned by DataFusion: the same plan. (Other plans may show
            // the state DataFusion's dynamic filters reached as they ran.)
            let (_, planned, rows) = started(&untemplated, &sql).await;
            if TOPK_SHAPES.contains(&i) {
                assert_eq!(physical, planned, "round {round}: {sql}");
            }
            assert_eq!(got, rows, "round {round}: {sql}");
            assert!(optimized, "{sql}");
            assert_eq!(
                got,
                run(&fresh, &sql).await.unwrap(),
                "round {round}: {sql}"
            );
            if TOPK_SHAPES.contains(&i) {
                assert!(physical.contains("VectorTopKExec"), "{sql}\n{physical}");
            }
        }
        // Writes between the rounds: the cached plans read the data as
        // it is now (appended rows, replaced rows, deletes, growing rows).
        let start = 2000 + round as i64 * 150;
        ingest(
            &store,
            "c",
            rows(start..start + 150, &mut rng),
            IngestMode::APPEND,
        )
        .await
        .unwrap();
        let replaced = round as i64 * 40..round as i64 * 40 + 40;
        let delete = format!("id % 13 = {round}");
        write_round(&store, &cached, &mut rng, replaced, &delete).await;
    }
    // Every run after the first of a shape found its plan.
    let (hits, misses) = cached.plan_cache_stats();
    assert_eq!(misses, SHAPES.len() as u64, "{hits} hits");
    assert_eq!(hits, (SHAPES.len() * (rounds - 1)) as u64);
    // All by their text but shape 7's, whose two vectors `{r}` are the
    // same: which one is which parameter the text alone does not say.
    assert_eq!(
        cached.plan_cache_text_hits(),
        ((SHAPES.len() - 1) * (rounds - 1)) as u64
    );
    // The top-k shapes ran again from their physical template, but shape
    // 7's (the same two vectors again); the engine with templates off
    // planned every run.
    assert_eq!(
        cached.plan_cache_template_runs(),
        ((TOPK_SHAPES.len() - 1) * (rounds - 1)) as u64
    );
    assert_eq!(untemplated.plan_cache_template_runs(), 0);
    assert_eq!(fresh.plan_cache_stats(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_plan_follows_its_collection() {
    let (_dir, store, mut rng) = collection(300, 7).await;
    let (cached, fresh) = engines(&store);
    let shape = "SELECT * FROM c ORDER BY l2_distance(v, {q}), id LIMIT 3";
    let sql = fill(shape, &mut rng);
    assert_eq!(run(&cached, &sql).await, run(&fresh, &sql).await);

    // Recreated with another column: the statement is planned afresh and
    // shows it.
    cached.sql("DROP TABLE c").await.unwrap();
    cached
        .sql(&format!(
            "CREATE TABLE c (id BIGINT NOT NULL, extra INT, v FLOAT[{D}], PRIMARY KEY (id))"
        ))
        .await
        .unwrap();
    cached
        .sql(&format!(
            "INSERT INTO c VALUES (1, 10, {}), (2, 20, {})",
            vector(&mut rng, D),
            vector(&mut rng, D)
        ))
        .await
        .unwrap();
    let sql = fill(shape, &mut rng);
    let got = run(&cached, &sql).await.unwrap();
    assert!(got.contains("extra") && !got.contains("name"), "{got}");
    assert_eq!(Ok(got), run(&fresh, &sql).await);

    // Dropped: the same error as a statement planned afresh.
    cached.sql("DROP TABLE c").await.unwrap();
    let err = run(&cached, &fill(shape, &mut rng)).await.unwrap_err();
    assert_eq!(Err(err.clone()), run(&fresh, &fill(shape, &mut rng)).await);
    assert!(
        err.contains("quiver.public.c") && err.contains("not found"),
        "{err}"
    );

    // Recreated with vectors of another dimension: a vector of the old
    // one is refused, naming both dimensions.
    cached
        .sql("CREATE TABLE c (id BIGINT NOT NULL, cat INT, name VARCHAR, v FLOAT[32], PRIMARY KEY (id))")
        .await
        .unwrap();
    let err = run(&cached, &fill(shape, &mut rng)).await.unwrap_err();
    assert!(err.contains("different dimensions (32 and 24)"), "{err}");
    let long = shape.replace("{q}", &vector(&mut rng, 32));
    run(&cached, &long).await.unwrap();
    // A cached plan refuses a vector of another length the same way.
    let err = run(&cached, &shape.replace("{q}", &vector(&mut rng, 20)))
        .await
        .unwrap_err();
    assert!(
        err.contains("l2_distance: the vectors have different dimensions (32 and 20)"),
        "{err}"
    );
    let (hits, _) = cached.plan_cache_stats();
    assert!(hits >= 2, "{hits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_that_depend_on_more_than_the_sql_are_not_cached() {
    let (_dir, store, mut rng) = collection(100, 8).await;
    let engine = Engine::new(store.clone()).unwrap();
    let q = vector(&mut rng, D);
    let not_cached = [
        // a function whose value changes between runs
        format!("SELECT id, now() AS t FROM c ORDER BY l2_distance(v, {q}) LIMIT 2"),
        format!("SELECT id FROM c WHERE random() < 2 ORDER BY l2_distance(v, {q}) LIMIT 2"),
        // time travel reads a fixed version
        format!("SELECT id FROM quiver_snapshot('c', 1) ORDER BY l2_distance(v, {q}) LIMIT 2"),
        // catalog tables and no table at all
        "SELECT table_name FROM information_schema.tables WHERE table_name = 'c'".to_string(),
        format!("SELECT l2_distance({q}, {q})"),
        // EXPLAIN
        format!("EXPLAIN SELECT id FROM c ORDER BY l2_distance(v, {q}) LIMIT 2"),
    ];
    for sql in &not_cached {
        for _ in 0..2 {
            let Statement::Query(query) = engine.plan(sql).await.unwrap() else {
                panic!("{sql}")
            };
            assert!(!query.is_optimized(), "{sql}");
            run(&engine, sql).await.unwrap();
        }
    }
    assert_eq!(engine.plan_cache_stats().0, 0);
    // A statement with a parameter of its own that is not a query vector,
    // or with a vector literal beside its parameters, is bound before
    // optimizing.
    for sql in [
        "SELECT id FROM c WHERE cat = $2 ORDER BY l2_distance(v, $1) LIMIT 2".to_string(),
        format!("SELECT id, l1_distance(v, {q}) FROM c ORDER BY l2_distance(v, $1) LIMIT 2"),
    ] {
        let Statement::Query(query) = engine.plan(&sql).await.unwrap() else {
            panic!()
        };
        assert!(!query.is_optimized(), "{sql}");
    }
    // The cache is keyed by the text without the vectors: the same search
    // with another vector is a hit, another filter is not.
    let a = format!("SELECT id FROM c WHERE cat = 1 ORDER BY l2_distance(v, {q}) LIMIT 2");
    let b = a.replace(&q, &vector(&mut rng, D));
    let c = b.replace("cat = 1", "cat = 2");
    let (hits, misses) = engine.plan_cache_stats();
    for sql in [&a, &b, &c] {
        run(&engine, sql).await.unwrap();
    }
    assert_eq!(engine.plan_cache_stats(), (hits + 1, misses + 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_first_run_on_an_empty_collection_gets_its_template_later() {
    let (_dir, store, engine) = crate::util::fresh_engine().await;
    engine
        .sql(&format!(
            "CREATE TABLE c (id BIGINT NOT NULL, cat INT, name VARCHAR, v FLOAT[{D}], PRIMARY KEY (id))"
        ))
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let shape = SHAPES[0];
    // Nothing to scan: no fused top-k to take a template from.
    let (_, physical, got) = started(&engine, &fill(shape, &mut rng)).await;
    assert!(!physical.contains("VectorTopKExec"), "{physical}");
    assert!(!got.contains('|'), "{got}");
    ingest(&store, "c", rows(0..50, &mut rng), IngestMode::APPEND)
        .await
        .unwrap();
    let (_, physical, _) = started(&engine, &fill(shape, &mut rng)).await;
    assert!(physical.contains("VectorTopKExec"), "{physical}");
    assert_eq!(engine.plan_cache_template_runs(), 0);
    // That run left the template.
    let sql = fill(shape, &mut rng);
    let (_, physical, got) = started(&engine, &sql).await;
    assert!(physical.contains("VectorTopKExec"), "{physical}");
    assert_eq!(engine.plan_cache_template_runs(), 1);
    let (_, fresh) = engines(&store);
    assert_eq!(Ok(got), run(&fresh, &sql).await);
}

/// Plans and runs `sql`; its rows and the rows and bytes its scans counted.
async fn counted(engine: &Engine, sql: &str) -> (String, (u64, u64)) {
    let Statement::Query(query) = engine.plan(sql).await.unwrap() else {
        panic!("a query: {sql}")
    };
    let running = engine
        .start_query(query, &tracing::Span::none())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let out: Vec<RecordBatch> = running.stream.try_collect().await.unwrap();
    (
        pretty_format_batches(&out).unwrap().to_string(),
        quiver::query::scan_totals(&running.plan),
    )
}

/// A template run over the collection version of the run before takes
/// that run's scan instead of planning it again, and gives the rows a
/// fresh plan gives, with counters of its own. Growing rows, deletes and
/// new segments are seen at once: no scan is taken over growing rows or
/// deletes, nor over another manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_run_takes_the_scan_of_the_run_before_over_the_same_version() {
    // Logged, so rows written by INSERT and DELETE stay growing until
    // they are flushed.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_wal(
        dir.path().to_str().unwrap(),
        StoreConfig::default(),
        quiver::storage::WalOptions::new(dir.path().join("_wal")),
    )
    .await
    .unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    ingest(&store, "c", rows(0..400, &mut rng), IngestMode::CREATE)
        .await
        .unwrap();
    let (cached, fresh) = engines(&store);
    let mut reuses = 0;
    for &shape in &TOPK_SHAPES[..5] {
        let shape = SHAPES[shape];
        // The first run leaves the template, the second its scan.
        for _ in 0..2 {
            let sql = fill(shape, &mut rng);
            assert_eq!(Ok(counted(&cached, &sql).await.0), run(&fresh, &sql).await);
        }
        assert_eq!(cached.plan_cache_scan_reuses(), reuses, "{shape}");
        let mut totals = Vec::new();
        for _ in 0..3 {
            let sql = fill(shape, &mut rng);
            let (got, counts) = counted(&cached, &sql).await;
            assert_eq!(Ok(got), run(&fresh, &sql).await, "{shape}");
            totals.push(counts);
        }
        reuses += 3;
        assert_eq!(cached.plan_cache_scan_reuses(), reuses, "{shape}");
        // Each run counts its own scan, not the runs' before it.
        assert!(totals[0].0 > 0 && totals[0].1 > 0, "{shape}: {totals:?}");
        assert!(
            totals.iter().all(|t| *t == totals[0]),
            "{shape}: {totals:?}"
        );
    }

    // A row written now, at the query vector, comes first at once, while
    // it is growing and once flushed; then its delete (the collection's
    // first, also growing) hides it at once.
    let shape = SHAPES[0];
    let q = vector(&mut rng, D);
    let sql = shape.replace("{q}", &q);
    cached
        .sql(&format!("INSERT INTO c VALUES (5000, 3, 'new', {q})"))
        .await
        .unwrap();
    let growing = |store: &Store| {
        let (_, mems) = store.snapshot_with_mem("c").unwrap();
        mems.iter()
            .any(|m| !m.batches.is_empty() || !m.deletes.is_empty())
    };
    let steps = [
        ("inserted", true, false),
        ("flushed", false, false),
        ("deleted", true, true),
        ("delete flushed", false, true),
    ];
    for (step, is_growing, deleted) in steps {
        assert_eq!(growing(&store), is_growing, "{step}");
        for run_no in 0..2 {
            let (got, _) = counted(&cached, &sql).await;
            let first = got.lines().nth(3).unwrap_or_default();
            assert_eq!(!first.contains("| 5000 |"), deleted, "{step}: {got}");
            assert_eq!(Ok(got), run(&fresh, &sql).await, "{step}");
            // Nothing is taken over growing rows or deletes; over a new
            // manifest, the second run takes the first's scan.
            if !is_growing && run_no == 1 {
                reuses += 1;
            }
            assert_eq!(cached.plan_cache_scan_reuses(), reuses, "{step}");
        }
        if step == "inserted" {
            store.flush_all().await.unwrap();
        } else if step == "flushed" {
            cached.sql("DELETE FROM c WHERE id = 5000").await.unwrap();
        } else if step == "deleted" {
            store.flush_all().await.unwrap();
        }
    }
}

/// The rows of `batches`, as text, without the column names.
fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, row).unwrap())
                    .collect(),
            );
        }
    }
    out
}

/// A bound query vector as ADBC sends it: a list of doubles.
fn bound_vector(rng: &mut StdRng) -> (datafusion::common::ScalarValue, String) {
    let xs: Vec<f64> = (0..D)
        .map(|_| (rng.random_range(0.0..4.0f64) * 1000.0).round() / 1000.0)
        .collect();
    let list =
        arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Float64Type, _, _>(vec![
            Some(xs.iter().map(|x| Some(*x)).collect::<Vec<_>>()),
        ]);
    let text: Vec<String> = xs.iter().map(|x| format!("{x}")).collect();
    (
        datafusion::common::ScalarValue::List(Arc::new(list)),
        format!("[{}]", text.join(", ")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_queries_with_vector_parameters_run_from_the_cache() {
    let (_dir, store, mut rng) = collection(1500, 0x9a7a).await;
    let (cached, fresh) = engines(&store);
    // Each shape prepared once, with `$1` and `$2` for its vectors, then
    // bound and run again with other vectors, between writes.
    let prepared: Vec<(String, Statement)> = {
        let mut out = Vec::new();
        for shape in SHAPES {
            let sql = shape.replace("{q}", "$1").replace("{r}", "$2");
            let stmt = cached.plan(&sql).await.unwrap();
            out.push((sql, stmt));
        }
        out
    };
    let rounds = 4;
    for round in 0..rounds {
        for (i, (sql, stmt)) in prepared.iter().enumerate() {
            let (q, q_text) = bound_vector(&mut rng);
            let (r, r_text) = bound_vector(&mut rng);
            let params = if sql.contains("$2") {
                vec![q, r]
            } else {
                vec![q]
            };
            let Statement::Query(query) = stmt.clone().bind(params).unwrap() else {
                panic!("{sql}")
            };
            assert!(query.is_optimized(), "{sql}");
            let (physical, out) = run_planned(&cached, query, sql).await;
            // The same search with the vectors as literals, planned afresh
            // (its columns are named after its parameters, not these).
            let literal = SHAPES[i].replace("{q}", &q_text).replace("{r}", &r_text);
            let want = fresh.sql(&literal).await.unwrap();
            assert_eq!(cells(&out), cells(&want), "round {round}: {sql}");
            if TOPK_SHAPES.contains(&i) {
                assert!(physical.contains("VectorTopKExec"), "{sql}\n{physical}");
            }
        }
        let start = 1500 + round as i64 * 100;
        let delete = format!("id % 11 = {round}");
        write_round(&store, &cached, &mut rng, start..start + 100, &delete).await;
    }
    // Planned once each; the top-k shapes ran again from their physical
    // template (shape 7's two different vectors included).
    assert_eq!(cached.plan_cache_stats().1, SHAPES.len() as u64);
    assert_eq!(
        cached.plan_cache_template_runs(),
        (TOPK_SHAPES.len() * (rounds - 1)) as u64
    );
    // A wrong dimension or a value that is no vector says so.
    let (_, stmt) = &prepared[0];
    let short = datafusion::common::ScalarValue::List(Arc::new(
        arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Float64Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
        ]),
    ));
    let err = stmt.clone().bind(vec![short]).unwrap_err().to_string();
    assert!(err.contains("different dimensions (24 and 3)"), "{err}");
    let err = match stmt
        .clone()
        .bind(vec![datafusion::common::ScalarValue::Utf8(Some(
            "x".into(),
        ))]) {
        Err(e) => e.to_string(),
        Ok(Statement::Query(q)) => cached
            .execute_query(q)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        Ok(_) => panic!(),
    };
    assert!(err.contains("$1"), "{err}");
    let err = stmt.clone().bind(vec![]).unwrap_err().to_string();
    assert!(err.contains("1 parameter(s), but 0 value(s)"), "{err}");
}
