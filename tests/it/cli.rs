//! The `quiver` binary's subcommands, run as a user would.

use std::process::Command;

fn quiver(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("quiver runs")
}

#[test]
fn sql_and_inspect_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for sql in [
        "CREATE TABLE t (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))",
        "INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4]), (3, [5, 6])",
        "INSERT INTO t VALUES (3, [7, 8])",
        "DELETE FROM t WHERE id = 1",
    ] {
        let out = quiver(&["sql", "--data-dir", d, sql]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = quiver(&["sql", "--data-dir", d, "SELECT id, v FROM t ORDER BY id"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("| 2  | [3.0, 4.0] |")
            && text.contains("| 3  | [7.0, 8.0] |")
            && !text.contains("| 1 "),
        "{text}"
    );

    let out = quiver(&["inspect", "--data-dir", d, "t", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["collection"], "t");
    assert_eq!(v["version"], 4);
    assert_eq!(v["rows"], 4);
    assert_eq!(v["visible_rows"], 2);
    let segments = v["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2);
    assert_eq!(
        segments
            .iter()
            .map(|s| s["deleted_rows"].as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    assert!(segments
        .iter()
        .all(|s| s["files"].as_array().unwrap().len() == 2));

    let out = quiver(&["inspect", "--data-dir", d]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("collection t  version 4  rows 4 (visible 2, deleted 2)"),
        "{text}"
    );
}

#[test]
fn errors_name_what_is_wrong_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = quiver(&["inspect", "--data-dir", d, "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("collection 'nope' does not exist"));
    let out = quiver(&["sql", "--data-dir", d, "SELEKT 1"]);
    assert!(!out.status.success());
    let out = quiver(&["serve", "--store", "ftp://x/y", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme 'ftp'"));
    let out = quiver(&[
        "sql",
        "--data-dir",
        d,
        "--compression",
        "brotli",
        "SELECT 1",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown compression 'brotli'"));
    let out = quiver(&["sql", "--data-dir", d, "--flush-rows", "0", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--flush-rows and --flush-bytes must be positive"));
    let out = quiver(&["sql", "--data-dir", d, "--flush-age", "soon", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--flush-age"));
    // The bad store URL above created no write-ahead log in the working directory.
    assert!(!std::path::Path::new("quiver-data/_wal").exists());
}

#[test]
fn verify_finds_corrupt_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for sql in [
        "CREATE TABLE t (id BIGINT NOT NULL, v FLOAT[2])",
        "INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4])",
    ] {
        assert!(quiver(&["sql", "--data-dir", d, sql]).status.success());
    }
    let out = quiver(&["inspect", "--data-dir", d, "--verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let v: serde_json::Value =
        serde_json::from_slice(&quiver(&["inspect", "--data-dir", d, "t", "--json"]).stdout)
            .unwrap();
    let files = v["segments"][0]["files"].as_array().unwrap();
    let vector_file = dir
        .path()
        .join("t")
        .join(files[1]["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&vector_file).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&vector_file, bytes).unwrap();
    let scalar_file = dir
        .path()
        .join("t")
        .join(files[0]["path"].as_str().unwrap());
    std::fs::remove_file(&scalar_file).unwrap();

    let out = quiver(&["inspect", "--data-dir", d, "--verify"]);
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(files[1]["path"].as_str().unwrap()) && text.contains("crc32c"),
        "{text}"
    );
    assert!(
        text.contains(files[0]["path"].as_str().unwrap()) && text.contains("missing"),
        "{text}"
    );
}

/// Writes the same four rows as Parquet, CSV, Arrow IPC and JSON lines.
fn input_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
    };
    let batch = |ids: [i64; 2]| {
        let v = FixedSizeListArray::new(
            quiver::storage::vector_item_field(),
            2,
            Arc::new(Float32Array::from_iter_values(
                ids.iter().flat_map(|i| [*i as f32, 0.5]),
            )),
            None,
        );
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(vec![
                    format!("n{}", ids[0]),
                    format!("n{}", ids[1]),
                ])) as ArrayRef,
            ),
            ("v", Arc::new(v) as ArrayRef),
        ])
        .unwrap()
    };
    let parquet = dir.join("a.parquet");
    let b = batch([1, 2]);
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        b.schema(),
        None,
    )
    .unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
    let ipc = dir.join("b.arrow");
    let b = batch([3, 4]);
    let mut w =
        arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(&ipc).unwrap(), &b.schema())
            .unwrap();
    w.write(&b).unwrap();
    w.finish().unwrap();
    let json = dir.join("c.jsonl");
    std::fs::write(&json, "{\"id\": 5, \"name\": \"n5\", \"v\": [5, 0.5]}\n{\"id\": 6, \"name\": \"n6\", \"v\": [6, 0.5]}\n").unwrap();
    vec![parquet, ipc, json]
}

#[test]
fn ingest_reads_every_format_and_sql_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = store.to_str().unwrap();
    let files = input_files(dir.path());
    let mut args = vec!["ingest", "--data-dir", d, "--collection", "docs"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = quiver(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("ingested 6 rows from 3 file(s) into 'docs'"),
        "{said}"
    );
    // No progress bar when stderr is not a terminal.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rows ("),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Scalar columns from CSV into a second collection.
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "id,name\n7,n7\n8,n8\n").unwrap();
    let out = quiver(&[
        "ingest",
        "--data-dir",
        d,
        "--collection",
        "names",
        "--primary-key",
        "id",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let q = "SELECT id, name, v FROM docs ORDER BY id";
    let out = quiver(&["sql", "--data-dir", d, "--format", "csv", q]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("id,name,v\n1,n1,\"[1.0, 0.5]\"\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7, "{text}");
    let out = quiver(&["sql", "--data-dir", d, "--format", "json", q]);
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"id": 1, "name": "n1", "v": [1.0, 0.5]})
    );
    assert_eq!(text.lines().count(), 6);
    let pq = dir.path().join("out.parquet");
    let out = quiver(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "parquet",
        "--output",
        pq.to_str().unwrap(),
        q,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&pq).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = r.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 6);
    let out = quiver(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT id FROM names ORDER BY id",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "id\n7\n8\n");
    // An empty result still has its header.
    let out = quiver(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT id, name FROM names WHERE id > 100",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "id,name\n");
}

#[test]
fn bad_ingest_input_is_refused_naming_the_file_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = store.to_str().unwrap();
    let files = input_files(dir.path());
    let out = quiver(&[
        "ingest",
        "--data-dir",
        d,
        "--collection",
        "docs",
        files[0].to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = || {
        let out = quiver(&[
            "sql",
            "--data-dir",
            d,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM docs",
        ]);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(count(), "n\n2\n");

    let txt = dir.path().join("rows.txt");
    std::fs::write(&txt, "1,2\n").unwrap();
    let ragged = dir.path().join("ragged.jsonl");
    std::fs::write(&ragged, "{\"id\": 9, \"name\": \"x\", \"v\": [1, 2]}\n{\"id\": 10, \"name\": \"y\", \"v\": [1, 2, 3]}\n").unwrap();
    let wrong = dir.path().join("wrong.jsonl");
    std::fs::write(&wrong, "{\"id\": 11, \"name\": \"x\", \"v\": [1, 2, 3]}\n").unwrap();
    let missing = dir.path().join("missing.parquet");
    for (file, want, before) in [
        // Files that cannot be opened are found before anything is written,
        // even after a good file.
        (&txt, "unknown file type", Some(&files[1])),
        (&missing, "missing.parquet", Some(&files[1])),
        // A file that turns out bad while it is read is one failed write.
        (
            &ragged,
            "row 2: column 'v' has 3 numbers, but the first row had 2",
            None,
        ),
        (&wrong, "wrong.jsonl", None),
    ] {
        let mut args = vec!["ingest", "--data-dir", d, "--collection", "docs"];
        args.extend(before.map(|b| b.to_str().unwrap()));
        args.push(file.to_str().unwrap());
        let out = quiver(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file:?} was accepted");
        assert!(err.contains(want), "{file:?}: {err}");
        assert_eq!(count(), "n\n2\n", "{file:?} changed the collection");
    }
    let out = quiver(&["sql", "--data-dir", d, "--format", "parquet", "SELECT 1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format parquet needs --output FILE"));
    let out = quiver(&["ingest", "--data-dir", d, files[0].to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--collection"));
}

fn quiver_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quiver"));
    c.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("quiver runs")
}

#[test]
fn config_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quiver.toml");
    std::fs::write(
        &file,
        "cache-bytes = 12345\nquery_timeout = \"2m\"\ngc-interval = \"5m\"\nusername = \"ann\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = quiver_env(
        &[
            "serve",
            "--config",
            f,
            "--gc-interval",
            "7m",
            "--print-config",
        ],
        &[("QUIVER_QUERY_TIMEOUT", "5m")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .to_string()
    };
    assert!(
        line("cache-bytes").contains("12345") && line("cache-bytes").ends_with("# config file")
    );
    assert!(
        line("query-timeout").contains("\"5m\"")
            && line("query-timeout").ends_with("# environment")
    );
    assert!(line("gc-interval").contains("\"7m\"") && line("gc-interval").ends_with("# flag"));
    assert!(line("row-group-rows").ends_with("# default"));
    assert!(
        line("password").contains("<redacted>") && !text.contains("hunter2"),
        "{text}"
    );
    // The printed settings are a config file themselves.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, text.replace("\"<redacted>\"", "\"x\"")).unwrap();
    let out = quiver(&[
        "serve",
        "--config",
        again.to_str().unwrap(),
        "--print-config",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("cache-bytes = 12345"));

    // Applies to the other subcommands too.
    let store = dir.path().join("store");
    std::fs::write(&file, format!("data-dir = {:?}\n", store.to_str().unwrap())).unwrap();
    let out = quiver(&[
        "sql",
        "--config",
        f,
        "CREATE TABLE t (id BIGINT NOT NULL, PRIMARY KEY (id))",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(store.join("t").exists());
}

/// A global flag (`--log-format`) may be set in the config file too: it
/// was refused as an unknown key.
#[test]
fn config_file_sets_global_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quiver.toml");
    let store = dir.path().join("store");
    std::fs::write(
        &file,
        format!(
            "log-format = \"json\"\ndata-dir = {:?}\n",
            store.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = quiver_env(
        &["sql", "--config", file.to_str().unwrap(), "SELECT 1 AS one"],
        &[("RUST_LOG", "debug")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines at debug level");
    assert!(
        lines.iter().all(|l| l.starts_with('{')),
        "log lines are not JSON:\n{err}"
    );
}

#[test]
fn bad_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let f = file.to_str().unwrap();
    for (body, want) in [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("cache-bytes = \"lots\"\n", "--cache-bytes"),
        ("[serve]\nlisten = \"x\"\n", "unknown key 'serve'"),
        (
            "listen = [\"a\", \"b\"]\n",
            "key 'listen' must be a single value",
        ),
        ("listen = \n", "bad.toml"),
    ] {
        std::fs::write(&file, body).unwrap();
        let out = quiver(&["serve", "--config", f, "--print-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body:?} was accepted");
        assert!(err.contains(want), "{body:?}: {err}");
    }
    let out = quiver(&["serve", "--config", "/nonexistent/q.toml", "--print-config"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file '/nonexistent/q.toml'"));
    // QUIVER_CONFIG names the file too.
    std::fs::write(&file, "bogus = 1\n").unwrap();
    let out = quiver_env(&["serve", "--print-config"], &[("QUIVER_CONFIG", f)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key 'bogus'"));
}
