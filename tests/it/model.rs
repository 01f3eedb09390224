//! Model-based test: random sequences of insert / upsert / delete / flush /
//! compact / restart against an in-memory model, with the write-ahead log
//! (writes land in the growing segment; restarts replay the log, as after a
//! crash) and without it (every write is sealed). Every answer (counts, point lookups,
//! top-k ids) must match the model. proptest prints the failing sequence;
//! the seed is fixed so a failure reproduces.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch,
};
use arrow::datatypes::{Float64Type, Int64Type};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use quiver::storage::vector_item_field;
use quiver::storage::WalOptions;
use quiver::{Engine, IngestMode, Store, StoreConfig};

use crate::util::Backend;

#[derive(Debug, Clone)]
enum Op {
    /// Write these (key, value) rows in one ingest.
    Write(Vec<(i64, i64)>),
    DeleteBelow(i64),
    DeleteKey(i64),
    Compact,
    /// Seal the growing segment (a no-op without the log).
    Flush,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0i64..40, 0i64..100), 1..12).prop_map(Op::Write),
        1 => (0i64..100).prop_map(Op::DeleteBelow),
        1 => (0i64..40).prop_map(Op::DeleteKey),
        1 => Just(Op::Compact),
        1 => Just(Op::Flush),
        1 => Just(Op::Restart),
    ]
}

pub(crate) fn batch(rows: &[(i64, i64)]) -> RecordBatch {
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let values: Vec<f64> = rows.iter().map(|r| r.1 as f64).collect();
    let vecs: Vec<f32> = rows.iter().flat_map(|r| [r.1 as f32, 0.0]).collect();
    let emb = FixedSizeListArray::new(
        vector_item_field(),
        2,
        Arc::new(Float32Array::from(vecs)),
        None,
    );
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("value", Arc::new(Float64Array::from(values)) as ArrayRef),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

async fn check(
    engine: &Engine,
    model: &BTreeMap<i64, i64>,
    step: usize,
) -> Result<(), TestCaseError> {
    let rows = engine
        .sql("SELECT id, value FROM docs ORDER BY id")
        .await
        .unwrap();
    let got: Vec<(i64, i64)> = rows
        .iter()
        .flat_map(|b| {
            let id = b.column(0).as_primitive::<Int64Type>().clone();
            let v = b.column(1).as_primitive::<Float64Type>().clone();
            (0..b.num_rows())
                .map(move |i| (id.value(i), v.value(i) as i64))
                .collect::<Vec<_>>()
        })
        .collect();
    let want: Vec<(i64, i64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    prop_assert_eq!(&got, &want, "rows after step {}", step);
    let n = engine.sql("SELECT count(*) FROM docs").await.unwrap();
    prop_assert_eq!(
        n[0].column(0).as_primitive::<Int64Type>().value(0) as usize,
        model.len()
    );
    if let Some((&k, &v)) = model.iter().next() {
        let one = engine
            .sql(&format!("SELECT value FROM docs WHERE id = {k}"))
            .await
            .unwrap();
        prop_assert_eq!(
            one[0].column(0).as_primitive::<Float64Type>().value(0) as i64,
            v
        );
    }
    // Top-3 nearest to 50 by vector, ties by key.
    let top = engine
        .sql("SELECT id FROM docs ORDER BY l1_distance(embedding, [50.0, 0.0]), id LIMIT 3")
        .await
        .unwrap();
    let got: Vec<i64> = top
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    let mut want: Vec<(i64, i64)> = model.iter().map(|(k, v)| ((v - 50).abs(), *k)).collect();
    want.sort();
    let want: Vec<i64> = want.into_iter().take(3).map(|(_, k)| k).collect();
    prop_assert_eq!(got, want, "top-k after step {}", step);
    Ok(())
}

/// Opens the store at `url`, with its log in `wal` (a local directory)
/// when `logged`.
async fn open(url: &str, wal: &std::path::Path, logged: bool) -> Engine {
    let config = StoreConfig {
        segment_max_rows: 8,
        ..StoreConfig::default()
    };
    let store = if logged {
        Store::open_with_wal(url, config, WalOptions::new(wal))
            .await
            .unwrap()
    } else {
        Store::open(url, config).await.unwrap()
    };
    Engine::new(store).unwrap()
}

async fn run(ops: Vec<Op>, logged: bool, s3: bool) -> Result<(), TestCaseError> {
    let backend = if s3 {
        Backend::s3().expect("QUIVER_TEST_S3")
    } else {
        Backend::local()
    };
    let wal_dir = tempfile::tempdir().unwrap();
    let wal = wal_dir.path().join("_wal");
    let path = backend.url();
    let mut engine = open(&path, &wal, logged).await;
    let first = batch(&[(1000, 0)]);
    engine
        .store()
        .ingest(
            "docs",
            first.schema(),
            futures::stream::iter(vec![Ok(first)]),
            IngestMode::CREATE,
            None,
        )
        .await
        .unwrap();
    let mut model: BTreeMap<i64, i64> = BTreeMap::from([(1000, 0)]);
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write(rows) => {
                let b = batch(&rows);
                let schema = b.schema();
                engine
                    .store()
                    .ingest(
                        "docs",
                        schema,
                        futures::stream::iter(vec![Ok(b)]),
                        IngestMode::APPEND,
                        None,
                    )
                    .await
                    .unwrap();
                for (k, v) in rows {
                    model.insert(k, v);
                }
            }
            Op::DeleteBelow(x) => {
                engine
                    .sql(&format!("DELETE FROM docs WHERE value < {x}"))
                    .await
                    .unwrap();
                model.retain(|_, v| *v >= x);
            }
            Op::DeleteKey(k) => {
                engine
                    .sql(&format!("DELETE FROM docs WHERE id = {k}"))
                    .await
                    .unwrap();
                model.remove(&k);
            }
            Op::Compact => {
                quiver::admin::compact::compact_collection(&engine, "docs")
                    .await
                    .unwrap();
            }
            Op::Flush => {
                engine.store().flush("docs").await.unwrap();
            }
            Op::Restart => {
                // No flush first: with the log, this is a crash and replay.
                drop(engine);
                engine = open(&path, &wal, logged).await;
            }
        }
        check(&engine, &model, step).await?;
    }
    Ok(())
}

#[test]
fn storage_matches_an_in_memory_model() {
    model_test(false, false);
}

#[test]
fn logged_storage_matches_an_in_memory_model() {
    model_test(true, false);
}

/// The same suite on S3 (SeaweedFS), when the test command provides it.
#[test]
fn storage_on_s3_matches_an_in_memory_model() {
    if Backend::s3().is_some() {
        model_test(false, true);
        model_test(true, true);
    }
}

fn model_test(logged: bool, s3: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        cases: 24,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5157_7645),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..14), |ops| {
        rt.block_on(run(ops, logged, s3))
    });
    if let Err(e) = result {
        panic!("model test failed (seed 0x51577645): {e}");
    }
}
