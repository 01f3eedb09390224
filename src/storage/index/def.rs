//! What a vector index is, as the manifest records it: the declaration
//! (`IndexDef`, one per `CREATE INDEX`) and the file built for one segment
//! (`IndexFile`), and the parsing of `CREATE INDEX ... USING <type> WITH
//! (...)` options into a declaration.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The kind of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Inverted file: vectors grouped by their nearest k-means centroid
    /// ("list"); a search scores the lists nearest the query.
    Ivf,
    /// IVF whose lists hold 8-bit scalar-quantized codes (a quarter of the
    /// bytes); the best `k x refine_factor` are re-ranked exactly from the
    /// segment's own vectors.
    IvfSq8,
    /// A hierarchical navigable small-world graph (USearch).
    Hnsw,
}

impl IndexKind {
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Ivf => "ivf",
            IndexKind::IvfSq8 => "ivf_sq8",
            IndexKind::Hnsw => "hnsw",
        }
    }

    /// The kind `CREATE INDEX ... USING <s>` names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ivf" | "ivf_flat" | "ivfflat" => IndexKind::Ivf,
            "ivf_sq8" | "ivfsq8" | "ivf_sq" => IndexKind::IvfSq8,
            "hnsw" | "hnsw_flat" => IndexKind::Hnsw,
            _ => return None,
        })
    }

    /// Whether it groups vectors in lists (IVF) or links them in a graph.
    pub fn is_ivf(self) -> bool {
        matches!(self, IndexKind::Ivf | IndexKind::IvfSq8)
    }
}

/// HNSW links per node when `m` is not given (as pgvector, faiss, hnswlib).
pub const DEFAULT_M: u32 = 16;
/// HNSW candidate-list size while building, when `ef_construction` is not
/// given (USearch's and hnswlib's default is 128; pgvector's 64; 200 is
/// the value the issue and most benchmarks use).
pub const DEFAULT_EF_CONSTRUCTION: u32 = 200;
/// Bounds of `m` and `ef_construction`.
pub const MAX_M: u32 = 128;
pub const MAX_EF: u32 = 4096;

/// The distance an index orders by. Each matches the distance functions
/// of the same name (and their reverses: `cosine_similarity DESC` is
/// cosine, `negative_inner_product` is inner product).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexMetric {
    L2,
    Cosine,
    InnerProduct,
}

impl IndexMetric {
    pub fn name(self) -> &'static str {
        match self {
            IndexMetric::L2 => "l2",
            IndexMetric::Cosine => "cosine",
            IndexMetric::InnerProduct => "inner_product",
        }
    }

    /// The metric named `s`: quiver's names, the distance functions' and
    /// pgvector's operator classes.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "l2" | "l2_distance" | "euclidean" | "vector_l2_ops" => IndexMetric::L2,
            "cosine" | "cosine_distance" | "vector_cosine_ops" => IndexMetric::Cosine,
            "inner_product" | "ip" | "dot" | "negative_inner_product" | "vector_ip_ops" => {
                IndexMetric::InnerProduct
            }
            _ => return None,
        })
    }

    /// A distance where smaller is nearer (inner product negated).
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        use simsimd::SpatialSimilarity;
        match self {
            IndexMetric::L2 => <f32 as SpatialSimilarity>::l2sq(a, b).unwrap_or(f64::NAN) as f32,
            IndexMetric::Cosine => <f32 as SpatialSimilarity>::cos(a, b).unwrap_or(f64::NAN) as f32,
            IndexMetric::InnerProduct => {
                -(<f32 as SpatialSimilarity>::dot(a, b).unwrap_or(f64::NAN) as f32)
            }
        }
    }
}

/// Most lists an IVF index may have.
pub const MAX_LISTS: u32 = 65_536;

