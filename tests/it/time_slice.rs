//! Joins and unnests give their thread back (`quiver::query::time_slice`): the
//! rule fires (EXPLAIN), the answers are the same with it off, and a
//! dropped query stops its work.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;
use quiver::{Engine, EngineOptions, Store, StoreConfig};

async fn engines() -> (tempfile::TempDir, Engine, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    let on = Engine::new(store.clone()).unwrap();
    let off = Engine::with_options(
        store,
        EngineOptions {
            time_slices: false,
            ..Default::default()
        },
    )
    .unwrap();
    on.sql(
        "CREATE TABLE t (id BIGINT NOT NULL, g VARCHAR, x DOUBLE, tags BIGINT[], PRIMARY KEY (id))",
    )
    .await
    .unwrap();
    on.sql(
        "INSERT INTO t SELECT value, 'g' || (value % 7), value * 0.5, [value, value + 1] \
         FROM generate_series(1, 3000)",
    )
    .await
    .unwrap();
    (dir, on, off)
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

const QUERIES: [&str; 6] = [
    // cross join
    "SELECT sum(a.value * b.value) AS s FROM range(0, 300) a, range(0, 200) b",
    // hash join
    "SELECT a.g, count(*) AS n FROM t a JOIN t b ON a.id = b.id + 1 GROUP BY a.g ORDER BY a.g",
    // nested-loop join with a filter that keeps few pairs
    "SELECT count(*) AS n, sum(a.id) AS s FROM t a JOIN t b ON a.x > b.x * 3 AND a.id < 400",
    // left join with unmatched rows
    "SELECT count(*) AS n, count(b.id) AS m FROM t a LEFT JOIN t b ON b.id = a.id * 2",
    // unnest
    "SELECT sum(u) AS s FROM (SELECT unnest(tags) AS u FROM t)",
    // a join under a top-k ordered by a computed value
    "SELECT a.id, b.id AS other FROM t a JOIN t b ON a.id = b.id - 5 ORDER BY a.x DESC, a.id LIMIT 5",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_unnests_are_sliced_and_answer_the_same() {
    let (_dir, on, off) = engines().await;
    for sql in QUERIES {
        let plan = text(&on.sql(&format!("EXPLAIN {sql}")).await.unwrap());
        assert!(plan.contains("TimeSliceExec"), "{sql}\n{plan}");
        let plain = text(&off.sql(&format!("EXPLAIN {sql}")).await.unwrap());
        assert!(!plain.contains("TimeSliceExec"), "{sql}\n{plain}");
        assert_eq!(
            text(&on.sql(sql).await.unwrap()),
            text(&off.sql(sql).await.unwrap()),
            "{sql}"
        );
    }
    // The nested-loop join's probe side yields between batches too.
    let plan = text(&on.sql(&format!("EXPLAIN {}", QUERIES[2])).await.unwrap());
    let nlj = plan.find("NestedLoopJoinExec").expect("a nested-loop join");
    assert!(plan[nlj..].contains("TimeSliceExec"), "{plan}");
    // A plan without a join is left alone.
    let plan = text(
        &on.sql("EXPLAIN SELECT g, count(*) FROM t GROUP BY g")
            .await
            .unwrap(),
    );
    assert!(!plan.contains("TimeSliceExec"), "{plan}");
}

/// CPU time of this process's threads named `name` so far.
fn threads_cpu(name: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (head, tail) = stat.rsplit_once(')').unwrap();
        if !head.ends_with(name) && !head.contains(&format!("({name}")) {
            continue;
        }
        let fields: Vec<&str> = tail.split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    Duration::from_millis(ticks * 10)
}

/// A cross join whose single output row takes many seconds, and a
/// nested-loop join whose filter keeps no pair: dropped after they have
/// started, their work stops (the query threads go idle). Before the rule
/// the join ran inside one poll of the aggregate, seconds long.
#[test]
fn a_dropped_join_stops_working() {
    const THREADS: &str = "slice-test-q";
    let queries = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREADS)
        .enable_all()
        .build()
        .unwrap();
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    main.block_on(async {
        let (_dir, on, _off) = engines().await;
        let on = on.with_query_runtime(queries.handle().clone());
        for sql in [
            "SELECT sum(a.value * b.value) FROM range(0, 2000000) a, range(0, 2000000) b",
            // A probe batch (8192 rows) against a build side of 5,000
            // rows: well under a second even in a debug build.
            "SELECT count(*) FROM range(0, 5000) a JOIN range(0, 2000000) b \
             ON a.value > b.value * 7 + 1000000",
        ] {
            let quiver::query::Statement::Query(q) = on.plan(sql).await.unwrap() else {
                panic!("a query")
            };
            // Driven on the query threads, as the Flight service does.
            let engine = on.clone();
            let task = queries.spawn(async move {
                let mut stream = engine.execute_query(q).await.unwrap();
                stream.next().await.map(|r| r.map(|b| b.num_rows()))
            });
            tokio::time::sleep(Duration::from_millis(700)).await;
            assert!(!task.is_finished(), "the query finished early: {sql}");
            let before = threads_cpu(THREADS);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let working = threads_cpu(THREADS).saturating_sub(before);
            assert!(
                working >= Duration::from_millis(100),
                "{sql}: not running ({working:?})"
            );
            // The client goes away: the task holding the stream is aborted.
            task.abort();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = threads_cpu(THREADS);
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let busy = threads_cpu(THREADS).saturating_sub(before);
            // A bound, not a speed target: the work stopped.
            assert!(
                busy < started.elapsed() / 5,
                "{sql}: {busy:?} of CPU in {:?} after the drop",
                started.elapsed()
            );
        }
    });
    queries.shutdown_background();
}
