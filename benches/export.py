"""Bulk export over Flight SQL: how fast a 1 GB result reaches a client on
loopback, against a plain pyarrow.flight server streaming the same table from
memory, measured in the same run; and how much server memory a 10M-row
result takes while it streams (it must not sit whole in memory).

Part 1: 2M x 128-d float32 vectors + an int64 key (1.03 GB of Arrow data)
are ingested into quiver; the whole collection is then read (best of 3):
  - by ADBC (`cursor.fetch_arrow_table()`), the way pandas/polars read it;
  - by a pyarrow.flight client over Flight SQL (CommandStatementQuery);
  - baseline: the same table served by a plain pyarrow.flight server
    (a separate process, table in memory), read by the pyarrow.flight client.
Part 2: 10M rows (int64 key, float64, int32) are ingested; the server is
restarted with the chunk caches off, then `SELECT *` is consumed batch by
batch through ADBC while the server's peak RSS (VmHWM) is read before and
after; reported against the size of the result.

Run (release binary):
    cargo build --release
    .venv/bin/python benches/export.py
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
os.environ.setdefault(
    "QUIVER_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "quiver"),
)
from conftest import Server  # noqa: E402
from raw_flight import statement_query_descriptor  # noqa: E402

ROWS, DIM = 2_000_000, 128
RSS_ROWS = 10_000_000
RUNS = 3


def best(f):
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        nbytes = f()
        times.append(time.perf_counter() - t)
    return min(times), nbytes


def vmhwm_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


BASELINE_SERVER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    import pyarrow.flight as flight

    table = pa.ipc.open_file(pa.memory_map(sys.argv[1])).read_all()
    table = pa.Table.from_batches(table.combine_chunks().to_batches(max_chunksize=8192))

    class Server(flight.FlightServerBase):
        def do_get(self, context, ticket):
            return flight.RecordBatchStream(table)

    s = Server("grpc://127.0.0.1:0")
    print(s.port, flush=True)
    s.serve()
    """
)


def export_section(tmp: pathlib.Path):
    server = Server(tmp / "data").start()
    try:
        rng = np.random.default_rng(0)
        with server.connect() as conn, conn.cursor() as cur:
            step = 250_000
            for start in range(0, ROWS, step):
                emb = rng.standard_normal((step, DIM), dtype=np.float32)
                t = pa.table(
                    {
                        "id": pa.array(np.arange(start, start + step, dtype=np.int64)),
                        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
                    }
                )
                # The ADBC driver sends each record batch as one message and
                # refuses messages over 16 MiB.
                t = pa.Table.from_batches(t.to_batches(max_chunksize=16_384))
                cur.adbc_ingest("big", t, mode="create_append")
            sql = "SELECT id, embedding FROM big"

            def adbc_read():
                cur.execute(sql)
                return cur.fetch_arrow_table().nbytes

            adbc_read()  # warm the caches
            adbc_s, nbytes = best(adbc_read)
            cur.execute(sql)
            table = cur.fetch_arrow_table()

        host, port = server.uri.split("//")[1].split(":")
        client = flight.FlightClient(f"grpc://{host}:{port}")

        def pyarrow_read_quiver():
            info = client.get_flight_info(statement_query_descriptor(sql))
            return client.do_get(info.endpoints[0].ticket).read_all().nbytes

        pyarrow_read_quiver()
        pq_s, _ = best(pyarrow_read_quiver)

        ipc_path = tmp / "big.arrow"
        with pa.OSFile(str(ipc_path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        del table
        script = tmp / "baseline_server.py"
        script.write_text(BASELINE_SERVER)
        base = subprocess.Popen(
            [sys.executable, str(script), str(ipc_path)], stdout=subprocess.PIPE, text=True
        )
        try:
            port = int(base.stdout.readline())
            bclient = flight.FlightClient(f"grpc://127.0.0.1:{port}")

            def pyarrow_read_baseline():
                return bclient.do_get(flight.Ticket(b"all")).read_all().nbytes

            pyarrow_read_baseline()
            base_s, base_bytes = best(pyarrow_read_baseline)
        finally:
            base.kill()
            base.wait()
    finally:
        server.stop()
    gb = nbytes / 1e9
    print(f"export of {ROWS:,} x {DIM}-d rows ({gb:.2f} GB of Arrow data), best of {RUNS}:")
    print(f"  quiver -> ADBC fetch_arrow_table:        {adbc_s*1e3:7.0f} ms  {gb/adbc_s:5.2f} GB/s")
    print(f"  quiver -> pyarrow.flight (Flight SQL):   {pq_s*1e3:7.0f} ms  {gb/pq_s:5.2f} GB/s")
    print(
        f"  plain pyarrow.flight server -> client:   {base_s*1e3:7.0f} ms  {base_bytes/1e9/base_s:5.2f} GB/s"
    )
    print(f"  ratios (time): ADBC/baseline {adbc_s/base_s:.2f}, pyarrow.flight/baseline {pq_s/base_s:.2f}")


def rss_section(tmp: pathlib.Path):
    data = tmp / "rss"
    server = Server(data).start()
    rng = np.random.default_rng(1)
    try:
        with server.connect() as conn, conn.cursor() as cur:
            step = 1_000_000
            for start in range(0, RSS_ROWS, step):
                t = pa.table(
                    {
                        "id": pa.array(np.arange(start, start + step, dtype=np.int64)),
                        "x": pa.array(rng.random(step)),
                        "bucket": pa.array(rng.integers(0, 1000, step).astype(np.int32)),
                    }
                )
                t = pa.Table.from_batches(t.to_batches(max_chunksize=262_144))
                cur.adbc_ingest("wide", t, mode="create_append")
    finally:
        server.stop()
    server = Server(data, ["--cache-bytes", "0", "--vector-cache-bytes", "0"]).start()
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
            before = vmhwm_mb(server.proc.pid)
            t = time.perf_counter()
            cur.execute("SELECT * FROM wide")
            reader = cur.fetch_record_batch()
            rows = 0
            result_bytes = 0
            for batch in reader:
                rows += batch.num_rows
                result_bytes += batch.nbytes
            took = time.perf_counter() - t
            after = vmhwm_mb(server.proc.pid)
    finally:
        server.stop()
    assert rows == RSS_ROWS, rows
    print(
        f"{rows:,}-row result ({result_bytes/1e6:.0f} MB) streamed in {took:.2f} s: server peak RSS "
        f"{before:.0f} MB before, {after:.0f} MB after (+{after-before:.0f} MB, "
        f"{(after-before)/(result_bytes/1e6):.2f} x the result)"
    )


def main():
    with tempfile.TemporaryDirectory() as tmp:
        export_section(pathlib.Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        rss_section(pathlib.Path(tmp))


if __name__ == "__main__":
    main()
