//! Runs every `sql/*.slt` script through the `sqllogictest` crate against a
//! fresh store per file.

use std::path::PathBuf;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use quiver::storage::WalOptions;
use quiver::{Engine, Store, StoreConfig};
use sqllogictest::{DBOutput, DefaultColumnType};

struct QuiverDb {
    engine: Engine,
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

#[async_trait]
impl sqllogictest::AsyncDB for QuiverDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let stmt = self
            .engine
            .plan(sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        if !stmt.is_query() {
            let n = self
                .engine
                .execute_update(stmt)
                .await
                .map_err(|e| SltError(e.to_string()))?;
            return Ok(DBOutput::StatementComplete(n));
        }
        let batches = self
            .engine
            .sql(sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        Ok(to_output(&batches))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "quiver"
    }
}

fn to_output(batches: &[RecordBatch]) -> DBOutput<DefaultColumnType> {
    let Some(first) = batches.first() else {
        return DBOutput::Rows {
            types: vec![],
            rows: vec![],
        };
    };
    let types = first
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                DefaultColumnType::Integer
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                DefaultColumnType::Integer
            }
            DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
            _ => DefaultColumnType::Any,
        })
        .collect();
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| cell(c.as_ref(), r, &opts))
                .collect();
            rows.push(row);
        }
    }
    DBOutput::Rows { types, rows }
}

/// Floats are rounded to 6 decimals so results do not depend on the last
/// bits of a SIMD kernel.
fn cell(col: &dyn Array, row: usize, opts: &FormatOptions) -> String {
    if col.is_null(row) {
        return "NULL".into();
    }
    let float = match col.data_type() {
        DataType::Float64 => Some(
            col.as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap()
                .value(row),
        ),
        DataType::Float32 => Some(
            col.as_any()
                .downcast_ref::<arrow::array::Float32Array>()
                .unwrap()
                .value(row) as f64,
        ),
        _ => None,
    };
    if let Some(v) = float {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        return if s == "-0" { "0".into() } else { s };
    }
    let s = ArrayFormatter::try_new(col, opts)
        .unwrap()
        .value(row)
        .to_string();
    if s.is_empty() {
        "(empty)".into()
    } else {
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_scripts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    // Each script runs twice: on a store that seals every write into
    // segments, and on one that logs small writes to a write-ahead log and
    // keeps them in a growing segment (as the server does).
    for file in &files {
        // Scripts about segments and manifest versions run sealed only.
        let text = std::fs::read_to_string(file).unwrap();
        let modes: &[bool] = if text.contains("# slt: sealed writes only") {
            &[false]
        } else {
            &[false, true]
        };
        for &logged in modes {
            let data = tempfile::tempdir().unwrap();
            let url = data.path().join("store");
            let url = url.to_str().unwrap();
            let store = if logged {
                Store::open_with_wal(
                    url,
                    StoreConfig::default(),
                    WalOptions::new(data.path().join("wal")),
                )
                .await
            } else {
                Store::open(url, StoreConfig::default()).await
            }
            .unwrap();
            let engine = Engine::new(store).unwrap();
            let mut runner = sqllogictest::Runner::new(move || {
                let engine = engine.clone();
                async move { Ok::<_, SltError>(QuiverDb { engine }) }
            });
            if let Err(e) = runner.run_file_async(file).await {
                let how = if logged { "logged" } else { "sealed" };
                failures.push(format!("{} ({how} writes): {e}", file.display()));
            }
            println!("ran {} (logged writes: {logged})", file.display());
        }
    }
    assert!(
        failures.is_empty(),
        "{} script(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
