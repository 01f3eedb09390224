//! Checksums: one flipped byte in a segment file, a delete log or a manifest
//! is detected every time, as an error naming the file; no query answers
//! wrongly; other collections keep answering; `verify` lists the damage.

use arrow::util::pretty::pretty_format_batches;
use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use quiver::{Engine, IngestMode, Store, StoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::batch;
use crate::util::{ingest, Backend};

const QUERY: &str = "SELECT id, value, embedding FROM t ORDER BY id";
const OTHER: &str = "SELECT id, value FROM other ORDER BY id";

fn config() -> StoreConfig {
    StoreConfig {
        // Small blocks: a file has many, each checked on its own.
        cache_block_bytes: 4096,
        ..StoreConfig::default()
    }
}

async fn answer(engine: &Engine, sql: &str) -> quiver::Result<String> {
    Ok(pretty_format_batches(&engine.sql(sql).await?)
        .unwrap()
        .to_string())
}

/// Flips one byte in random files `trials` times; after each flip a fresh
/// process (no cache) must refuse the damaged collection with an error
/// naming the file, answer the other one, and `verify` must list the file.
async fn flip_bytes(backend: &Backend, trials: usize, seed: u64) {
    let os = backend.object_store();
    {
        let store = Store::open(&backend.url(), config()).await.unwrap();
        let rows: Vec<(i64, i64)> = (0..3000).map(|i| (i, i * 7 % 1000)).collect();
        ingest(&store, "t", batch(&rows), IngestMode::CREATE)
            .await
            .unwrap();
        ingest(&store, "other", batch(&rows[..50]), IngestMode::CREATE)
            .await
            .unwrap();
        let engine = Engine::new(store).unwrap();
        engine.sql("DELETE FROM t WHERE id % 10 = 3").await.unwrap();
    }
    let engine = Engine::new(Store::open(&backend.url(), config()).await.unwrap()).unwrap();
    let want = answer(&engine, QUERY).await.unwrap();
    let want_other = answer(&engine, OTHER).await.unwrap();
    let m = engine.store().require("t").unwrap();
    drop(engine);

    // The files of t's newest version: segment files, delete log, manifest.
    let mut files: Vec<String> = m
        .segments
        .iter()
        .flat_map(|s| s.files.iter().map(|f| format!("t/{}", f.path)))
        .collect();
    files.extend(m.delete_logs.iter().map(|d| format!("t/{}", d.path)));
    files.push(quiver::storage::Manifest::path("t", m.version).to_string());
    assert!(files.len() >= 4, "{files:?}");
    let mut originals = Vec::new();
    for f in &files {
        originals.push(
            os.get(&Path::from(f.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        );
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut detected = vec![0usize; files.len()];
    let mut tried = vec![0usize; files.len()];
    for trial in 0..trials {
        let i = trial % files.len();
        let orig: &Bytes = &originals[i];
        let at = rng.random_range(0..orig.len());
        let mut damaged = orig.to_vec();
        damaged[at] ^= rng.random_range(1..=255u8);
        let path = Path::from(files[i].as_str());
        os.put(&path, damaged.into()).await.unwrap();

        let engine = Engine::new(Store::open(&backend.url(), config()).await.unwrap()).unwrap();
        tried[i] += 1;
        match answer(&engine, QUERY).await {
            Ok(got) => assert_eq!(
                got, want,
                "a wrong answer with byte {at} of {} flipped",
                files[i]
            ),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&files[i]),
                    "the error does not name {} (byte {at} flipped): {msg}",
                    files[i]
                );
                detected[i] += 1;
            }
        }
        assert_eq!(
            answer(&engine, OTHER).await.unwrap(),
            want_other,
            "another collection stopped answering"
        );
        if trial % 25 == 0 {
            let problems = quiver::admin::verify::verify(engine.store()).await.unwrap();
            assert!(
                problems.iter().any(|p| p.path == files[i]),
                "verify missed {}: {problems:?}",
                files[i]
            );
        }
        os.put(&path, orig.clone().into()).await.unwrap();
    }
    eprintln!(
        "{backend:?}: {trials} flipped bytes; detected per file {:?} of {:?} ({files:?})",
        detected, tried
    );
    assert_eq!(detected, tried, "some flipped bytes went unnoticed");
    // Restored: everything answers again, verify is clean.
    let engine = Engine::new(Store::open(&backend.url(), config()).await.unwrap()).unwrap();
    assert_eq!(answer(&engine, QUERY).await.unwrap(), want);
    assert!(quiver::admin::verify::verify(engine.store())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_is_detected_and_names_its_file() {
    flip_bytes(&Backend::local(), 1000, 7).await;
    if let Some(s3) = Backend::s3() {
        flip_bytes(&s3, 120, 8).await;
    }
}

#[tokio::test]
async fn a_damaged_manifest_keeps_the_write_ahead_log_of_its_collection() {
    // Replay must not mistake an unreadable collection for a dropped one.
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("store");
    let url = url.to_str().unwrap();
    let wal = dir.path().join("wal");
    {
        let store = Store::open_with_wal(url, config(), quiver::storage::WalOptions::new(&wal))
            .await
            .unwrap();
        ingest(&store, "t", batch(&[(1, 1)]), IngestMode::CREATE)
            .await
            .unwrap();
        ingest(&store, "t", batch(&[(2, 2)]), IngestMode::APPEND)
            .await
            .unwrap();
        // Row 2 is only in the log (not flushed).
    }
    let os = quiver::storage::open_object_store(url).unwrap();
    let versions = quiver::storage::list_versions(os.as_ref(), "t")
        .await
        .unwrap();
    let newest = quiver::storage::Manifest::path("t", *versions.iter().max().unwrap());
    let orig = os.get(&newest).await.unwrap().bytes().await.unwrap();
    let mut bad = orig.to_vec();
    let n = bad.len();
    bad[n / 2] ^= 0x20;
    os.put(&newest, bad.into()).await.unwrap();
    {
        let store = Store::open_with_wal(url, config(), quiver::storage::WalOptions::new(&wal))
            .await
            .unwrap();
        let engine = Engine::new(store).unwrap();
        let err = engine.sql("SELECT * FROM t").await.unwrap_err().to_string();
        assert!(err.contains(newest.as_ref()), "{err}");
    }
    os.put(&newest, orig.into()).await.unwrap();
    let store = Store::open_with_wal(url, config(), quiver::storage::WalOptions::new(&wal))
        .await
        .unwrap();
    let engine = Engine::new(store).unwrap();
    let got = answer(&engine, "SELECT id FROM t ORDER BY id")
        .await
        .unwrap();
    assert!(got.contains("| 1  |") && got.contains("| 2  |"), "{got}");
}
