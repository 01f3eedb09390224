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
//!
//! An `ivf_sq8` file is the same but for the lists' vectors: each list
//! batch holds `code: FixedSizeList<UInt8, d>`, the vector quantized per
//! dimension (`x ~ min[j] + code[j] * scale[j]`), and since a file has one
//! schema the centroids (float) and the quantizer (`min`, `scale`) are in
//! the `quiver.index` metadata, so batch i is list i.

use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array,
    UInt8Array,
};
use arrow::buffer::{BooleanBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, UInt32Type, UInt8Type};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::index::def::{IndexKind, IndexMetric};
use crate::storage::index::kmeans::{self, SplitMix, MAX_POINTS_PER_LIST};
use crate::storage::index::sq8::{Sq8, Sq8Query};

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
    /// `ivf_sq8`: the per-dimension quantizer of the lists' codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sq8: Option<Sq8>,
}

/// What an `ivf_sq8` file keeps in its metadata besides the header.
#[derive(Serialize, Deserialize)]
struct Sq8Meta {
    #[serde(flatten)]
    header: IvfHeader,
    centroids: Vec<f32>,
}

/// One list's vectors: full floats, or 8-bit codes.
#[derive(Debug, Clone)]
pub enum ListData {
    Flat(ScalarBuffer<f32>),
    Sq8(ScalarBuffer<u8>),
}

