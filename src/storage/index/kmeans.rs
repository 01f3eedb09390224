//! k-means for IVF indexes: Lloyd's algorithm on a sample, and the
//! assignment of every vector to its nearest centroid. Both compute the
//! vector-centroid dot products of a block of rows as one matrix product
//! (`matrixmultiply::sgemm`), the way faiss does with BLAS, so a build of
//! 1M x 128 into 1,000 lists is seconds rather than minutes of pairwise
//! kernels; blocks are spread over `threads` threads.

use crate::storage::index::def::IndexMetric;

/// Rows per block of a matrix product (a block of dot products is
/// `BLOCK_ROWS` x lists floats).
const BLOCK_ROWS: usize = 1024;

/// Most training points per centroid (as faiss: more add little).
pub const MAX_POINTS_PER_LIST: usize = 256;

/// Lloyd iterations of a training run (faiss trains IVF quantizers with 10).
pub const TRAIN_ITERATIONS: usize = 10;

/// A small deterministic generator (splitmix64), so a build of the same
/// data gives the same index.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Scales `v` to unit length (left alone if it is zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The nearest of `k` centroids (row-major, `d` wide) for each of the rows
/// of `data`, by `metric`; cosine expects unit-length centroids.
pub fn assign(
    data: &[f32],
    d: usize,
    centroids: &[f32],
    k: usize,
    metric: IndexMetric,
    threads: usize,
) -> Vec<u32> {
    let n = data.len() / d.max(1);
    let mut out = vec![0u32; n];
    if n == 0 || k == 0 {
        return out;
    }
    // |c|^2, for L2: argmin |x - c|^2 = argmin |c|^2 - 2 x.c.
    let norms: Vec<f32> = centroids
        .chunks_exact(d)
        .map(|c| c.iter().map(|x| x * x).sum())
        .collect();
    let threads = threads.clamp(1, n.div_ceil(BLOCK_ROWS));
    let per_thread = n.div_ceil(threads).div_ceil(BLOCK_ROWS) * BLOCK_ROWS;
    std::thread::scope(|s| {
        for (t, out) in out.chunks_mut(per_thread).enumerate() {
            let norms = &norms;
            s.spawn(move || {
                let first = t * per_thread;
                let mut dots = vec![0f32; BLOCK_ROWS * k];
                for (b, out) in out.chunks_mut(BLOCK_ROWS).enumerate() {
                    let start = first + b * BLOCK_ROWS;
                    let rows = out.len();
                    let block = &data[start * d..(start + rows) * d];
                    gemm_dots(block, rows, d, centroids, k, &mut dots[..rows * k]);
                    for (r, slot) in out.iter_mut().enumerate() {
                        let row = &dots[r * k..(r + 1) * k];
                        *slot = best_of(row, norms, metric);
                    }
                }
            });
        }
    });
    out
}

/// The index of the best centroid given the row's dot products.
#[inline]
fn best_of(dots: &[f32], norms: &[f32], metric: IndexMetric) -> u32 {
    let mut best = 0usize;
    let mut best_score = f32::INFINITY;
    for (j, &dot) in dots.iter().enumerate() {
        let score = match metric {
            IndexMetric::L2 => norms[j] - 2.0 * dot,
            IndexMetric::Cosine | IndexMetric::InnerProduct => -dot,
        };
        if score < best_score {
            best_score = score;
            best = j;
        }
    }
    best as u32
}

/// `out[r][j] = block[r] . centroids[j]` for a block of `rows` rows.
fn gemm_dots(block: &[f32], rows: usize, d: usize, centroids: &[f32], k: usize, out: &mut [f32]) {
    debug_assert_eq!(block.len(), rows * d);
    debug_assert_eq!(centroids.len(), k * d);
    debug_assert_eq!(out.len(), rows * k);
    // SAFETY: the slices hold exactly the rows x d, k x d and rows x k
    // floats the strides describe (checked above), and `out` does not
    // overlap the inputs.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            d,
            k,
            1.0,
            block.as_ptr(),
            d as isize,
            1,
            centroids.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            k as isize,
            1,
        );
    }
}

