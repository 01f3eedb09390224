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
