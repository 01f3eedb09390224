"""Compares two sets of benchmark results (the JSON the benches write) case by
case: for every timing field (`*_ms`) the median over the runs of each set
and the ratio after/before. Use it to show that a change kept (or moved) the
figures: build the bench at both commits, run them interleaved on the same
machine, each with its own RESULTS_DIR, then

    .venv/bin/python benches/compare.py topk \\
        --before /tmp/b1 /tmp/b2 /tmp/b3 --after /tmp/a1 /tmp/a2 /tmp/a3

A case is one record's identity: every field that is not a number (`case`,
`selectivity`, ...) plus `rows` and `dim`. Fields that time code which did
not change (the bench's own flat scan, faiss, numpy) show the machine's
noise in the same run: read the other ratios against theirs.
"""

import argparse
import json
import pathlib
import statistics
import sys

IDENTITY_NUMBERS = ("rows", "dim", "clients", "k")


def identity(record):
    return tuple(
        (k, v)
        for k, v in sorted(record.items())
        if k in IDENTITY_NUMBERS or not isinstance(v, (int, float))
    )


def load(directory, bench):
    path = pathlib.Path(directory) / f"{bench}.json"
    try:
        records = json.loads(path.read_text())["records"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{path}: cannot read benchmark results ({e})")
    return {identity(r): r for r in records}


def medians(runs, case):
    """field -> median over the runs that have it, for `_ms` fields."""
    values = {}
    for run in runs:
        for field, v in run.get(case, {}).items():
            if field.endswith("_ms") and isinstance(v, (int, float)):
                values.setdefault(field, []).append(v)
    return {f: statistics.median(vs) for f, vs in values.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bench", help="results file name without .json, e.g. topk")
    p.add_argument("--before", nargs="+", required=True, metavar="DIR")
    p.add_argument("--after", nargs="+", required=True, metavar="DIR")
    args = p.parse_args()
    before = [load(d, args.bench) for d in args.before]
    after = [load(d, args.bench) for d in args.after]
    cases = list(dict.fromkeys(c for run in before + after for c in run))
    print(
        f"{args.bench}: median of {len(before)} run(s) before and "
        f"{len(after)} after; ratio = after / before"
    )
    for case in cases:
        b, a = medians(before, case), medians(after, case)
        print(", ".join(f"{k}={v}" for k, v in case))
        for field in (f for f in b if f in a):
            ratio = a[field] / b[field] if b[field] else float("nan")
            print(f"  {field:32} {b[field]:10.2f} {a[field]:10.2f}   {ratio:5.2f}")


if __name__ == "__main__":
    main()