/// One `CREATE INDEX`, recorded in every later manifest of its collection
/// until dropped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexDef {
    pub name: String,
    /// Unique per `CREATE INDEX`: a file built for an earlier index of the
    /// same name is never taken for this one.
    pub id: String,
    pub column: String,
    pub kind: IndexKind,
    pub metric: IndexMetric,
    /// Lists per segment; `None`: about the square root of the segment's
    /// rows ([`IndexDef::lists_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<u32>,
    /// HNSW: links per node ([`DEFAULT_M`] when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<u32>,
    /// HNSW: candidate-list size while building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<u32>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl IndexDef {
    /// Lists of the index of a segment of `rows` vectors: as declared, or
    /// the square root of the rows (as Milvus and Lance suggest), never
    /// more than the rows.
    pub fn lists_for(&self, rows: u64) -> u32 {
        let want = self
            .lists
            .unwrap_or_else(|| ((rows as f64).sqrt().round() as u32).max(1));
        want.clamp(1, (rows.max(1)).min(MAX_LISTS as u64) as u32)
    }

    /// The `WITH (...)` parameters, as `CREATE INDEX` takes them.
    pub fn parameters(&self) -> String {
        let mut out = format!("metric = '{}'", self.metric.name());
        if let Some(l) = self.lists {
            out.push_str(&format!(", lists = {l}"));
        }
        if self.kind == IndexKind::Hnsw {
            out.push_str(&format!(
                ", m = {}, ef_construction = {}",
                self.m(),
                self.ef_construction()
            ));
        }
        out
    }

    /// HNSW links per node.
    pub fn m(&self) -> u32 {
        self.m.unwrap_or(DEFAULT_M)
    }

    /// HNSW candidate-list size while building.
    pub fn ef_construction(&self) -> u32 {
        self.ef_construction.unwrap_or(DEFAULT_EF_CONSTRUCTION)
    }
}

/// The index file of one segment, in that segment's manifest entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexFile {
    /// Name and id of the [`IndexDef`] it was built for.
    pub index: String,
    pub index_id: String,
    /// Path relative to the collection's root.
    pub path: String,
    pub size: u64,
    pub crc32c: u32,
    /// IVF lists (0 for a graph).
    pub lists: u32,
    /// Vectors in the index (the segment's rows whose vector is not null).
    pub rows: u64,
}

/// A `CREATE INDEX` statement's declaration, before it is committed.
#[derive(Debug, Clone)]
pub struct IndexRequest {
    pub def: IndexDef,
    /// `WITH (wait = true)`: return once every segment is indexed.
    pub wait: bool,
    pub if_not_exists: bool,
}