/// One list: positions (rows of the segment) and their vectors.
#[derive(Debug, Clone)]
pub struct IvfList {
    pub rows: ScalarBuffer<u32>,
    pub data: ListData,
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
    /// Builds the index (`kind` ivf or ivf_sq8) of a segment's vectors
    /// (`FixedSizeList<Float32>`, row i = row i of the segment; null
    /// vectors are left out) with `lists` lists, training on at most
    /// [`MAX_POINTS_PER_LIST`] points per list.
    pub fn build(
        vectors: &FixedSizeListArray,
        kind: IndexKind,
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
        // Codes are of what was clustered (unit vectors for cosine).
        let sq8 = (kind == IndexKind::IvfSq8).then(|| Sq8::train(&data, d));
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
        for (i, &l) in labels.iter().enumerate() {
            members[l as usize].push(i as u32);
        }
        drop(labels);
        let lists = members
            .into_iter()
            .map(|ms| {
                let rows: Vec<u32> = ms.iter().map(|&i| present[i as usize]).collect();
                let data = match &sq8 {
                    Some(q) => {
                        let mut codes = Vec::with_capacity(ms.len() * d);
                        for &i in &ms {
                            q.encode_into(&data[i as usize * d..(i as usize + 1) * d], &mut codes);
                        }
                        ListData::Sq8(ScalarBuffer::from(codes))
                    }
                    None => ListData::Flat(ScalarBuffer::from(
                        rows.iter()
                            .flat_map(|&r| row(r).iter().copied())
                            .collect::<Vec<f32>>(),
                    )),
                };
                IvfList {
                    rows: ScalarBuffer::from(rows),
                    data,
                }
            })
            .collect();
        Ok(IvfIndex {
            header: IvfHeader {
                kind,
                metric,
                dim: d,
                lists: k,
                rows: n as u64,
                sq8,
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
                .map(|l| {
                    l.rows.len() * 4
                        + match &l.data {
                            ListData::Flat(v) => v.len() * 4,
                            ListData::Sq8(c) => c.len(),
                        }
                })
                .sum::<usize>()
    }

    fn schema(&self) -> Result<Arc<Schema>> {
        let meta = match self.header.sq8 {
            None => serde_json::to_string(&self.header),
            Some(_) => serde_json::to_string(&Sq8Meta {
                header: self.header.clone(),
                centroids: self.centroids.clone(),
            }),
        }
        .map_err(|e| Error::internal(e.to_string()))?;
        let (name, item) = match self.header.sq8 {
            None => ("vector", DataType::Float32),
            Some(_) => ("code", DataType::UInt8),
        };
        let item = Arc::new(Field::new("item", item, true));
        Ok(Arc::new(
            Schema::new(vec![
                Field::new("row", DataType::UInt32, false),
                Field::new(
                    name,
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
        let d = self.header.dim as i32;
        let batch = |rows: ScalarBuffer<u32>, values: ArrayRef| -> Result<RecordBatch> {
            let item = Arc::new(Field::new("item", values.data_type().clone(), true));
            let v = FixedSizeListArray::try_new(item, d, values, None)?;
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(UInt32Array::new(rows, None)), Arc::new(v)],
            )?)
        };
        let mut out = Vec::new();
        {
            let mut w = arrow::ipc::writer::FileWriter::try_new(&mut out, &schema)?;
            if self.header.sq8.is_none() {
                let ids: Vec<u32> = (0..self.lists.len() as u32).collect();
                w.write(&batch(
                    ScalarBuffer::from(ids),
                    Arc::new(Float32Array::new(
                        ScalarBuffer::from(self.centroids.clone()),
                        None,
                    )),
                )?)?;
            }
            for l in &self.lists {
                let values: ArrayRef = match &l.data {
                    ListData::Flat(v) => Arc::new(Float32Array::new(v.clone(), None)),
                    ListData::Sq8(c) => Arc::new(UInt8Array::new(c.clone(), None)),
                };
                w.write(&batch(l.rows.clone(), values)?)?;
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
        let meta = reader
            .schema()
            .metadata()
            .get(INDEX_META)
            .ok_or_else(|| corrupt(format!("no '{INDEX_META}' metadata")))?
            .clone();
        let bad_meta = |e: serde_json::Error| corrupt(format!("bad '{INDEX_META}': {e}"));
        let header: IvfHeader = serde_json::from_str(&meta).map_err(bad_meta)?;
        let mut centroids = match header.sq8 {
            Some(_) => Some(
                serde_json::from_str::<Sq8Meta>(&meta)
                    .map_err(bad_meta)?
                    .centroids,
            ),
            None => None,
        };
        let d = header.dim;
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
            let (from, len) = (vectors.offset() * d, vectors.len() * d);
            let data = match (
                header.sq8.is_some(),
                vectors.values().as_primitive_opt::<Float32Type>(),
                vectors.values().as_primitive_opt::<UInt8Type>(),
            ) {
                (false, Some(f), _) => ListData::Flat(f.values().slice(from, len)),
                (true, _, Some(c)) => ListData::Sq8(c.values().slice(from, len)),
                _ => return Err(corrupt("a list of the wrong type".into())),
            };
            match (&centroids, data) {
                (None, ListData::Flat(v)) => centroids = Some(v.to_vec()),
                (_, data) => lists.push(IvfList {
                    rows: rows.values().clone(),
                    data,
                }),
            }
        }
        let centroids = centroids.ok_or_else(|| corrupt("no centroids".into()))?;
        let listed: u64 = lists.iter().map(|l| l.rows.len() as u64).sum();
        if lists.len() != header.lists
            || centroids.len() != header.lists * d
            || listed != header.rows
            || header
                .sq8
                .as_ref()
                .is_some_and(|q| q.min.len() != d || q.scale.len() != d)
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
    /// allowed rows are found and as many allowed rows were scored as an
    /// unfiltered search of `probes` lists scores, or every list is probed. An `ivf_sq8`
    /// index ranks by its codes: its distances only order candidates.
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
        let sq8 = self
            .header
            .sq8
            .as_ref()
            .map(|q| Sq8Query::new(q, metric, query));
        // Under an allow-list, as many allowed rows as an unfiltered search
        // of `probes` lists would score: a filter moves the nearest allowed
        // rows into farther lists, and scoring as many candidates keeps the
        // recall of the unfiltered search.
        let enough = match allowed {
            None => 0,
            Some(_) => {
                probes.max(1) * (self.header.rows as usize).div_ceil(self.lists.len().max(1))
            }
        };
        for (probed, list) in self.probe_order(query).into_iter().enumerate() {
            if probed >= probes.max(1) {
                if heap.len() >= k && stats.rows_scored >= enough {
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
                let dist = match (&l.data, &sq8) {
                    (ListData::Flat(v), _) => metric.distance(query, &v[j * d..(j + 1) * d]),
                    (ListData::Sq8(c), Some(q)) => q.distance(&c[j * d..(j + 1) * d]),
                    (ListData::Sq8(_), None) => f32::NAN,
                };
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
    use crate::storage::index::kmeans::test_vectors as vectors;

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
            let q = &values[5 * d..6 * d];
            let mut want: Vec<(f32, u32)> = (0..n as u32)
                .map(|i| {
                    let x = &values[i as usize * d..(i as usize + 1) * d];
                    (metric.distance(q, x), i)
                })
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = want[..k].iter().map(|w| w.1).collect();
            let built = IvfIndex::build(&v, IndexKind::Ivf, metric, 20, 2).unwrap();
            let bytes = built.encode().unwrap();
            let index = IvfIndex::decode("t", bytes.clone()).unwrap();
            assert_eq!(index.header, built.header);
            let (got, stats) = index.search(q, k, 20, None);
            assert_eq!(stats.rows_scored, n);
            let got: Vec<u32> = got.iter().map(|g| g.1).collect();
            assert_eq!(got, want, "{metric:?}");
            // 8-bit codes: a quarter of the bytes, and the exact top k are
            // among the best 4k by code (re-ranking finds them).
            let built = IvfIndex::build(&v, IndexKind::IvfSq8, metric, 20, 2).unwrap();
            let sq8 = built.encode().unwrap();
            assert!(
                sq8.len() < bytes.len() / 2,
                "{} vs {}",
                sq8.len(),
                bytes.len()
            );
            let index = IvfIndex::decode("t", sq8).unwrap();
            assert_eq!(index.header, built.header);
            assert_eq!(index.centroids, built.centroids);
            let (got, _) = index.search(q, 4 * k, 20, None);
            let got: Vec<u32> = got.iter().map(|g| g.1).collect();
            assert!(
                want.iter().all(|w| got.contains(w)),
                "{metric:?}: {want:?} vs {got:?}"
            );
        }
    }

    /// With an allow-list that lets few rows through, probing widens
    /// until k allowed rows are found.
    #[test]
    fn allow_list_widens_until_k_rows() {
        let (n, d) = (3000, 8);
        let v = vectors(n, d, 2);
        let index = IvfIndex::build(&v, IndexKind::Ivf, IndexMetric::L2, 30, 1).unwrap();
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
        for kind in [IndexKind::Ivf, IndexKind::IvfSq8] {
            let bytes = IvfIndex::build(&v, kind, IndexMetric::L2, 5, 1)
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
}
