"""quiver on a real S3 server (SeaweedFS on loopback): concurrent writer
processes committing to one collection."""

import json
import os
import random
import re
import subprocess
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import Server, quiver_bin

WRITERS, COMMITS = 8, 50


def manifest_versions(seaweed, prefix, collection):
    """Version numbers of the manifest objects, from S3 ListObjectsV2."""
    versions, token = [], None
    while True:
        query = {"list-type": "2", "prefix": f"{prefix}/{collection}/_manifest/"}
        if token:
            query["continuation-token"] = token
        url = f"{seaweed.endpoint}/{seaweed.BUCKET}?{urllib.parse.urlencode(query)}"
        body = urllib.request.urlopen(url, timeout=30).read().decode()
        versions += [int(v) for v in re.findall(r"<Key>[^<]*/_manifest/(\d+)\.json</Key>", body)]
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if not m:
            return sorted(versions)
        token = m.group(1)


def test_concurrent_writer_processes_commit_every_version_once(tmp_path, seaweed):
    url = seaweed.url()
    prefix = url.split("/", 3)[3]
    env = seaweed.env()
    # --flush-bytes 1: every write is sealed and committed on its own.
    args = ["--store", url, "--flush-bytes", "1", "--compact-interval", "0s", "--gc-interval", "0s"]
    first = Server(tmp_path / "w0", args, env=env).start()
    servers = [first]
    try:
        with first.connect() as c, c.cursor() as cur:
            cur.execute("CREATE TABLE c (id BIGINT NOT NULL, writer INT, PRIMARY KEY (id))")
        servers += [Server(tmp_path / f"w{i}", args, env=env).start() for i in range(1, WRITERS)]

        def write(i):
            acked, failures = [], []
            with servers[i].connect() as c, c.cursor() as cur:
                for j in range(COMMITS):
                    ids = [i * 10_000 + j * 2, i * 10_000 + j * 2 + 1]
                    t = pa.table({"id": pa.array(ids, pa.int64()), "writer": pa.array([i, i], pa.int32())})
                    # A failed write is reported to the client, which tries
                    # again (at most 3 times); only what succeeded is acknowledged.
                    for _attempt in range(3):
                        try:
                            cur.adbc_ingest("c", t, mode="append")
                            acked.append(ids)
                            break
                        except adbc_driver_manager.Error as e:
                            failures.append(str(e))
            return acked, failures

        with ThreadPoolExecutor(WRITERS) as pool:
            results = list(pool.map(write, range(WRITERS)))
    finally:
        for s in servers:
            s.stop()
    acked = [ids for a, _ in results for ids in a]
    failures = [f for _, fs in results for f in fs]
    print(f"{len(failures)} failed attempts (retried): {failures[:3]}")
    assert len(acked) == WRITERS * COMMITS, failures[:3]

    # One version for CREATE, one per acknowledged commit, numbered 1..N.
    versions = manifest_versions(seaweed, prefix, "c")
    assert versions == list(range(1, 2 + len(acked))), versions[:5]

    # A fresh reader sees every acknowledged row exactly once.
    reader = Server(tmp_path / "reader", ["--store", url], env=env).start()
    try:
        with reader.connect() as c, c.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT id) FROM c")
            n, distinct = cur.fetchone()
            cur.execute("SELECT id FROM c")
            got = {r[0] for r in cur.fetchall()}
    finally:
        reader.stop()
    want = {i for ids in acked for i in ids}
    assert n == distinct == len(want)
    assert got == want


def _keys(seaweed, prefix):
    query = urllib.parse.urlencode({"list-type": "2", "prefix": prefix})
    body = urllib.request.urlopen(f"{seaweed.endpoint}/{seaweed.BUCKET}?{query}", timeout=30).read().decode()
    return re.findall(r"<Key>([^<]+)</Key>", body)


