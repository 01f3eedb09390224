//! The HNSW index of one segment: a USearch graph whose keys are the
//! segment's row positions.
//!
//! # File format (open: USearch's own)
//!
//! The file is what `usearch::Index::save_to_buffer` writes (USearch's
//! documented dense-index format: a header with dimensions, metric and
//! scalar type, then the graph levels and the `f32` vectors); any USearch
//! binding opens it (`usearch.index.Index.restore(path)` in Python). Keys
//! are row positions within the segment; null vectors are left out. The
//! manifest records the file's size and crc32c, checked before it is
//! loaded, and `m` / `ef_construction` in the index declaration.

use arrow::array::{Array, AsArray, FixedSizeListArray};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, Float32Type};
use bytes::Bytes;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};
use crate::storage::index::def::IndexMetric;

/// Search contexts a graph keeps: USearch fails a search when every
/// context is taken, and searches run on the query threads (one per core),
/// so twice the cores, at least 16.
fn search_contexts() -> usize {
    std::thread::available_parallelism()
        .map_or(8, |n| n.get())
        .saturating_mul(2)
        .max(16)
}

/// A loaded (or just built) HNSW graph of one segment.
pub struct HnswIndex {
    pub metric: IndexMetric,
    pub dim: usize,
    /// Vectors in the graph.
    pub rows: u64,
    graph: Index,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("metric", &self.metric)
            .field("dim", &self.dim)
            .field("rows", &self.rows)
            .field("m", &self.graph.connectivity())
            .finish()
    }
}

/// What one search did (EXPLAIN ANALYZE).
#[derive(Debug, Default, Clone, Copy)]
pub struct HnswStats {
    /// The candidate-list size the search ran with.
    pub ef: usize,
    /// Candidates it returned.
    pub found: usize,
}

fn metric_kind(metric: IndexMetric) -> MetricKind {
    match metric {
        IndexMetric::L2 => MetricKind::L2sq,
        IndexMetric::Cosine => MetricKind::Cos,
        IndexMetric::InnerProduct => MetricKind::IP,
    }
}

fn usearch_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("HNSW {what}: {e}"))
}