/// Trains `k` centroids on `sample` (row-major, `d` wide). For cosine the
/// sample is expected unit-length and centroids are kept unit-length
/// (spherical k-means).
pub fn train(
    sample: &[f32],
    d: usize,
    k: usize,
    metric: IndexMetric,
    threads: usize,
    seed: u64,
) -> Vec<f32> {
    let n = sample.len() / d.max(1);
    let k = k.min(n).max(1);
    let mut rng = SplitMix(seed);
    // Start from k distinct sample points.
    let mut picks: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        picks.swap(i, j);
    }
    let mut centroids: Vec<f32> = picks[..k]
        .iter()
        .flat_map(|&i| sample[i * d..(i + 1) * d].iter().copied())
        .collect();
    if n <= k {
        return centroids;
    }
    let mut previous: Option<Vec<u32>> = None;
    for _ in 0..TRAIN_ITERATIONS {
        let labels = assign(sample, d, &centroids, k, metric, threads);
        if previous.as_ref() == Some(&labels) {
            break;
        }
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for (i, &l) in labels.iter().enumerate() {
            let l = l as usize;
            counts[l] += 1;
            let dst = &mut sums[l * d..(l + 1) * d];
            for (s, &x) in dst.iter_mut().zip(&sample[i * d..(i + 1) * d]) {
                *s += x as f64;
            }
        }
        for j in 0..k {
            let c = &mut centroids[j * d..(j + 1) * d];
            if counts[j] == 0 {
                // An empty list takes a random point (faiss splits a large
                // cluster the same way, give or take).
                let i = rng.below(n);
                c.copy_from_slice(&sample[i * d..(i + 1) * d]);
            } else {
                for (c, s) in c.iter_mut().zip(&sums[j * d..(j + 1) * d]) {
                    *c = (*s / counts[j] as f64) as f32;
                }
            }
            if metric == IndexMetric::Cosine {
                normalize(c);
            }
        }
        previous = Some(labels);
    }
    centroids
}

/// `n` random vectors of `d` dimensions in [-1, 1), the same for the same
/// seed: the index modules' test data.
#[cfg(test)]
pub(crate) fn test_vectors(n: usize, d: usize, seed: u64) -> arrow::array::FixedSizeListArray {
    let mut rng = SplitMix(seed);
    let values: Vec<f32> = (0..n * d)
        .map(|_| rng.below(100_000) as f32 / 50_000.0 - 1.0)
        .collect();
    arrow::array::FixedSizeListArray::try_new(
        std::sync::Arc::new(arrow::datatypes::Field::new(
            "item",
            arrow::datatypes::DataType::Float32,
            true,
        )),
        d as i32,
        std::sync::Arc::new(arrow::array::Float32Array::from(values)),
        None,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points drawn around well-separated centres: k-means puts every
    /// point of a centre in one list.
    #[test]
    fn separated_clusters_are_found() {
        let (d, centres, per) = (8, 5, 200);
        let mut rng = SplitMix(7);
        let mut data = Vec::new();
        for c in 0..centres {
            for _ in 0..per {
                for j in 0..d {
                    let noise = (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.1;
                    data.push(if j == c { 10.0 } else { 0.0 } + noise);
                }
            }
        }
        let centroids = train(&data, d, centres, IndexMetric::L2, 2, 1);
        let labels = assign(&data, d, &centroids, centres, IndexMetric::L2, 2);
        for c in 0..centres {
            let first = labels[c * per];
            assert!(labels[c * per..(c + 1) * per].iter().all(|&l| l == first));
        }
        let mut distinct: Vec<u32> = (0..centres).map(|c| labels[c * per]).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), centres);
    }

    /// The matrix-product assignment agrees with a pairwise one.
    #[test]
    fn assignment_matches_pairwise_distances() {
        let (d, k, n) = (16, 37, 3000);
        let mut rng = SplitMix(3);
        let mut f = || rng.below(10_000) as f32 / 5000.0 - 1.0;
        let data: Vec<f32> = (0..n * d).map(|_| f()).collect();
        let centroids: Vec<f32> = (0..k * d).map(|_| f()).collect();
        for metric in [IndexMetric::L2, IndexMetric::InnerProduct] {
            let got = assign(&data, d, &centroids, k, metric, 3);
            for i in 0..n {
                let x = &data[i * d..(i + 1) * d];
                let want = (0..k)
                    .min_by(|&a, &b| {
                        let da = metric.distance(x, &centroids[a * d..(a + 1) * d]);
                        let db = metric.distance(x, &centroids[b * d..(b + 1) * d]);
                        da.total_cmp(&db)
                    })
                    .unwrap();
                let (dg, dw) = (
                    metric.distance(x, &centroids[got[i] as usize * d..][..d]),
                    metric.distance(x, &centroids[want * d..][..d]),
                );
                assert!((dg - dw).abs() < 1e-3, "row {i}: {dg} vs {dw}");
            }
        }
    }
}
