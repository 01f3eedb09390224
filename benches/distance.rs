//! Distance kernels: simsimd (what the SQL functions run) against a plain
//! scalar loop over the same vectors, as a ratio measured in the same run.
//!
//! Run: `cargo bench --bench distance` (results also in
//! `docs/bench/distance.json` and `.csv`; `RESULTS_DIR` to change).

mod common;

use std::hint::black_box;
use std::time::Instant;

use quiver::query::Metric;
use serde_json::json;

fn scalar_l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) * (x - y)) as f64)
        .sum::<f64>()
        .sqrt()
}

fn main() {
    const N: usize = 200_000;
    let mut results = common::Results::new("distance");
    for dim in [128usize, 768] {
        let mut seed = 1u64;
        let data: Vec<f32> = (0..N * dim)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let q = data[..dim].to_vec();
        let time = |f: &dyn Fn(&[f32], &[f32]) -> f64| {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                let mut acc = 0.0;
                for v in data.chunks_exact(dim) {
                    acc += f(black_box(v), &q);
                }
                black_box(acc);
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let simd = time(&|a, b| Metric::L2.eval(a, b));
        let scalar = time(&scalar_l2);
        println!(
            "l2 d={dim}: simsimd {:.1} M vectors/s, scalar loop {:.1} M vectors/s, simsimd/scalar time ratio {:.3}",
            N as f64 / simd / 1e6,
            N as f64 / scalar / 1e6,
            simd / scalar
        );
        results.record(&[
            ("dim", json!(dim)),
            ("kernel", json!("scalar loop l2")),
            ("type", json!("float32")),
            ("m_vectors_per_s", json!(N as f64 / scalar / 1e6)),
            ("time_vs_simsimd_f32", json!(scalar / simd)),
        ]);
        for m in Metric::ALL {
            let t = time(&|a, b| m.eval(a, b));
            println!("  {:<24} {:.1} M vectors/s", m.name(), N as f64 / t / 1e6);
            results.record(&[
                ("dim", json!(dim)),
                ("kernel", json!(m.name())),
                ("type", json!("float32")),
                ("m_vectors_per_s", json!(N as f64 / t / 1e6)),
                ("time_vs_simsimd_f32", json!(t / simd)),
            ]);
        }
        // The same vectors as float16 and int8 (scaled), against float32.
        let halves: Vec<half::f16> = data.iter().map(|x| half::f16::from_f32(*x)).collect();
        let bytes: Vec<i8> = data.iter().map(|x| (x * 254.0) as i8).collect();
        let q16 = halves[..dim].to_vec();
        let q8 = bytes[..dim].to_vec();
        let best = |f: &dyn Fn(usize) -> f64| {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                let mut acc = 0.0;
                for i in 0..N {
                    acc += f(black_box(i));
                }
                black_box(acc);
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        for m in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let t32 = time(&|a, b| m.eval(a, b));
            let t16 = best(&|i| m.eval_f16(&halves[i * dim..(i + 1) * dim], &q16));
            let t8 = best(&|i| m.eval_i8(&bytes[i * dim..(i + 1) * dim], &q8));
            println!(
                "  {:<24} float16 {:.1} M vectors/s ({:.2} x float32 time), int8 {:.1} M vectors/s ({:.2} x)",
                m.name(),
                N as f64 / t16 / 1e6,
                t16 / t32,
                N as f64 / t8 / 1e6,
                t8 / t32
            );
            for (ty, t) in [("float16", t16), ("int8", t8)] {
                results.record(&[
                    ("dim", json!(dim)),
                    ("kernel", json!(m.name())),
                    ("type", json!(ty)),
                    ("m_vectors_per_s", json!(N as f64 / t / 1e6)),
                    ("time_vs_simsimd_f32", json!(t / t32)),
                ]);
            }
        }
    }
    results.save();
}
