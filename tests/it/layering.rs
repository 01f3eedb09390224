//! The source tree is layered, and this test holds it so: every `crate::`
//! path in `src/` is resolved to the file it names, and the test fails,
//! naming the file and line, when
//! - a file names a layer above its own (the order, bottom up: `error` and
//!   `metrics`; `storage`; `query`; `admin` and `flight`, which never name
//!   each other; `server`; the binary), or
//! - files import each other in a loop, or the folders they sit in do.
//!
//! `docs/architecture.md` explains the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A layer's rank; a file may name files of a lower rank, or of its own
/// layer. `admin` and `flight` share a rank but are different layers.
fn layer(rel: &str) -> (&'static str, u8) {
    let top = rel.split('/').next().unwrap_or(rel);
    match top {
        "error.rs" | "metrics.rs" | "lib.rs" => ("base", 0),
        "storage" => ("storage", 1),
        "query" => ("query", 2),
        "admin" => ("admin", 3),
        "flight" => ("flight", 3),
        "server" => ("server", 4),
        "bin" => ("bin", 5),
        other => panic!("src/{rel}: '{other}' is in no layer; add it to tests/it/layering.rs"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file (`storage/store/mod.rs` -> `storage::store`).
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    if rel == "lib" {
        return String::new();
    }
    rel.replace('/', "::")
}

/// Every `crate::a::b::...` path in `line` (code only: comments are
/// skipped by the caller), as its segments.
fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        rest = &rest[at + "crate::".len()..];
        // `pub(crate)` and `$crate` are not paths.
        if before.ends_with('(') || before.ends_with('$') {
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let end = s
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            if end == 0 {
                break;
            }
            segs.push(s[..end].to_string());
            s = &s[end..];
            match s.strip_prefix("::") {
                Some(next) => s = next,
                None => break,
            }
        }
        // `crate::{a, b}` names the crate root's items: `lib.rs`.
        out.push(segs);
    }
    out
}

/// The code of a line: without a `//` comment (doc comments included).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

struct Import {
    from: String,
    line: usize,
    text: String,
    to: String,
}

fn imports(src: &Path) -> (Vec<String>, Vec<Import>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    let rels: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    for rel in &rels {
        if !rel.starts_with("bin/") {
            modules.insert(module_of(rel), rel.clone());
        }
    }
    let mut found = Vec::new();
    for (file, rel) in files.iter().zip(&rels) {
        if rel.starts_with("bin/") {
            continue; // the binary's `crate::` is its own crate
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for segs in crate_paths(code(line)) {
                // The longest prefix of the path that is a module with a file.
                let to = (0..=segs.len())
                    .rev()
                    .map(|k| segs[..k].join("::"))
                    .find_map(|m| modules.get(&m).cloned())
                    .expect("the crate root always matches");
                if &to != rel {
                    found.push(Import {
                        from: rel.clone(),
                        line: n + 1,
                        text: line.trim().to_string(),
                        to,
                    });
                }
            }
        }
    }
    // The binary names the library as `quiver::`: it is the top layer, so
    // only its own files could loop, and they import by `mod`.
    (rels, found)
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Names of the lower layer's files that name a higher layer, as
/// `file:line: text (names <file>, layer <x> above <y>)`.
fn violations(found: &[Import]) -> Vec<String> {
    let mut bad = Vec::new();
    for i in found {
        let (from_layer, from_rank) = layer(&i.from);
        let (to_layer, to_rank) = layer(&i.to);
        if i.from == "lib.rs" {
            continue; // the crate root declares and re-exports every layer
        }
        if to_rank > from_rank || (to_rank == from_rank && to_layer != from_layer) {
            bad.push(format!(
                "src/{}:{}: `{}` names src/{} ({to_layer}), which is not below {from_layer}",
                i.from, i.line, i.text, i.to
            ));
        }
    }
    bad
}

/// Strongly connected components of more than one node (Tarjan).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[w].min(self.low[v]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.index[w].min(self.low[v]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// The folder a file sits in (`storage/format/schema.rs` ->
/// `storage/format`; a folder's `mod.rs` belongs to the folder).
fn folder(rel: &str) -> String {
    match rel.rfind('/') {
        Some(i) => rel[..i].to_string(),
        None => String::new(),
    }
}

/// Import edges between sibling folders: for an import from a file in
/// folder A to a file in folder B, the two children of their common parent
/// that hold them (a file directly in the parent counts as itself).
fn folder_edges(found: &[Import]) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in found {
        if i.from == "lib.rs" {
            continue;
        }
        let (a, b) = (folder(&i.from), folder(&i.to));
        if a == b {
            continue;
        }
        let pa: Vec<&str> = i.from.split('/').collect();
        let pb: Vec<&str> = i.to.split('/').collect();
        let common = pa.iter().zip(&pb).take_while(|(x, y)| x == y).count();
        // The room each side occupies under the common parent.
        let room = |p: &[&str]| {
            let r = p[..=common.min(p.len() - 1)].join("/");
            if p.len() - 1 > common {
                r + "/"
            } else {
                r
            }
        };
        let (ra, rb) = (room(&pa), room(&pb));
        // A folder's own mod.rs is the folder.
        let norm = |r: String| match r.strip_suffix("/mod.rs") {
            Some(f) => f.to_string() + "/",
            None => r,
        };
        let (ra, rb) = (norm(ra), norm(rb));
        if ra != rb && (ra.ends_with('/') || rb.ends_with('/')) {
            edges.entry(ra).or_default().insert(rb);
        }
    }
    edges
}

