//! `verify`: checks that the newest version of every collection references
//! files that exist with the recorded size and crc32c. Read-only.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::Result;
use crate::storage::store::Store;

/// One problem found in a store.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub collection: String,
    pub path: String,
    pub problem: String,
}

/// Checks every file the live collections' newest versions list.
pub async fn verify(store: &Store) -> Result<Vec<Problem>> {
    let os = store.object_store();
    let mut problems: Vec<Problem> = store
        .unreadable_collections()
        .into_iter()
        .map(|(collection, path, why)| Problem {
            collection,
            path,
            problem: why,
        })
        .collect();
    for name in store.collection_names() {
        let Some(m) = store.snapshot(&name) else {
            continue;
        };
        let mut files: Vec<(String, u64, u32)> = Vec::new();
        for s in &m.segments {
            files.extend(s.files.iter().map(|f| (f.path.clone(), f.size, f.crc32c)));
            files.extend(
                s.pk_bloom
                    .iter()
                    .map(|b| (b.path.clone(), b.size, b.crc32c)),
            );
            files.extend(
                s.index_files
                    .iter()
                    .map(|f| (f.path.clone(), f.size, f.crc32c)),
            );
        }
        files.extend(
            m.delete_logs
                .iter()
                .map(|d| (d.path.clone(), d.size, d.crc32c)),
        );
        for (rel, size, crc) in files {
            if let Some(problem) =
                check(os.as_ref(), &Store::file_path(&name, &rel), size, crc).await
            {
                problems.push(Problem {
                    collection: name.clone(),
                    path: format!("{name}/{rel}"),
                    problem,
                });
            }
        }
    }
    Ok(problems)
}

async fn check(os: &dyn ObjectStore, path: &Path, size: u64, crc: u32) -> Option<String> {
    let bytes = match os.get(path).await {
        Ok(r) => match r.bytes().await {
            Ok(b) => b,
            Err(e) => return Some(format!("unreadable: {e}")),
        },
        Err(object_store::Error::NotFound { .. }) => return Some("missing".into()),
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    if bytes.len() as u64 != size {
        return Some(format!(
            "size {} but the manifest records {size}",
            bytes.len()
        ));
    }
    let got = crc32c::crc32c(&bytes);
    (got != crc).then(|| format!("crc32c {got:08x} but the manifest records {crc:08x}"))
}

/// Reads every record of every collection's write-ahead log in `wal_dir`
/// (without taking it) and reports corrupt ones. A torn tail from a crash is
/// not a problem: replay drops it.
pub fn verify_wal(wal_dir: &std::path::Path) -> Vec<Problem> {
    let names = match crate::storage::wal::log::list_collections(wal_dir) {
        Ok(n) => n,
        Err(e) => {
            return vec![Problem {
                collection: String::new(),
                path: wal_dir.display().to_string(),
                problem: e.to_string(),
            }]
        }
    };
    names
        .into_iter()
        .filter_map(|name| {
            let dir = crate::storage::wal::log::collection_dir(wal_dir, &name);
            crate::storage::wal::log::read(&dir, false)
                .err()
                .map(|e| Problem {
                    collection: name,
                    path: dir.display().to_string(),
                    problem: e.to_string(),
                })
        })
        .collect()
}
