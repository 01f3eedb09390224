"""Limits through the real ADBC driver: cancelling a running query stops
the server's work, the server's query timeout and memory pool end runaway
queries with clear errors, oversized requests are refused, and the server
keeps serving after each."""

import os
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from conftest import Server

ENDLESS = "SELECT count(*) AS n FROM generate_series(1, 100000000000)"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu(pid, window=1.0):
    before = cpu_seconds(pid)
    time.sleep(window)
    return cpu_seconds(pid) - before


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    s = Server(
        tmp_path_factory.mktemp("limits"),
        [
            "--query-timeout", "3s",
            "--query-memory-bytes", str(4 << 20),
            "--max-request-bytes", str(1 << 20),
        ],
    ).start()
    yield s
    s.stop()


def cancel_while_running(server, sql, while_running):
    """Runs `sql` on one connection; once it is using CPU, calls
    `while_running()`, then cancels it: the query ends CANCELLED and the
    server goes idle."""
    conn = server.connect()
    cur = conn.cursor()
    out = {}

    def run():
        try:
            cur.execute(sql)
            out["rows"] = cur.fetchall()
        except Exception as e:  # the driver raises on cancel
            out["err"] = str(e)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.8)
    busy = busy_cpu(server.proc.pid, 0.5)
    assert busy > 0.2, f"the query did not seem to run ({busy:.2f} s CPU in 0.5 s)"
    while_running()
    cur.adbc_cancel()
    th.join(10)
    assert not th.is_alive()
    assert "CANCELLED" in out.get("err", ""), out
    time.sleep(0.5)
    idle = busy_cpu(server.proc.pid, 1.0)
    assert idle < 0.3, f"the server kept working after the cancel ({idle:.2f} s CPU in 1 s)"
    cur.close()
    conn.close()


def test_cancel_stops_the_servers_work(limited):
    before = thread_cpu_by_name(limited.proc.pid)

    def on_the_query_threads():
        # It runs on the query threads (`--query-threads`, one per core by
        # default), not on the threads serving requests.
        during = thread_cpu_by_name(limited.proc.pid)
        on_query = during.get("quiver-query", 0.0) - before.get("quiver-query", 0.0)
        elsewhere = sum(during.values()) - sum(before.values()) - on_query
        assert on_query > 0.5, (before, during)
        assert elsewhere < on_query / 2, (before, during)

    cancel_while_running(limited, ENDLESS, on_the_query_threads)
    with limited.connect() as c2, c2.cursor() as cur2:
        cur2.execute("SELECT 1")
        assert cur2.fetchone() == (1,)


def test_query_timeout_and_memory_pool(limited):
    with limited.connect() as conn, conn.cursor() as cur:
        t = time.monotonic()
        with pytest.raises(Exception, match="query-timeout 3s") as err:
            cur.execute(ENDLESS)
            cur.fetchall()
        assert "DeadlineExceeded" in str(err.value)
        assert time.monotonic() - t < 30
        with pytest.raises(Exception, match="Resources exhausted"):
            cur.execute(
                "SELECT count(*) FROM generate_series(1, 3000000) a "
                "JOIN generate_series(1, 3000000) b ON a.value = b.value"
            )
            cur.fetchall()
        cur.execute("SELECT count(*) FROM generate_series(1, 1000)")
        assert cur.fetchone() == (1000,)


def test_oversized_request_is_refused_and_nothing_is_stored(limited):
    with limited.connect() as conn, conn.cursor() as cur:
        small = pa.table({"id": pa.array([1, 2], pa.int64()), "x": [1.0, 2.0]})
        assert cur.adbc_ingest("capped", small, mode="create") == 2
        n = 20_000
        big = pa.table(
            {
                "id": pa.array(np.arange(10, 10 + n), pa.int64()),
                "x": pa.array(np.random.default_rng(1).random(n)),
                "pad": pa.array(["y" * 100] * n),
            }
        )
        with pytest.raises(Exception) as err:
            cur.adbc_ingest("capped", big.combine_chunks(), mode="create_append")
        msg = str(err.value)
        assert "message" in msg and ("larger than max" in msg or "too large" in msg), msg
        cur.execute("SELECT count(*) FROM capped")
        assert cur.fetchone() == (2,)


