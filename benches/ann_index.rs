//! Index search in process, without Flight SQL or SQL planning: builds one
//! segment's index of the vectors `benches/ann.py` wrote and times each
//! query's search (the index's candidates, then the exact re-rank of
//! `k x refine_factor` of them from the vectors in memory, as a query
//! does), one query at a time on one thread, as faiss searches one query.
//! `benches/ann.py` runs it in the same run as faiss on the same data and
//! computes recall from the ids it prints.
//!
//! Input (environment): `ANN_DIR` with `base.f32` and `queries.f32`
//! (little-endian f32 rows of `ANN_DIM`), `ANN_KIND` (ivf, ivf_sq8, hnsw),
//! `ANN_LISTS` or `ANN_M` / `ANN_EF_CONSTRUCTION`, `ANN_VALUES` (probes or
//! ef_search values, comma-separated), `ANN_K`, `ANN_REFINE` (0: the
//! type's default), `ANN_THREADS` (build threads).
//! Output: one JSON line with the build time and, per value, the p50 of
//! the searches and every query's ids.
//!
//! Run by `benches/ann.py`; alone: `cargo bench --bench ann_index` with
//! those variables set.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{FixedSizeListArray, Float32Array};
use quiver::storage::{vector_item_field, IndexDef, IndexKind, IndexMetric, SegmentIndex};
use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (see the module docs)"))
}

fn read_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    if std::env::var("ANN_DIR").is_err() {
        eprintln!("ann_index: ANN_DIR not set; run it through benches/ann.py");
        return;
    }
    let dir = std::path::PathBuf::from(env("ANN_DIR"));
    let d: usize = env("ANN_DIM").parse().expect("ANN_DIM");
    let k: usize = env("ANN_K").parse().expect("ANN_K");
    let kind = IndexKind::parse(&env("ANN_KIND")).expect("ANN_KIND");
    let number = |n: &str| std::env::var(n).ok().and_then(|v| v.parse::<u32>().ok());
    let threads = number("ANN_THREADS").unwrap_or(2) as usize;
    let values: Vec<usize> = env("ANN_VALUES")
        .split(',')
        .map(|v| v.trim().parse().expect("ANN_VALUES"))
        .collect();
    let base = read_f32(&dir.join("base.f32"));
    let queries = read_f32(&dir.join("queries.f32"));
    let rows = base.len() / d;
    let def = IndexDef {
        name: "bench".into(),
        id: "bench".into(),
        column: "embedding".into(),
        kind,
        metric: IndexMetric::L2,
        lists: number("ANN_LISTS"),
        m: number("ANN_M"),
        ef_construction: number("ANN_EF_CONSTRUCTION"),
        created_ms: 0,
    };
    let refine = match number("ANN_REFINE").unwrap_or(0) {
        0 if kind == IndexKind::IvfSq8 => 4,
        0 => 1,
        r => r as usize,
    };
    let vectors = FixedSizeListArray::new(
        vector_item_field(),
        d as i32,
        Arc::new(Float32Array::from(base.clone())),
        None,
    );
    let before = peak_rss();
    let t = Instant::now();
    let index = SegmentIndex::build(&def, &vectors, rows as u64, threads).expect("build");
    let build_s = t.elapsed().as_secs_f64();
    // What the build added to the peak, over the vectors it was given.
    let build_peak_bytes = peak_rss().saturating_sub(before);
    let bytes = index.encode().expect("encode").len();
    drop(vectors);
    let mut per_value = Vec::new();
    for &value in &values {
        let mut times = Vec::with_capacity(queries.len() / d);
        let mut ids = Vec::with_capacity(queries.len() / d);
        // Twice: the first pass warms caches and branch predictors.
        for _ in 0..2 {
            times.clear();
            ids.clear();
            for q in queries.chunks_exact(d) {
                let t = Instant::now();
                let cands = match &index {
                    SegmentIndex::Ivf(ivf) => ivf.search(q, k * refine, value, None).0,
                    SegmentIndex::Hnsw(g) => {
                        g.search(q, k * refine, value, None).expect("search").0
                    }
                };
                let mut best: Vec<(f32, u32)> = cands
                    .iter()
                    .map(|&(_, row)| {
                        let r = row as usize;
                        (IndexMetric::L2.distance(q, &base[r * d..(r + 1) * d]), row)
                    })
                    .collect();
                best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                best.truncate(k);
                times.push(t.elapsed().as_secs_f64());
                ids.push(best.iter().map(|b| b.1).collect::<Vec<u32>>());
            }
        }
        times.sort_by(f64::total_cmp);
        per_value.push(json!({
            "value": value,
            "p50_ms": times[times.len() / 2] * 1e3,
            "ids": ids,
        }));
    }
    println!(
        "{}",
        json!({
            "kind": kind.name(),
            "rows": rows,
            "build_s": build_s,
            "build_peak_rss_over_input_bytes": build_peak_bytes,
            "input_bytes": rows * d * 4,
            "bytes": bytes,
            "memory_bytes": index.memory_size(),
            "refine_factor": refine,
            "values": per_value,
        })
    );
}
