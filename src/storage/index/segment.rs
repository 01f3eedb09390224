//! One segment's index file of any kind, as built, written, loaded and
//! cached: an IVF (flat or 8-bit codes) or an HNSW graph.

use arrow::array::FixedSizeListArray;
use bytes::Bytes;

use crate::error::Result;
use crate::storage::index::def::{IndexDef, IndexKind};
use crate::storage::index::hnsw::HnswIndex;
use crate::storage::index::ivf::IvfIndex;

/// A loaded (or just built) index of one segment.
#[derive(Debug)]
pub enum SegmentIndex {
    Ivf(IvfIndex),
    Hnsw(HnswIndex),
}

impl SegmentIndex {
    /// Builds `def`'s index of a segment of `rows` rows whose vectors are
    /// `vectors`, on `threads` threads.
    pub fn build(
        def: &IndexDef,
        vectors: &FixedSizeListArray,
        rows: u64,
        threads: usize,
    ) -> Result<SegmentIndex> {
        Ok(match def.kind {
            IndexKind::Ivf | IndexKind::IvfSq8 => SegmentIndex::Ivf(IvfIndex::build(
                vectors,
                def.kind,
                def.metric,
                def.lists_for(rows),
                threads,
            )?),
            IndexKind::Hnsw => SegmentIndex::Hnsw(HnswIndex::build(
                vectors,
                def.metric,
                def.m(),
                def.ef_construction(),
                threads,
            )?),
        })
    }

    /// The file's name suffix.
    pub fn extension(kind: IndexKind) -> &'static str {
        match kind {
            IndexKind::Ivf | IndexKind::IvfSq8 => "arrow",
            IndexKind::Hnsw => "usearch",
        }
    }

    pub fn encode(&self) -> Result<Bytes> {
        match self {
            SegmentIndex::Ivf(i) => i.encode(),
            SegmentIndex::Hnsw(h) => h.encode(),
        }
    }

    /// Reads the file of `def`'s index at `path` (named in errors).
    pub fn decode(def: &IndexDef, path: &str, bytes: Bytes) -> Result<SegmentIndex> {
        Ok(match def.kind {
            IndexKind::Ivf | IndexKind::IvfSq8 => SegmentIndex::Ivf(IvfIndex::decode(path, bytes)?),
            IndexKind::Hnsw => SegmentIndex::Hnsw(HnswIndex::decode(path, &bytes, def.metric)?),
        })
    }

    /// Vectors in the index.
    pub fn rows(&self) -> u64 {
        match self {
            SegmentIndex::Ivf(i) => i.header.rows,
            SegmentIndex::Hnsw(h) => h.rows,
        }
    }

    /// IVF lists (0 for a graph).
    pub fn lists(&self) -> usize {
        match self {
            SegmentIndex::Ivf(i) => i.header.lists,
            SegmentIndex::Hnsw(_) => 0,
        }
    }

    /// Bytes of memory it holds.
    pub fn memory_size(&self) -> usize {
        match self {
            SegmentIndex::Ivf(i) => i.memory_size(),
            SegmentIndex::Hnsw(h) => h.memory_size(),
        }
    }
}