def thread_cpu_by_name(pid):
    """CPU seconds per thread name of process `pid`."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            out[name] = out.get(name, 0.0) + cpu_seconds(f"{pid}/task/{task}")
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return out


def test_queries_run_on_the_serving_threads_with_query_threads_0(tmp_path):
    s = Server(tmp_path / "d", ["--query-threads", "0"]).start()
    try:
        rng = np.random.default_rng(5)
        emb = rng.standard_normal((3000, 8), dtype=np.float32)
        table = pa.table({
            "id": pa.array(np.arange(3000, dtype=np.int64)),
            "v": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 8),
        })
        with s.connect() as conn, conn.cursor() as cur:
            cur.adbc_ingest("t", table, mode="create")
            q = emb[17] + 0.01
            cur.execute(f"SELECT id FROM t ORDER BY l2_distance(v, {list(map(float, q))}) LIMIT 3")
            want = np.argsort(((emb - q) ** 2).sum(axis=1), kind="stable")[:3]
            assert [r[0] for r in cur.fetchall()] == list(want)
        assert "quiver-query" not in thread_cpu_by_name(s.proc.pid)
    finally:
        assert s.stop() == 0


CROSS_JOIN = "SELECT sum(a.value * b.value) FROM range(0, 60000) a, range(0, 60000) b"


def test_cancelling_a_cross_join_stops_the_work_and_light_queries_stay_served(limited):
    """A query CPU-bound outside a scan (a cross join aggregated to one
    row) stops when the client cancels, and another client's SELECT 1 is
    answered while it runs (benches/cancel.py measures how fast)."""

    def light_queries():
        with limited.connect() as c2, c2.cursor() as cur2:
            for _ in range(3):
                cur2.execute("SELECT 1")
                assert cur2.fetchone() == (1,)

    cancel_while_running(limited, CROSS_JOIN, light_queries)


def test_functions_cannot_allocate_without_bound(limited):
    with limited.connect() as conn, conn.cursor() as cur:
        for sql in [
            "SELECT count(*) FROM (SELECT unnest(range(1, 300000000)))",
            "SELECT length(repeat('a', 2000000000))",
            "SELECT cardinality(array_repeat(1, 500000000))",
            "SELECT length(lpad('x', 2000000000, 'y'))",
        ]:
            with pytest.raises(Exception, match="over the limit"):
                cur.execute(sql)
                cur.fetchall()
        cur.execute("SELECT length(repeat('ab', 1000)), cardinality(range(1, 1001))")
        assert cur.fetchone() == (2000, 1000)


def test_vector_dimensions_are_bounded_and_zero_is_explained(tmp_path):
    s = Server(tmp_path / "d", ["--max-dimension", "1024"]).start()
    try:
        with s.connect() as conn, conn.cursor() as cur:
            with pytest.raises(Exception, match=r"column 'v' of collection 'huge' is a vector of dimension 100000000, above the limit of 1024 \(--max-dimension\)"):
                cur.execute("CREATE TABLE huge (id BIGINT NOT NULL, v FLOAT[100000000])")
            with pytest.raises(Exception, match="column 'v' of collection 'empty' is a vector of dimension 0; a vector needs at least one element"):
                cur.execute("CREATE TABLE empty (id BIGINT NOT NULL, v FLOAT[0])")
            wide = pa.table({
                "id": pa.array([1], pa.int64()),
                "v": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(2048, np.float32)), 2048),
            })
            with pytest.raises(Exception, match="dimension 2048, above the limit of 1024"):
                cur.adbc_ingest("wide", wide, mode="create")
            cur.execute("CREATE TABLE ok (id BIGINT NOT NULL, v FLOAT[1024])")
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            assert cur.fetchone() == (1,)
    finally:
        s.stop()
