//! The two cache tiers: blocks of files in front of the object store and
//! decoded vector chunks. A warm query makes no object-store request,
//! answers are the same with the caches on and off, a sparse selection
//! decodes only its rows (and caches nothing), a dense one caches whole
//! decoded row groups.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::util::pretty::pretty_format_batches;
use quiver::storage::vector_item_field;
use quiver::{Engine, IngestMode, Store, StoreConfig};

use crate::util::{ingest, metric};

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    let emb = FixedSizeListArray::new(
        vector_item_field(),
        16,
        Arc::new(Float32Array::from_iter_values(
            ids.clone()
                .flat_map(|i| (0..16).map(move |j| ((i * 7 + j) % 101) as f32)),
        )),
        None,
    );
    let cat: Vec<&str> = ids
        .clone()
        .map(|i| if i % 3 == 0 { "a" } else { "b" })
        .collect();
    assert_eq!(cat.len(), n);
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(ids)) as ArrayRef,
        ),
        ("cat", Arc::new(StringArray::from(cat)) as ArrayRef),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap()
}

async fn engine(dir: &std::path::Path, cache_bytes: u64) -> Engine {
    engine_at(dir.to_str().unwrap(), cache_bytes).await
}

async fn engine_at(url: &str, cache_bytes: u64) -> Engine {
    let config = StoreConfig {
        cache_bytes,
        decoded_cache_bytes: cache_bytes,
        cache_block_bytes: 64 * 1024,
        row_group_rows: 1000,
        ..StoreConfig::default()
    };
    Engine::new(Store::open(url, config).await.unwrap()).unwrap()
}

/// A fresh process on a store answers its first query from footers and the
/// byte ranges it needs, not whole segments (local directory and S3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_query_reads_footers_and_needed_ranges_not_whole_segments() {
    for backend in crate::util::Backend::all().await {
        let url = backend.url();
        let e = engine_at(&url, 64 * 1024 * 1024).await;
        ingest(e.store(), "t", batch(0..20_000), IngestMode::CREATE)
            .await
            .unwrap();
        let m = e.store().require("t").unwrap();
        let stored: u64 = m
            .segments
            .iter()
            .flat_map(|s| &s.files)
            .map(|f| f.size)
            .sum();
        drop(e);
        for q in [
            "SELECT id, embedding FROM t WHERE id BETWEEN 1000 AND 1010 ORDER BY id",
            "SELECT id FROM t WHERE id BETWEEN 15000 AND 15100 \
             ORDER BY l2_distance(embedding, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]), id LIMIT 5",
        ] {
            let cold = engine_at(&url, 64 * 1024 * 1024).await;
            let before = cold.store().cache_stats();
            cold.sql(q).await.unwrap();
            let s = cold.store().cache_stats();
            let fetched = s.fetched_bytes - before.fetched_bytes;
            eprintln!(
                "{backend:?}: {q}: {} requests, {fetched} of {stored} stored bytes",
                s.requests - before.requests
            );
            assert!(
                fetched * 4 < stored,
                "{backend:?}: a selective cold query fetched {fetched} of {stored} bytes: {q}"
            );
        }
    }
}

const QUERIES: [&str; 3] = [
    "SELECT id, l2_distance(embedding, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]) AS d \
     FROM t WHERE cat = 'a' ORDER BY d, id LIMIT 10",
    "SELECT id, embedding FROM t WHERE id BETWEEN 1000 AND 1010 ORDER BY id",
    "SELECT cat, count(*) FROM t GROUP BY cat ORDER BY cat",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_queries_make_no_requests_and_answers_match_without_cache() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 64 * 1024 * 1024).await;
    let b = batch(0..10_000);
    ingest(e.store(), "t", b, IngestMode::CREATE).await.unwrap();
    drop(e);
    // A fresh process: nothing cached yet.
    let e = engine(dir.path(), 64 * 1024 * 1024).await;
    let mut cold = Vec::new();
    for q in QUERIES {
        cold.push(
            pretty_format_batches(&e.sql(q).await.unwrap())
                .unwrap()
                .to_string(),
        );
    }
    let after_cold = e.store().cache_stats();
    assert!(after_cold.misses > 0);
    for (q, want) in QUERIES.iter().zip(&cold) {
        let got = pretty_format_batches(&e.sql(q).await.unwrap())
            .unwrap()
            .to_string();
        assert_eq!(&got, want);
    }
    let warm = e.store().cache_stats();
    assert_eq!(
        warm.requests, after_cold.requests,
        "warm queries went to the object store: {after_cold:?} -> {warm:?}"
    );
    assert!(warm.hits > after_cold.hits);

    // Cache off: same answers, and every run reads the store.
    let off = engine(dir.path(), 0).await;
    for (q, want) in QUERIES.iter().zip(&cold) {
        let got = pretty_format_batches(&off.sql(q).await.unwrap())
            .unwrap()
            .to_string();
        assert_eq!(&got, want, "{q}");
    }
    let s = off.store().cache_stats();
    // Blocks are still fetched one by one (to check their checksums), but
    // none is kept or served from memory.
    assert_eq!((s.hits, s.cached_bytes), (0, 0));
    assert!(s.misses > 0 && s.requests > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_reads_fill_the_decoded_cache_and_sparse_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 64 * 1024 * 1024).await;
    let b = batch(0..10_000);
    ingest(e.store(), "t", b, IngestMode::CREATE).await.unwrap();
    // 11 rows of one 1000-row row group: read row by row, nothing cached.
    let sparse = "SELECT id, embedding FROM t WHERE id BETWEEN 4000 AND 4010 ORDER BY id";
    let want = pretty_format_batches(&e.sql(sparse).await.unwrap())
        .unwrap()
        .to_string();
    assert_eq!(
        e.store().decoded_cache_stats().await.2,
        0,
        "a sparse read cached a whole row group"
    );
    // Every row: decoded whole, cached, and then served from memory.
    let dense = QUERIES[0];
    let first = pretty_format_batches(&e.sql(dense).await.unwrap())
        .unwrap()
        .to_string();
    let (hits0, _, bytes) = e.store().decoded_cache_stats().await;
    assert!(
        bytes >= 10_000 * 16 * 4,
        "decoded cache holds {bytes} bytes"
    );
    let again = pretty_format_batches(&e.sql(dense).await.unwrap())
        .unwrap()
        .to_string();
    assert_eq!(first, again);
    assert!(
        e.store().decoded_cache_stats().await.0 >= hits0 + 10,
        "warm run hit the decoded cache"
    );
    // EXPLAIN ANALYZE counts it per query: all hits, no miss.
    let plan = e.sql(&format!("EXPLAIN ANALYZE {dense}")).await.unwrap();
    let text = pretty_format_batches(&plan).unwrap().to_string();
    assert_eq!(metric(&text, "chunk_cache_misses"), 0, "{text}");
    assert!(metric(&text, "chunk_cache_hits") >= 10, "{text}");
    // Now cached, the sparse query is answered from the decoded chunk: same rows.
    let got = pretty_format_batches(&e.sql(sparse).await.unwrap())
        .unwrap()
        .to_string();
    assert_eq!(got, want);
}

