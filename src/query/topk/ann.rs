//! Approximate top-k through a segment's vector index, inside the fused
//! top-k ([`VectorTopKExec`](crate::query::topk::VectorTopKExec)).
//!
//! When the first sort key is a distance of a vector column that an index
//! of the scanned version covers with the same metric (nearest first), the
//! segments with an index file are searched through it and every other
//! segment (not yet indexed, too small) and the growing rows are scanned
//! exactly as before; all candidates meet in the same k-best merge, with
//! their exact distances, so deletes and fresh writes are always honoured.
//!
//! Per indexed segment: filters over scalar columns and deletes first
//! become an allow-list of the segment's rows. When it lets through no
//! more rows than the index would score anyway (`probes` x rows per list)
//! the allowed rows are scored exactly (few rows: the exact search is the
//! cheaper and has perfect recall); otherwise the index is searched with
//! the allow-list applied to every list, probing more lists than `probes`
//! until k allowed rows are found and as many allowed rows were scored as
//! an unfiltered search would score, or every list is probed (an HNSW
//! search applies the allow-list inside the graph walk, and a walk the
//! filter cut short is finished exactly). So a filtered query returns k
//! rows whenever k rows match.

use crate::query::collection::MaterializeExec;
use crate::query::functions::distance::Metric;
use crate::query::topk::best::{all_true, Best, Scorer, Shared};
use crate::storage::index::{IndexDef, IndexFile, IndexKind, IndexMetric, SegmentIndex};
use arrow::array::RecordBatch;
use arrow::buffer::BooleanBuffer;
use arrow::compute::SortOptions;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_plan::metrics::Count;
use std::sync::Arc;

/// Whether a top-k may use a vector index (`--vector-search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorSearch {
    /// The index when one matches, else exact.
    #[default]
    Auto,
    /// Always exact.
    Exact,
    /// The index; an error when none matches.
    Ann,
}

impl VectorSearch {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "auto" => VectorSearch::Auto,
            "exact" => VectorSearch::Exact,
            "ann" => VectorSearch::Ann,
            _ => return None,
        })
    }
}

/// How approximate searches run (server defaults, per query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchSettings {
    pub mode: VectorSearch,
    /// Lists an IVF search probes at least (0: [`default_probes`]).
    pub ivf_probes: usize,
    /// Candidate-list size of an HNSW search (0: [`DEFAULT_EF_SEARCH`]).
    pub hnsw_ef_search: usize,
    /// Candidates per result row re-ranked from the full vectors (0: the
    /// index type's default, [`default_refine`]).
    pub refine_factor: usize,
}

/// HNSW candidate-list size when `quiver.hnsw_ef_search` is 0 (USearch's
/// and pgvector's order of magnitude: 40-64).
pub const DEFAULT_EF_SEARCH: usize = 64;

/// Candidates per result row re-ranked exactly when `quiver.refine_factor`
/// is 0: 4 for 8-bit codes (their order is approximate), 1 where the index
/// holds the full vectors.
pub fn default_refine(kind: IndexKind) -> usize {
    match kind {
        IndexKind::IvfSq8 => 4,
        IndexKind::Ivf | IndexKind::Hnsw => 1,
    }
}

datafusion::common::extensions_options! {
    /// A session's [`SearchSettings`] as DataFusion configuration (prefix
    /// `quiver`), so the physical optimizer's rule plans with them,
    /// EXPLAIN included.
    pub struct SearchConfig {
        /// auto, exact or ann.
        pub vector_search: String, default = "auto".to_string()
        /// IVF lists probed at least (0: the default).
        pub ivf_probes: usize, default = 0
        /// HNSW candidate-list size (0: the default).
        pub hnsw_ef_search: usize, default = 0
        /// Candidates re-ranked per result row (0: the index type's default).
        pub refine_factor: usize, default = 0
    }
}

impl datafusion::common::config::ConfigExtension for SearchConfig {
    const PREFIX: &'static str = "quiver";
}

impl SearchConfig {
    pub fn of(s: SearchSettings) -> Self {
        Self {
            vector_search: s.get("quiver.vector_search").unwrap_or_default(),
            ivf_probes: s.ivf_probes,
            hnsw_ef_search: s.hnsw_ef_search,
            refine_factor: s.refine_factor,
        }
    }

