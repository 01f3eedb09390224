"""Upserts, deletes and read-your-writes through the real server and ADBC."""

import signal

import numpy as np
import pyarrow as pa

from test_end_to_end import count, fetch, literal, make_table, true_distances, vectors

# The tests on the module server run on a local directory and on S3 (SeaweedFS).
BACKENDS = ("local", "s3")


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


def inspect(server, name):
    import json
    import subprocess

    from conftest import quiver_bin

    out = subprocess.run(
        [quiver_bin(), "inspect", "--data-dir", str(server.data_dir), name, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return json.loads(out.stdout)


def test_small_writes_go_through_the_log_and_are_flushed_on_shutdown(fresh_server):
    import subprocess

    from conftest import quiver_bin

    fresh_server.start()
    with fresh_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("logged", make_table(n=100, seed=7), mode="create")
        version = inspect(fresh_server, "logged")["version"]
        cur.adbc_ingest("logged", make_table(n=10, seed=8, id_offset=100), mode="append")
        cur.execute("DELETE FROM logged WHERE id < 5")
        assert count(conn, "logged") == 105
    # Acknowledged, in the growing segment behind the log: no new version.
    info = inspect(fresh_server, "logged")
    assert info["version"] == version
    assert (info["growing_rows"], info["growing_deletes"]) == (10, 5)
    assert info["wal_bytes"] > 0
    # The log belongs to the server: a second writer is turned away, a
    # query beside it reads the committed rows only.
    def cli_sql(sql):
        return subprocess.run(
            [quiver_bin(), "sql", "--data-dir", str(fresh_server.data_dir), sql],
            capture_output=True, text=True, timeout=60,
        )

    other = cli_sql("INSERT INTO logged (id) VALUES (9999)")
    assert other.returncode != 0
    assert "in use by another quiver process" in other.stderr
    reader = cli_sql("SELECT count(*) AS n FROM logged")
    assert reader.returncode == 0, reader.stderr
    assert " 100 " in reader.stdout and "committed data only" in reader.stderr
    # kill -9: replayed on restart.
    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    with fresh_server.connect() as conn:
        assert count(conn, "logged") == 105
    # A clean shutdown flushes: one new version, nothing left growing.
    assert fresh_server.stop() == 0
    info = inspect(fresh_server, "logged")
    assert info["version"] == version + 1
    assert (info["growing_rows"], info["growing_deletes"]) == (0, 0)
    assert info["visible_rows"] == 105
