//! Decode speed of a vector column read back from Parquet, one core, data in
//! memory: the layout quiver writes (`FixedSizeBinary(4*d)`, plain,
//! uncompressed, turned back into `FixedSizeList<Float32>` without a copy)
//! against a `FixedSizeList<Float32>` column written plain/uncompressed and
//! with zstd (the layout before), in scan-sized batches and in whole row
//! groups; and gathering half the vectors of a decoded
//! chunk with arrow's `take` against quiver's row-slice gather. Reported as GB/s of vector data and as
//! time ratios against the zstd list, measured in the same run.
//!
//! Run: `cargo bench --bench decode` (results also in
//! `docs/bench/decode.json` and `.csv`; `RESULTS_DIR` to change).

mod common;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
use arrow::datatypes::{Field, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use quiver::storage::vector_item_field;
use serde_json::json;

/// Encodes one column; `page_bytes` sets quiver's small pages (the write
/// batch must shrink with them, or pages overshoot the limit).
fn encode(batch: &RecordBatch, compression: Compression, page_bytes: Option<usize>) -> Bytes {
    let mut props = WriterProperties::builder();
    if let Some(p) = page_bytes {
        let width = batch.column(0).get_array_memory_size() / batch.num_rows().max(1);
        props = props
            .set_data_page_size_limit(p)
            .set_write_batch_size((p / width.max(1)).max(1));
    }
    let props = props
        .set_compression(compression)
        .set_encoding(Encoding::PLAIN)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(65_536))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    Bytes::from(buf)
}

/// Best of 5 full decodes in batches of `batch` rows; returns seconds.
fn decode(bytes: &Bytes, convert: bool, batch: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .with_batch_size(batch)
            .build()
            .unwrap();
        let mut rows = 0;
        for b in reader {
            let col = b.unwrap().column(0).clone();
            let col = if convert {
                quiver::storage::from_stored(&col, &arrow::datatypes::DataType::Float32).unwrap()
            } else {
                col
            };
            rows += std::hint::black_box(col).len();
        }
        std::hint::black_box(rows);
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let mut results = common::Results::new("decode");
    for (n, dim) in [(1_000_000usize, 128usize), (200_000, 768)] {
        let mut seed = 7u64;
        let values = Float32Array::from_iter_values((0..n * dim).map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }));
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(
            vector_item_field(),
            dim as i32,
            Arc::new(values),
            None,
        ));
        let gb = (n * dim * 4) as f64 / 1e9;
        let field = Field::new("embedding", list.data_type().clone(), true);
        let as_list = RecordBatch::try_new(
            Arc::new(Schema::new(vec![field.clone()])),
            vec![list.clone()],
        )
        .unwrap();
        let stored_field = quiver::storage::stored_field(&field).unwrap();
        let as_binary = RecordBatch::try_new(
            Arc::new(Schema::new(vec![stored_field])),
            vec![quiver::storage::to_stored(&list).unwrap()],
        )
        .unwrap();
        // Gathering every other vector out of a decoded chunk (a 50% filter).
        let idx: Vec<u32> = (0..n as u32).step_by(2).collect();
        let best = |f: &dyn Fn() -> ArrayRef| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(f());
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        let take_s = best(&|| {
            arrow::compute::take(
                list.as_ref(),
                &arrow::array::UInt32Array::from(idx.clone()),
                None,
            )
            .unwrap()
        });
        let gather_s = best(&|| quiver::storage::gather(&list, &idx).unwrap());
        println!(
            "gather {} of {n} x {dim}: arrow take {:.1} ms, quiver gather {:.1} ms (time ratio {:.2})",
            idx.len(),
            take_s * 1e3,
            gather_s * 1e3,
            gather_s / take_s
        );
        results.record(&[
            ("rows", json!(n)),
            ("dim", json!(dim)),
            ("case", json!("gather half")),
            ("arrow_take_ms", json!(take_s * 1e3)),
            ("quiver_gather_ms", json!(gather_s * 1e3)),
            ("time_ratio", json!(gather_s / take_s)),
        ]);
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).unwrap());
        // Two batch sizes: 8192 rows (DataFusion's batch size, what a scan
        // decodes; the allocator reuses the memory of dropped batches) and a
        // whole 64Ki-row group at once (what filling the decoded cache
        // does: every batch is fresh memory, so first-touch page faults
        // count too).
        for batch in [8192, 65_536] {
            let list_zstd = decode(&encode(&as_list, zstd, None), false, batch);
            let list_plain = decode(
                &encode(&as_list, Compression::UNCOMPRESSED, None),
                false,
                batch,
            );
            // As quiver writes it: ~64 KiB pages.
            let binary_plain = decode(
                &encode(&as_binary, Compression::UNCOMPRESSED, Some(64 * 1024)),
                true,
                batch,
            );
            println!(
                "decode {n} x {dim} ({gb:.2} GB) in {batch}-row batches: FixedSizeList zstd {:.2} GB/s; \
                 FixedSizeList plain {:.2} GB/s (time ratio {:.2}); \
                 quiver FixedSizeBinary plain {:.2} GB/s (time ratio {:.2})",
                gb / list_zstd,
                gb / list_plain,
                list_plain / list_zstd,
                gb / binary_plain,
                binary_plain / list_zstd,
            );
            for (layout, secs) in [
                ("FixedSizeList zstd", list_zstd),
                ("FixedSizeList plain", list_plain),
                ("quiver FixedSizeBinary plain", binary_plain),
            ] {
                results.record(&[
                    ("rows", json!(n)),
                    ("dim", json!(dim)),
                    ("case", json!("decode")),
                    ("batch_rows", json!(batch)),
                    ("layout", json!(layout)),
                    ("gbps", json!(gb / secs)),
                    ("time_ratio", json!(secs / list_zstd)),
                ]);
            }
        }
    }
    results.save();
}