/// A selective filter yields a sliver of rows per row group; they are
/// gathered before vectors are fetched (one fetch per segment and batch, not
/// one per row group), with the same answers as fetching sliver by sliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_scans_fetch_vectors_in_few_reads() {
    let dir = tempfile::tempdir().unwrap();
    // Two segments: two file groups scanned straight into the operator
    // (no repartitioning in between that would gather batches itself).
    let config = StoreConfig {
        row_group_rows: 100,
        decoded_cache_bytes: 0,
        ..StoreConfig::default()
    };
    let e = Engine::new(
        Store::open(dir.path().to_str().unwrap(), config)
            .await
            .unwrap(),
    )
    .unwrap();
    for (ids, mode) in [
        (0..5_000, IngestMode::CREATE),
        (5_000..10_000, IngestMode::APPEND),
    ] {
        let b = batch(ids);
        ingest(e.store(), "t", b, mode).await.unwrap();
    }
    let q = "SELECT id, embedding FROM t WHERE id % 100 = 7 ORDER BY id";
    let rows = e.sql(q).await.unwrap();
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, (0..100).map(|i| i * 100 + 7).collect::<Vec<_>>());
    // The vectors are the ingested ones.
    let first = rows[0]
        .column(1)
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .unwrap()
        .value(0);
    let first = first.as_any().downcast_ref::<Float32Array>().unwrap();
    assert_eq!(first.value(0), 49.0);
    let plan = e.sql(&format!("EXPLAIN ANALYZE {q}")).await.unwrap();
    let text = pretty_format_batches(&plan).unwrap().to_string();
    let fetches = metric(&text, "vector_fetches");
    assert!(
        (1..=4).contains(&fetches),
        "{fetches} vector reads for 100 rows in 100 row groups:\n{text}"
    );
}

/// Vector pages are small (about 64 KiB) and indexed, so a read of a few
/// rows fetches a few pages, not the whole column chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_vector_reads_fetch_only_their_pages() {
    const D: usize = 256; // 1 KiB per vector: 64 vectors per page
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        row_group_rows: 4_000,
        cache_block_bytes: 16 * 1024,
        decoded_cache_bytes: 0,
        ..StoreConfig::default()
    };
    let e = Engine::new(
        Store::open(dir.path().to_str().unwrap(), config)
            .await
            .unwrap(),
    )
    .unwrap();
    let n = 4_000i64;
    let emb = FixedSizeListArray::new(
        vector_item_field(),
        D as i32,
        Arc::new(Float32Array::from_iter_values(
            (0..n as usize * D).map(|i| i as f32),
        )),
        None,
    );
    let b = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
        ),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap();
    ingest(e.store(), "t", b, IngestMode::CREATE).await.unwrap();
    let m = e.store().snapshot("t").unwrap();
    let vector_file = m.segments[0]
        .files
        .iter()
        .find(|f| f.group == 1)
        .unwrap()
        .clone();

    // The layout: one row group, many small pages.
    let bytes = std::fs::read(dir.path().join("t").join(&vector_file.path)).unwrap();
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(bytes))
            .unwrap();
    use parquet::file::reader::FileReader;
    let rg = reader.get_row_group(0).unwrap();
    let pages: Vec<usize> = rg
        .get_column_page_reader(0)
        .unwrap()
        .map(|p| p.unwrap().buffer().len())
        .collect();
    assert!(pages.len() >= 50, "{} pages", pages.len());
    assert!(
        pages.iter().all(|&p| p <= 80 * 1024),
        "page sizes {pages:?}"
    );

    // Three rows: a few pages' worth of bytes from the store, not 4 MB.
    let before = e.store().cache_stats().fetched_bytes;
    let rows = e
        .sql("SELECT id, embedding FROM t WHERE id IN (5, 2000, 3990) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let v = rows[0]
        .column(1)
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .unwrap()
        .value(2);
    assert_eq!(
        v.as_any().downcast_ref::<Float32Array>().unwrap().value(0),
        (3990 * D) as f32
    );
    let fetched = e.store().cache_stats().fetched_bytes - before;
    assert!(
        fetched < vector_file.size / 4,
        "fetched {fetched} bytes for 3 rows of a {} byte vector file",
        vector_file.size
    );
}
