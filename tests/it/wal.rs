//! The write-ahead log and growing segment through the library API: logged
//! writes are visible at once, survive a crash (the store is dropped without
//! a flush and reopened), flush into segments exactly once, share fsyncs,
//! and a damaged log is handled as documented.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use quiver::storage::WalOptions;
use quiver::{Engine, IngestMode, Store, StoreConfig};

use crate::util::ingest;

fn batch(ids: std::ops::Range<i64>, price: f64) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    let emb = arrow::array::FixedSizeListArray::new(
        quiver::storage::vector_item_field(),
        2,
        Arc::new(arrow::array::Float32Array::from_iter_values(
            ids.clone().flat_map(|i| [i as f32, 0.0]),
        )),
        None,
    );
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(ids)) as ArrayRef,
        ),
        ("tag", Arc::new(StringArray::from(vec!["x"; n])) as ArrayRef),
        (
            "price",
            Arc::new(Float64Array::from(vec![price; n])) as ArrayRef,
        ),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("_wal")
}

async fn open_logged(dir: &Path, flush_bytes: usize) -> Engine {
    let opts = WalOptions {
        flush_bytes,
        ..WalOptions::new(wal_dir(dir))
    };
    let store = Store::open_with_wal(dir.to_str().unwrap(), StoreConfig::default(), opts)
        .await
        .unwrap();
    Engine::new(store).unwrap()
}

async fn write(engine: &Engine, b: RecordBatch, mode: IngestMode) -> u64 {
    ingest(engine.store(), "t", b, mode).await.unwrap()
}

