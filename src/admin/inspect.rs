//! `inspect`: what a store holds, per collection and segment, as JSON or text.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, UInt64Type};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::query::engine::Engine;

/// Rows of each segment of the current version that no delete hides.
pub async fn live_rows_per_segment(engine: &Engine, name: &str) -> Result<HashMap<u64, u64>> {
    let mut live: HashMap<u64, u64> = HashMap::new();
    let sql = format!("SELECT _seg, count(*) FROM \"{name}\" GROUP BY _seg");
    for b in engine.sql(&sql).await? {
        let seg = b.column(0).as_primitive::<UInt64Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            live.insert(seg.value(i), n.value(i) as u64);
        }
    }
    Ok(live)
}

/// Describes one collection: manifest version, rows, deletes and segments.
///
/// Growing rows and WAL bytes come from this process's log if the store has
/// one, else from reading `wal_dir` (a server's log, read without locking).
pub async fn collection(engine: &Engine, name: &str, wal_dir: Option<&Path>) -> Result<Value> {
    let m = engine.store().require(name)?;
    let mut visible = live_rows_per_segment(engine, name).await?;
    // Growing rows have segment id 0; they are counted separately.
    visible.remove(&0);
    let (growing_rows, growing_deletes, wal_bytes) = match (engine.store().wal_dir(), wal_dir) {
        (Some(_), _) => engine.store().growing_status(name),
        (None, Some(dir)) => {
            let b = crate::storage::wal::log::backlog(dir, name, m.wal_ts)?;
            (b.rows, b.deletes, b.bytes)
        }
        (None, None) => (0, 0, 0),
    };
    let segments: Vec<Value> = m
        .segments
        .iter()
        .map(|s| {
            let live = visible.get(&s.id).copied().unwrap_or(0);
            json!({
                "id": s.id,
                "rows": s.rows,
                "deleted_rows": s.rows - live.min(s.rows),
                "bytes": s.files.iter().map(|f| f.size).sum::<u64>() + s.pk_bloom.as_ref().map_or(0, |b| b.size),
                "min_ts": s.min_ts,
                "max_ts": s.max_ts,
                "index_files": s.index_files.iter().map(|f| json!({
                    "index": f.index,
                    "path": f.path,
                    "bytes": f.size,
                    "crc32c": f.crc32c,
                    "lists": f.lists,
                    "rows": f.rows,
                })).collect::<Vec<_>>(),
                "files": s.files.iter().map(|f| json!({
                    "group": f.group,
                    "columns": f.columns,
                    "path": f.path,
                    "bytes": f.size,
                    "crc32c": f.crc32c,
                    "row_groups": f.row_groups,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let rows = m.num_rows();
    let live: u64 = visible.values().sum();
    Ok(json!({
        "collection": name,
        "version": m.version,
        "committed_at_ms": m.committed_at_ms,
        // `null` when the key is generated (`_id`, see `generated_key`).
        "primary_key": m.schema.as_ref().and_then(|s| s.declared_key().map(str::to_string)),
        "generated_key": m.schema.as_ref().is_some_and(|s| s.auto_id()),
        "rows": rows,
        "visible_rows": live,
        "deleted_rows": rows - live.min(rows),
        "delete_logs": m.delete_logs.len(),
        "delete_entries": m.delete_logs.iter().map(|d| d.rows).sum::<u64>(),
        "wal_ts": m.wal_ts,
        "growing_rows": growing_rows,
        "growing_deletes": growing_deletes,
        "wal_bytes": wal_bytes,
        "segments": segments,
        "indexes": engine.store().index_status(&m).iter().map(|st| json!({
            "name": st.def.name,
            "column": st.def.column,
            "type": st.def.kind.name(),
            "metric": st.def.metric.name(),
            "parameters": st.def.parameters(),
            "state": st.state(),
            "segments_indexed": st.segments_indexed,
            "segments_total": st.segments_total,
            "bytes": st.bytes,
        })).collect::<Vec<_>>(),
    }))
}

/// Describes every collection (or just `name`).
pub async fn store(engine: &Engine, name: Option<&str>, wal_dir: Option<&Path>) -> Result<Value> {
    if let Some(name) = name {
        return collection(engine, name, wal_dir).await;
    }
    let mut all = Vec::new();
    for n in engine.store().collection_names() {
        all.push(collection(engine, &n, wal_dir).await?);
    }
    Ok(json!({ "store": engine.store().url(), "collections": all }))
}

/// Human-readable rendering of [`collection`]'s JSON.
pub fn render(v: &Value) -> Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let one = |out: &mut String, c: &Value| -> std::fmt::Result {
        writeln!(
            out,
            "collection {}  version {}  rows {} (visible {}, deleted {})  delete logs {}  growing rows {}  WAL bytes {}",
            c["collection"].as_str().unwrap_or("?"),
            c["version"],
            c["rows"],
            c["visible_rows"],
            c["deleted_rows"],
            c["delete_logs"],
            c["growing_rows"],
            c["wal_bytes"],
        )?;
        writeln!(
            out,
            "  {:>20} {:>10} {:>10} {:>12} {:>6}",
            "segment", "rows", "deleted", "bytes", "files"
        )?;
        for s in c["segments"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {:>20} {:>10} {:>10} {:>12} {:>6}",
                s["id"].to_string(),
                s["rows"].to_string(),
                s["deleted_rows"].to_string(),
                s["bytes"].to_string(),
                s["files"].as_array().map_or(0, |f| f.len())
            )?;
        }
        for i in c["indexes"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  index {} on {} ({} {}, {})  {}  segments {}/{}  bytes {}",
                i["name"].as_str().unwrap_or("?"),
                i["column"].as_str().unwrap_or("?"),
                i["type"].as_str().unwrap_or("?"),
                i["metric"].as_str().unwrap_or("?"),
                i["parameters"].as_str().unwrap_or(""),
                i["state"].as_str().unwrap_or("?"),
                i["segments_indexed"],
                i["segments_total"],
                i["bytes"],
            )?;
        }
        Ok(())
    };
    let fmt_err = |e: std::fmt::Error| Error::internal(e.to_string());
    match v.get("collections") {
        Some(list) => {
            writeln!(out, "store {}", v["store"].as_str().unwrap_or("?")).map_err(fmt_err)?;
            for c in list.as_array().into_iter().flatten() {
                one(&mut out, c).map_err(fmt_err)?;
            }
        }
        None => one(&mut out, v).map_err(fmt_err)?,
    }
    Ok(out)
}
