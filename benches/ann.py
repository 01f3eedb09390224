"""Approximate top-10: quiver's IVF index against faiss IndexIVFFlat with the
same lists and probes, on the same data, in the same run.

Data: clustered synthetic vectors (ROWS x 128, default 1M, drawn around 1,000 overlapping
centres), 200 queries near the data; ground truth from faiss IndexFlatL2.
Measured:
- build: quiver's `CREATE INDEX ... WITH (wait = true)` (k-means on a sample,
  assignment, the Arrow IPC file written and committed) against faiss
  train + add, with the same number of lists (the square root of the rows);
- per probes setting (`SET quiver.ivf_probes = P` / faiss `nprobe = P`):
  recall@10 against exact and p50 latency, quiver over Flight SQL (ADBC, as
  an application sends it) and faiss in process (2 threads);
- quiver's exact search over Flight SQL (`SET quiver.vector_search = exact`),
  for the speedup;
- a 10%-selective filter at the default probes: recall and p50.

Run (release binary; faiss from benches/requirements.txt):
    cargo build --release
    .venv/bin/pip install -r benches/requirements.txt
    .venv/bin/python benches/ann.py          # ROWS=200000 for a quick run

Results go to docs/bench/ann.json (RESULTS_DIR to change).
"""

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
os.environ.setdefault(
    "QUIVER_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "quiver"),
)
from conftest import Server  # noqa: E402

ROWS = int(os.environ.get("ROWS", 1_000_000))
DIM, K, QUERIES, CENTRES = 128, 10, 200, 1000
PROBES = [4, 8, 16, 32, 64, 128]


def literal(q):
    return "[" + ", ".join(f"{float(x):.9g}" for x in q) + "]"


def clustered(n, dim, centres, rng):
    c = rng.standard_normal((centres, dim)).astype(np.float32) * 0.8
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, dim)).astype(np.float32)).astype(np.float32)


def recall(got, truth):
    return np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth)])


def main():
    import faiss

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(0)
    emb = clustered(ROWS, DIM, CENTRES, rng)
    queries = (emb[rng.integers(0, ROWS, QUERIES)] + rng.standard_normal((QUERIES, DIM)).astype(np.float32) * 0.5)
    queries = queries.astype(np.float32)
    bucket = (np.arange(ROWS) % 1000).astype(np.int64)
    lists = int(round(ROWS ** 0.5))

    flat = faiss.IndexFlatL2(DIM)
    flat.add(emb)
    _, truth = flat.search(queries, K)
    sel = np.flatnonzero(bucket < 100)
    flat10 = faiss.IndexFlatL2(DIM)
    flat10.add(emb[sel])
    _, t10 = flat10.search(queries, K)
    truth10 = sel[t10]

    t = time.perf_counter()
    quantizer = faiss.IndexFlatL2(DIM)
    ivf = faiss.IndexIVFFlat(quantizer, DIM, lists)
    ivf.train(emb)
    ivf.add(emb)
    faiss_build = time.perf_counter() - t

    results = {"rows": ROWS, "dim": DIM, "k": K, "queries": QUERIES, "lists": lists,
               "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
               "faiss_build_s": faiss_build, "probes": []}
    table = pa.table({
        "id": pa.array(np.arange(ROWS, dtype=np.int64)),
        "bucket": pa.array(bucket),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
    })
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(pathlib.Path(tmp) / "data", ["--compact-interval", "0s", "--gc-interval", "0s"]).start()
        try:
            with server.connect() as conn, conn.cursor() as cur:
                cur.adbc_ingest("s", table.to_reader(max_chunksize=16_384), mode="create")
                cur.execute("SELECT count(*) FROM s")
                cur.fetchall()
                t = time.perf_counter()
                cur.execute(f"CREATE INDEX s_ivf ON s USING ivf (embedding) WITH (lists = {lists}, wait = true)")
                cur.fetchall()
                results["quiver_build_s"] = time.perf_counter() - t
                print(f"{ROWS:,} x {DIM}, {lists} lists: build quiver {results['quiver_build_s']:.1f} s, "
                      f"faiss train+add {faiss_build:.1f} s ({results['quiver_build_s'] / faiss_build:.2f}x)")

                def run(where=""):
                    ids, times = [], []
                    for q in queries:
                        sql = f"SELECT id FROM s{where} ORDER BY l2_distance(embedding, {literal(q)}) LIMIT {K}"
                        t = time.perf_counter()
                        cur.execute(sql)
                        got = cur.fetch_arrow_table().column("id").to_pylist()
                        times.append(time.perf_counter() - t)
                        ids.append(got)
                    return ids, statistics.median(times)

                cur.execute("SET quiver.vector_search = exact")
                cur.fetchall()
                run()  # warm the caches
                exact_ids, exact_p50 = run()
                results["quiver_exact_flight_p50_ms"] = exact_p50 * 1e3
                print(f"exact over Flight SQL: p50 {exact_p50 * 1e3:.2f} ms, recall {recall(exact_ids, truth):.3f}")
                cur.execute("SET quiver.vector_search = auto")
                cur.fetchall()
                print(f"{'probes':>6} {'quiver recall':>13} {'p50 ms':>8} {'faiss recall':>12} {'p50 ms':>8} "
                      f"{'vs faiss':>9} {'vs exact':>9}")
                for p in PROBES:
                    cur.execute(f"SET quiver.ivf_probes = {p}")
                    cur.fetchall()
                    run()
                    ids, p50 = run()
                    ivf.nprobe = p
                    ftimes, fids = [], []
                    for q in queries:
                        t = time.perf_counter()
                        _, I = ivf.search(q[None, :], K)
                        ftimes.append(time.perf_counter() - t)
                        fids.append(I[0].tolist())
                    fp50 = statistics.median(ftimes)
                    row = {"probes": p, "quiver_recall": recall(ids, truth), "quiver_flight_p50_ms": p50 * 1e3,
                           "faiss_recall": recall(fids, truth), "faiss_p50_ms": fp50 * 1e3}
                    results["probes"].append(row)
                    print(f"{p:>6} {row['quiver_recall']:>13.3f} {p50 * 1e3:>8.2f} {row['faiss_recall']:>12.3f} "
                          f"{fp50 * 1e3:>8.2f} {p50 / fp50:>8.2f}x {exact_p50 / p50:>8.1f}x")
                cur.execute("SET quiver.ivf_probes = 0")
                cur.fetchall()
                ids, p50 = run(" WHERE bucket < 100")
                _, un50 = run()
                results["filtered_10pct"] = {"recall": recall(ids, truth10), "p50_ms": p50 * 1e3,
                                             "unfiltered_p50_ms": un50 * 1e3}
                print(f"10% filter at the default probes: recall {recall(ids, truth10):.3f}, p50 {p50 * 1e3:.2f} ms "
                      f"({p50 / un50:.2f}x the unfiltered {un50 * 1e3:.2f} ms)")
        finally:
            server.stop()
    out = pathlib.Path(os.environ.get("RESULTS_DIR", ROOT / "docs" / "bench")) / "ann.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
