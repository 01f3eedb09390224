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
}

impl IndexKind {
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Ivf => "ivf",
        }
    }
}

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
        out
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
    let kind = match using.map(|u| u.to_ascii_lowercase()) {
        None => IndexKind::Ivf,
        Some(u) if u == "ivf" || u == "ivf_flat" || u == "ivfflat" => IndexKind::Ivf,
        Some(other) => {
            return Err(Error::invalid(format!(
                "unknown index type '{other}' for index '{name}': use ivf"
            )))
        }
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
    let mut wait = false;
    for (key, value) in options {
        let bad = |what: &str| {
            Error::invalid(format!(
                "index '{name}': {key} = '{value}' is not valid: {what}"
            ))
        };
        match key.to_ascii_lowercase().as_str() {
            "metric" | "metric_type" | "distance" => {
                let m = IndexMetric::parse(value)
                    .ok_or_else(|| bad("use l2, cosine or inner_product"))?;
                if metric.is_some_and(|had| had != m) {
                    return Err(bad("it differs from the column's operator class"));
                }
                metric = Some(m);
            }
            "lists" | "nlist" | "num_partitions" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| bad(&format!("a whole number from 1 to {MAX_LISTS}")))?;
                if n == 0 || n > MAX_LISTS {
                    return Err(bad(&format!("a whole number from 1 to {MAX_LISTS}")));
                }
                lists = Some(n);
            }
            "wait" => {
                wait = match value.to_ascii_lowercase().as_str() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            other => {
                return Err(Error::invalid(format!(
                "unknown option '{other}' for index '{name}' of type {}: use metric, lists or wait",
                kind.name()
            )))
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
        for (using, kv, needle) in [
            (Some("btree"), vec![], "unknown index type 'btree'"),
            (None, vec![("lists", "0")], "lists = '0'"),
            (None, vec![("lists", "x")], "lists = 'x'"),
            (None, vec![("metric", "hamming")], "metric = 'hamming'"),
            (None, vec![("probes", "3")], "unknown option 'probes'"),
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
