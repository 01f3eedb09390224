//! In-process exact top-10 latency through the SQL engine (no RPC): the
//! fused `VectorTopKExec` against DataFusion's own sort (the rule off), the
//! fused operator with its cached vectors on ordinary 4 KiB pages (a store
//! with `huge_pages` off over the same files), a hand-written flat scan
//! (simsimd squared L2 over one contiguous `Vec<f32>`, one core, a bounded
//! heap), and faiss IndexFlatL2 (an IDSelectorBitmap for filters) and numpy
//! (benches/flat_reference.py in a child process), all on the same vectors
//! in the same run, unfiltered and at 50% / 10% / 1% / 0.1% selectivity.
//! Warm: the caches hold the data after the first queries. The fused
//! operator, its 4 KiB-page twin, the rule off and the flat scan take turns
//! per query (each first in turn); the fused operator is then also timed
//! back to back, as flat_reference.py times faiss and numpy, and that is
//! the figure compared with theirs. Then cold: the
//! store is reopened (empty caches) and the first unfiltered query is
//! timed, with the bytes it read from the store.
//!
//! Run: `cargo bench --bench topk` (1,000,000 x 128 and 200,000 x 768;
//! `SHAPES=100000x64,...` to choose). faiss and numpy come from
//! `.venv/bin/python` (`PYTHON` to choose) with benches/requirements.txt
//! installed, and are left out, saying so, without it. Results also go to
//! `docs/bench/topk.json` and `.csv` (`RESULTS_DIR` to change).

