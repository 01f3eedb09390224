//! The IVF index of one segment: k-means centroids and, per centroid
//! ("list"), the segment's row positions and vectors nearest to it.
//!
//! # File format (open: Arrow IPC)
//!
//! One Arrow IPC file per segment and index, schema `row: UInt32`,
//! `vector: FixedSizeList<Float32, d>`, with the schema metadata
//! `quiver.index` = `{"kind": "ivf", "metric": ..., "dim": d, "lists": L,
//! "rows": n}`. Record batch 0 holds the L centroids (`row` = list
//! number); batch 1 + i holds list i: the rows of the segment (positions)
//! whose vectors are nearest centroid i, and those vectors. Any Arrow
//! implementation reads it (`pyarrow.ipc.open_file`). The manifest records
//! the file's size and crc32c, checked when it is loaded.

use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array};
use arrow::buffer::{BooleanBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, UInt32Type};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::index::def::{IndexKind, IndexMetric};
use crate::storage::index::kmeans::{self, SplitMix, MAX_POINTS_PER_LIST};

/// Schema metadata key of an index file.
pub const INDEX_META: &str = "quiver.index";

/// What an index file says of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IvfHeader {
    pub kind: IndexKind,
    pub metric: IndexMetric,
    pub dim: usize,
    pub lists: usize,
    pub rows: u64,
}

/// One list: positions (rows of the segment) and their vectors.
#[derive(Debug, Clone)]
pub struct IvfList {
    pub rows: ScalarBuffer<u32>,
    pub vectors: ScalarBuffer<f32>,
}

/// A loaded (or just built) IVF index of one segment.
#[derive(Debug)]
pub struct IvfIndex {
    pub header: IvfHeader,
    pub centroids: Vec<f32>,
    pub lists: Vec<IvfList>,
}

/// What one search did (EXPLAIN ANALYZE).
#[derive(Debug, Default, Clone, Copy)]
pub struct SearchStats {
    pub lists_probed: usize,
    pub rows_scored: usize,
    /// Lists probed beyond `probes` because too few allowed rows were found.
    pub lists_widened: usize,
}

