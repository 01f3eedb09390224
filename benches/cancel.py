"""How fast a cancel stops a CPU-bound query, and how light queries fare
while heavy ones run: quiver with time slices (the default) against the
same binary with `--time-slices false`, in the same run, over ADBC.

For each heavy query (a cross join aggregated to one row; a nested-loop
join whose filter keeps no pair) and each server:
- cancel latency: the query runs for a second, the client calls
  `adbc_cancel()`, and the server's CPU use (from /proc, sampled every
  10 ms) is watched until it falls below 10% of one core for 50 ms; the
  time from the cancel to the start of that quiet stretch is reported;
- light-query latency: while another client runs the heavy query, one
  client runs `SELECT 1` (and a 10-row table scan) 30 times; p50 / p99.

Run (release binary):
    cargo build --release
    .venv/bin/python benches/cancel.py
Results also go to docs/bench/cancel.json (RESULTS_DIR to change).
"""

import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
os.environ.setdefault(
    "QUIVER_BIN",
    str(pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "quiver"),
)
from conftest import Server  # noqa: E402

HEAVY = {
    "cross join": "SELECT sum(a.value * b.value) FROM range(0, 60000) a, range(0, 60000) b",
    "nested-loop join": (
        "SELECT count(*) FROM range(0, 100000) a JOIN range(0, 100000) b ON a.value > b.value * 3 + 1000000"
    ),
}
LIGHT = {"SELECT 1": "SELECT 1", "10-row scan": "SELECT * FROM small ORDER BY id"}
RUNS = 30
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def quiet_after(pid, t0, limit=20.0):
    """Seconds from t0 until the process uses under 10% of a core for 50 ms."""
    samples = []
    while time.monotonic() - t0 < limit:
        samples.append((time.monotonic(), cpu_seconds(pid)))
        # The last 50 ms (6 samples at 10 ms)
        if len(samples) >= 6:
            (ta, ca), (tb, cb) = samples[-6], samples[-1]
            if (cb - ca) / (tb - ta) < 0.10:
                return ta - t0
        time.sleep(0.01)
    return float("inf")


def cancel_latency(server, sql):
    conn = server.connect()
    cur = conn.cursor()
    done = threading.Event()

    def run():
        try:
            cur.execute(sql)
            cur.fetchall()
        except Exception:
            pass
        done.set()

    th = threading.Thread(target=run)
    th.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    cur.adbc_cancel()
    latency = quiet_after(server.proc.pid, t0)
    done.wait(30)
    th.join(30)
    try:
        cur.close()
        conn.close()
    except Exception:
        pass
    return latency


def light_latency(server, heavy_sql, light_sql):
    stop = threading.Event()

    def load():
        with server.connect() as c:
            while not stop.is_set():
                with c.cursor() as cur:
                    try:
                        cur.execute(heavy_sql)
                        cur.fetchall()
                    except Exception:
                        pass

    th = threading.Thread(target=load)
    th.start()
    time.sleep(1.0)
    times = []
    with server.connect() as c, c.cursor() as cur:
        for _ in range(RUNS):
            t = time.perf_counter()
            cur.execute(light_sql)
            cur.fetchall()
            times.append((time.perf_counter() - t) * 1e3)
    stop.set()
    # The heavy query in flight finishes or is cut by the timeout.
    th.join(120)
    s = sorted(times)
    return statistics.median(s), s[int(round(0.99 * (len(s) - 1)))]


def main():
    results = {"runs": RUNS, "heavy": HEAVY, "servers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, args in [("time slices", []), ("--time-slices false", ["--time-slices", "false"])]:
            server = Server(pathlib.Path(tmp) / label.replace(" ", "_"), ["--query-timeout", "60s", *args]).start()
            try:
                with server.connect() as c, c.cursor() as cur:
                    cur.execute("CREATE TABLE small (id BIGINT NOT NULL, v VARCHAR, PRIMARY KEY (id))")
                    cur.execute("INSERT INTO small SELECT value, 'x' FROM generate_series(1, 10)")
                out = {}
                for name, sql in HEAVY.items():
                    out[name] = {"cancel_s": cancel_latency(server, sql)}
                    for lname, lsql in LIGHT.items():
                        p50, p99 = light_latency(server, sql, lsql)
                        out[name][lname] = {"p50_ms": p50, "p99_ms": p99}
                    print(label, name, json.dumps(out[name]), flush=True)
                results["servers"][label] = out
            finally:
                server.stop()
    on, off = results["servers"]["time slices"], results["servers"]["--time-slices false"]
    print("\nratios (time slices / --time-slices false):")
    for name in HEAVY:
        c_on, c_off = on[name]["cancel_s"], off[name]["cancel_s"]
        print(f"  {name}: cancel to idle {c_on * 1e3:.0f} ms vs {c_off * 1e3:.0f} ms ({c_on / c_off:.3f})")
        for lname in LIGHT:
            a, b = on[name][lname]["p50_ms"], off[name][lname]["p50_ms"]
            pa99, pb99 = on[name][lname]["p99_ms"], off[name][lname]["p99_ms"]
            print(f"  {name}, {lname}: p50 {a:.1f} vs {b:.1f} ms ({a / b:.3f}); p99 {pa99:.1f} vs {pb99:.1f} ms")
    out_dir = pathlib.Path(os.environ.get("RESULTS_DIR", ROOT / "docs" / "bench"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results["command"] = ".venv/bin/python benches/cancel.py"
    results["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out_dir / "cancel.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