    pub fn settings(&self) -> SearchSettings {
        SearchSettings {
            mode: VectorSearch::parse(&self.vector_search).unwrap_or_default(),
            ivf_probes: self.ivf_probes,
            hnsw_ef_search: self.hnsw_ef_search,
            refine_factor: self.refine_factor,
        }
    }
}

/// The session settings of vector search (Flight session options, `SET`).
pub const SETTINGS: [&str; 4] = [
    "quiver.vector_search",
    "quiver.ivf_probes",
    "quiver.hnsw_ef_search",
    "quiver.refine_factor",
];

/// Most `quiver.hnsw_ef_search` and `quiver.refine_factor` take.
pub const MAX_EF_SEARCH: usize = 100_000;
pub const MAX_REFINE: usize = 1_000;

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingError {
    UnknownName(String),
    BadValue(String),
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingError::UnknownName(m) | SettingError::BadValue(m) => f.write_str(m),
        }
    }
}

impl SearchSettings {
    /// Sets `name` (one of [`SETTINGS`]) from its text.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        let value = value.trim().trim_matches('\'').trim_matches('"');
        let setting = name.to_ascii_lowercase();
        // A whole number up to `max`, or an error naming the setting.
        let whole = |max: usize, what: &str| {
            value
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| {
                    SettingError::BadValue(format!("{setting} = '{value}' is not valid: {what}"))
                })
        };
        match setting.as_str() {
            "quiver.vector_search" => {
                self.mode = VectorSearch::parse(value).ok_or_else(|| {
                    SettingError::BadValue(format!(
                        "quiver.vector_search = '{value}' is not valid: use auto, exact or ann"
                    ))
                })?;
            }
            "quiver.ivf_probes" => {
                self.ivf_probes = whole(usize::MAX, "a whole number of lists (0: the default)")?
            }
            "quiver.hnsw_ef_search" => {
                self.hnsw_ef_search = whole(
                    MAX_EF_SEARCH,
                    &format!("a whole number of candidates up to {MAX_EF_SEARCH} (0: the default, {DEFAULT_EF_SEARCH})"),
                )?
            }
            "quiver.refine_factor" => {
                self.refine_factor = whole(
                    MAX_REFINE,
                    &format!("a whole number up to {MAX_REFINE} of candidates re-ranked per result row (0: the index type's default)"),
                )?
            }
            _ => {
                return Err(SettingError::UnknownName(format!(
                    "unknown setting '{name}': the settings are {}",
                    SETTINGS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// The value of `name` as text.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name.to_ascii_lowercase().as_str() {
            "quiver.vector_search" => match self.mode {
                VectorSearch::Auto => "auto",
                VectorSearch::Exact => "exact",
                VectorSearch::Ann => "ann",
            }
            .to_string(),
            "quiver.ivf_probes" => self.ivf_probes.to_string(),
            "quiver.hnsw_ef_search" => self.hnsw_ef_search.to_string(),
            "quiver.refine_factor" => self.refine_factor.to_string(),
            _ => return None,
        })
    }
}

/// Lists probed by default in an IVF index of `lists` lists: a thirty-second
/// of them, at least 8 (all of a small index).
pub fn default_probes(lists: usize) -> usize {
    (lists / 32).max(8).min(lists.max(1))
}

/// The index a top-k runs through, and which segments it covers.
#[derive(Debug)]
pub(crate) struct AnnPlan {
    pub(crate) index: IndexDef,
    pub(crate) settings: SearchSettings,
    /// Scanned segments (by position in the scan) with a file of the index.
    pub(crate) segments: Vec<(usize, IndexFile)>,
    /// Scanned segments without one (searched exactly).
    pub(crate) exact_segments: usize,
}

/// Counters of the ANN path (EXPLAIN ANALYZE).
#[derive(Debug, Clone)]
pub(crate) struct AnnCounters {
    pub(crate) lists_probed: Count,
    pub(crate) lists_widened: Count,
    pub(crate) index_rows_scored: Count,
    pub(crate) candidates: Count,
    /// Indexed segments whose allow-list was small enough to score exactly.
    pub(crate) filtered_exact: Count,
}

/// The index metric a distance ordered this way ranks by, if it ranks
/// nearest first.
fn index_metric(metric: Metric, opts: SortOptions) -> Option<IndexMetric> {
    match (metric, opts.descending) {
        (Metric::L2, false) => Some(IndexMetric::L2),
        (Metric::Cosine, false) | (Metric::CosineSimilarity, true) => Some(IndexMetric::Cosine),
        (Metric::NegativeInnerProduct, false) | (Metric::InnerProduct, true) => {
            Some(IndexMetric::InnerProduct)
        }
        _ => None,
    }
}

/// The index plan of a top-k over `scan` sorting by `scorer` (`None`: run
/// exactly). With [`VectorSearch::Ann`], no matching index is an error.
pub(crate) fn choose(
    scan: &MaterializeExec,
    scorer: Option<&Scorer>,
    opts: SortOptions,
    sort_keys: usize,
    vector_filters: bool,
    settings: SearchSettings,
) -> Result<Option<AnnPlan>> {
    if settings.mode == VectorSearch::Exact {
        return Ok(None);
    }
    let found = scorer.and_then(|sc| {
        let column = scan.keyed_schema().field(sc.column).name().clone();
        let metric = index_metric(sc.metric, opts)?;
        let index = scan
            .indexes()
            .iter()
            .find(|i| i.column == column && i.metric == metric)?;
        Some((index.clone(), column, metric))
    });
    let why_not = match (&found, scorer) {
        (None, None) => Some(
            "the first ORDER BY key is not a distance of a FLOAT[d] column to a constant vector"
                .to_string(),
        ),
        (None, Some(sc)) => Some(format!(
            "no index covers column '{}' with the metric of {}{}",
            scan.keyed_schema().field(sc.column).name(),
            sc.metric.name(),
            if opts.descending { " DESC" } else { "" }
        )),
        (Some(_), _) if sort_keys > 1 => Some("the query orders by more than the distance".into()),
        (Some(_), _) if !scan.resident() => {
            Some("the decoded-column cache is off (--decoded-cache-bytes 0)".into())
        }
        (Some(_), _) if vector_filters => {
            Some("a filter reads a vector column (it would run after the search)".into())
        }
        _ => None,
    };
    if let Some(why) = why_not {
        if settings.mode == VectorSearch::Ann {
            return Err(DataFusionError::Plan(format!(
                "quiver.vector_search is 'ann' but no index can answer this query: {why}"
            )));
        }
        return Ok(None);
    }
    let (index, _, _) = found.expect("checked");
    let segments = scan.index_files(&index.id);
    let exact_segments = scan.segments_scanned() - segments.len();
    Ok(Some(AnnPlan {
        index,
        settings,
        segments,
        exact_segments,
    }))
}

impl AnnPlan {
    /// Lists to probe at least in an index of `lists` lists.
    pub(crate) fn probes(&self, lists: usize) -> usize {
        match self.settings.ivf_probes {
            0 => default_probes(lists),
            p => p.min(lists.max(1)),
        }
    }

    /// HNSW candidate-list size.
    pub(crate) fn ef_search(&self) -> usize {
        match self.settings.hnsw_ef_search {
            0 => DEFAULT_EF_SEARCH,
            e => e,
        }
    }

    /// Candidates per result row re-ranked exactly.
    pub(crate) fn refine(&self) -> usize {
        match self.settings.refine_factor {
            0 => default_refine(self.index.kind),
            r => r,
        }
    }

    /// The search parameters EXPLAIN shows.
    pub(crate) fn describe(&self) -> String {
        let or_auto = |n: usize| match n {
            0 => "auto".to_string(),
            n => n.to_string(),
        };
        let mut out = match self.index.kind {
            IndexKind::Ivf | IndexKind::IvfSq8 => {
                format!("probes={}", or_auto(self.settings.ivf_probes))
            }
            IndexKind::Hnsw => format!("m={} ef_search={}", self.index.m(), self.ef_search()),
        };
        if self.index.kind == IndexKind::IvfSq8 || self.settings.refine_factor > 0 {
            out.push_str(&format!(" refine_factor={}", self.refine()));
        }
        out
    }
}

/// Worker `w`'s share of the indexed segments: each searched through its
/// index (or exactly, under a small allow-list) into a [`Best`].
pub(crate) async fn ann_share(
    input: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    ann: Arc<AnnPlan>,
    shared: Arc<Shared>,
    counters: AnnCounters,
    w: usize,
    workers: usize,
) -> Result<Best> {
    let scan = input
        .downcast_ref::<MaterializeExec>()
        .expect("checked in try_new");
    let mut best = Best::default();
    for (segment, file) in ann.segments.iter().skip(w).step_by(workers) {
        search_segment(scan, &ann, &shared, &counters, *segment, file, &mut best).await?;
    }
    best.flush(&shared)?;
    Ok(best)
}

/// Fraction of a segment's rows under which a filtered HNSW search scores
/// the allowed rows exactly instead (Lance's threshold; a graph walk under
/// a tighter filter visits mostly rejected nodes).
pub const HNSW_EXACT_BELOW: f64 = 0.10;

async fn search_segment(
    scan: &MaterializeExec,
    ann: &AnnPlan,
    shared: &Shared,
    counters: &AnnCounters,
    segment: usize,
    file: &IndexFile,
    best: &mut Best,
) -> Result<()> {
    let scorer = shared.scorer.as_ref().expect("an index plan has a scorer");
    let index = scan
        .store()
        .segment_index(scan.collection(), &ann.index, file)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let (units, rows) = scan.segment_units(segment).await?;
    let prefilter = |b: &RecordBatch| all_true(&shared.pre_filters, b, None);
    // The allow-list: filters and deletes over the whole segment.
    let allowed: Option<BooleanBuffer> = if shared.pre_filters.is_empty() && !scan.has_deletes() {
        None
    } else {
        let mut bits = arrow::array::BooleanBufferBuilder::new(rows as usize);
        for unit in &units {
            let (n, mask) = scan.unit_mask(*unit, &prefilter).await?;
            match mask {
                // A null is not a pass.
                Some(m) => match arrow::array::Array::nulls(&m) {
                    Some(nulls) => bits.append_buffer(&(m.values() & nulls.inner())),
                    None => bits.append_buffer(m.values()),
                },
                None => bits.append_n(n, true),
            }
        }
        Some(bits.finish())
    };
    let n_allowed = allowed
        .as_ref()
        .map_or(rows as usize, |a| a.count_set_bits());
    if n_allowed == 0 {
        return Ok(());
    }
    let indexed = index.rows() as usize;
    // Candidates wanted from the index: k, times the refine factor.
    let want = shared.fetch.saturating_mul(ann.refine()).max(shared.fetch);
    // Rows the index search would score anyway: fewer allowed rows than
    // that are cheaper (and exact) to score directly.
    let budget = match &*index {
        SegmentIndex::Ivf(ivf) => {
            let lists = ivf.header.lists.max(1);
            ann.probes(lists) * indexed.div_ceil(lists)
        }
        SegmentIndex::Hnsw(_) => (indexed as f64 * HNSW_EXACT_BELOW) as usize,
    };
    let exact = allowed.is_some() && n_allowed <= budget.max(want);
    if !exact {
        let cands = match &*index {
            SegmentIndex::Ivf(ivf) => {
                let probes = ann.probes(ivf.header.lists.max(1));
                let (cands, stats) = ivf.search(&scorer.query, want, probes, allowed.as_ref());
                counters.lists_probed.add(stats.lists_probed);
                counters.lists_widened.add(stats.lists_widened);
                counters.index_rows_scored.add(stats.rows_scored);
                cands
            }
            SegmentIndex::Hnsw(graph) => {
                let (cands, _) = graph
                    .search(&scorer.query, want, ann.ef_search(), allowed.as_ref())
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                cands
            }
        };
        counters.candidates.add(cands.len());
        // Fewer found than wanted while more rows are allowed (a graph cut
        // off by the filter, or null vectors the index leaves out): the
        // exact search decides.
        let short = cands.len() < want.min(n_allowed);
        if !short {
            let mut positions: Vec<u32> = cands.iter().map(|c| c.1).collect();
            positions.sort_unstable();
            if positions.is_empty() {
                return Ok(());
            }
            // Scored again exactly, from the segment's own vectors.
            let batch = scan.rows_at(segment, &positions).await?;
            return best.consider(shared, &shared.post_filters, batch, None);
        }
        counters
            .lists_widened
            .add(usize::from(matches!(&*index, SegmentIndex::Hnsw(_))));
    }
    counters.filtered_exact.add(1);
    let in_place = shared.post_filters.is_empty();
    for unit in units {
        for (batch, live) in scan.load_unit(unit, &prefilter, in_place).await? {
            best.consider(shared, &shared.post_filters, batch, live)?;
        }
    }
    Ok(())
}