/// A candidate: its distance (smaller is nearer) and row; ordered by
/// distance, then row, so a heap of them keeps the worst on top.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl IvfIndex {
    /// Builds the index of a segment's vectors (`FixedSizeList<Float32>`,
    /// row i = row i of the segment; null vectors are left out) with
    /// `lists` lists, training on at most [`MAX_POINTS_PER_LIST`] points
    /// per list.
    pub fn build(
        vectors: &FixedSizeListArray,
        metric: IndexMetric,
        lists: u32,
        threads: usize,
    ) -> Result<IvfIndex> {
        let d = vectors.value_length() as usize;
        if vectors.value_type() != DataType::Float32 || d == 0 {
            return Err(Error::invalid(format!(
                "an IVF index needs FLOAT[d] vectors, not {}",
                vectors.data_type()
            )));
        }
        let values = vectors.values().as_primitive::<Float32Type>().values();
        let base = vectors.offset();
        let present: Vec<u32> = (0..vectors.len())
            .filter(|&i| vectors.is_valid(i))
            .map(|i| i as u32)
            .collect();
        let row = |i: u32| &values[(base + i as usize) * d..(base + i as usize + 1) * d];
        // Cosine works on directions: train and assign unit vectors.
        let unit = |i: u32| {
            let mut v = row(i).to_vec();
            if metric == IndexMetric::Cosine {
                kmeans::normalize(&mut v);
            }
            v
        };
        let n = present.len();
        let k = (lists as usize).min(n).max(1);
        // A sample spread over the segment, the same for the same data.
        let mut rng = SplitMix(0x5EED ^ n as u64);
        let want = (k * MAX_POINTS_PER_LIST).min(n);
        let mut order = present.clone();
        for i in 0..want {
            let j = i + rng.below(n - i);
            order.swap(i, j);
        }
        let sample: Vec<f32> = order[..want].iter().flat_map(|&i| unit(i)).collect();
        let centroids = if n == 0 {
            vec![0f32; d]
        } else {
            kmeans::train(&sample, d, k, metric, threads, rng.next_u64())
        };
        let k = centroids.len() / d;
        let data: Vec<f32> = if metric == IndexMetric::Cosine {
            present.iter().flat_map(|&i| unit(i)).collect()
        } else {
            present
                .iter()
                .flat_map(|&i| row(i).iter().copied())
                .collect()
        };
        let labels = kmeans::assign(&data, d, &centroids, k, metric, threads);
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); k];
        for (&r, &l) in present.iter().zip(&labels) {
            rows[l as usize].push(r);
        }
        let lists = rows
            .into_iter()
            .map(|rs| {
                let vectors: Vec<f32> = rs.iter().flat_map(|&r| row(r).iter().copied()).collect();
                IvfList {
                    rows: ScalarBuffer::from(rs),
                    vectors: ScalarBuffer::from(vectors),
                }
            })
            .collect();
        Ok(IvfIndex {
            header: IvfHeader {
                kind: IndexKind::Ivf,
                metric,
                dim: d,
                lists: k,
                rows: n as u64,
            },
            centroids,
            lists,
        })
    }

    /// Bytes of memory it holds.
    pub fn memory_size(&self) -> usize {
        self.centroids.len() * 4
            + self
                .lists
                .iter()
                .map(|l| l.rows.len() * 4 + l.vectors.len() * 4)
                .sum::<usize>()
    }

    fn schema(&self) -> Result<Arc<Schema>> {
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let meta =
            serde_json::to_string(&self.header).map_err(|e| Error::internal(e.to_string()))?;
        Ok(Arc::new(
            Schema::new(vec![
                Field::new("row", DataType::UInt32, false),
                Field::new(
                    "vector",
                    DataType::FixedSizeList(item, self.header.dim as i32),
                    false,
                ),
            ])
            .with_metadata([(INDEX_META.to_string(), meta)].into()),
        ))
    }

    /// The index as an Arrow IPC file (see the module docs).
    pub fn encode(&self) -> Result<Bytes> {
        let schema = self.schema()?;
        let d = self.header.dim;
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let batch = |rows: ScalarBuffer<u32>, vectors: ScalarBuffer<f32>| -> Result<RecordBatch> {
            let v = FixedSizeListArray::try_new(
                item.clone(),
                d as i32,
                Arc::new(Float32Array::new(vectors, None)),
                None,
            )?;
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(UInt32Array::new(rows, None)), Arc::new(v)],
            )?)
        };
        let mut out = Vec::new();
        {
            let mut w = arrow::ipc::writer::FileWriter::try_new(&mut out, &schema)?;
            let ids: Vec<u32> = (0..self.lists.len() as u32).collect();
            w.write(&batch(
                ScalarBuffer::from(ids),
                ScalarBuffer::from(self.centroids.clone()),
            )?)?;
            for l in &self.lists {
                w.write(&batch(l.rows.clone(), l.vectors.clone())?)?;
            }
            w.finish()?;
        }
        Ok(Bytes::from(out))
    }

    /// Reads an index file (`path` names it in errors).
    pub fn decode(path: &str, bytes: Bytes) -> Result<IvfIndex> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_string(),
            reason,
        };
        let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| corrupt(format!("not an Arrow IPC index file: {e}")))?;
        let header: IvfHeader = reader
            .schema()
            .metadata()
            .get(INDEX_META)
            .ok_or_else(|| corrupt(format!("no '{INDEX_META}' metadata")))
            .and_then(|m| {
                serde_json::from_str(m).map_err(|e| corrupt(format!("bad '{INDEX_META}': {e}")))
            })?;
        let d = header.dim;
        let mut centroids = None;
        let mut lists = Vec::with_capacity(header.lists);
        for b in reader {
            let b = b.map_err(|e| corrupt(format!("unreadable list: {e}")))?;
            let (rows, vectors) = match (
                b.column(0).as_primitive_opt::<UInt32Type>(),
                b.column(1).as_fixed_size_list_opt(),
            ) {
                (Some(r), Some(v)) if v.value_length() as usize == d => (r, v),
                _ => return Err(corrupt("a list of the wrong shape".into())),
            };
            let values = vectors
                .values()
                .as_primitive::<Float32Type>()
                .values()
                .slice(vectors.offset() * d, vectors.len() * d);
            if centroids.is_none() {
                centroids = Some(values.to_vec());
                continue;
            }
            lists.push(IvfList {
                rows: rows.values().clone(),
                vectors: values,
            });
        }
        let centroids = centroids.ok_or_else(|| corrupt("no centroids".into()))?;
        let listed: u64 = lists.iter().map(|l| l.rows.len() as u64).sum();
        if lists.len() != header.lists
            || centroids.len() != header.lists * d
            || listed != header.rows
        {
            return Err(corrupt(format!(
                "the header promises {} lists of {} rows; the file holds {} lists of {listed}",
                header.lists,
                header.rows,
                lists.len()
            )));
        }
        Ok(IvfIndex {
            header,
            centroids,
            lists,
        })
    }

    /// Lists in the order a search for `query` probes them (nearest
    /// centroid first).
    pub fn probe_order(&self, query: &[f32]) -> Vec<usize> {
        let d = self.header.dim;
        let metric = self.header.metric;
        let mut by: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(d)
            .enumerate()
            .map(|(i, c)| (metric.distance(query, c), i))
            .collect();
        by.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        by.into_iter().map(|(_, i)| i).collect()
    }

    /// The `k` nearest rows to `query` among the rows `allowed` lets
    /// through (all if `None`; indexed by segment row), nearest first:
    /// the `probes` nearest lists, then more, one at a time, until `k`
    /// allowed rows are found or every list is probed.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        probes: usize,
        allowed: Option<&BooleanBuffer>,
    ) -> (Vec<(f32, u32)>, SearchStats) {
        let d = self.header.dim;
        let metric = self.header.metric;
        let mut stats = SearchStats::default();
        let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        if k == 0 {
            return (Vec::new(), stats);
        }
        for (probed, list) in self.probe_order(query).into_iter().enumerate() {
            if probed >= probes.max(1) {
                if heap.len() >= k {
                    break;
                }
                stats.lists_widened += 1;
            }
            stats.lists_probed += 1;
            let l = &self.lists[list];
            for (j, &row) in l.rows.iter().enumerate() {
                if allowed.is_some_and(|a| !a.value(row as usize)) {
                    continue;
                }
                stats.rows_scored += 1;
                let dist = metric.distance(query, &l.vectors[j * d..(j + 1) * d]);
                if heap.len() < k {
                    heap.push(Cand(dist, row));
                } else if Cand(dist, row) < *heap.peek().expect("k > 0") {
                    heap.pop();
                    heap.push(Cand(dist, row));
                }
            }
        }
        let mut out: Vec<(f32, u32)> = heap.into_iter().map(|c| (c.0, c.1)).collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        (out, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, d: usize, seed: u64) -> FixedSizeListArray {
        let mut rng = SplitMix(seed);
        let values: Vec<f32> = (0..n * d)
            .map(|_| rng.below(100_000) as f32 / 50_000.0 - 1.0)
            .collect();
        FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            d as i32,
            Arc::new(Float32Array::from(values)),
            None,
        )
        .unwrap()
    }

    /// Probing every list is an exact search; the file round-trips.
    #[test]
    fn all_lists_probed_is_exact_and_the_file_round_trips() {
        let (n, d, k) = (2000, 12, 10);
        let v = vectors(n, d, 1);
        let values = v.values().as_primitive::<Float32Type>().values().to_vec();
        for metric in [
            IndexMetric::L2,
            IndexMetric::Cosine,
            IndexMetric::InnerProduct,
        ] {
            let built = IvfIndex::build(&v, metric, 20, 2).unwrap();
            let index = IvfIndex::decode("t", built.encode().unwrap()).unwrap();
            assert_eq!(index.header, built.header);
            let q = &values[5 * d..6 * d];
            let (got, stats) = index.search(q, k, 20, None);
            assert_eq!(stats.rows_scored, n);
            let mut want: Vec<(f32, u32)> = (0..n as u32)
                .map(|i| {
                    let x = &values[i as usize * d..(i as usize + 1) * d];
                    (metric.distance(q, x), i)
                })
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<u32> = got.iter().map(|g| g.1).collect();
            let want: Vec<u32> = want[..k].iter().map(|w| w.1).collect();
            assert_eq!(got, want, "{metric:?}");
        }
    }

    /// With an allow-list that lets few rows through, probing widens
    /// until k allowed rows are found.
    #[test]
    fn allow_list_widens_until_k_rows() {
        let (n, d) = (3000, 8);
        let v = vectors(n, d, 2);
        let index = IvfIndex::build(&v, IndexMetric::L2, 30, 1).unwrap();
        let allowed = BooleanBuffer::from_iter((0..n).map(|i| i % 100 == 0));
        let q = vec![0.1f32; d];
        let (got, stats) = index.search(&q, 10, 1, Some(&allowed));
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|g| g.1 % 100 == 0));
        assert!(stats.lists_widened > 0);
        let few = BooleanBuffer::from_iter((0..n).map(|i| i == 7 || i == 9));
        let (got, stats) = index.search(&q, 10, 1, Some(&few));
        assert_eq!(got.len(), 2);
        assert_eq!(stats.lists_probed, 30);
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let v = vectors(500, 4, 3);
        let bytes = IvfIndex::build(&v, IndexMetric::L2, 5, 1)
            .unwrap()
            .encode()
            .unwrap();
        let cut = bytes.slice(0..bytes.len() / 2);
        assert!(matches!(
            IvfIndex::decode("x", cut),
            Err(Error::Corrupt { .. })
        ));
    }
}
