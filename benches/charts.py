"""Renders benchmark results (JSON written by the benchmarks) as SVG charts
in docs/bench/, for README:

- latency_vs_selectivity.svg (from search.json, `benches/search.py`): exact
  top-10 p50 latency against filter selectivity, quiver over Flight SQL next
  to faiss, numpy and DuckDB measured in the same run;
- throughput.svg: queries/s with 1 and 8 clients;
- qps_vs_size.svg (from scale.json, `benches/scale.py`): unfiltered top-10
  queries/s against the number of rows, quiver over Flight SQL (1 and 8
  clients) next to faiss, numpy and DuckDB measured in the same run.

Run: .venv/bin/python benches/charts.py   (RESULTS_DIR to read elsewhere)
"""

import json
import os
import pathlib

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIR = pathlib.Path(os.environ.get("RESULTS_DIR", ROOT / "docs" / "bench"))

SERIES = [
    ("quiver_flight_p50_ms", "quiver over Flight SQL (ADBC), p50"),
    ("faiss_ms", "faiss IndexFlatL2 in process"),
    ("numpy_ms", "numpy in process"),
    ("duckdb_parquet_ms", "DuckDB array_distance on Parquet"),
]


def log_log_lines(xs, rows, series, name, xlabel, ylabel, title, xticks=None):
    """A log-log chart of one line per (key, label) in `series` found in
    every row, saved as DIR/name."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label in series:
        if all(key in row for row in rows):
            ax.plot(xs, [row[key] for row in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if xticks:
        ax.set_xticks(xs, xticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = DIR / name
    fig.savefig(path, metadata={"Date": None})
    return path


def latency_vs_selectivity(r):
    rows = r["selectivity"]
    return log_log_lines(
        [row["fraction"] * 100 for row in rows], rows, SERIES, "latency_vs_selectivity.svg",
        "rows passing the filter", "top-10 latency, ms (log)",
        f"Exact top-{r['k']}, {r['rows']:,} x {r['dim']}-d float32 ({r['cores']} cores, {r['date']})",
        xticks=[row["label"] for row in rows])


def throughput(r):
    t = r["throughput_qps"]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(list(t), list(t.values()), color=["#4c72b0", "#55a868"])
    ax.set_ylabel("unfiltered top-10 queries/s")
    ax.set_title(f"{r['rows']:,} x {r['dim']}-d, {r['cores']} cores")
    fig.tight_layout()
    path = DIR / "throughput.svg"
    fig.savefig(path, metadata={"Date": None})
    return path


SCALE_SERIES = [
    ("quiver_flight_qps", "quiver over Flight SQL (ADBC), 1 client"),
    ("quiver_flight_8_clients_qps", "quiver over Flight SQL, 8 clients"),
    ("faiss_qps", "faiss IndexFlatL2 in process"),
    ("numpy_qps", "numpy in process"),
    ("duckdb_parquet_qps", "DuckDB array_distance on Parquet"),
]


def qps_vs_size(r):
    rows = r["records"]
    return log_log_lines(
        [row["rows"] for row in rows], rows, SCALE_SERIES, "qps_vs_size.svg",
        f"rows ({r['dim']}-d float32)", f"unfiltered top-{r['k']} queries/s (log)",
        f"Queries/s against data size ({r['cores']} cores, {r['date']})")


def main():
    paths = []
    if (DIR / "search.json").exists():
        r = json.loads((DIR / "search.json").read_text())
        paths += [latency_vs_selectivity(r), throughput(r)]
    if (DIR / "scale.json").exists():
        paths.append(qps_vs_size(json.loads((DIR / "scale.json").read_text())))
    if not paths:
        raise SystemExit(f"no results in {DIR}: run benches/search.py or benches/scale.py first")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
