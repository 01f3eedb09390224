//! Benchmark results as files: a bench collects records (one per measured
//! case, named fields) and writes them as `<name>.json` (with the machine's
//! core count, the time and the command) and `<name>.csv` into
//! `RESULTS_DIR` (default `docs/bench`), next to what `benches/search.py`
//! writes; `benches/charts.py` renders charts from them.

use std::path::PathBuf;

use serde_json::{json, Value};

pub struct Results {
    name: &'static str,
    records: Vec<Vec<(String, Value)>>,
}

impl Results {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            records: Vec::new(),
        }
    }

    /// One measured case; numbers are written as they are, in the units
    /// their names say (`_ms`, `_gbps`, ...).
    pub fn record(&mut self, fields: &[(&str, Value)]) {
        self.records.push(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }

    fn dir() -> PathBuf {
        match std::env::var_os("RESULTS_DIR") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/bench"),
        }
    }

    fn csv(&self) -> String {
        let mut columns: Vec<&str> = Vec::new();
        for r in &self.records {
            for (k, _) in r {
                if !columns.contains(&k.as_str()) {
                    columns.push(k);
                }
            }
        }
        let cell = |v: Option<&Value>| match v {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.contains([',', '"', '\n']) => {
                format!("\"{}\"", s.replace('"', "\"\""))
            }
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let mut out = columns.join(",");
        out.push('\n');
        for r in &self.records {
            let row: Vec<String> = columns
                .iter()
                .map(|c| cell(r.iter().find(|(k, _)| k == c).map(|(_, v)| v)))
                .collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// Writes `<name>.json` and `<name>.csv`; prints where. A failure to
    /// write is reported, not fatal: the figures were printed already.
    pub fn save(&self) {
        let dir = Self::dir();
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|r| Value::Object(r.iter().cloned().collect()))
            .collect();
        let doc = json!({
            "bench": self.name,
            "command": format!("cargo bench --bench {}", self.name),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "unix_time": unix_time,
            "records": records,
        });
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                dir.join(format!("{}.json", self.name)),
                serde_json::to_string_pretty(&doc)? + "\n",
            )?;
            std::fs::write(dir.join(format!("{}.csv", self.name)), self.csv())
        };
        match write() {
            Ok(()) => println!("results: {}/{}.json and .csv", dir.display(), self.name),
            Err(e) => eprintln!("could not write results to {}: {e}", dir.display()),
        }
    }
}
