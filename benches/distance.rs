//! Distance kernels: simsimd (what the SQL functions run) against a plain
//! scalar loop over the same vectors, as a ratio measured in the same run.
//!
//! Run: `cargo bench --bench distance`

use std::hint::black_box;
use std::time::Instant;

use quiver::distance::Metric;

fn scalar_l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) * (x - y)) as f64)
        .sum::<f64>()
        .sqrt()
}

fn main() {
    const N: usize = 200_000;
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
        for m in Metric::ALL {
            let t = time(&|a, b| m.eval(a, b));
            println!("  {:<24} {:.1} M vectors/s", m.name(), N as f64 / t / 1e6);
        }
    }
}
