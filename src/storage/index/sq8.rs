//! 8-bit scalar quantization of vectors (the codes of an `ivf_sq8`
//! index): one byte per dimension, scaled between that dimension's minimum
//! and maximum, and scoring a query against codes without decoding them.

use serde::{Deserialize, Serialize};

use crate::storage::index::def::IndexMetric;
use crate::storage::index::kmeans;

/// 8-bit scalar quantizer: dimension j of a vector is stored as
/// `round((x[j] - min[j]) / scale[j])`, trained on the segment's range
/// (min to max per dimension, as faiss's `QT_8bit`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sq8 {
    pub min: Vec<f32>,
    pub scale: Vec<f32>,
}

impl Sq8 {
    /// The quantizer covering every vector of `data` (rows of `d`).
    pub(crate) fn train(data: &[f32], d: usize) -> Sq8 {
        let mut min = vec![f32::INFINITY; d];
        let mut max = vec![f32::NEG_INFINITY; d];
        for v in data.chunks_exact(d) {
            for j in 0..d {
                min[j] = min[j].min(v[j]);
                max[j] = max[j].max(v[j]);
            }
        }
        let scale = min
            .iter_mut()
            .zip(&max)
            .map(|(lo, hi)| {
                if !lo.is_finite() {
                    *lo = 0.0;
                }
                let s = (hi - *lo) / 255.0;
                if s.is_finite() && s > 0.0 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Sq8 { min, scale }
    }

    pub(crate) fn encode_into(&self, v: &[f32], out: &mut Vec<u8>) {
        out.extend(v.iter().enumerate().map(|(j, x)| {
            ((x - self.min[j]) / self.scale[j])
                .round()
                .clamp(0.0, 255.0) as u8
        }));
    }
}

/// A query prepared for scoring 8-bit codes: smaller is nearer, in the
/// order of the index's metric (not its exact value: candidates are
/// re-ranked from the full vectors).
pub(crate) struct Sq8Query {
    /// L2: the query in code units and each dimension's weight (scale^2).
    /// Inner product / cosine: the query times each scale, and the constant
    /// part (query . min).
    a: Vec<f32>,
    b: Vec<f32>,
    offset: f32,
    l2: bool,
}

impl Sq8Query {
    pub(crate) fn new(q: &Sq8, metric: IndexMetric, query: &[f32]) -> Sq8Query {
        let mut query = query.to_vec();
        if metric == IndexMetric::Cosine {
            kmeans::normalize(&mut query);
        }
        if metric == IndexMetric::L2 {
            Sq8Query {
                a: (0..query.len())
                    .map(|j| (query[j] - q.min[j]) / q.scale[j])
                    .collect(),
                b: q.scale.iter().map(|s| s * s).collect(),
                offset: 0.0,
                l2: true,
            }
        } else {
            Sq8Query {
                a: query.iter().zip(&q.scale).map(|(x, s)| x * s).collect(),
                b: Vec::new(),
                offset: query.iter().zip(&q.min).map(|(x, m)| x * m).sum(),
                l2: false,
            }
        }
    }

    /// Sixteen lanes over fixed-size chunks, so the compiler drops the
    /// bounds checks and keeps the lanes in vector registers.
    #[inline]
    pub(crate) fn distance(&self, code: &[u8]) -> f32 {
        const L: usize = 16;
        let mut acc = [0f32; L];
        let whole = code.len() / L * L;
        let (head, tail) = code.split_at(whole);
        let (a_head, a_tail) = self.a.split_at(whole.min(self.a.len()));
        if self.l2 {
            let (b_head, b_tail) = self.b.split_at(whole.min(self.b.len()));
            for ((c, a), w) in head
                .chunks_exact(L)
                .zip(a_head.chunks_exact(L))
                .zip(b_head.chunks_exact(L))
            {
                let c: &[u8; L] = c.try_into().expect("chunk of L");
                let a: &[f32; L] = a.try_into().expect("chunk of L");
                let w: &[f32; L] = w.try_into().expect("chunk of L");
                for l in 0..L {
                    let t = a[l] - c[l] as f32;
                    acc[l] += w[l] * t * t;
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for ((c, a), w) in tail.iter().zip(a_tail).zip(b_tail) {
                let t = a - *c as f32;
                sum += w * t * t;
            }
            sum
        } else {
            for (c, a) in head.chunks_exact(L).zip(a_head.chunks_exact(L)) {
                let c: &[u8; L] = c.try_into().expect("chunk of L");
                let a: &[f32; L] = a.try_into().expect("chunk of L");
                for l in 0..L {
                    acc[l] += a[l] * c[l] as f32;
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for (c, a) in tail.iter().zip(a_tail) {
                sum += a * *c as f32;
            }
            -(self.offset + sum)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::index::kmeans::SplitMix;

    /// Scored from codes, a distance is the true one within the bound the
    /// rounding allows (each dimension off by at most half a step).
    #[test]
    fn code_distances_track_true_distances() {
        let (n, d) = (300, 24);
        let mut rng = SplitMix(11);
        let data: Vec<f32> = (0..n * d)
            .map(|_| rng.below(100_000) as f32 / 25_000.0 - 2.0)
            .collect();
        let q = Sq8::train(&data, d);
        let query: Vec<f32> = data[..d].iter().map(|x| x * 0.5 + 0.1).collect();
        for metric in [IndexMetric::L2, IndexMetric::InnerProduct] {
            let prepared = Sq8Query::new(&q, metric, &query);
            for v in data.chunks_exact(d) {
                let mut code = Vec::new();
                q.encode_into(v, &mut code);
                let got = prepared.distance(&code);
                let want = metric.distance(&query, v);
                let tolerance: f32 = (0..d)
                    .map(|j| {
                        let s = q.scale[j];
                        match metric {
                            IndexMetric::L2 => s * (query[j] - v[j]).abs() + s * s / 4.0,
                            _ => query[j].abs() * s / 2.0,
                        }
                    })
                    .sum::<f32>()
                    + 1e-4;
                assert!(
                    (got - want).abs() <= tolerance,
                    "{metric:?}: {got} vs {want}"
                );
            }
        }
    }
}
