"""Renders benchmark results (JSON written by the benchmarks) as SVG charts
in docs/bench/, for README:

- latency_vs_selectivity.svg (from search.json, `benches/search.py`): exact
  top-10 p50 latency against filter selectivity, quiver over Flight SQL next
  to faiss, numpy and DuckDB measured in the same run;
- throughput.svg: queries/s with 1 and 8 clients;
- qps_vs_size.svg (from scale.json, `benches/scale.py`): unfiltered top-10
  queries/s against the number of rows, quiver over Flight SQL (1 and 8
  clients) next to faiss, numpy and DuckDB measured in the same run;
- ann_recall_latency.svg (from ann.json, `benches/ann.py`): recall@10
  against p50 latency per index type (one point per probes / ef_search
  setting), quiver over Flight SQL and in process next to faiss, hnswlib
  and LanceDB with the same index type and parameters.

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


ANN_SERIES = [
    ("quiver_flight_p50_ms", "quiver_recall", "quiver over Flight SQL", "-"),
    ("in_process_p50_ms", "in_process_recall", "quiver in process", "--"),
    ("faiss_p50_ms", "faiss_recall", "faiss", ":"),
    ("hnswlib_p50_ms", "hnswlib_recall", "hnswlib", "-."),
    ("lancedb_p50_ms", "lancedb_recall", "LanceDB in process", (0, (1, 3))),
]


def ann_recall_latency(r):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = {"ivf": "#4c72b0", "ivf_sq8": "#55a868", "hnsw": "#c44e52"}
    for kind, out in r["kinds"].items():
        rows = out["settings"]
        for ms, rec, label, style in ANN_SERIES:
            if rows and all(ms in row for row in rows):
                ax.plot([row[ms] for row in rows], [row[rec] for row in rows], linestyle=style, marker="o",
                        markersize=3, color=colors.get(kind), label=f"{kind}: {label}")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per query, ms (log)")
    ax.set_ylabel(f"recall@{r['k']}")
    ax.set_title(f"Approximate top-{r['k']}, {r['rows']:,} x {r['dim']}-d ({r['cores']} cores, {r['date']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = DIR / "ann_recall_latency.svg"
    fig.savefig(path, metadata={"Date": None})
    return path


def main():
    paths = []
    if (DIR / "ann.json").exists() and "kinds" in json.loads((DIR / "ann.json").read_text()):
        paths.append(ann_recall_latency(json.loads((DIR / "ann.json").read_text())))
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