/// Parses `CREATE INDEX <name> ON <table> USING <using> (<column>
/// [<opclass>]) WITH (<options>)`; option values come as text.
pub fn parse_request(
    name: &str,
    column: &str,
    using: Option<&str>,
    opclass: Option<&str>,
    options: &[(String, String)],
    if_not_exists: bool,
) -> Result<IndexRequest> {
    let kind = match using {
        None => IndexKind::Ivf,
        Some(u) => IndexKind::parse(u).ok_or_else(|| {
            Error::invalid(format!(
                "unknown index type '{}' for index '{name}': use ivf, ivf_sq8 or hnsw",
                u.to_ascii_lowercase()
            ))
        })?,
    };
    let mut metric = match opclass {
        None => None,
        Some(c) => Some(IndexMetric::parse(c).ok_or_else(|| {
            Error::invalid(format!(
                "unknown operator class '{c}' for index '{name}': use vector_l2_ops, vector_cosine_ops or vector_ip_ops"
            ))
        })?),
    };
    let mut lists = None;
    let (mut m, mut ef_construction) = (None, None);
    let mut wait = false;
    for (key, value) in options {
        let bad = |what: &str| {
            Error::invalid(format!(
                "index '{name}': {key} = '{value}' is not valid: {what}"
            ))
        };
        let whole = |lo: u32, hi: u32| -> Result<u32> {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| bad(&format!("a whole number from {lo} to {hi}")))
        };
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "metric" | "metric_type" | "distance" => {
                let m = IndexMetric::parse(value)
                    .ok_or_else(|| bad("use l2, cosine or inner_product"))?;
                if metric.is_some_and(|had| had != m) {
                    return Err(bad("it differs from the column's operator class"));
                }
                metric = Some(m);
            }
            "lists" | "nlist" | "num_partitions" if kind.is_ivf() => {
                lists = Some(whole(1, MAX_LISTS)?);
            }
            "m" | "connectivity" if kind == IndexKind::Hnsw => m = Some(whole(2, MAX_M)?),
            "ef_construction" | "efconstruction" if kind == IndexKind::Hnsw => {
                ef_construction = Some(whole(1, MAX_EF)?)
            }
            "wait" => {
                wait = match value.to_ascii_lowercase().as_str() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            other => {
                let options = if kind.is_ivf() {
                    "metric, lists or wait"
                } else {
                    "metric, m, ef_construction or wait"
                };
                return Err(Error::invalid(format!(
                    "unknown option '{other}' for index '{name}' of type {}: use {options}",
                    kind.name()
                )));
            }
        }
    }
    Ok(IndexRequest {
        def: IndexDef {
            name: name.to_string(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            column: column.to_string(),
            kind,
            metric: metric.unwrap_or(IndexMetric::L2),
            lists,
            m,
            ef_construction,
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        },
        wait,
        if_not_exists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        let r = parse_request(
            "i",
            "v",
            Some("ivf"),
            None,
            &opts(&[("metric", "cosine"), ("lists", "64"), ("wait", "true")]),
            false,
        )
        .unwrap();
        assert_eq!(r.def.metric, IndexMetric::Cosine);
        assert_eq!(r.def.lists, Some(64));
        assert!(r.wait);
        let r = parse_request("i", "v", None, Some("vector_ip_ops"), &[], false).unwrap();
        assert_eq!(r.def.metric, IndexMetric::InnerProduct);
        let r = parse_request(
            "i",
            "v",
            Some("HNSW"),
            None,
            &opts(&[("m", "8"), ("ef_construction", "100")]),
            false,
        )
        .unwrap();
        assert_eq!(
            (r.def.kind, r.def.m(), r.def.ef_construction()),
            (IndexKind::Hnsw, 8, 100)
        );
        assert!(r.def.parameters().contains("m = 8, ef_construction = 100"));
        let r = parse_request("i", "v", Some("ivf_sq8"), None, &[], false).unwrap();
        assert_eq!(r.def.kind, IndexKind::IvfSq8);
        for (using, kv, needle) in [
            (Some("btree"), vec![], "unknown index type 'btree'"),
            (None, vec![("lists", "0")], "lists = '0'"),
            (None, vec![("lists", "x")], "lists = 'x'"),
            (None, vec![("metric", "hamming")], "metric = 'hamming'"),
            (None, vec![("probes", "3")], "unknown option 'probes'"),
            (None, vec![("m", "16")], "unknown option 'm'"),
            (
                Some("hnsw"),
                vec![("lists", "16")],
                "unknown option 'lists'",
            ),
            (Some("hnsw"), vec![("m", "1")], "m = '1'"),
            (
                Some("hnsw"),
                vec![("ef_construction", "0")],
                "ef_construction = '0'",
            ),
        ] {
            let e = parse_request("i", "v", using, None, &opts(&kv), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn default_lists_follow_the_square_root_of_rows() {
        let r = parse_request("i", "v", None, None, &[], false).unwrap();
        assert_eq!(r.def.lists_for(1_000_000), 1000);
        assert_eq!(r.def.lists_for(10_000), 100);
        assert_eq!(r.def.lists_for(1), 1);
        let r = parse_request("i", "v", None, None, &opts(&[("lists", "500")]), false).unwrap();
        assert_eq!(r.def.lists_for(100), 100);
    }
}
