"""Write-path figures, each as a ratio against a baseline measured in the
same run:

- ingest of 1M x 128-d float32 rows through ADBC into a running quiver
  server, against pyarrow writing the same table to one Parquet file (zstd):
  once as one call (a write that large is sealed into segments directly),
  once as 100 calls of 10k rows (each logged in the write-ahead log and
  fsynced before it is acknowledged; the server flushes in the background);
- filtered top-10 query latency on those 1M rows before and after deleting
  10% of them.

Run (builds the release binary first):
    cargo build --release && .venv/bin/python benches/write_path.py
"""

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
os.environ.setdefault(
    "QUIVER_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "quiver"),
)
from conftest import Server  # noqa: E402

ROWS, DIM = 1_000_000, 128


def main():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    table = pa.table(
        {
            "id": pa.array(np.arange(ROWS, dtype=np.int64)),
            "category": pa.array(np.array(["a", "b", "c", "d"])[rng.integers(0, 4, ROWS)]),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
        }
    )
    mb = table.nbytes / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        pq.write_table(table, f"{tmp}/baseline.parquet", compression="zstd")
        baseline = time.perf_counter() - t

        server = Server(pathlib.Path(tmp) / "data", ["--compact-interval", "0s", "--gc-interval", "0s"]).start()
        try:
            with server.connect() as conn, conn.cursor() as cur:
                t = time.perf_counter()
                cur.adbc_ingest("bench", table.to_reader(max_chunksize=16_384), mode="create")
                ingest = time.perf_counter() - t
                print(f"ingest 1M x {DIM}: quiver {ROWS / ingest:,.0f} rows/s ({mb / ingest:,.0f} MB/s) in {ingest:.2f} s; "
                      f"pyarrow write_table {ROWS / baseline:,.0f} rows/s in {baseline:.2f} s; "
                      f"quiver/pyarrow time ratio {ingest / baseline:.2f}")

                # The same rows again through the log: 100 appends of 10k rows
                # into a second collection, each acknowledged after fsync.
                step = 10_000
                t = time.perf_counter()
                cur.adbc_ingest("logged", table.slice(0, step), mode="create")
                for start in range(step, ROWS, step):
                    cur.adbc_ingest("logged", table.slice(start, step), mode="append")
                logged = time.perf_counter() - t
                cur.execute("SELECT count(*) FROM logged")
                assert cur.fetchone()[0] == ROWS
                print(f"ingest 1M x {DIM} as {ROWS // step} logged calls (fsync each): quiver {ROWS / logged:,.0f} rows/s "
                      f"({mb / logged:,.0f} MB/s) in {logged:.2f} s; quiver/pyarrow time ratio {logged / baseline:.2f}")

                q = "[" + ", ".join(f"{x:.6g}" for x in emb[7]) + "]"
                sql = f"SELECT id, l2_distance(embedding, {q}) AS d FROM bench WHERE category = 'b' ORDER BY d LIMIT 10"

                def latency():
                    samples = []
                    for _ in range(15):
                        t = time.perf_counter()
                        cur.execute(sql)
                        cur.fetchall()
                        samples.append(time.perf_counter() - t)
                    return statistics.median(samples)

                before = latency()
                t = time.perf_counter()
                cur.execute("DELETE FROM bench WHERE id % 10 = 0")
                deleted = cur.fetchone()[0]
                delete_s = time.perf_counter() - t
                after = latency()
                print(f"filtered top-10 p50: {before * 1e3:.1f} ms before, {after * 1e3:.1f} ms after deleting "
                      f"{deleted:,} rows (DELETE took {delete_s:.2f} s); after/before ratio {after / before:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