async fn ids(engine: &Engine) -> Vec<i64> {
    engine
        .sql("SELECT id FROM t ORDER BY id")
        .await
        .unwrap()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn version(engine: &Engine) -> u64 {
    engine.store().snapshot("t").unwrap().version
}

fn wal_files(dir: &Path) -> usize {
    quiver::storage::wal::list_files(&wal_dir(dir).join("t"))
        .unwrap()
        .len()
}

const BIG: usize = 128 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_writes_are_visible_at_once_replayed_after_a_crash_and_flushed_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_logged(dir.path(), BIG).await;
    write(&engine, batch(0..10, 1.0), IngestMode::CREATE).await;
    let v = version(&engine);
    for i in 1..4 {
        write(&engine, batch(i * 10..i * 10 + 10, 1.0), IngestMode::APPEND).await;
    }
    engine.sql("DELETE FROM t WHERE id < 5").await.unwrap();
    engine
        .sql("INSERT INTO t VALUES (100, 'y', 2.0, [1.0, 2.0])")
        .await
        .unwrap();
    let want: Vec<i64> = (5..40).chain([100]).collect();
    // Visible at once, and no manifest version was written: the rows are
    // in the growing segment behind the log.
    assert_eq!(ids(&engine).await, want);
    assert_eq!(version(&engine), v);
    let (rows, deletes, wal_bytes) = engine.store().growing_status("t");
    assert_eq!((rows, deletes), (31, 5));
    assert!(wal_bytes > 0);
    // Vectors and system columns of growing rows.
    let top = engine
        .sql("SELECT id, _seg FROM t ORDER BY l2_distance(embedding, [21.0, 0.0]), id LIMIT 2")
        .await
        .unwrap();
    assert_eq!(
        top[0].column(0).as_primitive::<Int64Type>().values(),
        &[21, 20]
    );

    // Crash: drop without a flush; the log is replayed.
    drop(engine);
    let engine = open_logged(dir.path(), BIG).await;
    assert_eq!(ids(&engine).await, want);
    assert_eq!(engine.store().growing_status("t").0, 31);

    // Flush: one new version, growing segment empty, log trimmed.
    assert_eq!(engine.store().flush("t").await.unwrap(), 31);
    assert_eq!(version(&engine), v + 1);
    assert_eq!(engine.store().growing_status("t").0, 0);
    assert_eq!(wal_files(dir.path()), 0);
    assert_eq!(ids(&engine).await, want);
    let m = engine.store().snapshot("t").unwrap();
    assert!(m.wal_ts > 0);
    drop(engine);
    let engine = open_logged(dir.path(), BIG).await;
    assert_eq!(
        ids(&engine).await,
        want,
        "rows flushed once, not replayed again"
    );
    assert!(quiver::admin::verify::verify(engine.store())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_and_deletes_in_the_growing_segment_follow_mvcc() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_logged(dir.path(), BIG).await;
    write(&engine, batch(0..100, 1.0), IngestMode::CREATE).await;
    // Upsert sealed rows, then growing rows again.
    write(&engine, batch(50..60, 2.0), IngestMode::APPEND).await;
    write(&engine, batch(55..58, 3.0), IngestMode::APPEND).await;
    engine.sql("DELETE FROM t WHERE id < 10").await.unwrap();
    let check = |engine: &Engine| {
        let engine = engine.clone();
        async move {
            let n = engine.sql("SELECT count(*) FROM t").await.unwrap();
            assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 90);
            let p = engine
                .sql("SELECT price FROM t WHERE id IN (50, 55, 60) ORDER BY id")
                .await
                .unwrap();
            assert_eq!(
                p[0].column(0).as_primitive::<Float64Type>().values(),
                &[2.0, 3.0, 1.0]
            );
            // Deleted rows never reach top-k, and k rows still come back.
            let top = engine
                .sql("SELECT id FROM t ORDER BY l2_distance(embedding, [0.0, 0.0]), id LIMIT 3")
                .await
                .unwrap();
            assert_eq!(
                top[0].column(0).as_primitive::<Int64Type>().values(),
                &[10, 11, 12]
            );
            // A join sees each key once.
            let j = engine
                .sql("SELECT count(*) FROM t a JOIN t b ON a.id = b.id")
                .await
                .unwrap();
            assert_eq!(j[0].column(0).as_primitive::<Int64Type>().value(0), 90);
        }
    };
    check(&engine).await;
    engine.store().flush("t").await.unwrap();
    check(&engine).await;
    quiver::admin::compact::compact_collection(&engine, "t")
        .await
        .unwrap();
    check(&engine).await;
    drop(engine);
    let engine = open_logged(dir.path(), BIG).await;
    check(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_logged(dir.path(), BIG).await;
    write(&engine, batch(0..1, 1.0), IngestMode::CREATE).await;
    let mut tasks = Vec::new();
    for t in 0..16i64 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10i64 {
                let id = 1000 + t * 100 + i;
                write(&engine, batch(id..id + 1, 1.0), IngestMode::APPEND).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ids(&engine).await.len(), 161);
    let (appends, syncs) = engine.store().wal_counters();
    assert_eq!(appends, 160);
    assert!(
        syncs < appends,
        "group commit: {syncs} fsyncs for {appends} concurrent writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_dropped_and_corruption_in_the_middle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_logged(dir.path(), BIG).await;
    write(&engine, batch(0..1, 1.0), IngestMode::CREATE).await;
    for i in 1..4 {
        write(&engine, batch(i..i + 1, 1.0), IngestMode::APPEND).await;
    }
    drop(engine);
    let files = quiver::storage::wal::list_files(&wal_dir(dir.path()).join("t")).unwrap();
    let (_, path) = files.last().unwrap().clone();
    let good = std::fs::read(&path).unwrap();
    // A write cut short by a crash: half a frame at the end.
    let mut torn = good.clone();
    torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &torn).unwrap();
    let engine = open_logged(dir.path(), BIG).await;
    assert_eq!(ids(&engine).await, vec![0, 1, 2, 3]);
    drop(engine);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the torn tail is cut off"
    );

    // A flipped byte inside the first record: refuse to start, name the
    // file and offset, change nothing.
    let mut bad = good.clone();
    bad[8 + 8 + 30] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();
    let opts = WalOptions::new(wal_dir(dir.path()));
    let err = Store::open_with_wal(dir.path().to_str().unwrap(), StoreConfig::default(), opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("byte offset 8"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bad);
    // inspect --verify reports it too.
    let problems = quiver::admin::verify::verify_wal(&wal_dir(dir.path()));
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_and_replace_supersede_the_growing_segment() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_logged(dir.path(), BIG).await;
    write(&engine, batch(0..5, 1.0), IngestMode::CREATE).await;
    write(&engine, batch(5..10, 1.0), IngestMode::APPEND).await;
    // Replace while rows are growing: only the new rows, also after a crash.
    write(&engine, batch(100..102, 1.0), IngestMode::REPLACE).await;
    assert_eq!(ids(&engine).await, vec![100, 101]);
    write(&engine, batch(102..103, 1.0), IngestMode::APPEND).await;
    drop(engine);
    let engine = open_logged(dir.path(), BIG).await;
    assert_eq!(ids(&engine).await, vec![100, 101, 102]);
    // Drop with growing rows, crash, recreate: nothing old comes back.
    engine.sql("DROP TABLE t").await.unwrap();
    drop(engine);
    let engine = open_logged(dir.path(), BIG).await;
    assert!(engine.store().snapshot("t").is_none());
    assert!(
        !wal_dir(dir.path()).join("t").exists(),
        "the dropped collection's log is removed"
    );
    write(&engine, batch(7..8, 1.0), IngestMode::CREATE).await;
    assert_eq!(ids(&engine).await, vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_skip_the_log_and_a_second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_logged(dir.path(), 4096).await;
    write(&engine, batch(0..1, 1.0), IngestMode::CREATE).await;
    let v = version(&engine);
    write(&engine, batch(1..1001, 1.0), IngestMode::APPEND).await;
    assert_eq!(version(&engine), v + 1, "sealed and committed directly");
    assert_eq!(engine.store().growing_status("t").0, 0);
    write(&engine, batch(5000..5001, 1.0), IngestMode::APPEND).await;
    assert_eq!(
        engine.store().growing_status("t").0,
        1,
        "a small write is logged"
    );
    assert_eq!(ids(&engine).await.len(), 1002);
    // Under every limit (a few hundred bytes, default rows and age), so
    // flush_due leaves it growing.
    engine.store().flush_due().await.unwrap();
    assert_eq!(engine.store().growing_status("t").0, 1);

    let opts = WalOptions::new(wal_dir(dir.path()));
    let err = Store::open_with_wal(dir.path().to_str().unwrap(), StoreConfig::default(), opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use by another quiver process"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_segments_flush_by_rows_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        flush_rows: 20,
        flush_age: std::time::Duration::from_millis(200),
        ..WalOptions::new(wal_dir(dir.path()))
    };
    let store = Store::open_with_wal(dir.path().to_str().unwrap(), StoreConfig::default(), opts)
        .await
        .unwrap();
    let engine = Engine::new(store).unwrap();
    write(&engine, batch(0..1, 1.0), IngestMode::CREATE).await;
    write(&engine, batch(1..11, 1.0), IngestMode::APPEND).await;
    engine.store().flush_due().await.unwrap();
    assert_eq!(
        engine.store().growing_status("t").0,
        10,
        "under both limits"
    );
    write(&engine, batch(11..31, 1.0), IngestMode::APPEND).await;
    engine.store().flush_due().await.unwrap();
    assert_eq!(engine.store().growing_status("t").0, 0, "flushed by rows");
    write(&engine, batch(31..32, 1.0), IngestMode::APPEND).await;
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    engine.store().flush_due().await.unwrap();
    assert_eq!(engine.store().growing_status("t").0, 0, "flushed by age");
    assert_eq!(ids(&engine).await, (0..32).collect::<Vec<_>>());
}
