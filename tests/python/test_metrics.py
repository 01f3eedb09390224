"""Prometheus metrics of a running server (`--metrics-listen`): a scrape
after queries and writes finds the counters moved; /health and /ready."""

import json
import re
import urllib.request

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import Server


def scrape(server):
    with urllib.request.urlopen(server.metrics_url, timeout=30) as r:
        assert r.status == 200
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def total(values, prefix):
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


@pytest.fixture()
def metered(tmp_path):
    s = Server(tmp_path / "d", ["--metrics-listen", "127.0.0.1:0", "--flush-bytes", "1"]).start()
    yield s
    s.stop()


def test_a_scrape_after_work_finds_the_counters_moved(metered):
    assert metered.metrics_url and re.match(r"http://127\.0\.0\.1:\d+/metrics", metered.metrics_url)
    base = metered.metrics_url.rsplit("/", 1)[0]
    for path, body in (("/health", "ok"), ("/ready", "ready")):
        with urllib.request.urlopen(base + path, timeout=30) as r:
            assert r.status == 200 and r.read().decode().strip() == body

    before = scrape(metered)
    with metered.connect() as c, c.cursor() as cur:
        t = pa.table({"id": pa.array(range(1000), pa.int64()),
                      "v": pa.array([[float(i), 1.0] for i in range(1000)], pa.list_(pa.float32(), 2))})
        cur.adbc_ingest("t", t, mode="create")
        for _ in range(3):
            # A cursor of its own prepares the statement again.
            with c.cursor() as each:
                each.execute("SELECT id FROM t ORDER BY l2_distance(v, [5, 1]) LIMIT 10")
                assert len(each.fetchall()) == 10
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute("SELECT nope FROM t")
    after = scrape(metered)

    def moved(name):
        return total(after, name) - total(before, name)

    assert moved("quiver_queries_total") >= 3
    assert moved("quiver_query_rows_total") >= 30
    assert moved("quiver_query_errors_total") >= 1
    assert moved("quiver_ingest_rows_total") == 1000
    assert moved("quiver_query_duration_seconds_count") >= 3
    # The same search prepared again found its optimized plan.
    assert moved('quiver_plan_cache_lookups_total{result="hit"}') >= 2
    # Three top-10 queries each read the 1,000 rows and their vectors.
    assert moved("quiver_scan_rows_total") == 3000
    assert moved("quiver_scan_bytes_total") >= 3 * 1000 * 2 * 4
    assert after['quiver_object_store_requests_total{operation="put"}'] > before.get(
        'quiver_object_store_requests_total{operation="put"}', 0)
    assert after['quiver_object_store_bytes_total{operation="put"}'] > 0
    assert after['quiver_collection_manifest_version{collection="t"}'] >= 1
    assert after['quiver_collection_rows{collection="t"}'] == 1000
    assert "quiver_cache_hits" in after and "quiver_wal_bytes" in after


def test_a_metrics_address_in_use_is_refused_naming_it(tmp_path, metered):
    taken = metered.metrics_url.split("/")[2]
    s = Server(tmp_path / "other", ["--metrics-listen", taken])
    with pytest.raises(RuntimeError) as e:
        s.start()
    assert f"cannot listen for metrics on {taken}" in str(e.value)


