"""Approximate top-10: quiver's indexes against faiss with the same type
and parameters, on the same data, in the same run.

Data: clustered synthetic vectors (ROWS x 128, default 1M, drawn around 1,000 overlapping
centres), 200 queries near the data; ground truth from faiss IndexFlatL2.
Per index type (KINDS, default all three), the index is built, measured and
dropped before the next:
- `ivf` against faiss IndexIVFFlat, `ivf_sq8` against IndexIVFScalarQuantizer
  (QT_8bit), both with the same lists (the square root of the rows) and
  probes; `hnsw` against IndexHNSWFlat (and hnswlib, when installed) with
  M = 16, ef_construction = 200, over the same ef_search values;
- build: quiver's `CREATE INDEX ... WITH (wait = true)` (training, the file
  written and committed) against faiss train + add;
- per setting (`SET quiver.ivf_probes = P` / `nprobe`, `SET
  quiver.hnsw_ef_search = E` / `efSearch`): recall@10 against exact and p50
  latency, quiver over Flight SQL (ADBC, as an application sends it) and
  faiss in process (2 threads);
- the same index built and searched in process (`benches/ann_index.rs`, one
  query at a time on one thread, the candidates re-ranked from the vectors
  in memory as a query does), for the figure compared with faiss in
  process;
- quiver's exact search over Flight SQL (`SET quiver.vector_search = exact`),
  for the speedup;
- a 10%-selective filter at the default settings: recall and p50;
- LanceDB (pip `lancedb`, in process) with the matching index type
  (IVF_FLAT, IVF_SQ with refine_factor 4, IVF_HNSW_FLAT with one partition)
  over the same settings, and 8-client throughput: quiver over Flight SQL (8
  connections) against LanceDB (8 threads on one table), each at its lowest
  setting with recall@10 >= 0.95.

Run (release binary; faiss from benches/requirements.txt):
    cargo build --release
    .venv/bin/pip install -r benches/requirements.txt   # faiss-cpu, hnswlib, lancedb
    .venv/bin/python benches/ann.py          # ROWS=200000 for a quick run

Results go to docs/bench/ann.json (RESULTS_DIR to change). The in-process
part runs `cargo bench --bench ann_index` (ANN_INDEX_BIN: a built one).
"""

import json
import os
import pathlib
import statistics
import subprocess
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
EF_SEARCH = [16, 32, 64, 128, 256]
M, EF_CONSTRUCTION = 16, 200
KINDS = os.environ.get("KINDS", "ivf,ivf_sq8,hnsw").split(",")


def literal(q):
    return "[" + ", ".join(f"{float(x):.9g}" for x in q) + "]"


def clustered(n, dim, centres, rng):
    c = rng.standard_normal((centres, dim)).astype(np.float32) * 0.8
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, dim)).astype(np.float32)).astype(np.float32)


def recall(got, truth):
    return np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth)])


def faiss_index(kind, lists):
    import faiss

    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, lists)
    if kind == "ivf_sq8":
        return faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(DIM), DIM, lists, faiss.ScalarQuantizer.QT_8bit)
    index = faiss.IndexHNSWFlat(DIM, M)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    return index


def set_param(kind, index, value):
    if kind == "hnsw":
        index.hnsw.efSearch = value
    else:
        index.nprobe = value


def in_process(kind, lists, values, data_dir):
    """quiver's index built and searched in process (benches/ann_index.rs)."""
    env = dict(os.environ, ANN_DIR=str(data_dir), ANN_DIM=str(DIM), ANN_K=str(K), ANN_KIND=kind,
               ANN_VALUES=",".join(str(v) for v in values), ANN_THREADS="2")
    if kind == "hnsw":
        env.update(ANN_M=str(M), ANN_EF_CONSTRUCTION=str(EF_CONSTRUCTION))
    else:
        env["ANN_LISTS"] = str(lists)
    cmd = [os.environ["ANN_INDEX_BIN"]] if "ANN_INDEX_BIN" in os.environ else \
        ["cargo", "bench", "--quiet", "--bench", "ann_index"]
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