impl HnswIndex {
    /// Builds the graph of a segment's vectors (`FixedSizeList<Float32>`,
    /// row i = row i of the segment; null vectors are left out) with `m`
    /// links per node and `ef_construction` candidates, on `threads`
    /// threads.
    pub fn build(
        vectors: &FixedSizeListArray,
        metric: IndexMetric,
        m: u32,
        ef_construction: u32,
        threads: usize,
    ) -> Result<HnswIndex> {
        let d = vectors.value_length() as usize;
        if vectors.value_type() != DataType::Float32 || d == 0 {
            return Err(Error::invalid(format!(
                "an HNSW index needs FLOAT[d] vectors, not {}",
                vectors.data_type()
            )));
        }
        let options = IndexOptions {
            dimensions: d,
            metric: metric_kind(metric),
            quantization: ScalarKind::F32,
            connectivity: m as usize,
            expansion_add: ef_construction as usize,
            expansion_search: 16,
            multi: false,
        };
        let graph = Index::new(&options).map_err(|e| usearch_error("create", e))?;
        let threads = threads.max(1);
        let values = vectors.values().as_primitive::<Float32Type>().values();
        let base = vectors.offset();
        let present: Vec<usize> = (0..vectors.len())
            .filter(|&i| vectors.is_valid(i))
            .collect();
        graph
            .reserve_capacity_and_threads(present.len(), threads)
            .map_err(|e| usearch_error("reserve", e))?;
        // Each thread adds every `threads`-th vector; the graph locks
        // per node.
        let failed = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (graph, present, failed) = (&graph, &present, &failed);
                scope.spawn(move || {
                    for &i in present.iter().skip(t).step_by(threads) {
                        let v = &values[(base + i) * d..(base + i + 1) * d];
                        if let Err(e) = graph.add(i as u64, v) {
                            *failed.lock().expect("not poisoned") = Some(usearch_error("add", e));
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().expect("not poisoned") {
            return Err(e);
        }
        graph
            .reserve_capacity_and_threads(present.len(), search_contexts())
            .map_err(|e| usearch_error("reserve", e))?;
        Ok(HnswIndex {
            metric,
            dim: d,
            rows: present.len() as u64,
            graph,
        })
    }

    /// The graph as USearch serializes it (see the module docs).
    pub fn encode(&self) -> Result<Bytes> {
        let mut out = vec![0u8; self.graph.serialized_length()];
        self.graph
            .save_to_buffer(&mut out)
            .map_err(|e| usearch_error("save", e))?;
        Ok(Bytes::from(out))
    }

    /// Reads a graph file (`path` names it in errors); its metric and
    /// dimensions must be `metric` and `dim`.
    pub fn decode(path: &str, bytes: &[u8], metric: IndexMetric) -> Result<HnswIndex> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_string(),
            reason,
        };
        let meta = Index::metadata_from_buffer(bytes)
            .map_err(|e| corrupt(format!("not a USearch index file: {}", e)))?;
        if meta.metric != metric_kind(metric) || meta.quantization != ScalarKind::F32 {
            return Err(corrupt(format!(
                "the file's metric or scalar type ({:?}, {:?}) is not the index's ({})",
                meta.metric,
                meta.quantization,
                metric.name()
            )));
        }
        let graph = Index::restore_from_buffer(bytes)
            .map_err(|e| corrupt(format!("unreadable USearch index: {}", e)))?;
        let rows = graph.size() as u64;
        graph
            .reserve_capacity_and_threads(graph.size(), search_contexts())
            .map_err(|e| usearch_error("reserve", e))?;
        Ok(HnswIndex {
            metric,
            dim: graph.dimensions(),
            rows,
            graph,
        })
    }

    /// Bytes of memory it holds.
    pub fn memory_size(&self) -> usize {
        self.graph.memory_usage()
    }

    /// Links per node.
    pub fn m(&self) -> usize {
        self.graph.connectivity()
    }

    /// The `k` nearest rows to `query` among the rows `allowed` lets
    /// through (all if `None`; indexed by segment row), nearest first, with
    /// a candidate list of `max(ef, k)`. Distances are USearch's (`1 - dot`
    /// for inner product): they order, the caller re-ranks. May return
    /// fewer than `k` under a filter even when k rows pass (the graph can
    /// be cut off by it); the caller then searches exactly.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allowed: Option<&BooleanBuffer>,
    ) -> Result<(Vec<(f32, u32)>, HnswStats)> {
        if k == 0 || self.rows == 0 {
            return Ok((Vec::new(), HnswStats::default()));
        }
        if query.len() != self.dim {
            return Err(Error::invalid(format!(
                "query vector has {} dimensions, the index {}",
                query.len(),
                self.dim
            )));
        }
        let wanted = ef.max(k);
        let found = match allowed {
            None => self.graph.search(query, wanted),
            Some(a) => self.graph.filtered_search(query, wanted, |key| {
                (key as usize) < a.len() && a.value(key as usize)
            }),
        }
        .map_err(|e| usearch_error("search", e))?;
        let stats = HnswStats {
            ef: wanted,
            found: found.keys.len(),
        };
        let mut out: Vec<(f32, u32)> = found
            .distances
            .into_iter()
            .zip(found.keys)
            .map(|(dist, key)| (dist, key as u32))
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.truncate(k);
        Ok((out, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::index::kmeans::test_vectors as vectors;

    fn exact(v: &FixedSizeListArray, q: &[f32], metric: IndexMetric, k: usize) -> Vec<u32> {
        let d = v.value_length() as usize;
        let values = v.values().as_primitive::<Float32Type>().values();
        let mut all: Vec<(f32, u32)> = (0..v.len())
            .map(|i| (metric.distance(q, &values[i * d..(i + 1) * d]), i as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all[..k].iter().map(|x| x.1).collect()
    }

    /// Recall on small data is near perfect, the file round-trips, and a
    /// filter only lets allowed rows through.
    #[test]
    fn graph_finds_neighbours_round_trips_and_filters() {
        let (n, d, k) = (3000, 16, 10);
        let v = vectors(n, d, 7);
        let values = v.values().as_primitive::<Float32Type>().values().to_vec();
        for metric in [
            IndexMetric::L2,
            IndexMetric::Cosine,
            IndexMetric::InnerProduct,
        ] {
            let built = HnswIndex::build(&v, metric, 16, 100, 2).unwrap();
            assert_eq!(built.rows, n as u64);
            let bytes = built.encode().unwrap();
            let index = HnswIndex::decode("t", &bytes, metric).unwrap();
            let mut hits = 0;
            for qi in 0..20 {
                let q = &values[qi * 37 * d..(qi * 37 + 1) * d];
                let (got, _) = index.search(q, k, 64, None).unwrap();
                let want = exact(&v, q, metric, k);
                hits += got.iter().filter(|g| want.contains(&g.1)).count();
            }
            assert!(hits as f64 / 200.0 >= 0.95, "{metric:?}: recall {hits}/200");
            let allowed = BooleanBuffer::from_iter((0..n).map(|i| i % 3 == 0));
            let (got, _) = index.search(&values[..d], k, 64, Some(&allowed)).unwrap();
            assert_eq!(got.len(), k);
            assert!(got.iter().all(|g| g.1 % 3 == 0));
            assert!(
                HnswIndex::decode("t", &bytes, IndexMetric::L2).is_err()
                    || metric == IndexMetric::L2
            );
        }
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let v = vectors(500, 4, 3);
        let bytes = HnswIndex::build(&v, IndexMetric::L2, 8, 40, 1)
            .unwrap()
            .encode()
            .unwrap();
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(
            HnswIndex::decode("x", cut, IndexMetric::L2),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            HnswIndex::decode("x", b"not an index", IndexMetric::L2),
            Err(Error::Corrupt { .. })
        ));
    }
}