mod common;

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::array::{ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array};
use arrow::datatypes::Int64Type;
use quiver::{Engine, EngineOptions, IngestMode, Store, StoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use simsimd::SpatialSimilarity;

const K: usize = 10;
const RUNS: usize = 15;

fn normal(rng: &mut StdRng) -> f32 {
    // Box-Muller: enough for benchmark data.
    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

fn literal(q: &[f32]) -> String {
    let xs: Vec<String> = q.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", xs.join(", "))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// The baseline: one pass over contiguous vectors, squared L2, a heap of k.
fn flat_scan(
    vectors: &[f32],
    dim: usize,
    bucket: &[i32],
    limit: Option<i32>,
    q: &[f32],
) -> Vec<i64> {
    let mut heap: BinaryHeap<(Ordered, i64)> = BinaryHeap::new();
    for (i, v) in vectors.chunks_exact(dim).enumerate() {
        if let Some(l) = limit {
            if bucket[i] >= l {
                continue;
            }
        }
        let d = f32::sqeuclidean(v, q).expect("same length");
        if heap.len() < K {
            heap.push((Ordered(d), i as i64));
        } else if Ordered(d) < heap.peek().expect("k entries").0 {
            heap.pop();
            heap.push((Ordered(d), i as i64));
        }
    }
    let mut out = heap.into_sorted_vec();
    out.truncate(K);
    out.into_iter().map(|(_, i)| i).collect()
}

/// `f64` ordered by `total_cmp`, for the heap.
#[derive(Clone, Copy, PartialEq)]
struct Ordered(f64);
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ordered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// The process's anonymous memory on huge pages, in MiB (Linux).
fn anon_huge_page_mib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// What benches/flat_reference.py measured for one filter: faiss
/// IndexFlatL2 (an IDSelectorBitmap for filters) and numpy, p50 in ms, and
/// faiss's ids for the first query.
#[derive(serde::Deserialize)]
struct Reference {
    faiss_ms: f64,
    numpy_ms: f64,
    faiss_ids: Vec<i64>,
}

/// Times faiss and numpy on the same vectors in a Python child process
/// (`PYTHON`, or the repository's `.venv/bin/python` with
/// benches/requirements.txt installed), one [`Reference`] per limit;
/// `None`, with the reason printed, when that Python is missing or fails.
fn references(
    vectors: &[f32],
    dim: usize,
    bucket: &[i32],
    queries: &[Vec<f32>],
    limits: &[Option<i32>],
) -> Option<Vec<Reference>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    if !python.exists() {
        println!(
            "  faiss/numpy: skipped ({} not found; see benches/requirements.txt)",
            python.display()
        );
        return None;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let bytes = |xs: &mut dyn Iterator<Item = [u8; 4]>| xs.flatten().collect::<Vec<u8>>();
    let write = |name: &str, data: Vec<u8>| {
        std::fs::write(tmp.path().join(name), data).expect("write reference input")
    };
    write(
        "vectors.f32",
        bytes(&mut vectors.iter().map(|x| x.to_le_bytes())),
    );
    write(
        "bucket.i32",
        bytes(&mut bucket.iter().map(|x| x.to_le_bytes())),
    );
    write(
        "queries.f32",
        bytes(&mut queries.iter().flatten().map(|x| x.to_le_bytes())),
    );
    let out = std::process::Command::new(&python)
        .arg(root.join("benches/flat_reference.py"))
        .arg(tmp.path())
        .args([
            (vectors.len() / dim).to_string(),
            dim.to_string(),
            K.to_string(),
        ])
        .arg(serde_json::to_string(limits).expect("json"))
        .output()
        .expect("start python");
    if !out.status.success() {
        println!(
            "  faiss/numpy: skipped ({} failed: {})",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("flat_reference.py prints JSON"))
}

async fn ids(engine: &Engine, sql: &str) -> Vec<i64> {
    let batches = engine.sql(sql).await.expect("query runs");
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut results = common::Results::new("topk");
    let shapes = std::env::var("SHAPES").unwrap_or_else(|_| "1000000x128,200000x768".into());
    for shape in shapes.split(',') {
        let (rows, dim) = shape
            .split_once('x')
            .and_then(|(r, d)| Some((r.parse().ok()?, d.parse().ok()?)))
            .expect("SHAPES is a list of ROWSxDIM");
        run_shape(rows, dim, &mut results).await;
    }
    results.save();
}

async fn run_shape(rows: usize, dim: usize, results: &mut common::Results) {
    let mut rng = StdRng::seed_from_u64(0);
    let vectors: Vec<f32> = (0..rows * dim).map(|_| normal(&mut rng)).collect();
    let bucket: Vec<i32> = (0..rows).map(|_| rng.random_range(0..1000)).collect();
    let queries: Vec<Vec<f32>> = (0..RUNS)
        .map(|_| (0..dim).map(|_| normal(&mut rng)).collect())
        .collect();

    let selectivity = [
        (None, "all"),
        (Some(500), "50%"),
        (Some(100), "10%"),
        (Some(10), "1%"),
        (Some(1), "0.1%"),
    ];
    let limits: Vec<Option<i32>> = selectivity.iter().map(|(l, _)| *l).collect();
    let t = Instant::now();
    let reference = references(&vectors, dim, &bucket, &queries, &limits);
    if reference.is_some() {
        eprintln!(
            "faiss and numpy timed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        dir.path().to_str().expect("utf-8 path"),
        StoreConfig::default(),
    )
    .await
    .expect("store opens");
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
        (
            "bucket",
            Arc::new(Int32Array::from(bucket.clone())) as ArrayRef,
        ),
        (
            "embedding",
            Arc::new(FixedSizeListArray::new(
                quiver::storage::vector_item_field(),
                dim as i32,
                Arc::new(Float32Array::from(vectors.clone())),
                None,
            )) as ArrayRef,
        ),
    ])
    .expect("batch");
    let schema = batch.schema();
    let t = Instant::now();
    store
        .ingest(
            "s",
            schema,
            futures::stream::iter(vec![Ok(batch)]),
            IngestMode::CREATE,
            None,
        )
        .await
        .expect("ingest");
    eprintln!(
        "ingested {rows} x {dim} in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // The fused operator and its 4 KiB-page twin each read through a store
    // opened afresh over the files (neither is the store that wrote them).
    let huge_store = Store::open(
        dir.path().to_str().expect("utf-8 path"),
        StoreConfig::default(),
    )
    .await
    .expect("store opens");
    let fused = Engine::new(huge_store.clone()).expect("engine");
    let plain = Engine::with_options(
        store.clone(),
        EngineOptions {
            fused_topk: false,
            ..Default::default()
        },
    )
    .expect("engine");
    // The same files through a store that keeps its cached vector chunks on
    // ordinary 4 KiB pages (`huge_pages` off), for the on/off comparison.
    let small_store = Store::open(
        dir.path().to_str().expect("utf-8 path"),
        StoreConfig {
            huge_pages: false,
            ..StoreConfig::default()
        },
    )
    .await
    .expect("store opens");
    let small = Engine::new(small_store.clone()).expect("engine");
    let sql = |q: &[f32], limit: Option<i32>| {
        let wher = limit
            .map(|l| format!(" WHERE bucket < {l}"))
            .unwrap_or_default();
        format!(
            "SELECT id, l2_distance(embedding, {}) AS d FROM s{wher} ORDER BY d LIMIT {K}",
            literal(q)
        )
    };

    println!(
        "top-{K} over {rows} x {dim} float32, in process, {RUNS} queries each, p50 in ms \
         (machine: {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut unfiltered = None;
    for (i, &(limit, label)) in selectivity.iter().enumerate() {
        let reference = reference.as_ref().map(|r| &r[i]);
        // Same answers (and warm caches) first.
        if let Some(r) = reference {
            let want = flat_scan(&vectors, dim, &bucket, limit, &queries[0]);
            if r.faiss_ids != want {
                println!(
                    "  {label:>5}: faiss's ids differ from the flat scan's (near ties?): {:?} vs {want:?}",
                    r.faiss_ids
                );
            }
        }
        for q in &queries[..3] {
            let want = flat_scan(&vectors, dim, &bucket, limit, q);
            assert_eq!(ids(&fused, &sql(q, limit)).await, want, "fused, {label}");
            assert_eq!(ids(&plain, &sql(q, limit)).await, want, "rule off, {label}");
            assert_eq!(
                ids(&small, &sql(q, limit)).await,
                want,
                "4 KiB pages, {label}"
            );
        }
        if unfiltered.is_none() {
            if let Some(mib) = anon_huge_page_mib() {
                println!(
                    "  huge pages: {:.0} MiB of the vector chunks moved, the process has {mib:.0} MiB \
                     of anonymous huge pages",
                    huge_store.decoded_huge_page_bytes() as f64 / (1 << 20) as f64
                );
            }
        }
        if std::env::var_os("EXPLAIN").is_some() {
            let plan = fused
                .sql(&format!("EXPLAIN ANALYZE {}", sql(&queries[0], limit)))
                .await
                .expect("explain");
            println!(
                "{}",
                arrow::util::pretty::pretty_format_batches(&plan).expect("format")
            );
        }
        // The queries' text is the client's: written before the clock
        // starts, as faiss and numpy get their queries as floats.
        let texts: Vec<String> = queries.iter().map(|q| sql(q, limit)).collect();
        let (mut on, mut off, mut flat, mut pages) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (j, (q, text)) in queries.iter().zip(&texts).enumerate() {
            // Each of the four goes first in turn: the first after another's
            // scan pays for the caches that scan evicted and for waking the
            // runtime's idle workers.
            for m in 0..4 {
                let t = Instant::now();
                let took = |t: Instant| t.elapsed().as_secs_f64();
                match (j + m) % 4 {
                    0 => {
                        ids(&fused, text).await;
                        on.push(took(t));
                    }
                    1 => {
                        ids(&small, text).await;
                        pages.push(took(t));
                    }
                    2 => {
                        ids(&plain, text).await;
                        off.push(took(t));
                    }
                    _ => {
                        std::hint::black_box(flat_scan(&vectors, dim, &bucket, limit, q));
                        flat.push(took(t));
                    }
                }
            }
        }
        // And back to back, the way benches/flat_reference.py times faiss
        // and numpy: a query to warm up, then each in turn. In the rotation
        // above the fused operator runs after the others' scans have
        // evicted its rows from the CPU caches; faiss and numpy never do.
        ids(&fused, &texts[0]).await;
        let mut seq = Vec::new();
        for text in &texts {
            let t = Instant::now();
            ids(&fused, text).await;
            seq.push(t.elapsed().as_secs_f64());
        }
        let (on, off, flat, pages) = (median(on), median(off), median(flat), median(pages));
        let seq = median(seq);
        let base = *unfiltered.get_or_insert(on);
        println!(
            "  {label:>5}: fused {:7.2}  rule off {:7.2}  flat scan (1 core) {:7.2}  \
             4 KiB pages {:7.2}  |  fused/off {:.2}  fused/flat {:.2}  vs unfiltered {:.2}  \
             huge/4K pages {:.2}",
            on * 1e3,
            off * 1e3,
            flat * 1e3,
            pages * 1e3,
            on / off,
            on / flat,
            on / base,
            on / pages
        );
        if let Some(r) = reference {
            println!(
                "         back to back: fused {:7.2}  faiss IndexFlatL2 {:7.2}  numpy {:7.2}  |  \
                 fused/faiss {:.2}  fused/numpy {:.2}  (rotated fused/faiss {:.2})",
                seq * 1e3,
                r.faiss_ms,
                r.numpy_ms,
                seq * 1e3 / r.faiss_ms,
                seq * 1e3 / r.numpy_ms,
                on * 1e3 / r.faiss_ms
            );
        }
        results.record(&[
            ("rows", json!(rows)),
            ("dim", json!(dim)),
            ("case", json!("warm")),
            ("selectivity", json!(label)),
            ("fused_p50_ms", json!(on * 1e3)),
            ("rule_off_p50_ms", json!(off * 1e3)),
            ("flat_scan_p50_ms", json!(flat * 1e3)),
            ("fused_per_flat", json!(on / flat)),
            ("fused_per_unfiltered", json!(on / base)),
            ("fused_4k_pages_p50_ms", json!(pages * 1e3)),
            ("huge_per_4k_pages", json!(on / pages)),
            ("fused_back_to_back_p50_ms", json!(seq * 1e3)),
            ("faiss_p50_ms", json!(reference.map(|r| r.faiss_ms))),
            ("numpy_p50_ms", json!(reference.map(|r| r.numpy_ms))),
            (
                "fused_per_faiss",
                json!(reference.map(|r| seq * 1e3 / r.faiss_ms)),
            ),
            (
                "fused_rotated_per_faiss",
                json!(reference.map(|r| on * 1e3 / r.faiss_ms)),
            ),
        ]);
    }

    // Cold: a new store over the same files (empty caches), first query.
    drop((fused, plain, store, huge_store, small, small_store));
    let store = Store::open(
        dir.path().to_str().expect("utf-8 path"),
        StoreConfig::default(),
    )
    .await
    .expect("store reopens");
    let cold = Engine::new(store.clone()).expect("engine");
    let t = Instant::now();
    let got = ids(&cold, &sql(&queries[0], None)).await;
    let first = t.elapsed().as_secs_f64();
    assert_eq!(got, flat_scan(&vectors, dim, &bucket, None, &queries[0]));
    let read = store.cache_stats().fetched_bytes;
    let mut warm = Vec::new();
    for q in &queries {
        let t = Instant::now();
        ids(&cold, &sql(q, None)).await;
        warm.push(t.elapsed().as_secs_f64());
    }
    let warm = median(warm);
    println!(
        "  cold after restart: first query {:.1} ms, read {:.0} MB from the store ({:.2} GB/s); \
         warm {:.2} ms  |  cold/warm {:.1}",
        first * 1e3,
        read as f64 / 1e6,
        read as f64 / first / 1e9,
        warm * 1e3,
        first / warm
    );
    results.record(&[
        ("rows", json!(rows)),
        ("dim", json!(dim)),
        ("case", json!("cold")),
        ("selectivity", json!("all")),
        ("first_query_ms", json!(first * 1e3)),
        ("bytes_read", json!(read)),
        ("read_gbps", json!(read as f64 / first / 1e9)),
        ("fused_p50_ms", json!(warm * 1e3)),
    ]);
}