LANCE_TYPES = {"ivf": "IVF_FLAT", "ivf_sq8": "IVF_SQ", "hnsw": "IVF_HNSW_FLAT"}
CLIENTS, THROUGHPUT_S = 8, 5.0


def lance_build(tbl, kind, lists):
    t = time.perf_counter()
    if kind == "hnsw":
        tbl.create_index(metric="l2", vector_column_name="embedding", index_type="IVF_HNSW_FLAT",
                         num_partitions=1, m=M, ef_construction=EF_CONSTRUCTION, replace=True)
    else:
        tbl.create_index(metric="l2", vector_column_name="embedding", index_type=LANCE_TYPES[kind],
                         num_partitions=lists, replace=True)
    return time.perf_counter() - t


def lance_search(tbl, kind, value, q):
    b = tbl.search(q, vector_column_name="embedding").limit(K).select(["id", "_distance"])
    b = b.ef(value) if kind == "hnsw" else b.nprobes(value)
    if kind == "ivf_sq8":
        b = b.refine_factor(4)
    return b.to_arrow().column("id").to_pylist()


def throughput(make_search, queries):
    """Queries/s of CLIENTS threads, each with its own `make_search()`,
    for THROUGHPUT_S seconds."""
    import threading

    searches = [make_search() for _ in range(CLIENTS)]
    counts = [0] * CLIENTS
    stop = time.monotonic() + THROUGHPUT_S

    def worker(i):
        j = i
        while time.monotonic() < stop:
            searches[i](queries[j % len(queries)])
            counts[i] += 1
            j += CLIENTS

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - t)