#[test]
fn no_layer_names_a_layer_above_it() {
    let (_, found) = imports(&src_dir());
    assert!(
        found.len() > 100,
        "the scan found only {} imports",
        found.len()
    );
    let bad = violations(&found);
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_import_loop_between_files_or_folders() {
    let (_, found) = imports(&src_dir());
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in &found {
        // A folder's mod.rs declares its files (`mod x;` is not an import),
        // and lib.rs re-exports every layer.
        if i.from == "lib.rs" || i.to == "lib.rs" {
            continue;
        }
        edges
            .entry(i.from.clone())
            .or_default()
            .insert(i.to.clone());
    }
    let describe = |comp: &[String]| {
        let mut lines = vec![format!("  loop: {}", comp.join(", "))];
        for i in &found {
            if comp.contains(&i.from) && comp.contains(&i.to) {
                lines.push(format!("    src/{}:{}: {}", i.from, i.line, i.text));
            }
        }
        lines.join("\n")
    };
    let file_loops = loops(&edges);
    assert!(
        file_loops.is_empty(),
        "files that import each other in a loop:\n{}",
        file_loops
            .iter()
            .map(|c| describe(c))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let folder_loops = loops(&folder_edges(&found));
    assert!(
        folder_loops.is_empty(),
        "folders that import each other in a loop: {folder_loops:?}"
    );
}

/// The checks themselves: an upward import and a loop are caught.
#[test]
fn the_checks_catch_an_upward_import_and_a_loop() {
    let imp = |from: &str, to: &str| Import {
        from: from.into(),
        line: 7,
        text: "use crate::x;".into(),
        to: to.into(),
    };
    let bad = violations(&[imp("storage/store/mod.rs", "query/engine/mod.rs")]);
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with("src/storage/store/mod.rs:7:"),
        "{}",
        bad[0]
    );
    assert_eq!(violations(&[imp("admin/gc.rs", "flight/mod.rs")]).len(), 1);
    assert!(violations(&[imp("query/engine/mod.rs", "storage/store/mod.rs")]).is_empty());

    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges
        .entry("a.rs".into())
        .or_default()
        .insert("b.rs".into());
    edges
        .entry("b.rs".into())
        .or_default()
        .insert("c.rs".into());
    edges
        .entry("c.rs".into())
        .or_default()
        .insert("a.rs".into());
    edges
        .entry("c.rs".into())
        .or_default()
        .insert("d.rs".into());
    assert_eq!(loops(&edges), vec![vec!["a.rs", "b.rs", "c.rs"]]);

    let folders = folder_edges(&[
        imp("storage/format/schema.rs", "storage/wal/log.rs"),
        imp("storage/wal/growing.rs", "storage/format/keys.rs"),
    ]);
    assert_eq!(
        loops(&folders),
        vec![vec!["storage/format/", "storage/wal/"]]
    );

    assert_eq!(
        crate_paths(
            "use crate::storage::{Store, x}; pub(crate) fn f() -> crate::error::Result<()>"
        ),
        vec![
            vec!["storage".to_string()],
            vec!["error".into(), "Result".into()]
        ]
    );
}