def test_slow_queries_are_logged_as_json_with_id_sql_and_plan(tmp_path):
    s = Server(tmp_path / "d", ["--log-format", "json", "--slow-query", "1ms"],
               env={"RUST_LOG": "quiver=info"}).start()
    try:
        with s.connect() as c, c.cursor() as cur:
            dim = 32
            t = pa.table({"id": pa.array(range(2000), pa.int64()),
                          "v": pa.array([[float(i % 7)] * dim for i in range(2000)], pa.list_(pa.float32(), dim))})
            cur.adbc_ingest("t", t, mode="create")
            literal = "[" + ", ".join(["0.5"] * dim) + "]"
            cur.execute(f"SELECT id, l2_distance(v, {literal}) AS d FROM t ORDER BY d, id LIMIT 5")
            assert len(cur.fetchall()) == 5
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute("SELECT nope FROM t")
    finally:
        s.stop()
    events = [json.loads(line) for line in s.stderr_lines if line.startswith("{")]
    assert events, "".join(s.stderr_lines[-5:])
    slow = [e for e in events if e["fields"].get("message") == "slow query"]
    assert slow, [e["fields"].get("message") for e in events]
    e = slow[-1]
    assert f"[{32} numbers]" in e["fields"]["sql"] and "0.5, 0.5" not in e["fields"]["sql"], e
    assert "Limit" in e["fields"]["plan"] or "Sort" in e["fields"]["plan"], e
    assert e["fields"]["rows"] == 5 and e["fields"]["ms"] >= 1
    assert e["span"]["name"] == "query" and isinstance(e["span"]["id"], int), e
    # Events inside a call carry the RPC's span with its method.
    failed = [e for e in events if e["fields"].get("message") == "statement failed"]
    assert failed, [e["fields"].get("message") for e in events]
    methods = [sp.get("method", "") for sp in failed[-1].get("spans", []) if sp["name"] == "rpc"]
    assert methods and methods[0].startswith("/arrow.flight.protocol.FlightService/"), failed[-1]


def test_query_phases_are_traced_under_the_query_id(tmp_path):
    """RUST_LOG=quiver=debug: planning, the scans, the fused top-k and the
    result stream each log an event in their own span (plan, scan, topk,
    stream), every one under the query's span with its id."""
    s = Server(tmp_path / "d", ["--log-format", "json"], env={"RUST_LOG": "quiver=debug"}).start()
    try:
        with s.connect() as c, c.cursor() as cur:
            t = pa.table({"id": pa.array(range(500), pa.int64()),
                          "v": pa.array([[float(i), 1.0] for i in range(500)], pa.list_(pa.float32(), 2))})
            cur.adbc_ingest("t", t, mode="create")
            cur.execute("SELECT id FROM t ORDER BY l2_distance(v, [5, 1]) LIMIT 10")
            assert len(cur.fetchall()) == 10
            cur.execute("SELECT id, v FROM t WHERE id < 100")
            assert len(cur.fetchall()) == 100
    finally:
        s.stop()
    events = [json.loads(line) for line in s.stderr_lines if line.startswith("{")]

    def in_phase(message, phase):
        out = []
        for e in events:
            if e["fields"].get("message") != message:
                continue
            spans = e.get("spans", [])
            names = [sp["name"] for sp in spans]
            if phase in names and "query" in names:
                out.append([sp for sp in spans if sp["name"] == "query"][0]["id"])
        return out

    # A query starts when its FlightInfo is made (planned inside
    # GetFlightInfo), and runs while the client turns round to DoGet.
    plan_rpcs = [[sp.get("method", "") for sp in e.get("spans", []) if sp["name"] == "rpc"]
                 for e in events if e["fields"].get("message") == "planned"]
    assert len(plan_rpcs) == 2 and all(r and r[0].endswith("/GetFlightInfo") for r in plan_rpcs), plan_rpcs
    # Each query's SQL is planned once: DoGet runs the query its FlightInfo started.
    sql_planned = [e for e in events if e["fields"].get("message") == "sql planned"]
    assert len(sql_planned) == 2, [e["fields"] for e in sql_planned]
    planned = in_phase("planned", "plan")
    topk = in_phase("top-k finished", "topk")
    scans = in_phase("scan finished", "scan")
    streams = in_phase("stream finished", "stream")
    assert len(set(planned)) >= 2, planned
    assert len(topk) == 1, [e["fields"] for e in events]
    assert topk[0] in scans, (topk, scans)
    # The second query streams its scan (no top-k); its id differs.
    assert len(set(scans)) == 2 and set(scans) <= set(planned), (scans, planned)
    assert set(streams) == set(scans), (streams, scans)
    finished = [e for e in events if e["fields"].get("message") == "stream finished"]
    assert sorted(e["fields"]["rows"] for e in finished)[-2:] == [10, 100], [e["fields"] for e in finished]
    assert all(e["fields"]["scanned_rows"] >= 100 for e in finished[-2:]), [e["fields"] for e in finished]