def lowest_at(rows, key, floor=0.95):
    """The first setting whose recall `key` reaches `floor` (else the last)."""
    return next((row for row in rows if row[key] >= floor), rows[-1])


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

    results = {"rows": ROWS, "dim": DIM, "k": K, "queries": QUERIES, "lists": lists,
               "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "kinds": {}}
    table = pa.table({
        "id": pa.array(np.arange(ROWS, dtype=np.int64)),
        "bucket": pa.array(bucket),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
    })
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = pathlib.Path(tmp) / "vectors"
        data_dir.mkdir()
        emb.astype("<f4").tofile(data_dir / "base.f32")
        queries.astype("<f4").tofile(data_dir / "queries.f32")
        try:
            import lancedb

            lance = lancedb.connect(str(pathlib.Path(tmp) / "lance")).create_table("s", data=table)
        except ImportError:
            lance = None
        server = Server(pathlib.Path(tmp) / "data", ["--compact-interval", "0s", "--gc-interval", "0s"]).start()
        try:
            with server.connect() as conn, conn.cursor() as cur:
                cur.adbc_ingest("s", table.to_reader(max_chunksize=16_384), mode="create")
                cur.execute("SELECT count(*) FROM s")
                cur.fetchall()

                def sql(text):
                    cur.execute(text)
                    cur.fetchall()

                def run(where=""):
                    ids, times = [], []
                    for q in queries:
                        text = f"SELECT id FROM s{where} ORDER BY l2_distance(embedding, {literal(q)}) LIMIT {K}"
                        t = time.perf_counter()
                        cur.execute(text)
                        got = cur.fetch_arrow_table().column("id").to_pylist()
                        times.append(time.perf_counter() - t)
                        ids.append(got)
                    return ids, statistics.median(times)

                sql("SET quiver.vector_search = exact")
                run()  # warm the caches
                exact_ids, exact_p50 = run()
                results["quiver_exact_flight_p50_ms"] = exact_p50 * 1e3
                print(f"exact over Flight SQL: p50 {exact_p50 * 1e3:.2f} ms, recall {recall(exact_ids, truth):.3f}")
                sql("SET quiver.vector_search = auto")
                for kind in KINDS:
                    out = results["kinds"][kind] = {"settings": []}
                    values = EF_SEARCH if kind == "hnsw" else PROBES
                    local = in_process(kind, lists, values, data_dir)
                    out["in_process_build_s"] = local["build_s"]
                    out["in_process_bytes"] = local["bytes"]
                    out["build_peak_rss_over_input_bytes"] = local["build_peak_rss_over_input_bytes"]
                    print(f"{kind}: build peak memory over its input {local['build_peak_rss_over_input_bytes'] / 2**20:.0f} MiB "
                          f"(input {local['input_bytes'] / 2**20:.0f} MiB), file {local['bytes'] / 2**20:.0f} MiB")
                    t = time.perf_counter()
                    index = faiss_index(kind, lists)
                    index.train(emb)
                    index.add(emb)
                    out["faiss_build_s"] = time.perf_counter() - t
                    with_ = f"lists = {lists}" if kind != "hnsw" else f"m = {M}, ef_construction = {EF_CONSTRUCTION}"
                    t = time.perf_counter()
                    sql(f"CREATE INDEX s_{kind} ON s USING {kind} (embedding) WITH ({with_}, wait = true)")
                    out["quiver_build_s"] = time.perf_counter() - t
                    print(f"{kind}: {ROWS:,} x {DIM} ({with_}): build quiver {out['quiver_build_s']:.1f} s "
                          f"(in process {local['build_s']:.1f} s), faiss {out['faiss_build_s']:.1f} s "
                          f"({out['quiver_build_s'] / out['faiss_build_s']:.2f}x; in process "
                          f"{local['build_s'] / out['faiss_build_s']:.2f}x)")
                    if lance is not None:
                        out["lancedb_build_s"] = lance_build(lance, kind, lists)
                        print(f"  LanceDB {LANCE_TYPES[kind]} build {out['lancedb_build_s']:.1f} s")
                    if kind == "hnsw":
                        try:
                            import hnswlib

                            t = time.perf_counter()
                            h = hnswlib.Index(space="l2", dim=DIM)
                            h.init_index(max_elements=ROWS, M=M, ef_construction=EF_CONSTRUCTION)
                            h.set_num_threads(2)
                            h.add_items(emb)
                            out["hnswlib_build_s"] = time.perf_counter() - t
                            print(f"  hnswlib build {out['hnswlib_build_s']:.1f} s")
                        except ImportError:
                            h = None
                    setting = "quiver.hnsw_ef_search" if kind == "hnsw" else "quiver.ivf_probes"
                    print(f"{setting:>22} {'flight recall':>13} {'p50 ms':>8} {'in-proc recall':>14} {'p50 ms':>8} "
                          f"{'faiss recall':>12} {'p50 ms':>8} {'flight/faiss':>12} {'in-proc/faiss':>13} {'vs exact':>9}")
                    for value, mine in zip(values, local["values"]):
                        sql(f"SET {setting} = {value}")
                        run()
                        ids, p50 = run()
                        set_param(kind, index, value)
                        ftimes, fids = [], []
                        for q in queries:
                            t = time.perf_counter()
                            _, I = index.search(q[None, :], K)
                            ftimes.append(time.perf_counter() - t)
                            fids.append(I[0].tolist())
                        fp50 = statistics.median(ftimes)
                        row = {"value": value, "quiver_recall": recall(ids, truth), "quiver_flight_p50_ms": p50 * 1e3,
                               "in_process_recall": recall(mine["ids"], truth), "in_process_p50_ms": mine["p50_ms"],
                               "faiss_recall": recall(fids, truth), "faiss_p50_ms": fp50 * 1e3}
                        if kind == "hnsw" and h is not None:
                            h.set_ef(value)
                            htimes, hids = [], []
                            for q in queries:
                                t = time.perf_counter()
                                labels, _ = h.knn_query(q[None, :], k=K)
                                htimes.append(time.perf_counter() - t)
                                hids.append(labels[0].tolist())
                            row["hnswlib_recall"] = recall(hids, truth)
                            row["hnswlib_p50_ms"] = statistics.median(htimes) * 1e3
                            print(f"{'':>22} hnswlib: recall {row['hnswlib_recall']:.3f}, p50 {row['hnswlib_p50_ms']:.3f} ms")
                        if lance is not None:
                            lance_search(lance, kind, value, queries[0])
                            ltimes, lids = [], []
                            for q in queries:
                                t = time.perf_counter()
                                lids.append(lance_search(lance, kind, value, q))
                                ltimes.append(time.perf_counter() - t)
                            row["lancedb_recall"] = recall(lids, truth)
                            row["lancedb_p50_ms"] = statistics.median(ltimes) * 1e3
                            print(f"{'':>22} LanceDB {LANCE_TYPES[kind]}: recall {row['lancedb_recall']:.3f}, "
                                  f"p50 {row['lancedb_p50_ms']:.3f} ms")
                        out["settings"].append(row)
                        print(f"{value:>22} {row['quiver_recall']:>13.3f} {p50 * 1e3:>8.2f} "
                              f"{row['in_process_recall']:>14.3f} {mine['p50_ms']:>8.3f} {row['faiss_recall']:>12.3f} "
                              f"{fp50 * 1e3:>8.3f} {p50 / fp50:>11.2f}x {mine['p50_ms'] / (fp50 * 1e3):>12.2f}x "
                              f"{exact_p50 / p50:>8.1f}x")
                    sql(f"SET {setting} = 0")
                    ids, p50 = run(" WHERE bucket < 100")
                    _, un50 = run()
                    out["filtered_10pct"] = {"recall": recall(ids, truth10), "p50_ms": p50 * 1e3,
                                             "unfiltered_p50_ms": un50 * 1e3}
                    print(f"  10% filter at the defaults: recall {recall(ids, truth10):.3f}, p50 {p50 * 1e3:.2f} ms "
                          f"({p50 / un50:.2f}x the unfiltered {un50 * 1e3:.2f} ms)")
                    if lance is not None:
                        mine = lowest_at(out["settings"], "quiver_recall")
                        theirs = lowest_at(out["settings"], "lancedb_recall")
                        conns = []

                        def quiver_search(value=mine["value"]):
                            c = server.connect()
                            conns.append(c)
                            k = c.cursor()
                            k.execute(f"SET {setting} = {value}")
                            k.fetchall()

                            def go(q):
                                k.execute(f"SELECT id FROM s ORDER BY l2_distance(embedding, {literal(q)}) LIMIT {K}")
                                k.fetch_arrow_table()
                            return go

                        q_qps = throughput(quiver_search, queries)
                        for c in conns:
                            c.close()
                        l_qps = throughput(lambda: (lambda q: lance_search(lance, kind, theirs["value"], q)), queries)
                        out["throughput_8_clients"] = {
                            "quiver_flight_qps": q_qps, "quiver_setting": mine["value"],
                            "quiver_recall": mine["quiver_recall"],
                            "lancedb_qps": l_qps, "lancedb_setting": theirs["value"],
                            "lancedb_recall": theirs["lancedb_recall"]}
                        print(f"  {CLIENTS} clients at recall >= 0.95: quiver over Flight SQL {q_qps:.0f} q/s "
                              f"({setting} = {mine['value']}, recall {mine['quiver_recall']:.3f}), LanceDB {l_qps:.0f} q/s "
                              f"({theirs['value']}, recall {theirs['lancedb_recall']:.3f}): {q_qps / l_qps:.2f}x")
                    sql(f"DROP INDEX s_{kind}")
                    del index
        finally:
            server.stop()
    out = pathlib.Path(os.environ.get("RESULTS_DIR", ROOT / "docs" / "bench")) / "ann.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
