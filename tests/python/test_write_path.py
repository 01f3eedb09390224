"""Upserts, deletes and read-your-writes through the real server and ADBC."""

import signal

import numpy as np
import pyarrow as pa

from test_end_to_end import count, fetch, literal, make_table, true_distances, vectors


def test_upsert_by_ingest_replaces_rows(conn):
    with conn.cursor() as cur:
        cur.adbc_ingest("ups", make_table(n=1_000, seed=1), mode="create")
        # Keys 500..1499: half of them exist and are replaced.
        newer = make_table(n=1_000, seed=2, id_offset=500)
        cur.adbc_ingest("ups", newer, mode="append")
    assert count(conn, "ups") == 1_500
    got = fetch(conn, "SELECT id, price FROM ups WHERE id BETWEEN 500 AND 999 ORDER BY id")
    np.testing.assert_array_equal(got.column("price").to_numpy(), newer.column("price").to_numpy()[:500])
    assert fetch(conn, "SELECT count(DISTINCT id) AS n FROM ups").column("n")[0].as_py() == 1_500


def test_delete_hides_rows_from_every_query(conn):
    table = make_table(n=5_000, seed=3)
    with conn.cursor() as cur:
        cur.adbc_ingest("dels", table, mode="create")
        cur.execute("DELETE FROM dels WHERE category = 'a' OR id < 100")
        deleted = cur.fetchone()[0]
    cat = np.asarray(table.column("category").to_pylist())
    ids = table.column("id").to_numpy()
    alive = ~((cat == "a") | (ids < 100))
    assert deleted == int((~alive).sum())
    # Read your writes: the very next query sees the delete.
    assert count(conn, "dels") == int(alive.sum())
    assert fetch(conn, "SELECT count(*) AS n FROM dels WHERE category = 'a'").column("n")[0].as_py() == 0
    # Top-k never returns deleted rows and still returns k rows.
    q = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    truth = true_distances("l2_distance", vectors(table), q)
    truth[~alive] = np.inf
    want = np.argsort(truth, kind="stable")[:10]
    got = fetch(conn, f"SELECT id, l2_distance(embedding, {literal(q)}) AS d FROM dels ORDER BY d LIMIT 10")
    assert got.num_rows == 10
    np.testing.assert_allclose(got.column("d").to_numpy(), truth[want], rtol=1e-4, atol=1e-4)
    assert set(got.column("id").to_pylist()) <= set(ids[alive].tolist())


def test_writes_survive_kill_9(fresh_server):
    fresh_server.start()
    with fresh_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("k9", make_table(n=1_000, seed=5), mode="create")
        cur.execute("DELETE FROM k9 WHERE id >= 900")
        cur.adbc_ingest("k9", make_table(n=10, seed=6, id_offset=0), mode="append")
        cur.execute("SELECT _ts FROM k9 WHERE id = 0")
        ts_before = cur.fetchone()[0]
    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    with fresh_server.connect() as conn, conn.cursor() as cur:
        assert count(conn, "k9") == 900
        cur.execute("SELECT _ts FROM k9 WHERE id = 0")
        assert cur.fetchone()[0] == ts_before
        # The clock never goes backwards across restarts.
        cur.adbc_ingest("k9", pa.table({"id": pa.array([0], pa.int64())}), mode="append")
        cur.execute("SELECT _ts FROM k9 WHERE id = 0")
        assert cur.fetchone()[0] > ts_before
