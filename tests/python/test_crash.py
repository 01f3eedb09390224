"""Crash test: the server is killed with SIGKILL at random points while a
client ingests batches. After each restart every acknowledged batch is
present, no batch is partly visible, and the store verifies.
"""

import json
import random
import signal
import subprocess
import threading
import time

import numpy as np
import pyarrow as pa

from conftest import Server, quiver_bin

RUNS = 20
BATCH = 200
DIM = 16


def batch(i):
    rng = np.random.default_rng(i)
    return pa.table(
        {
            "id": pa.array(np.arange(i * BATCH, (i + 1) * BATCH, dtype=np.int64)),
            "batch": pa.array(np.full(BATCH, i, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(BATCH * DIM, dtype=np.float32)), DIM
            ),
        }
    )


def ingest_until_killed(server, start, acked, stop):
    """Ingests batches start, start+1, ... recording each acknowledgement."""
    i = start
    try:
        with server.connect() as conn, conn.cursor() as cur:
            while not stop.is_set() and i < start + 10_000:
                cur.adbc_ingest("crash", batch(i), mode="create_append")
                acked.append(i)
                i += 1
    except Exception:
        pass  # the server went away mid-call


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path):
    rnd = random.Random(20261122)
    data = tmp_path / "data"
    server = Server(data)
    acked_all = []
    maybe = set()  # batches in flight at a kill: either whole or absent
    next_batch = 0
    try:
        for run in range(RUNS):
            server.start()
            acked, stop = [], threading.Event()
            t = threading.Thread(target=ingest_until_killed, args=(server, next_batch, acked, stop))
            t.start()
            time.sleep(rnd.uniform(0.05, 0.6))
            server.stop(signal.SIGKILL)
            stop.set()
            t.join(timeout=60)
            assert not t.is_alive()
            acked_all.extend(acked)
            # The batch in flight at the kill may or may not have landed.
            in_flight = next_batch + len(acked)
            maybe.add(in_flight)
            next_batch = in_flight + 1

            server.start()
            with server.connect() as conn, conn.cursor() as cur:
                try:
                    cur.execute("SELECT batch, count(*) AS n FROM crash GROUP BY batch")
                    counts = dict(cur.fetchall())
                except Exception:
                    assert not acked_all, "the collection vanished"
                    counts = {}
            server.stop(signal.SIGTERM)
            for b in acked_all:
                assert counts.get(b) == BATCH, f"run {run}: acknowledged batch {b} has {counts.get(b)} rows"
            for b, n in counts.items():
                assert n == BATCH, f"run {run}: batch {b} is partly visible ({n} rows)"
                assert b in acked_all or b in maybe, f"run {run}: unknown batch {b}"
            out = subprocess.run(
                [quiver_bin(), "inspect", "--data-dir", str(data), "--verify", "--json"],
                capture_output=True, text=True, timeout=120,
            )
            assert out.returncode == 0, out.stdout + out.stderr
            assert json.loads(out.stdout)["problems"] == []
        print(f"{len(acked_all)} batches acknowledged over {RUNS} kills, {len(maybe)} in flight at a kill")
        assert len(acked_all) > RUNS, "too few writes were acknowledged to mean anything"
    finally:
        server.stop(signal.SIGKILL)