def test_a_missing_segment_object_is_an_error_naming_it(tmp_path, seaweed):
    url = seaweed.url()
    prefix = url.split("/", 3)[3]
    s = Server(tmp_path / "d", ["--store", url, "--flush-bytes", "1"], env=seaweed.env()).start()
    try:
        with s.connect() as c, c.cursor() as cur:
            for name in ("a", "b"):
                t = pa.table({"id": pa.array(range(1000), pa.int64()), "x": pa.array([float(i) for i in range(1000)])})
                cur.adbc_ingest(name, t, mode="create")
            victim = next(k for k in _keys(seaweed, f"{prefix}/a/insert_log/") if k.endswith(".parquet"))
            req = urllib.request.Request(f"{seaweed.endpoint}/{seaweed.BUCKET}/{victim}", method="DELETE")
            urllib.request.urlopen(req, timeout=30)
        # A new connection and a fresh server (no cached blocks) both name the object.
        s.stop()
        s = Server(tmp_path / "d", ["--store", url], env=seaweed.env()).start()
        with s.connect() as c, c.cursor() as cur:
            name = victim.split("/", 1)[1]  # the path inside the store
            try:
                cur.execute("SELECT sum(x) FROM a")
                cur.fetchall()
                raise AssertionError("a query over a missing object succeeded")
            except adbc_driver_manager.Error as e:
                assert name in str(e), str(e)
            cur.execute("SELECT count(*) FROM b")
            assert cur.fetchone() == (1000,)
        # The top-k path reads footers itself: it says the object is missing.
        with s.connect() as c, c.cursor() as cur:
            cur.adbc_ingest("vec", pa.table({"id": pa.array([1, 2], pa.int64()),
                                             "v": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))}),
                            mode="create")
        s.stop()
        gone = next(k for k in _keys(seaweed, f"{prefix}/vec/insert_log/") if k.endswith(".parquet"))
        urllib.request.urlopen(
            urllib.request.Request(f"{seaweed.endpoint}/{seaweed.BUCKET}/{gone}", method="DELETE"), timeout=30
        )
        s = Server(tmp_path / "d", ["--store", url], env=seaweed.env()).start()
        with s.connect() as c, c.cursor() as cur:
            try:
                cur.execute("SELECT id FROM vec ORDER BY l2_distance(v, [1, 0]) LIMIT 1")
                cur.fetchall()
                raise AssertionError("a top-k over a missing object succeeded")
            except adbc_driver_manager.Error as e:
                assert gone.split("/", 1)[1] in str(e) and "does not have it" in str(e), str(e)
        assert s.alive()
    finally:
        s.stop()


def _object(seaweed, key, body=None):
    """GET (or PUT, with `body`) one object of the test bucket."""
    url = f"{seaweed.endpoint}/{seaweed.BUCKET}/{key}"
    if body is None:
        return urllib.request.urlopen(url, timeout=30).read()
    urllib.request.urlopen(urllib.request.Request(url, data=body, method="PUT"), timeout=30)


def _verify(url, seaweed, tmp_path):
    return subprocess.run(
        [quiver_bin(), "inspect", "--store", url, "--data-dir", str(tmp_path / "d"), "--verify", "--json"],
        capture_output=True, text=True, env={**os.environ, **seaweed.env()}, timeout=120,
    )


def test_flipped_bytes_on_s3_are_named_and_verify_lists_them_without_changing_anything(tmp_path, seaweed):
    url = seaweed.url()
    prefix = url.split("/", 3)[3]
    s = Server(tmp_path / "d", ["--store", url, "--flush-bytes", "1"], env=seaweed.env()).start()
    try:
        with s.connect() as c, c.cursor() as cur:
            for name in ("a", "b"):
                t = pa.table({"id": pa.array(range(2000), pa.int64()),
                              "v": pa.array([[float(i), 1.0] for i in range(2000)], pa.list_(pa.float32(), 2))})
                cur.adbc_ingest(name, t, mode="create")
            cur.execute("DELETE FROM a WHERE id < 10")
        s.stop()
        assert _verify(url, seaweed, tmp_path).returncode == 0

        keys = [k for k in _keys(seaweed, f"{prefix}/a/") if "/insert_log/" in k or "/delta_log/" in k]
        keys.append(max(k for k in _keys(seaweed, f"{prefix}/a/_manifest/")))
        rng = random.Random(11)
        for key in keys:
            original = _object(seaweed, key)
            damaged = bytearray(original)
            damaged[rng.randrange(len(damaged))] ^= 0x10
            _object(seaweed, key, bytes(damaged))
            name = key.split("/", 1)[1]  # the path inside the store
            try:
                # verify names the file, exits 1, and changes nothing.
                r = _verify(url, seaweed, tmp_path)
                assert r.returncode == 1, r.stdout + r.stderr
                problems = json.loads(r.stdout)["problems"]
                assert [p["path"] for p in problems] == [name], problems
                assert _object(seaweed, key) == bytes(damaged)
                # A fresh server refuses the damaged collection, naming the
                # file, and keeps answering the other one.
                s = Server(tmp_path / "d", ["--store", url], env=seaweed.env()).start()
                with s.connect() as c, c.cursor() as cur:
                    with pytest.raises(adbc_driver_manager.Error) as e:
                        cur.execute("SELECT id, v FROM a ORDER BY id")
                        cur.fetchall()
                    assert name in str(e.value), str(e.value)
                    cur.execute("SELECT count(*) FROM b")
                    assert cur.fetchone() == (2000,)
                    cur.execute("SELECT id FROM b ORDER BY l2_distance(v, [5, 1]) LIMIT 1")
                    assert cur.fetchone() == (5,)
                assert s.alive()
                s.stop()
            finally:
                _object(seaweed, key, original)
        assert _verify(url, seaweed, tmp_path).returncode == 0
    finally:
        s.stop()
