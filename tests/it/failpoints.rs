//! Failure injection (the `fail` crate, `--features failpoints`): a write,
//! compaction or GC that fails at any of these points leaves the old state
//! or the new one, never a mix, and the store verifies.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use quiver::storage::vector_item_field;
use quiver::{Engine, IngestMode, Store, StoreConfig};

use crate::util::ingest;

/// Failpoints are process-global: one scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The collection these tests write. Fail points are configured as
/// `return(fp_t)`, so they fire for it alone, not for the collections of
/// tests running beside these.
const C: &str = "fp_t";

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    let emb = FixedSizeListArray::new(
        vector_item_field(),
        2,
        Arc::new(Float32Array::from(vec![1.0; n * 2])),
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

async fn write(store: &Store, ids: std::ops::Range<i64>, mode: IngestMode) -> quiver::Result<u64> {
    ingest(store, C, batch(ids), mode).await
}

async fn state(engine: &Engine) -> (u64, Vec<i64>) {
    let v = engine.store().snapshot(C).unwrap().version;
    let rows = engine.sql("SELECT id FROM fp_t ORDER BY id").await.unwrap();
    let ids = rows
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    (v, ids)
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += parquet_files(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

/// Runs `op` with fail point `point` set for the test collection; it must
/// fail there.
async fn fails_at<T>(point: &str, op: impl std::future::Future<Output = quiver::Result<T>>) {
    let scenario = fail::FailScenario::setup();
    fail::cfg(point, &format!("return({C})")).unwrap();
    let result = op.await;
    scenario.teardown();
    match result {
        Ok(_) => panic!("{point}: the operation did not fail"),
        Err(e) => assert!(e.to_string().contains("injected failure"), "{point}: {e}"),
    }
}

async fn setup() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), StoreConfig::default())
        .await
        .unwrap();
    write(&store, 0..10, IngestMode::CREATE).await.unwrap();
    write(&store, 5..15, IngestMode::APPEND).await.unwrap();
    let engine = Engine::new(store).unwrap();
    engine.sql("DELETE FROM fp_t WHERE id = 0").await.unwrap();
    (dir, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_leave_the_old_state() {
    let _serial = SERIAL.lock().await;
    for point in ["segment-after-files", "before-manifest-commit"] {
        let (dir, engine) = setup().await;
        let before = state(&engine).await;
        let files = parquet_files(dir.path());
        fails_at(point, write(engine.store(), 10..30, IngestMode::APPEND)).await;
        assert_eq!(
            state(&engine).await,
            before,
            "{point}: the failed write is partly visible"
        );
        assert_eq!(
            parquet_files(dir.path()),
            files,
            "{point}: uncommitted files were left behind"
        );
        assert!(quiver::admin::verify::verify(engine.store())
            .await
            .unwrap()
            .is_empty());
        // The next write goes through.
        write(engine.store(), 10..30, IngestMode::APPEND)
            .await
            .unwrap();
        assert_eq!(state(&engine).await.1, (1..30).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_compaction_and_gc_leave_a_valid_store() {
    let _serial = SERIAL.lock().await;
    let (_dir, engine) = setup().await;
    let before = state(&engine).await;

    let scenario = fail::FailScenario::setup();
    fail::cfg("compaction-before-commit", &format!("return({C})")).unwrap();
    let err = quiver::admin::compact::compact_collection(&engine, C)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    scenario.teardown();
    assert_eq!(
        state(&engine).await,
        before,
        "a failed compaction changed the collection"
    );

    // Now compact for real, then fail GC half way: still the new state.
    let r = quiver::admin::compact::compact_collection(&engine, C)
        .await
        .unwrap();
    let after = state(&engine).await;
    assert_eq!(after.0, r.version.unwrap());
    assert_eq!(after.1, before.1);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let scenario = fail::FailScenario::setup();
    fail::cfg("gc-mid-delete", &format!("return({C})")).unwrap();
    let err = quiver::admin::gc::gc(engine.store(), std::time::Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    scenario.teardown();
    assert_eq!(state(&engine).await, after);
    assert!(quiver::admin::verify::verify(engine.store())
        .await
        .unwrap()
        .is_empty());
    // A second GC finishes the job.
    let r = quiver::admin::gc::gc(engine.store(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(r[0].removed_files > 0);
    assert_eq!(state(&engine).await, after);
    assert!(quiver::admin::verify::verify(engine.store())
        .await
        .unwrap()
        .is_empty());
}

/// A flush that fails after its segment files, before its manifest commit,
/// or after the commit but before the log is trimmed: the rows stay visible
/// exactly once, in this process and after a crash and replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_flushes_keep_every_row_exactly_once() {
    let _serial = SERIAL.lock().await;
    for point in [
        "segment-after-files",
        "before-manifest-commit",
        "after-commit-before-wal-trim",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        let wal = dir.path().join("_wal");
        let open = || async {
            let opts = quiver::storage::WalOptions::new(&wal);
            Engine::new(
                Store::open_with_wal(&path, StoreConfig::default(), opts)
                    .await
                    .unwrap(),
            )
            .unwrap()
        };
        let engine = open().await;
        write(engine.store(), 0..10, IngestMode::CREATE)
            .await
            .unwrap();
        write(engine.store(), 5..15, IngestMode::APPEND)
            .await
            .unwrap();
        engine.sql("DELETE FROM fp_t WHERE id = 0").await.unwrap();
        let want: Vec<i64> = (1..15).collect();
        assert_eq!(engine.store().growing_status(C).0, 10);

        let scenario = fail::FailScenario::setup();
        fail::cfg(point, &format!("return({C})")).unwrap();
        let err = engine.store().flush(C).await.unwrap_err();
        assert!(
            err.to_string().contains("injected failure"),
            "{point}: {err}"
        );
        scenario.teardown();
        assert_eq!(state(&engine).await.1, want, "{point}: in process");
        assert!(quiver::admin::verify::verify(engine.store())
            .await
            .unwrap()
            .is_empty());

        // Crash and replay: the watermark keeps committed records from
        // being applied twice.
        drop(engine);
        let engine = open().await;
        assert_eq!(state(&engine).await.1, want, "{point}: after replay");
        engine.store().flush(C).await.unwrap();
        assert_eq!(engine.store().growing_status(C).0, 0);
        drop(engine);
        let engine = open().await;
        assert_eq!(state(&engine).await.1, want, "{point}: after a clean flush");
        assert!(
            quiver::storage::wal::list_files(&wal.join(C))
                .unwrap()
                .is_empty(),
            "{point}: log not trimmed"
        );
    }
}

/// Every row with its vector, as text.
async fn rows_of(engine: &Engine) -> String {
    let rows = engine
        .sql("SELECT id, embedding FROM fp_t ORDER BY id")
        .await
        .unwrap();
    arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string()
}

/// An UPDATE that fails after writing its segment files, or at its
/// manifest commit, changes nothing: the rows are as before, no file is
/// left behind, and the same UPDATE then goes through whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_changes_nothing() {
    let _serial = SERIAL.lock().await;
    for point in ["segment-after-files", "before-manifest-commit"] {
        let (dir, engine) = setup().await;
        let before = rows_of(&engine).await;
        let version = engine.store().snapshot(C).unwrap().version;
        let files = parquet_files(dir.path());
        fails_at(
            point,
            engine.sql("UPDATE fp_t SET embedding = [2.0, 3.0] WHERE id > 3"),
        )
        .await;
        assert_eq!(
            rows_of(&engine).await,
            before,
            "{point}: a failed UPDATE is partly visible"
        );
        assert_eq!(engine.store().snapshot(C).unwrap().version, version);
        assert_eq!(
            parquet_files(dir.path()),
            files,
            "{point}: files left behind"
        );
        let n = engine
            .sql("UPDATE fp_t SET embedding = [2.0, 3.0] WHERE id > 3")
            .await
            .unwrap();
        assert_eq!(
            n[0].column(0)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .value(0),
            11
        );
        let changed = engine
            .sql("SELECT count(*) FROM fp_t WHERE embedding = [2.0, 3.0]")
            .await
            .unwrap();
        assert_eq!(
            changed[0].column(0).as_primitive::<Int64Type>().value(0),
            11
        );
        assert!(quiver::admin::verify::verify(engine.store())
            .await
            .unwrap()
            .is_empty());
    }
}
