//! `gc`: removes files no manifest within the retention window references,
//! and manifest versions past it.
//!
//! A version is kept while a query could still be reading it: the newest
//! version, and every version that was still the newest at some moment in
//! the window (its successor was committed after the cutoff). A file is
//! removed only if no kept version lists it AND it is older than the cutoff,
//! so files of a write that has not committed yet are never touched.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::error::Result;
use crate::storage::format::manifest::{self, now_ms, Manifest};
use crate::storage::store::Store;

/// What garbage collection removed from one collection.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GcReport {
    pub collection: String,
    pub removed_files: usize,
    pub removed_bytes: u64,
    pub removed_manifests: usize,
    pub kept_versions: usize,
}

/// Collects garbage in every collection of the store, including dropped ones.
pub async fn gc(store: &Store, retention: Duration) -> Result<Vec<GcReport>> {
    let _writes = store.lock_writes().await;
    let os = store.object_store();
    let cutoff_ms = now_ms().saturating_sub(retention.as_millis() as u64);
    let listed = os.list_with_delimiter(None).await?;
    let mut reports = Vec::new();
    for prefix in listed.common_prefixes {
        let Some(name) = prefix.filename() else {
            continue;
        };
        reports.push(gc_collection(os.as_ref(), name, cutoff_ms).await?);
    }
    Ok(reports)
}

async fn gc_collection(os: &dyn ObjectStore, name: &str, cutoff_ms: u64) -> Result<GcReport> {
    let mut report = GcReport {
        collection: name.to_string(),
        ..Default::default()
    };
    let manifests = os
        .list(Some(&Path::from(format!("{name}/_manifest"))))
        .try_collect::<Vec<_>>()
        .await?;
    let mut versions: Vec<u64> = manifests
        .iter()
        .filter_map(|o| o.location.filename()?.strip_suffix(".json")?.parse().ok())
        .collect();
    versions.sort_unstable();
    let Some(&latest) = versions.last() else {
        return Ok(report);
    };
    // Walk from the newest version down; keep versions that were current
    // inside the window.
    let mut kept: Vec<Manifest> = Vec::new();
    let mut successor_committed = u64::MAX;
    for &v in versions.iter().rev() {
        if v != latest && successor_committed < cutoff_ms {
            break;
        }
        let m = manifest::load_version(os, name, v).await?;
        successor_committed = m.committed_at_ms;
        kept.push(m);
    }
    let kept_versions: HashSet<u64> = kept.iter().map(|m| m.version).collect();
    report.kept_versions = kept_versions.len();
    let mut referenced: HashSet<String> = HashSet::new();
    for m in &kept {
        for s in &m.segments {
            referenced.extend(s.files.iter().map(|f| format!("{name}/{}", f.path)));
            referenced.extend(s.pk_bloom.iter().map(|b| format!("{name}/{}", b.path)));
            referenced.extend(s.index_files.iter().map(|f| format!("{name}/{}", f.path)));
        }
        referenced.extend(m.delete_logs.iter().map(|d| format!("{name}/{}", d.path)));
    }
    for dir in ["insert_log", "stats_log", "delta_log", "index_files"] {
        let objects = os
            .list(Some(&Path::from(format!("{name}/{dir}"))))
            .try_collect::<Vec<_>>()
            .await?;
        for o in objects {
            let old = (o.last_modified.timestamp_millis().max(0) as u64) < cutoff_ms;
            if old && !referenced.contains(o.location.as_ref()) {
                if report.removed_files == 1 && crate::error::injected("gc-mid-delete", name) {
                    return Err(crate::error::Error::internal(
                        "injected failure in the middle of gc",
                    ));
                }
                os.delete(&o.location).await?;
                report.removed_files += 1;
                report.removed_bytes += o.size;
            }
        }
    }
    for o in manifests {
        let v = o
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|f| f.parse::<u64>().ok());
        if v.is_some_and(|v| !kept_versions.contains(&v)) {
            os.delete(&o.location).await?;
            report.removed_manifests += 1;
        }
    }
    if report.removed_files + report.removed_manifests > 0 {
        tracing::info!(collection = name, ?report, "garbage collected");
    }
    Ok(report)
}
