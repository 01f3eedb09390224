//! `compact`: merges small segments and drops deleted rows.
//!
//! Size-tiered: segments under half the target segment size, and segments
//! holding deleted rows, are rewritten together into full-size segments. The
//! surviving rows keep their `_ts`. When every segment of the version is
//! rewritten, its delete logs are no longer needed and are dropped too. The
//! result is committed like any other change: a conditional put of the next
//! manifest version; running queries keep reading their pinned version.

use arrow::array::{ArrayRef, RecordBatch};
use futures::TryStreamExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::query::engine::{Engine, Statement};
use crate::storage::format::manifest::Change;
use crate::storage::format::schema::TS_COLUMN;
use crate::storage::format::segment::write_segment_with_ts;

/// What one compaction did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CompactReport {
    pub collection: String,
    /// Segments rewritten.
    pub merged_segments: usize,
    /// Segments written in their place.
    pub written_segments: usize,
    /// Rows in the rewritten segments, and how many of them were live.
    pub rows_before: u64,
    pub rows_after: u64,
    pub dropped_delete_logs: usize,
    /// Manifest version committed (none when there was nothing to do).
    pub version: Option<u64>,
}

/// Compacts one collection if it has small segments or deleted rows.
pub async fn compact_collection(engine: &Engine, name: &str) -> Result<CompactReport> {
    let store = engine.store();
    let _writes = store.lock_writes().await;
    let m = store.require(name)?;
    let schema = m
        .schema
        .clone()
        .ok_or_else(|| Error::CollectionNotFound(name.to_string()))?;
    let mut report = CompactReport {
        collection: name.to_string(),
        ..Default::default()
    };

    let live = crate::admin::inspect::live_rows_per_segment(engine, name).await?;
    let small = (store.config().segment_max_rows / 2) as u64;
    let candidates: Vec<u64> = m
        .segments
        .iter()
        .filter(|s| s.rows < small || live.get(&s.id).copied().unwrap_or(0) < s.rows)
        .map(|s| s.id)
        .collect();
    let has_deletes = m
        .segments
        .iter()
        .any(|s| candidates.contains(&s.id) && live.get(&s.id).copied().unwrap_or(0) < s.rows);
    if candidates.len() < 2 && !has_deletes {
        return Ok(report);
    }
    report.merged_segments = candidates.len();
    report.rows_before = m
        .segments
        .iter()
        .filter(|s| candidates.contains(&s.id))
        .map(|s| s.rows)
        .sum();

    // Read the live rows of the candidates with their `_ts`.
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let ids: Vec<String> = candidates.iter().map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT {}, {TS_COLUMN} FROM \"{name}\" WHERE _seg IN ({})",
        columns.join(", "),
        ids.join(", ")
    );
    let Statement::Query(plan) = engine.plan(&sql).await? else {
        return Err(Error::internal("compaction read is not a query"));
    };
    let mut stream = engine.execute_query(plan).await?;
    let arrow_schema = schema.arrow_schema();
    let n_user = arrow_schema.fields().len();
    let mut added = Vec::new();
    let mut pending: Vec<(RecordBatch, ArrayRef)> = Vec::new();
    let mut pending_rows = 0usize;
    let target = store.config().segment_max_rows;
    let result = async {
        loop {
            let next = stream.try_next().await?;
            let done = next.is_none();
            if let Some(b) = next {
                if b.num_rows() > 0 {
                    let user =
                        RecordBatch::try_new(arrow_schema.clone(), b.columns()[..n_user].to_vec())?;
                    pending_rows += user.num_rows();
                    pending.push((user, b.column(n_user).clone()));
                }
            }
            if (done && !pending.is_empty()) || pending_rows >= target {
                let (batches, ts): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut pending).into_iter().unzip();
                pending_rows = 0;
                let seg = write_segment_with_ts(
                    store.object_store(),
                    store.config(),
                    name,
                    &schema,
                    batches,
                    ts,
                )
                .await?;
                report.rows_after += seg.rows;
                added.push(seg);
            }
            if done {
                break;
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = result {
        store.remove_written(name, &added, &[]).await;
        return Err(e);
    }
    for seg in &mut added {
        seg.compacted_from = candidates.clone();
    }
    report.written_segments = added.len();
    // Delete logs can go once every segment they could apply to is rewritten.
    let removed_deletes: Vec<String> = if candidates.len() == m.segments.len() {
        m.delete_logs.iter().map(|d| d.path.clone()).collect()
    } else {
        vec![]
    };
    report.dropped_delete_logs = removed_deletes.len();
    let change = Change::Compact {
        removed: candidates,
        added,
        removed_deletes,
    };
    if crate::error::injected("compaction-before-commit", name) {
        let e = Error::internal("injected failure in the middle of a compaction");
        if let Change::Compact { added, .. } = &change {
            store.remove_written(name, added, &[]).await;
        }
        return Err(e);
    }
    let committed = store.commit_compaction(name, &change).await?;
    report.version = Some(committed.version);
    crate::metrics::compacted();
    tracing::info!(collection = name, ?report, "compacted");
    Ok(report)
}

/// Compacts every collection (or just `name`).
pub async fn compact(engine: &Engine, name: Option<&str>) -> Result<Vec<CompactReport>> {
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => engine.store().collection_names(),
    };
    let mut out = Vec::new();
    for n in names {
        out.push(compact_collection(engine, &n).await?);
    }
    Ok(out)
}
