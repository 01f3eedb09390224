"""Queries per second against data size: exact unfiltered top-10 over
10k .. 1M x 128-d float32, quiver over Flight SQL (ADBC; 1 client, and 8
clients at once) next to faiss IndexFlatL2, numpy and DuckDB
(`array_distance` on a Parquet file of the same rows), all measured in the
same run on the same vectors and queries. Each size is its own collection in
one server; quiver's answers are checked against faiss first (which also
warms quiver's caches).

Run (release binary; faiss and DuckDB from benches/requirements.txt):
    cargo build --release
    .venv/bin/pip install -r benches/requirements.txt
    .venv/bin/python benches/scale.py        # SIZES=10000,100000 to choose

Writes docs/bench/scale.json and scale.csv (RESULTS_DIR to change);
benches/charts.py renders qps_vs_size.svg from them.
"""

import csv
import json
import os
import pathlib
import sys
import tempfile
import threading
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

DIM, K = 128, 10
SIZES = [int(s) for s in os.environ.get("SIZES", "10000,30000,100000,300000,1000000").split(",")]
QUERIES = 20          # distinct query vectors, cycled
SECONDS = 3.0         # measuring time per engine and size (at least QUERIES queries)
CLIENTS = 8


def literal(q):
    return "[" + ", ".join(f"{x:.9g}" for x in q) + "]"


def qps(fn, queries, min_count=QUERIES, seconds=SECONDS):
    """Queries/s of `fn` over `queries`, for at least `min_count` calls and `seconds`."""
    n, t = 0, time.perf_counter()
    while n < min_count or time.perf_counter() - t < seconds:
        fn(queries[n % len(queries)])
        n += 1
    return n / (time.perf_counter() - t)


def main():
    import duckdb
    import faiss

    rng = np.random.default_rng(0)
    biggest = max(SIZES)
    emb_all = rng.standard_normal((biggest, DIM), dtype=np.float32)
    queries = rng.standard_normal((QUERIES, DIM), dtype=np.float32)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(pathlib.Path(tmp) / "data", ["--compact-interval", "0s", "--gc-interval", "0s"]).start()
        duck = duckdb.connect()
        try:
            print(f"unfiltered exact top-{K}, {DIM}-d float32, queries/s (higher is better)")
            for n in SIZES:
                emb = emb_all[:n]
                table = pa.table({
                    "id": pa.array(np.arange(n, dtype=np.int64)),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
                })
                parquet = f"{tmp}/v{n}.parquet"
                pq.write_table(table, parquet)
                index = faiss.IndexFlatL2(DIM)
                index.add(emb)
                norms = (emb * emb).sum(1)
                name = f"s{n}"
                with server.connect() as conn, conn.cursor() as cur:
                    cur.adbc_ingest(name, table.to_reader(max_chunksize=16_384), mode="create")

                    def sql(q):
                        return f"SELECT id, l2_distance(embedding, {literal(q)}) AS d FROM {name} ORDER BY d LIMIT {K}"

                    def quiver(q, cur=cur):
                        cur.execute(sql(q))
                        return cur.fetch_arrow_table().column("id").to_numpy()

                    for q in queries[:3]:
                        want = index.search(q[None, :], K)[1][0]
                        assert list(quiver(q)) == list(want), (n, quiver(q), want)
                    one = qps(quiver, queries)

                def client(counts, i):
                    with server.connect() as c, c.cursor() as k:
                        done, t = 0, time.perf_counter()
                        while done < QUERIES or time.perf_counter() - t < SECONDS:
                            k.execute(sql(queries[(i + done) % QUERIES]))
                            k.fetch_arrow_table()
                            done += 1
                        counts[i] = (done, time.perf_counter() - t)

                counts = [None] * CLIENTS
                threads = [threading.Thread(target=client, args=(counts, i)) for i in range(CLIENTS)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                eight = sum(d for d, _ in counts) / max(s for _, s in counts)

                fs = qps(lambda q: index.search(q[None, :], K), queries)

                def numpy_search(q):
                    d = norms - 2.0 * (emb @ q)
                    top = np.argpartition(d, K)[:K]
                    return top[np.argsort(d[top])]

                npy = qps(numpy_search, queries)
                dk = qps(lambda q: duck.execute(
                    f"SELECT id FROM read_parquet('{parquet}') "
                    f"ORDER BY array_distance(embedding::FLOAT[{DIM}], {literal(q)}::FLOAT[{DIM}]) LIMIT {K}"
                ).fetchnumpy(), queries, min_count=3, seconds=1.0)
                records.append({
                    "rows": n, "dim": DIM, "k": K,
                    "quiver_flight_qps": one, f"quiver_flight_{CLIENTS}_clients_qps": eight,
                    "faiss_qps": fs, "numpy_qps": npy, "duckdb_parquet_qps": dk,
                    "quiver_per_faiss_time": fs / one,
                })
                print(f"  {n:>9,}: quiver {one:8.1f} ({CLIENTS} clients {eight:8.1f})  faiss {fs:8.1f}  "
                      f"numpy {npy:8.1f}  duckdb(parquet) {dk:7.1f}  |  quiver/faiss time {fs / one:.2f}  "
                      f"quiver/duckdb time {dk / one:.3f}")
        finally:
            server.stop()
    doc = {"bench": "scale", "command": "python benches/scale.py", "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d"), "dim": DIM, "k": K, "records": records}
    out = pathlib.Path(os.environ.get("RESULTS_DIR", ROOT / "docs" / "bench"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    with open(out / "scale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    print(f"results written to {out / 'scale.json'} and scale.csv")


if __name__ == "__main__":
    main()
